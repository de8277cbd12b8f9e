import typing as t
from datetime import datetime

import pandas as pd
from sqlmesh import ExecutionContext, model


@model(
    "events.event_type_counts",
    kind="FULL",
    columns={
        "event_type": "text",
        "events": "int",
        "users": "int",
        "avg_duration_s": "double",
        "label": "text",
    },
    depends_on=["events.raw_events"],
    grain="event_type",
    audits=[("not_null", {"columns": "[event_type]"})],
)
def execute(
    context: ExecutionContext,
    start: datetime,
    end: datetime,
    execution_time: datetime,
    **kwargs: t.Any,
) -> pd.DataFrame:
    events = context.fetchdf(f"SELECT * FROM {context.resolve_table('events.raw_events')}")
    grouped = events.groupby("event_type")
    counts = pd.DataFrame(
        {
            "event_type": grouped.size().index,
            "events": grouped.size().values,
            "users": grouped["user_id"].nunique().values,
            "avg_duration_s": grouped["duration_s"].mean().round(3).values,
        }
    )
    labels = pd.read_csv("data/event_labels.csv")
    return counts.merge(labels, on="event_type", how="left")
