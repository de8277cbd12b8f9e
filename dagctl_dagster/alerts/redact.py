"""Keeps secret values out of Slack messages, log lines and event metadata.

A value is secret when the environment variable holding it is named like a secret
(``SLACK_BOT_TOKEN``, ``SQLMESH_STATE_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``, ...)::

    redact("connect failed: password=hunter2")  # with SQLMESH_STATE_PASSWORD=hunter2
    # -> "connect failed: password=***"
"""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PASS$|API_KEY|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL|AUTH", re.I)
MASK = "***"
# Shorter values ("1", "true") would mask unrelated text and are not real secrets.
_MIN_SECRET_LENGTH = 6


def secret_values() -> list[str]:
    """Values of secret-named environment variables, longest first."""
    values = {
        value
        for name, value in os.environ.items()
        if SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every secret environment value replaced by ``***``."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, MASK)
    return text
