"""Label expressions: a small declared formula over columns (`tips > 0.2 * fare`), compiled to TF ops.

The text is parsed with Python's `ast` in expression mode and only a whitelist of node kinds is
accepted: column names, numbers, `+ - * /`, unary minus, comparisons, `and` / `or` / `not` and
parentheses. Nothing is ever `eval`ed; an unknown construct is an error that names it.
"""
import ast
import dataclasses
from typing import Callable, Dict, FrozenSet, Mapping

import tensorflow as tf


class ExpressionError(ValueError):
    """The expression cannot be parsed or uses something outside the whitelist."""


_ARITHMETIC: Dict[type, Callable] = {
    ast.Add: tf.add, ast.Sub: tf.subtract, ast.Mult: tf.multiply, ast.Div: tf.divide,
}
_COMPARISONS: Dict[type, Callable] = {
    ast.Gt: tf.greater, ast.GtE: tf.greater_equal, ast.Lt: tf.less, ast.LtE: tf.less_equal,
    ast.Eq: tf.equal, ast.NotEq: tf.not_equal,
}
_ALLOWED = "column names, numbers, + - * /, comparisons (< <= > >= == !=), and, or, not, parentheses"


@dataclasses.dataclass(frozen=True)
class Expression:
    """A parsed expression; `columns` are the names it reads."""
    text: str
    tree: ast.Expression = dataclasses.field(compare=False, repr=False)
    columns: FrozenSet[str]

    @property
    def is_boolean(self) -> bool:
        return _is_boolean(self.tree.body)

    def evaluate(self, values: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The expression over float tensors keyed by column name (NaN where a value is missing).

        A comparison with a missing operand is false, as IEEE comparisons with NaN are.
        """
        return _compile(self.tree.body, values)


def parse(text: str) -> Expression:
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"expected a formula over columns, got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"{text!r} is not a formula ({e.msg}); allowed: {_ALLOWED}") from e
    columns = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            columns.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"{text!r}: only numbers may appear as constants, "
                                      f"got {node.value!r}")
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp,
                                   ast.Load, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or,
                                   *_ARITHMETIC, *_COMPARISONS)):
            raise ExpressionError(f"{text!r} uses {type(node).__name__}, which label expressions do "
                                  f"not allow; allowed: {_ALLOWED}")
    if not columns:
        raise ExpressionError(f"{text!r} names no column")
    return Expression(text=text.strip(), tree=tree, columns=frozenset(columns))


def _is_boolean(node: ast.AST) -> bool:
    return (isinstance(node, (ast.Compare, ast.BoolOp))
            or isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not))


def _compile(node: ast.AST, values: Mapping[str, tf.Tensor]) -> tf.Tensor:
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return tf.constant(float(node.value), tf.float32)
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand, values)
        if isinstance(node.op, ast.Not):
            return tf.logical_not(_as_bool(node.operand, operand))
        return tf.negative(operand) if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        return _ARITHMETIC[type(node.op)](_compile(node.left, values), _compile(node.right, values))
    if isinstance(node, ast.Compare):
        # `a < b < c` is `a < b and b < c`, as in Python.
        operands = [_compile(node.left, values)] + [_compile(c, values) for c in node.comparators]
        results = [_COMPARISONS[type(op)](left, right)
                   for op, left, right in zip(node.ops, operands, operands[1:])]
        return tf.reduce_all(tf.stack(results), axis=0) if len(results) > 1 else results[0]
    if isinstance(node, ast.BoolOp):
        parts = [_as_bool(v, _compile(v, values)) for v in node.values]
        combine = tf.logical_and if isinstance(node.op, ast.And) else tf.logical_or
        result = parts[0]
        for part in parts[1:]:
            result = combine(result, part)
        return result
    raise ExpressionError(f"unsupported node {type(node).__name__}")  # parse() rejects these first


def _as_bool(node: ast.AST, value: tf.Tensor) -> tf.Tensor:
    if _is_boolean(node):
        return value
    raise ExpressionError(f"`{ast.unparse(node)}` is a number where and/or/not needs a comparison")
