from sqlmesh import macro
from sqlmesh.core.macros import MacroEvaluator


@macro()
def duration_bucket(evaluator: MacroEvaluator, column):
    """Label a duration in seconds: quick, normal or long."""
    return f"CASE WHEN {column} < 10 THEN 'quick' WHEN {column} < 40 THEN 'normal' ELSE 'long' END"
