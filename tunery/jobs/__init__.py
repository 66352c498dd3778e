"""Fine-tuning jobs: the state machine, the FIFO queue and the worker that runs `tunery train`.

The API process only writes job rows; a separate worker process claims queued jobs, launches
the trainer as a subprocess per job, and turns its run directory into events and checkpoints.
"""
