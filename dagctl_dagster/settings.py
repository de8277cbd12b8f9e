"""Settings shared by the executor and the frameworks: `MAX_CONCURRENT_MODELS`.

It bounds the claim-aware executor's model steps and sets dbt's ``--threads``; both read it
through :func:`parse_max_concurrent` so they accept and refuse the same values.
"""

from __future__ import annotations

from typing import Any

MAX_CONCURRENT_ENV = "MAX_CONCURRENT_MODELS"
DEFAULT_MAX_CONCURRENT = 5


class InvalidMaxConcurrent(ValueError):
    """Not a positive integer; the message names where the value came from."""


def parse_max_concurrent(value: Any, *, source: str) -> int:
    """A positive integer; unset or empty means the default (5).

    Raises:
        InvalidMaxConcurrent: ``"<source> must be a positive integer such as 5 (got '0')"``.
    """
    if value is None or value == "":
        return DEFAULT_MAX_CONCURRENT
    problem = InvalidMaxConcurrent(
        f"{source} must be a positive integer such as {DEFAULT_MAX_CONCURRENT} (got {value!r})"
    )
    if isinstance(value, bool):
        raise problem
    number = value
    if isinstance(value, str):
        if not value.strip().lstrip("+").isdigit():
            raise problem
        number = int(value.strip())
    if not isinstance(number, int) or number < 1:
        raise problem
    return number


# A claim lease outside this range is a mistake: shorter renews several times a second and
# expires on any pause; longer keeps a dead worker's models blocked for more than a day.
MIN_LEASE_SECONDS = 5.0
MAX_LEASE_SECONDS = 86400.0


class InvalidLeaseSeconds(ValueError):
    """Not a number of seconds in the sane range; the message names where it came from."""


def parse_lease_seconds(value: Any, *, source: str) -> float:
    """A claim lease in seconds, between :data:`MIN_LEASE_SECONDS` and :data:`MAX_LEASE_SECONDS`.

    Raises:
        InvalidLeaseSeconds: ``"<source> must be a number of seconds from 5 to 86400 (one day), got inf"``.
    """
    problem = InvalidLeaseSeconds(
        f"{source} must be a number of seconds from {MIN_LEASE_SECONDS:g} to {MAX_LEASE_SECONDS:g} "
        f"(one day), got {value!r}"
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise problem
    # NaN fails both comparisons, infinity the second.
    if not MIN_LEASE_SECONDS <= value <= MAX_LEASE_SECONDS:
        raise problem
    return float(value)
