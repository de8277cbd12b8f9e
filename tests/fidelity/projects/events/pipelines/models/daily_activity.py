import typing as t
from datetime import datetime

import pandas as pd
from sqlmesh import ExecutionContext, model
from sqlmesh.core.model.kind import ModelKindName


@model(
    "events.daily_activity",
    kind=dict(name=ModelKindName.INCREMENTAL_BY_TIME_RANGE, time_column="activity_date", batch_size=4),
    columns={
        "activity_date": "date",
        "user_id": "int",
        "events": "int",
        "seconds": "int",
    },
    depends_on=["events.raw_events"],
    grain=["activity_date", "user_id"],
)
def execute(
    context: ExecutionContext,
    start: datetime,
    end: datetime,
    execution_time: datetime,
    **kwargs: t.Any,
) -> t.Iterator[pd.DataFrame]:
    table = context.resolve_table("events.raw_events")
    days = pd.date_range(start.date(), end.date(), freq="D")
    for day in days:
        frame = context.fetchdf(
            f"""
            SELECT event_date AS activity_date, user_id, COUNT(*) AS events,
                   SUM(duration_s)::INT AS seconds
            FROM {table}
            WHERE event_date = DATE '{day.date().isoformat()}'
            GROUP BY event_date, user_id
            """
        )
        if not frame.empty:
            yield frame
