import typing as t
from datetime import timedelta

from sqlmesh import DatetimeRanges, signal


@signal()
def settled_after(batch: DatetimeRanges, days: int) -> t.Union[bool, DatetimeRanges]:
    """Payments settle `days` after the day they were made: keep the most recent days back."""
    latest = max(end for _, end in batch)
    return [(start, end) for start, end in batch if end <= latest - timedelta(days=days)]
