"""A tiny Kubernetes API server stand-in on 127.0.0.1 for driving the real `kubernetes` client.

Serves what dagster-k8s's launcher and run monitoring call, plus what tests create:

- batch/v1 Jobs: create, read, list (``fieldSelector=metadata.name=``), ``jobs/{name}/status``,
  delete. Deleting a Job honours ``propagationPolicy``; without one, batch/v1 orphans the
  Job's pods, as the real API server does (dagster-k8s deletes the pods itself).
- v1 Pods: read, list (``labelSelector``, ``fieldSelector=metadata.name=``), ``pods/{name}/log``
  (text), delete (the pod's containers get SIGTERM, then SIGKILL after the grace period).
- v1 Secrets and ConfigMaps: create, read, list, delete (``data`` base64 for Secrets, or
  ``stringData``).
- v1 Events: list (``fieldSelector=involvedObject.name=``).

Every request is recorded (method, path, query, JSON body) so tests can assert exactly what
reached the "cluster". A :class:`PodRuntime` (``tests/kubelet.py``) attached with
:meth:`KubernetesApiStub.attach_runtime` runs each created Job's pod; without one, pods stay
as created and tests set Job statuses by hand with :meth:`set_job_status`.

Usage::

    with KubernetesApiStub() as stub:
        kubeconfig = stub.write_kubeconfig(tmp_path / "kubeconfig")
        stub.create_secret("data", "sqlmesh-state-db", {"password": "..."})
        ...  # point the launcher at kubeconfig
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import yaml
from loopback_server import LoopbackServer

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?(?P<status>/status)?$")
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?(?P<log>/log)?$")
_OBJECTS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>secrets|configmaps)(?:/(?P<name>[^/]+))?$")
_EVENTS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$")

_KINDS = {"secrets": "Secret", "configmaps": "ConfigMap"}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    raw_body: str


class PodRuntime(Protocol):
    """What runs pods: told when a Job's pod is created and when a pod is deleted."""

    def start_pod(self, namespace: str, job_name: str, pod_name: str) -> None: ...

    def delete_pod(self, namespace: str, pod_name: str, grace_seconds: float | None) -> None: ...


