"""tunery: self-hosted fine-tuning for open language models.

The verbs of the CLI are functions here, with typed arguments and results (see tunery/api.py):

    import tunery
    report = tunery.validate("train.jsonl")
    run = tunery.train(data="train.jsonl", validation="valid.jsonl", output="runs/first")
    print(run.metrics[-1], run.generate("Where is my order?"))

The package layout follows the data flow: data → train → eval → store → serve → monitor.
Heavy dependencies (torch, transformers) are imported lazily, so `import tunery` is fast.
"""

from tunery.hardware import wait_passively

__version__ = "0.1.0"

# Before anything imports torch: OpenMP threads that spin at barriers collapse throughput when other
# processes share the cores (see tunery.hardware). The user's own OMP_WAIT_POLICY is kept.
wait_passively()

# `tunery.train` and `tunery.export` are also the names of two subpackages. Python binds a
# subpackage to its parent's attribute when it is first imported, which would replace the
# function; importing both (light: neither imports torch) before binding the functions means
# that later imports of `tunery.train.sft` and the like find them loaded and leave the names be.
import tunery.export as _export_module  # noqa: E402, F401
import tunery.train as _train_package  # noqa: E402, F401
from tunery.api import compare, dry_run, estimate, evaluate, export, run_config, train, validate  # noqa: E402
from tunery.run import Run  # noqa: E402

__all__ = [
    "Run",
    "__version__",
    "compare",
    "dry_run",
    "estimate",
    "evaluate",
    "export",
    "run_config",
    "train",
    "validate",
]
