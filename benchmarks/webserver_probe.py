"""A real ``dagster-webserver`` and the GraphQL questions the platform benchmark asks it.

The clock of a workspace load starts when the webserver process is started and stops at the
first ``locationStatusesOrError`` answer in which every expected location is ``LOADED``;
the workspace is then checked (no location is a load error, each serves its projects'
``<project>_run`` jobs and at least their models as assets), so a fast wrong load cannot pass.

Example::

    with started_webserver(root, "workspace.yaml", env, log) as server:
        load = wait_until_loaded(server, {"p00", "p01"}, timeout_s=600)
        check_served(server.port, {"p00": ["p00"], "p01": ["p01"]}, {"p00": 200, "p01": 200})
        reload = reload_location(server.port, "p01")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.contenders import ContenderFailed, venv_command

POLL_S = 0.25
STOP_TIMEOUT_S = 60.0

STATUSES = """
{
  locationStatusesOrError {
    __typename
    ... on WorkspaceLocationStatusEntries { entries { name loadStatus updateTimestamp versionKey } }
  }
}
"""
WORKSPACE = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message causes { message } }
          ... on RepositoryLocation { repositories { jobs { name } assetNodes { id } } }
        }
      }
    }
  }
}
"""
RELOAD = """
mutation ($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry {
      loadStatus
      versionKey
      locationOrLoadError { __typename ... on PythonError { message } }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass(frozen=True)
class RunningWebserver:
    port: int
    started: float  # time.perf_counter() just before the process was started
    started_wall: float  # time.time() at the same moment, to read the webserver's timestamps against
    process: subprocess.Popen
    log: Path


@dataclass(frozen=True)
class LocationStatus:
    load_status: str
    update_timestamp: float
    version_key: str


@dataclass(frozen=True)
class WorkspaceLoad:
    seconds: float  # process start → every location LOADED
    # Each location: seconds after start at which the webserver recorded it loaded (its
    # updateTimestamp); the webserver answers only once every location has loaded.
    loaded_at: dict[str, float]


@contextlib.contextmanager
def started_webserver(cwd: Path, workspace: str, env: Mapping[str, str], log: Path) -> Iterator[RunningWebserver]:
    """``dagster-webserver -w <workspace>`` in ``cwd``; stopped with the code servers it started."""
    port = free_port()
    with log.open("w") as out:
        started, started_wall = time.perf_counter(), time.time()
        process = subprocess.Popen(
            [venv_command("dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its code servers join its process group, which stop() ends
        )
        try:
            yield RunningWebserver(port=port, started=started, started_wall=started_wall, process=process, log=log)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGKILL the webserver's whole process group (it and the code servers it started), then
    wait until the group is gone. Nothing is measured after the clock stops, and a graceful
    SIGTERM costs 5-10 s per webserver (uvicorn, then each code server's gRPC shutdown) that
    the section, six webservers a repetition, would spend waiting."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # only the group this webserver leads
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def graphql(port: int, query: str, variables: dict | None = None, *, timeout_s: float = 600) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        payload = json.loads(response.read())
    if "errors" in payload:
        raise ContenderFailed(f"GraphQL error: {payload['errors']}")
    return payload["data"]


def location_statuses(port: int) -> dict[str, LocationStatus]:
    answer = graphql(port, STATUSES)["locationStatusesOrError"]
    if answer["__typename"] != "WorkspaceLocationStatusEntries":
        raise ContenderFailed(f"locationStatusesOrError answered {answer}")
    return {
        entry["name"]: LocationStatus(entry["loadStatus"], float(entry["updateTimestamp"]), entry["versionKey"])
        for entry in answer["entries"]
    }


def wait_until_loaded(server: RunningWebserver, locations: set[str], *, timeout_s: float) -> WorkspaceLoad:
    """Poll until every location in ``locations`` is ``LOADED``; the seconds since process start."""
    seen: set[str] = set()
    deadline = server.started + timeout_s
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise ContenderFailed(f"dagster-webserver exited with {server.process.returncode}:\n{_tail(server.log)}")
        try:
            statuses = location_statuses(server.port)
        except (OSError, urllib.error.URLError):  # not listening yet
            statuses = {}
        seconds = time.perf_counter() - server.started
        if locations <= {name for name, status in statuses.items() if status.load_status == "LOADED"}:
            loaded_at = {name: statuses[name].update_timestamp - server.started_wall for name in locations}
            return WorkspaceLoad(seconds=seconds, loaded_at=loaded_at)
        seen = set(statuses)
        time.sleep(POLL_S)
    missing = sorted(locations - seen) or sorted(locations)
    raise ContenderFailed(
        f"workspace load: {', '.join(missing)} not loaded within {timeout_s:.0f} s\n{_tail(server.log)}"
    )


def check_served(port: int, jobs: Mapping[str, Sequence[str]], models: Mapping[str, int]) -> None:
    """Every location loaded without error, serves ``jobs[location]`` and at least
    ``models[location]`` asset nodes."""
    answer = graphql(port, WORKSPACE)["workspaceOrError"]
    if answer["__typename"] != "Workspace":
        raise ContenderFailed(f"workspaceOrError answered {answer}")
    entries = {entry["name"]: entry["locationOrLoadError"] for entry in answer["locationEntries"]}
    for name in jobs:
        location = entries.get(name)
        if location is None or location["__typename"] != "RepositoryLocation":
            raise ContenderFailed(f"workspace load: location {name} did not load: {_error_text(location)}")
        served_jobs = {job["name"] for repo in location["repositories"] for job in repo["jobs"]}
        assets = sum(len(repo["assetNodes"]) for repo in location["repositories"])
        missing = sorted(set(jobs[name]) - served_jobs)
        if missing or assets < models[name]:
            raise ContenderFailed(
                f"workspace load: location {name} serves {assets} assets (expected at least {models[name]}) "
                f"and lacks jobs {missing}"
            )


def reload_location(port: int, name: str) -> float:
    """``reloadRepositoryLocation`` (it returns once the location's new code server is loaded);
    its seconds. Raises unless the location came back loaded without error."""
    started = time.perf_counter()
    answer = graphql(port, RELOAD, {"name": name})["reloadRepositoryLocation"]
    seconds = time.perf_counter() - started
    loaded = (answer.get("locationOrLoadError") or {}).get("__typename") == "RepositoryLocation"
    if answer["__typename"] != "WorkspaceLocationEntry" or answer.get("loadStatus") != "LOADED" or not loaded:
        raise ContenderFailed(f"reload of {name}: {answer}")
    return seconds


def _error_text(location: dict | None) -> str:
    if location is None:
        return "no entry"
    causes = " / ".join(cause["message"].strip() for cause in location.get("causes") or [])
    return f"{location.get('message', location['__typename']).strip()} {causes}".strip()


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
