"""A tiny Kubernetes API server stand-in on 127.0.0.1 for driving the real `kubernetes` client.

Serves what dagster-k8s's launcher calls: create/read/list/delete of batch/v1 Jobs,
``jobs/{name}/status``, and list/delete of pods. Every request is recorded (method, path,
query, JSON body) so tests can assert exactly what reached the "cluster".

Usage::

    with KubernetesApiStub() as stub:
        kubeconfig = stub.write_kubeconfig(tmp_path / "kubeconfig")
        ...  # point the launcher at kubeconfig
        stub.set_job_status("data", "dagster-run-...", active=1)
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml
from loopback_server import LoopbackServer

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?(?P<status>/status)?$")
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?$")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    raw_body: str


class KubernetesApiStub(LoopbackServer):
    """Jobs and pods in memory; each created Job gets one pod labelled ``job-name=<job>``."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        super().__init__(self._handler_class())

    @property
    def url(self) -> str:
        return self.base_url

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
                    "users": [{"name": "stub", "user": {"token": "stub-token"}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                    "current-context": "stub",
                }
            )
        )
        return path

    def requests_for(self, method: str, path_prefix: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def set_job_status(self, namespace: str, name: str, **status: int) -> None:
        with self._lock:
            self.jobs[(namespace, name)]["status"] = dict(status)

    # -- request handling ------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _dispatch(self) -> None:
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                body = json.loads(raw) if raw else None
                with stub._lock:
                    stub.requests.append(RecordedRequest(self.command, parsed.path, parse_qs(parsed.query), body, raw))
                    status, payload = stub._route(self.command, parsed.path, parse_qs(parsed.query), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

        return Handler

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if match := _JOBS.match(path):
            return self._jobs(method, match["ns"], match["name"], body)
        if match := _PODS.match(path):
            return self._pods(method, match["ns"], match["name"], query)
        return 404, _status(404, f"stub does not serve {method} {path}")

    def _jobs(self, method: str, namespace: str, name: str | None, body: Any) -> tuple[int, Any]:
        if name is None and method == "POST":
            job_name = body["metadata"]["name"]
            if (namespace, job_name) in self.jobs:
                return 409, _status(409, f'jobs.batch "{job_name}" already exists', "AlreadyExists")
            job = {**body, "metadata": {**body["metadata"], "namespace": namespace, "uid": str(uuid.uuid4())}}
            job["status"] = {}
            self.jobs[(namespace, job_name)] = job
            pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
            self.pods[(namespace, pod_name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace, "labels": {"job-name": job_name}},
            }
            return 201, job
        if name is None and method == "GET":
            items = [job for (ns, _), job in self.jobs.items() if ns == namespace]
            return 200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items}
        job = self.jobs.get((namespace, name))
        if job is None:
            return 404, _status(404, f'jobs.batch "{name}" not found', "NotFound")
        if method == "GET":
            return 200, job
        if method == "DELETE":
            del self.jobs[(namespace, name)]
            return 200, _status(200, "deleted", "", status="Success")
        return 405, _status(405, f"{method} not allowed")

    def _pods(self, method: str, namespace: str, name: str | None, query: dict[str, list[str]]) -> tuple[int, Any]:
        if name is None and method == "GET":
            selector = (query.get("labelSelector") or [""])[0]
            wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
            items = [
                pod
                for (ns, _), pod in self.pods.items()
                if ns == namespace and all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        if name is not None and method == "DELETE":
            if self.pods.pop((namespace, name), None) is None:
                return 404, _status(404, f'pods "{name}" not found', "NotFound")
            return 200, _status(200, "deleted", "", status="Success")
        return 405, _status(405, f"{method} not allowed")


def _status(code: int, message: str, reason: str = "", status: str = "Failure") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": status, "message": message, "reason": reason, "code": code}


# -- configs and secret values shared by the tests/test_k8s_*.py modules ----------------------

# Values of the Secrets the example configs reference. Tests put them into the launcher's own
# environment (as a daemon pod would have them) and assert none ever reaches a manifest,
# the run config or the event log.
SECRET_VALUES = {
    "SQLMESH_STATE_PASSWORD": "state-db-pw-9f3Kq7Lx",
    "GITSYNC_PASSWORD": "git-token-Zr81mWq2",
    "SLACK_BOT_TOKEN": "xoxb-slack-token-4TtP0aa",
    "DAGSTER_PG_PASSWORD": "dagster-pg-pw-Hh62Vv0",
}

FULL_CONFIG = """\
version: 7
projects:
  - name: analytics
    framework: sqlmesh
    path: sqlmesh/analytics
    overlap: forbid
    k8s:
      namespace: data
      service_account: analytics-runner
      git_sync:
        repository: https://git.example.com/data/platform.git
        ref: v1.2.3
        credentials_secret: git-credentials
      env_config_maps: [analytics-env]
      env_secrets: [analytics-secrets, slack-bot]
      state_db_password: {secret: sqlmesh-state-db, key: password}
      resources:
        requests: {cpu: 500m, memory: 1Gi}
        limits: {cpu: "2", memory: 4Gi}
      max_concurrent_models: 8
      ttl_seconds_after_finished: 600
      labels: {team: data}
      annotations: {owner: data-team}
  - name: marts
    framework: dbt
    path: dbt/marts
    target: prod
    k8s:
      image: registry.example.com/marts:1.0
      env_secrets: [marts-warehouse]
      resources:
        limits: {memory: 2Gi}
  - name: analytics_public
    framework: sqlmesh
    path: sqlmesh/public
    k8s:
      git_sync:
        repository: https://git.example.com/data/public.git
  - name: bare_dbt
    framework: dbt
    path: dbt/bare
"""

MINIMAL_CONFIG = """\
version: 1
projects:
  - name: analytics
    framework: sqlmesh
    path: sqlmesh/analytics
  - name: marts
    framework: dbt
    path: dbt/marts
"""


def write_config(directory: Path, text: str) -> Path:
    """Write ``text`` as ``<directory>/.dagctl/config.yaml`` and return its path."""
    path = directory / ".dagctl" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
