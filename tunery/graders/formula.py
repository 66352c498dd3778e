"""A small, safe arithmetic evaluator for a multi grader's `calculate_output`.

The formula is parsed with `ast` and only numbers, the sub-graders' names, `+ - * / ^ **`,
parentheses and the functions OpenAI lists (`min max abs floor ceil exp sqrt log`) are accepted.
Nothing is ever passed to `eval`: an attribute, a call to anything else, a subscript or a string
is refused when the grader is checked, before any sample is graded. `^` is a power, as in
OpenAI's formulas (Python would read it as xor).
"""

from __future__ import annotations

import ast
import math
import operator

FUNCTIONS = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_LENGTH = 1000
MAX_EXPONENT = 64  # 10 ** 10 ** 10 would hang the grader; no reward formula needs more


class FormulaError(ValueError):
    """The formula is not arithmetic over the grader names, or cannot be computed."""


def _parse(formula: str) -> ast.expr:
    if len(formula) > MAX_LENGTH:
        raise FormulaError(f"longer than {MAX_LENGTH} characters")
    try:
        # `^` is a power, with a power's precedence: `a ^ 2 + b` is (a ** 2) + b. The formula holds
        # no strings (they are refused below), so replacing the character changes nothing else.
        return ast.parse(formula.strip().replace("^", "**"), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(f"not an arithmetic expression ({exc.msg})") from None


def check_formula(formula: str, names: set[str]) -> None:
    """Raise FormulaError unless `formula` uses only allowed syntax and the given names."""
    _walk(_parse(formula), {name: 0.0 for name in names}, evaluate=False)


def evaluate_formula(formula: str, values: dict[str, float]) -> float:
    """The formula's value for these sub-grader scores.

    >>> evaluate_formula("0.5 * a + 0.5 * b", {"a": 1.0, "b": 0.0})
    0.5
    >>> evaluate_formula("min(a, b) ^ 2 + abs(-1)", {"a": 3.0, "b": 4.0})
    10.0

    Raises:
        FormulaError: disallowed syntax, an unknown name, division by zero, or a math domain error.
    """
    return float(_walk(_parse(formula), values, evaluate=True))


def _walk(node: ast.expr, values: dict[str, float], *, evaluate: bool):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise FormulaError(f"unknown name {node.id!r} (graders: {', '.join(sorted(values)) or 'none'})")
        return values[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left, values, evaluate=evaluate), _walk(node.right, values, evaluate=evaluate)
        if not evaluate:
            return 0.0
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise FormulaError(f"exponent {right} is larger than {MAX_EXPONENT}")
        try:
            return _BINARY[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            raise FormulaError(f"cannot compute: {exc}") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand, values, evaluate=evaluate))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = FUNCTIONS.get(node.func.id)
        if function is None:
            raise FormulaError(f"unknown function {node.func.id!r} (allowed: {', '.join(FUNCTIONS)})")
        arguments = [_walk(a, values, evaluate=evaluate) for a in node.args]
        if not arguments:
            raise FormulaError(f"{node.func.id}() needs an argument")
        if not evaluate:
            return 0.0
        try:
            return function(*arguments)
        except (TypeError, ValueError, OverflowError) as exc:
            raise FormulaError(f"cannot compute {node.func.id}: {exc}") from None
    raise FormulaError(
        f"{ast.unparse(node)!r} is not allowed (numbers, grader names, + - * / ^ and {', '.join(FUNCTIONS)})"
    )
