"""dagster-slack's ``SlackResource``, made safe to call from a running job.

Example::

    import dagster as dg
    from dagctl_dagster.alerts.slack import DagctlSlackResource

    defs = dg.Definitions(resources={"slack": DagctlSlackResource()})
    # in a hook, op or sensor:
    slack.get_client().chat_postMessage(channel="#data-alerts", text="orders failed")

What it changes against ``SlackResource``:

* the bot token is read from ``$SLACK_BOT_TOKEN`` when the resource is used, so it never
  appears in run config; without a token, messages are logged instead of sent;
* ``$SLACK_API_URL`` (when set) replaces Slack's API base URL (tests use a local stub);
* ``chat_postMessage`` returns at once: the message is sent from a background thread, with
  slack_sdk's retry handlers (429 + Retry-After, connection errors, timeouts) and a short
  timeout, and every failure is logged, never raised, so a hook cannot fail or slow a run;
* every message is passed through :func:`~dagctl_dagster.secrets.redact`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError

from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web.client import WebClient

from dagctl_dagster.secrets import redact

logger = logging.getLogger("dagctl_dagster.alerts")

TOKEN_ENV_VAR = "SLACK_BOT_TOKEN"
BASE_URL_ENV_VAR = "SLACK_API_URL"

# One sender thread per process: messages leave in order, and Python joins the thread at
# interpreter exit, so a run worker that finishes right after a failure still delivers it.
_sender = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dagctl-slack")
_pending: set[concurrent.futures.Future] = set()
_pending_lock = threading.Lock()


class DagctlSlackResource(SlackResource):
    """A ``SlackResource`` whose client posts in the background and never raises."""

    token: str | None = Field(  # type: ignore[assignment]
        default=None,
        description=f"Leave unset: the token is read from ${TOKEN_ENV_VAR} (a Kubernetes Secret) when a "
        "message is sent, so it never lands in run config.",
    )
    timeout_s: int = Field(default=5, ge=1, description="Timeout of one Slack API request.")
    max_retries: int = Field(default=3, ge=0, description="Retries on 429 and on connection errors.")

    def get_client(self) -> WebClient:
        """A ``WebClient`` whose ``chat_postMessage`` queues the message and returns ``None``."""
        return BackgroundWebClient(
            token=self.token or os.environ.get(TOKEN_ENV_VAR) or None,
            base_url=slack_api_url(),
            timeout=self.timeout_s,
            retry_handlers=retry_handlers(self.max_retries),
        )


def slack_api_url() -> str:
    url = os.environ.get(BASE_URL_ENV_VAR) or WebClient.BASE_URL
    return url if url.endswith("/") else url + "/"


def retry_handlers(max_retries: int) -> list:
    return [
        RateLimitErrorRetryHandler(max_retry_count=max_retries),
        ConnectionErrorRetryHandler(
            max_retry_count=max_retries,
            error_types=[URLError, ConnectionResetError, RemoteDisconnected, TimeoutError],
        ),
    ]


class BackgroundWebClient(WebClient):
    """``chat_postMessage`` sends from the background thread; other methods are unchanged."""

    def chat_postMessage(self, *, channel: str | None = None, text: str | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        text = redact(text or "")
        if not self.token or not channel:
            missing = f"${TOKEN_ENV_VAR} is not set" if not self.token else "no channel is configured"
            logger.warning("Slack alert not sent (%s): %s", missing, text)
            return None
        send = WebClient.chat_postMessage
        future = _sender.submit(_send_logged, send, self, channel, text, kwargs)
        with _pending_lock:
            _pending.add(future)
        future.add_done_callback(_forget)
        return None


def _send_logged(send: Any, client: WebClient, channel: str, text: str, kwargs: dict) -> bool:
    try:
        send(client, channel=channel, text=text, **kwargs)
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else str(exc)
        hint = f" (check ${TOKEN_ENV_VAR})" if error in {"invalid_auth", "not_authed", "token_revoked"} else ""
        logger.error("Slack rejected the alert to %s: %s%s. Message: %s", channel, error, hint, text)
        return False
    except Exception as exc:  # timeouts after retries, DNS, anything: an alert must never break a run
        logger.error("Slack alert to %s not delivered: %s. Message: %s", channel, redact(str(exc)), text)
        return False
    logger.info("Slack alert sent to %s", channel)
    return True


def _forget(future: concurrent.futures.Future) -> None:
    with _pending_lock:
        _pending.discard(future)


def wait_for_pending_messages(timeout_s: float = 30.0) -> bool:
    """Block until queued messages are sent (or given up); ``True`` when none is left."""
    with _pending_lock:
        pending = list(_pending)
    done, not_done = concurrent.futures.wait(pending, timeout=timeout_s)
    return not not_done
