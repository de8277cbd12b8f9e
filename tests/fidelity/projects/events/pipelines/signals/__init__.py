import typing as t

from sqlmesh import DatetimeRanges, signal


@signal()
def business_days(batch: DatetimeRanges) -> t.Union[bool, DatetimeRanges]:
    """Source systems publish on weekdays only: weekend intervals are never ready."""
    return [interval for interval in batch if interval[0].weekday() < 5]
