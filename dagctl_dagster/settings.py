"""Settings read from the environment by more than one room.

- ``MAX_CONCURRENT_MODELS`` bounds the claim-aware executor's model steps and sets dbt's
  ``--threads``; both read it through :func:`parse_max_concurrent` so they accept and
  refuse the same values.
- ``DAGCTL_AUTOMATION`` (``on`` / ``off``) decides whether schedules and sensors that
  launch runs start RUNNING (:func:`automation_enabled`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only two functions here need Dagster; `dagctl-dagster claims list --url ...`
    # reads these settings and starts without it
    import dagster as dg

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
DEFAULT_LEASE_SECONDS = 60.0
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


# A PostgreSQL claim store slower than this to connect or to answer a statement has stalled:
# the run fails fast instead of waiting on it. libpq counts connect timeouts in whole seconds,
# from 2.
DEFAULT_CLAIMS_TIMEOUT_SECONDS = 10
MIN_CLAIMS_TIMEOUT_SECONDS = 2
MAX_CLAIMS_TIMEOUT_SECONDS = 600


class InvalidClaimsTimeout(ValueError):
    """Not a whole number of seconds in the sane range; the message names where it came from."""


def parse_claims_timeout_seconds(value: Any, *, source: str) -> int:
    """The claim store's timeout in whole seconds, from :data:`MIN_CLAIMS_TIMEOUT_SECONDS` to
    :data:`MAX_CLAIMS_TIMEOUT_SECONDS`.

    Raises:
        InvalidClaimsTimeout: ``"<source> must be a whole number of seconds from 2 to 600, got 0"``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_CLAIMS_TIMEOUT_SECONDS <= value <= MAX_CLAIMS_TIMEOUT_SECONDS
    ):
        raise InvalidClaimsTimeout(
            f"{source} must be a whole number of seconds from {MIN_CLAIMS_TIMEOUT_SECONDS} to "
            f"{MAX_CLAIMS_TIMEOUT_SECONDS}, got {value!r}"
        )
    return value


AUTOMATION_ENV = "DAGCTL_AUTOMATION"
_ON = {"", "on", "true", "1", "yes"}
_OFF = {"off", "false", "0", "no"}


class InvalidAutomationSwitch(ValueError):
    """`DAGCTL_AUTOMATION` is neither on nor off."""


def automation_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether schedules and sensors that launch runs start RUNNING (``DAGCTL_AUTOMATION``).

    Unset means on: production follows the config file. ``scripts/dev.sh`` sets it to
    ``off`` so that a local deployment waits for the user; either way a toggle in the UI
    overrides the default.
    """
    raw = (os.environ if environ is None else environ).get(AUTOMATION_ENV, "").strip().lower()
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise InvalidAutomationSwitch(f"env var {AUTOMATION_ENV} must be 'on' or 'off' (got {raw!r})")


def schedule_default_status(environ: Mapping[str, str] | None = None) -> dg.DefaultScheduleStatus:
    import dagster as dg

    return dg.DefaultScheduleStatus.RUNNING if automation_enabled(environ) else dg.DefaultScheduleStatus.STOPPED


def sensor_default_status(environ: Mapping[str, str] | None = None) -> dg.DefaultSensorStatus:
    import dagster as dg

    return dg.DefaultSensorStatus.RUNNING if automation_enabled(environ) else dg.DefaultSensorStatus.STOPPED
