"""Evaluation on held-out data: graders, reference loss, baselines, and the forgetting probe.

The two entry points are `evaluate` (one model, optionally with a fine-tuned adapter) and
`compare` (zero-shot vs few-shot prompting vs the tuned model, with a verdict). Both return
pydantic reports with `.to_dict()`; `print_eval_report` / `print_compare_report` render them and
`write_eval_report` / `write_compare_report` save the summary and the per-example JSONL.
Nothing heavy is imported until a model is loaded.
"""

from tunery.eval.compare import CompareReport, compare, print_compare_report, write_compare_report
from tunery.eval.evaluate import evaluate
from tunery.eval.report import EvalReport, print_eval_report, write_eval_report

__all__ = [
    "CompareReport",
    "EvalReport",
    "compare",
    "evaluate",
    "print_compare_report",
    "print_eval_report",
    "write_compare_report",
    "write_eval_report",
]
