"""Training: one explicit loop per method (sft.py, dpo.py), pure losses, atomic checkpoints."""
