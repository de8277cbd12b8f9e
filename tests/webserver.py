"""A ``dagster-webserver`` for the tests that read what the UI reads, and its GraphQL API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import free_port, venv_command
from waiting import wait_for


@contextmanager
def running_webserver(cwd: Path, env: Mapping[str, str], *, kill: bool = False) -> Iterator[int]:
    """``dagster-webserver -w workspace.yaml`` in ``cwd`` on a free port; yields the port.

    ``kill``: stopped with SIGKILL to its own process group (it, its code servers and the run
    workers it launched) instead of a graceful SIGTERM, which takes seconds; for a caller whose
    runs have all finished and which reads nothing more from its processes.
    """
    port = free_port()
    server = subprocess.Popen(
        [venv_command("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=kill,
    )
    try:
        yield port
    finally:
        if kill:
            os.killpg(server.pid, signal.SIGKILL)
        else:
            server.terminate()
        server.wait(timeout=30)


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


def graphql_when(
    port: int,
    query: str,
    ready: Callable[[dict], Any],
    what: str,
    *,
    variables: dict | None = None,
    timeout: float = 240,
    every: float = 1.0,
) -> dict:
    """The first answer to ``query`` that is ``ready``; a server still starting is waited for."""
    last: list[object] = [None]

    def answer() -> dict | None:
        try:
            data = graphql(port, query, variables)
            last[0] = data
            return data if ready(data) else None
        except (OSError, AssertionError, KeyError) as exc:  # still starting
            last[0] = exc
            return None

    return wait_for(answer, what, timeout=timeout, every=every, explain=lambda: f"last answer: {last[0]}")


# Every code location the webserver serves: loaded (its jobs) or its load error with causes.
WORKSPACE_LOCATIONS = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message causes { message stack } }
          ... on RepositoryLocation { repositories { jobs { name } schedules { name } sensors { name } } }
        }
      }
    }
  }
}
"""
