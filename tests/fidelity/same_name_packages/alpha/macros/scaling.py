from helpers import FACTOR
from sqlglot import exp
from sqlmesh import macro
from sqlmesh.core.macros import MacroEvaluator


@macro()
def scaled(evaluator: MacroEvaluator, column: exp.Expression) -> exp.Expression:
    """The column times this project's factor."""
    return exp.Mul(this=column, expression=exp.Literal.number(FACTOR))