class KubernetesApiStub(LoopbackServer):
    """Jobs, pods, Secrets, ConfigMaps and events in memory; each Job gets one pod ``job-name=<job>``."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name)
        self.events: list[dict[str, Any]] = []
        self.pod_logs: dict[tuple[str, str], Path] = {}
        self.runtime: PodRuntime | None = None
        super().__init__(self._handler_class())

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def lock(self):
        """Held while a request is served; hold it to change objects consistently."""
        return self._lock

    def attach_runtime(self, runtime: PodRuntime) -> None:
        self.runtime = runtime

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

    # -- objects tests create (as `kubectl create secret/configmap` would) -------------------

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        with self._lock:
            self._store_object("secrets", namespace, {"metadata": {"name": name}, "type": "Opaque", "data": encoded})

    def create_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        with self._lock:
            self._store_object("configmaps", namespace, {"metadata": {"name": name}, "data": dict(data)})

    def create_pod(self, namespace: str, body: dict[str, Any]) -> str:
        """A pod of no Job (a Deployment's, as its ReplicaSet would create it); returns its name.

        The attached runtime runs it as it runs a Job's pod; it is deleted with :meth:`delete_pod`.
        """
        name = body["metadata"]["name"]
        with self._lock:
            self.pods[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    **body["metadata"],
                    "namespace": namespace,
                    "labels": dict(body["metadata"].get("labels") or {}),
                },
                "spec": body["spec"],
                "status": {"phase": "Pending"},
            }
        if self.runtime is not None:
            self.runtime.start_pod(namespace, name, name)
        return name

    def delete_pod(self, namespace: str, name: str, grace_seconds: float | None = None) -> None:
        after: list = []
        with self._lock:
            self._delete_pod(namespace, name, grace_seconds, after)
        for action in after:
            action()

    def object_data(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data or a ConfigMap's data; None when the object does not exist."""
        with self._lock:
            stored = self.objects.get((kind, namespace, name))
        if stored is None:
            return None
        data = stored.get("data") or {}
        if kind == "secrets":
            return {key: base64.b64decode(value).decode() for key, value in data.items()}
        return dict(data)

    def pods_of_job(self, namespace: str, job_name: str) -> list[str]:
        with self._lock:
            return [
                name
                for (ns, name), pod in self.pods.items()
                if ns == namespace and pod["metadata"]["labels"].get("job-name") == job_name
            ]

    def record_event(
        self, namespace: str, involved: str, kind: str, reason: str, message: str, type_: str = "Warning"
    ) -> None:
        with self._lock:
            self.events.append(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": f"{involved}.{uuid.uuid4().hex[:8]}", "namespace": namespace},
                    "involvedObject": {"kind": kind, "name": involved, "namespace": namespace},
                    "reason": reason,
                    "message": message,
                    "type": type_,
                    "count": 1,
                    "lastTimestamp": now_rfc3339(),
                }
            )

    def _store_object(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        stored = {
            "apiVersion": "v1",
            "kind": _KINDS[kind],
            **body,
            "metadata": {**body["metadata"], "namespace": namespace, "uid": str(uuid.uuid4())},
        }
        if kind == "secrets" and "stringData" in stored:
            string_data = stored.pop("stringData") or {}
            stored["data"] = {
                **(stored.get("data") or {}),
                **{k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()},
            }
        self.objects[(kind, namespace, name)] = stored  # callers hold the lock
        return stored

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
                query = parse_qs(parsed.query)
                after: list[Any] = []
                with stub._lock:
                    stub.requests.append(RecordedRequest(self.command, parsed.path, query, body, raw))
                    status, payload = stub._route(self.command, parsed.path, query, body, after)
                for action in after:  # runtime calls happen outside the lock
                    action()
                if isinstance(payload, str):
                    data, content_type = payload.encode(), "text/plain"
                else:
                    data, content_type = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

        return Handler

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any, after: list) -> tuple[int, Any]:
        if match := _JOBS.match(path):
            return self._jobs(method, match["ns"], match["name"], query, body, after)
        if match := _PODS.match(path):
            return self._pods(method, match["ns"], match["name"], bool(match["log"]), query, body, after)
        if match := _OBJECTS.match(path):
            return self._objects(method, match["kind"], match["ns"], match["name"], body)
        if match := _EVENTS.match(path):
            wanted = _field_selector(query).get("involvedObject.name")
            items = [
                e
                for e in self.events
                if e["metadata"]["namespace"] == match["ns"] and wanted in (None, e["involvedObject"]["name"])
            ]
            return 200, {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}
        return 404, _status(404, f"stub does not serve {method} {path}")

    def _jobs(self, method: str, namespace: str, name: str | None, query, body: Any, after: list) -> tuple[int, Any]:
        if name is None and method == "POST":
            job_name = body["metadata"]["name"]
            if (namespace, job_name) in self.jobs:
                return 409, _status(409, f'jobs.batch "{job_name}" already exists', "AlreadyExists")
            job = {**body, "metadata": {**body["metadata"], "namespace": namespace, "uid": str(uuid.uuid4())}}
            job["status"] = {}
            self.jobs[(namespace, job_name)] = job
            pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
            template = body["spec"]["template"]
            self.pods[(namespace, pod_name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "labels": {**(template.get("metadata") or {}).get("labels", {}), "job-name": job_name},
                },
                "spec": template["spec"],
                "status": {"phase": "Pending"},
            }
            if self.runtime is not None:
                runtime = self.runtime
                after.append(lambda: runtime.start_pod(namespace, job_name, pod_name))
            return 201, job
        if name is None and method == "GET":
            wanted = _field_selector(query).get("metadata.name")
            items = [job for (ns, n), job in self.jobs.items() if ns == namespace and wanted in (None, n)]
            return 200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items}
        job = self.jobs.get((namespace, name))
        if job is None:
            return 404, _status(404, f'jobs.batch "{name}" not found', "NotFound")
        if method == "GET":
            return 200, job
        if method == "DELETE":
            del self.jobs[(namespace, name)]
            policy = (body or {}).get("propagationPolicy") or (query.get("propagationPolicy") or ["Orphan"])[0]
            if policy in ("Background", "Foreground"):
                for pod_name in [
                    n
                    for (ns, n), p in self.pods.items()
                    if ns == namespace and p["metadata"]["labels"].get("job-name") == name
                ]:
                    self._delete_pod(namespace, pod_name, None, after)
            return 200, _status(200, "deleted", "", status="Success")
        return 405, _status(405, f"{method} not allowed")

    def _pods(
        self, method: str, namespace: str, name: str | None, log: bool, query, body: Any, after: list
    ) -> tuple[int, Any]:
        if name is None and method == "GET":
            selector = (query.get("labelSelector") or [""])[0]
            wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
            wanted_name = _field_selector(query).get("metadata.name")
            items = [
                pod
                for (ns, pod_name), pod in self.pods.items()
                if ns == namespace
                and wanted_name in (None, pod_name)
                and all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        if name is None or (namespace, name) not in self.pods:
            return 404, _status(404, f'pods "{name}" not found', "NotFound")
        if method == "GET" and log:
            container = (query.get("container") or [None])[0]
            path = self.pod_logs.get((namespace, f"{name}/{container}" if container else name))
            return 200, path.read_text(errors="replace") if path and path.exists() else ""
        if method == "GET":
            return 200, self.pods[(namespace, name)]
        if method == "DELETE":
            grace = (body or {}).get("gracePeriodSeconds")
            if grace is None and query.get("gracePeriodSeconds"):
                grace = float(query["gracePeriodSeconds"][0])
            self._delete_pod(namespace, name, grace, after)
            return 200, _status(200, "deleted", "", status="Success")
        return 405, _status(405, f"{method} not allowed")

    def _delete_pod(self, namespace: str, name: str, grace: float | None, after: list) -> None:
        self.pods.pop((namespace, name), None)
        if self.runtime is not None:
            runtime = self.runtime
            after.append(lambda: runtime.delete_pod(namespace, name, grace))

    def _objects(self, method: str, kind: str, namespace: str, name: str | None, body: Any) -> tuple[int, Any]:
        singular = _KINDS[kind].lower()
        if name is None and method == "POST":
            object_name = body["metadata"]["name"]
            if (kind, namespace, object_name) in self.objects:
                return 409, _status(409, f'{kind} "{object_name}" already exists', "AlreadyExists")
            return 201, self._store_object(kind, namespace, body)
        if name is None and method == "GET":
            items = [o for (k, ns, _), o in self.objects.items() if k == kind and ns == namespace]
            return 200, {"apiVersion": "v1", "kind": f"{_KINDS[kind]}List", "metadata": {}, "items": items}
        stored = self.objects.get((kind, namespace, name))
        if stored is None:
            return 404, _status(404, f'{kind} "{name}" not found', "NotFound")
        if method == "GET":
            return 200, stored
        if method == "DELETE":
            del self.objects[(kind, namespace, name)]
            return 200, _status(200, "deleted", "", status="Success")
        return 405, _status(405, f"{method} {singular} not allowed")


def _field_selector(query: dict[str, list[str]]) -> dict[str, str]:
    selector = (query.get("fieldSelector") or [""])[0]
    return dict(part.split("=", 1) for part in selector.split(",") if "=" in part)


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
