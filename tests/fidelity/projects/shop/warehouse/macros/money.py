from sqlmesh import macro


@macro()
def cents_to_dollars(evaluator, expression):
    """Cents (an integer expression) as dollars with two decimals."""
    return f"ROUND(({expression}) / 100.0, 2)::DECIMAL(12, 2)"
