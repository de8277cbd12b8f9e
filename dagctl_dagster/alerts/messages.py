"""Every Slack message dagctl sends is worded here.

Example::

    step_failure_text(StepFailure("analytics", "db.orders", "3f2a…", "analytics_run",
                                  "division by zero"))
    # ':red_circle: *analytics* model `db.orders` failed in run 3f2a… (job analytics_run)
    #  > division by zero
    #  <http://dagster.internal/runs/3f2a…|Open the run in Dagster>'
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dagctl_dagster.secrets import redact

WEBSERVER_URL_ENV_VAR = "DAGSTER_WEBSERVER_URL"
# The first model failure of a run is its only message.
MORE_FAILURES_NOTE = "_Further failures of this run, if any, are not posted again: the run shows them all._"
MAX_LISTED_STEPS = 5
TIER_ICONS = {"page": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


@dataclass(frozen=True)
class StepFailure:
    project: str
    model: str  # the failed model, or several joined by ", "
    run_id: str
    job_name: str
    error: str


@dataclass(frozen=True)
class FailedStep:
    """A step of a failed run: what it ran (its model(s), else the step) and its error."""

    name: str
    error: str


@dataclass(frozen=True)
class RunFailure:
    project: str | None
    run_id: str
    job_name: str
    error: str
    failed_steps: tuple[FailedStep, ...] = ()


def first_line(text: str | None, *, limit: int = 300) -> str:
    """The first non-empty line of an error message, shortened and redacted."""
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    line = redact(line) or "(no error message)"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_link(run_id: str) -> str | None:
    """A Slack link to the run when ``$DAGSTER_WEBSERVER_URL`` is set."""
    base = os.environ.get(WEBSERVER_URL_ENV_VAR, "").rstrip("/")
    return f"<{base}/runs/{run_id}|Open the run in Dagster>" if base else None


def step_failure_text(failure: StepFailure) -> str:
    """``model `a` failed``; a step of several models (one dbt build) lists them: ``model `a`, `b` failed``."""
    models = ", ".join(f"`{name}`" for name in failure.model.split(", "))
    lines = [
        f":red_circle: *{failure.project}* model {models} failed in run {failure.run_id} (job {failure.job_name})",
        f"> {first_line(failure.error)}",
        MORE_FAILURES_NOTE,
    ]
    return _with_link(lines, failure.run_id)


def run_failure_text(failure: RunFailure) -> str:
    """What failed: each failed step (at most :data:`MAX_LISTED_STEPS`) with its error, else
    the run's own failure (its worker died, it could not start)."""
    project = f"*{failure.project}* " if failure.project else ""
    run = f"run {failure.run_id} (job {failure.job_name})"
    steps = failure.failed_steps
    if not steps:
        lines = [f":red_circle: {project}{run} failed outside any model step", f"> {first_line(failure.error)}"]
        return _with_link(lines, failure.run_id)
    lines = [f":red_circle: {project}{run} failed: {len(steps)} step(s) failed"]
    lines += [f"> `{step.name}`: {first_line(step.error, limit=200)}" for step in steps[:MAX_LISTED_STEPS]]
    if len(steps) > MAX_LISTED_STEPS:
        lines.append(f"> … and {len(steps) - MAX_LISTED_STEPS} more")
    return _with_link(lines, failure.run_id)


def tier_alert_text(tier: str, project: str, summary: str, run_id: str | None = None) -> str:
    lines = [f"{TIER_ICONS.get(tier, '')} [{tier}] *{project}*: {redact(summary)}".strip()]
    return _with_link(lines, run_id) if run_id else "\n".join(lines)


def _with_link(lines: list[str], run_id: str) -> str:
    link = run_link(run_id)
    return "\n".join([*lines, link] if link else lines)
