import typing as t
from datetime import datetime

import pandas as pd
from helpers.units import tag
from sqlmesh import ExecutionContext, model


@model("alpha.tagged", kind="FULL", columns={"n": "int", "label": "text"})
def execute(
    context: ExecutionContext, start: datetime, end: datetime, execution_time: datetime, **kwargs: t.Any
) -> pd.DataFrame:
    frame = context.fetchdf(f"SELECT n FROM {context.resolve_table('alpha.numbers')} ORDER BY n")
    frame["label"] = [tag(int(n)) for n in frame["n"]]
    return frame
