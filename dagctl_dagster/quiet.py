"""Warnings that reach a user of this code location without anything for them to do.

Installed once by ``load_definitions`` (the entry point is ours, so the filters are too):

- Dagster's BetaWarning for ``owners`` of ``SensorDefinition``: Dagster itself passes
  ``owners`` when it copies a sensor onto resolved jobs, whatever the sensor declared.
- pandas deprecation warnings SQLMesh triggers while reading seed CSVs.
"""

from __future__ import annotations

import sys
import warnings

import dagster as dg

_FILTERS = (
    (dg.BetaWarning, r"Parameter `owners` of initializer `SensorDefinition.__init__`"),
    (UserWarning, r"The argument 'infer_datetime_format' is deprecated"),
    (FutureWarning, r"errors='ignore' is deprecated"),
)


def silence_known_warnings() -> None:
    for category, message in _FILTERS:
        warnings.filterwarnings("ignore", message=message, category=category)


def print_expected_errors_without_traceback() -> None:
    """When a config or project error ends the process (``dg launch``, ``dagster job execute``
    loading this code location), print its message on one line instead of a traceback.

    Only uncaught errors reach ``sys.excepthook``: a code server still reports the error to
    the webserver as before; any other exception keeps its traceback.
    """
    if getattr(sys.excepthook, "_dagctl", False):
        return
    previous = sys.excepthook

    def hook(kind, value, traceback):
        expected = _expected_error(value)
        if expected is None:
            previous(kind, value, traceback)
            return
        print(f"error: {expected}", file=sys.stderr)

    hook._dagctl = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _expected_error(exc: BaseException | None) -> BaseException | None:
    from dagctl_dagster.config import ConfigError
    from dagctl_dagster.errors import ProjectLoadError
    from dagctl_dagster.extras import MissingExtra
    from dagctl_dagster.settings import InvalidAutomationSwitch

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (ConfigError, ProjectLoadError, InvalidAutomationSwitch, MissingExtra)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
