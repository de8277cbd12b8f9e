"""The ``slack`` resource every alert goes through, whether or not Slack is installed.

With the ``slack`` extra it is :class:`~dagctl_dagster.alerts.slack.DagctlSlackResource`.
Without it, :class:`LoggedAlerts` logs each message instead: alerts are still recorded in
Dagster, and a config that names a Slack channel is refused when it loads
(:mod:`dagctl_dagster.extras`), so nothing meant for a channel is silently logged.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import dagster as dg

from dagctl_dagster.extras import is_installed
from dagctl_dagster.secrets import redact

logger = logging.getLogger("dagctl_dagster.alerts")

SLACK_RESOURCE_KEY = "slack"


class AlertClient(Protocol):
    def chat_postMessage(self, *, channel: str | None = None, text: str | None = None, **kwargs: Any) -> Any: ...


class AlertSender(Protocol):
    def get_client(self) -> AlertClient: ...


# What the alerting sensors ask for: the resource bound to SLACK_RESOURCE_KEY.
AlertResource = dg.ResourceParam[AlertSender]


class LoggedAlerts(dg.ConfigurableResource):
    """The ``slack`` resource without the ``slack`` extra: every message goes to the log."""

    def get_client(self) -> _LogClient:
        return _LogClient()


class _LogClient:
    def chat_postMessage(self, *, channel: str | None = None, text: str | None = None, **kwargs: Any) -> None:
        logger.warning("Slack alert not sent (the `slack` extra is not installed): %s", redact(text or ""))


def slack_resource() -> dg.ConfigurableResource:
    if is_installed("dagster_slack"):
        from dagctl_dagster.alerts.slack import DagctlSlackResource

        return DagctlSlackResource()
    return LoggedAlerts()
