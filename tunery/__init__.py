"""tunery: self-hosted fine-tuning for open language models.

The package layout follows the data flow: data → train → eval → store → serve → monitor.
Heavy dependencies (torch, transformers) are imported lazily, so the data commands start fast.
"""

from tunery.hardware import wait_passively

__version__ = "0.1.0"

# Before anything imports torch: OpenMP threads that spin at barriers collapse throughput when other
# processes share the cores (see tunery.hardware). The user's own OMP_WAIT_POLICY is kept.
wait_passively()
