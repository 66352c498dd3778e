"""A grader the user writes: `module:function` or `path/to/file.py:function`.

The function is called as `function(output: str, reference: str)` once per example and returns a
bool or a number (True counts as 1.0). It should be pure: the same answer always gets the same score.
A module name is imported as usual, with the current directory on `sys.path` so that a
`graders.py` beside the data works; a path ending in `.py` is loaded from that file.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path

from tunery.errors import TuneryError

HINT = "write it as module:function (e.g. my_graders:is_polite) or path/to/file.py:function"


def is_custom_spec(name: str) -> bool:
    """Built-in grader names never contain a colon; custom ones always do."""
    return ":" in name


def load_custom_grader(spec: str) -> Callable[[str, str], float]:
    """Import the function named by `spec` and wrap it so that every score is a finite float.

    Raises:
        TuneryError: the module or function cannot be found, or is not callable.
    """
    module_part, _, function_name = spec.rpartition(":")
    if not module_part or not function_name:
        raise TuneryError(f"custom grader {spec!r} names no function", hint=HINT)
    module = _import(module_part, spec)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TuneryError(f"custom grader {spec!r}: {module_part} has no function {function_name!r}", hint=HINT)

    def grade(output: str, reference: str) -> float:
        try:
            value = function(output, reference)
        except Exception as exc:  # the user's code: report it as theirs, with the input that broke it
            raise TuneryError(
                f"custom grader {spec} raised {type(exc).__name__}: {exc} "
                f"(output={output[:80]!r}, reference={reference[:80]!r})"
            ) from None
        if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
            return float(value)
        raise TuneryError(
            f"custom grader {spec} returned {value!r}; a grader returns a bool or a finite number",
            hint="return True/False, or a score such as 0.75",
        )

    return grade


def _import(module_part: str, spec: str):
    try:
        if module_part.endswith(".py"):
            path = Path(module_part).expanduser()
            if not path.is_file():
                raise TuneryError(f"custom grader {spec!r}: no file {path}", hint=HINT)
            loader = importlib.util.spec_from_file_location(f"tunery_custom_grader_{path.stem}", path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
            return module
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(module_part)
    except TuneryError:
        raise
    except Exception as exc:  # ImportError, or the module failing at import time
        raise TuneryError(
            f"custom grader {spec!r}: cannot import {module_part} ({type(exc).__name__}: {exc})", hint=HINT
        ) from None
