"""Warnings that reach a user of this code location without anything for them to do.

Installed once by ``load_definitions`` (the entry point is ours, so the filters are too):

- Dagster's BetaWarning for ``owners`` of ``SensorDefinition``: Dagster itself passes
  ``owners`` when it copies a sensor onto resolved jobs, whatever the sensor declared.
- pandas deprecation warnings SQLMesh triggers while reading seed CSVs.
"""

from __future__ import annotations

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
