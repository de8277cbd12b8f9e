"""Run logs as one JSON object per line on stdout, for a log collector.

Dagster only builds the loggers a run's config names, so a job's default logger cannot be
swapped without run config. The handler that reaches every run's log lines is an instance
``python_logs`` handler; add it to ``dagster.yaml`` (the Helm chart's ``pythonLogs``) once::

    python_logs:
      dagster_handler_config:
        handlers:
          dagctl_json:
            class: dagctl_dagster.logging.JsonStdoutHandler

It writes only when ``DAGCTL_LOG_FORMAT=json`` is set in the run worker's environment. With
that variable set, ``load_definitions`` also registers :func:`json_console_logger` as the
``console`` logger, for runs whose config selects it (``loggers: {console: {}}``). A line::

    {"ts": "2026-11-21T10:00:00.123Z", "level": "ERROR", "message": "...", "run_id": "3f2a…",
     "job": "analytics_run", "project": "analytics", "model": "db/orders", "step": "analytics__db__orders",
     "event": "STEP_FAILURE"}

``project``, ``model`` and ``run_id`` are on every line (``null`` where a line belongs to no
model, e.g. run start). Secret environment values are masked.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg

from dagctl_dagster.names import PROJECT_TAG
from dagctl_dagster.secrets import redact

LOG_FORMAT_ENV_VAR = "DAGCTL_LOG_FORMAT"


def json_logs_enabled() -> bool:
    return os.environ.get(LOG_FORMAT_ENV_VAR, "").strip().lower() == "json"


class JsonFormatter(logging.Formatter):
    """Formats Dagster log records (and plain ones) as a JSON object on one line."""

    def __init__(self, models_by_step: Mapping[str, str] | None = None):
        super().__init__()
        self.models_by_step = dict(models_by_step or {})

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        step = meta.get("step_key") or None
        tags = meta.get("job_tags") or {}
        event = meta.get("dagster_event")
        message = meta.get("orig_message") or record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        line = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(message),
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "project": tags.get(PROJECT_TAG),
            "model": self.models_by_step.get(step, step) if step else None,
            "step": step,
            "event": event.event_type_value if event is not None else None,
        }
        return json.dumps(line, default=str)


_models_by_step: dict[str, str] = {}


def register_models(models_by_step: Mapping[str, str]) -> None:
    """Tell :class:`JsonStdoutHandler` which model each step runs (``load_definitions`` does)."""
    _models_by_step.update(models_by_step)


class JsonStdoutHandler(logging.StreamHandler):
    """A ``python_logs`` handler: JSON lines on stdout when ``DAGCTL_LOG_FORMAT=json``, else silent."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(JsonFormatter(_models_by_step))

    def emit(self, record: logging.LogRecord) -> None:
        if json_logs_enabled():
            super().emit(record)


def json_console_logger(models_by_step: Mapping[str, str] | None = None) -> dg.LoggerDefinition:
    """A Dagster logger writing :class:`JsonFormatter` lines to stdout."""

    @dg.logger(
        config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
        description="Run logs as JSON lines on stdout (DAGCTL_LOG_FORMAT=json).",
    )
    def _json_console(init_context: dg.InitLoggerContext) -> logging.Logger:
        level = init_context.logger_config["log_level"]
        logger = logging.getLogger(f"dagctl_json_{init_context.run_id or 'local'}")
        logger.propagate = False
        logger.setLevel(level.upper())
        logger.handlers.clear()
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter(models_by_step))
        logger.addHandler(handler)
        return logger

    return _json_console
