"""tunery: self-hosted fine-tuning for open language models.

The package layout follows the data flow: data → train → eval → store → serve → monitor.
Heavy dependencies (torch, transformers) are imported lazily, so the data commands start fast.
"""

__version__ = "0.1.0"
