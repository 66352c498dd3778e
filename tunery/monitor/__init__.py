"""Monitoring deployed models: input drift against the training data, and scheduled re-evaluation.

`prompt_log` keeps the prompts a server receives (opt-in, with retention), `drift` measures how
far they have moved from the training prompts, `schedule` runs registered eval suites when they
are due and raises alerts, `alerts` posts them to a webhook, `background` runs the due suites
from inside `tunery serve` (opt-in), and `report` shows the history.
"""
