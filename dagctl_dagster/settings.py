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
