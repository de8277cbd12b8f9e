"""Failing a run at once when its pod cannot start, with the reason Kubernetes gives.

Dagster's run monitoring only times a STARTING run out (``startTimeoutSeconds``, 300 s in the
Helm values), with a message that does not say why, and leaves the Job behind. A pod that
cannot start says so much earlier: a container waiting with ``CreateContainerConfigError``
(a Secret or key that does not exist), an image that can never be pulled, an init container
(git-sync) that exited non-zero. :class:`StartWatcher` runs in the process that launched the
run (the daemon), polls the run's pod every few seconds while the run is STARTING, and on
such a sign fails the run with the pod's own words (and the failed init container's log
tail, where git-sync writes its error) and deletes the Job, so a node stops holding its
requests. A run that reaches STARTED, or the start timeout, ends the watch; run monitoring
stays the backstop (a daemon restart forgets what it watched).

Nothing here reads a Secret: messages are the kubelet's (names of Secrets and keys, never
values) and container logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

logger = logging.getLogger(__name__)

# Waiting reasons the kubelet does not get past without someone changing the spec, a
# Secret or the image. (ImagePullBackOff can be a registry hiccup; the start timeout covers it.)
FATAL_WAITING_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "InvalidImageName", "ErrImageNeverPull"}
)
LOG_TAIL_LINES = 20
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class StartProblem:
    """Why a run's pod will not start: a one-line reason and the failed container's log tail."""

    pod: str
    reason: str
    log_tail: str = ""

    def message(self, job_name: str, deleted: str) -> str:
        text = f"Kubernetes Job {job_name}: pod {self.pod} cannot start the run worker: {self.reason}"
        if self.log_tail:
            text += f"\n{self.log_tail}"
        return f"{text}\n{deleted}"


LogReader = Callable[[str, str], str]  # (pod name, container name) -> log text


def start_problem(pod: Any, read_log: LogReader) -> StartProblem | None:
    """The reason ``pod`` (a ``V1Pod``) will never run its worker, or None while it may still."""
    status = pod.status
    name = pod.metadata.name
    if status is None:
        return None
    init_statuses: Sequence[Any] = status.init_container_statuses or []
    statuses: Sequence[Any] = status.container_statuses or []
    for container in [*init_statuses, *statuses]:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason in FATAL_WAITING_REASONS:
            return StartProblem(name, f"container '{container.name}': {waiting.reason}: {waiting.message}")
    for container in init_statuses:
        terminated = container.state.terminated if container.state else None
        if terminated is not None and terminated.exit_code != 0:
            return StartProblem(
                name,
                f"init container '{container.name}' exited with code {terminated.exit_code} "
                f"({terminated.reason}); its log ends:",
                _tail(read_log(name, container.name)),
            )
    return None


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-LOG_TAIL_LINES:])


@dataclass(frozen=True)
class _Watched:
    run_id: str
    namespace: str
    job_name: str
    deadline: float


class StartWatcher:
    """Polls the pods of STARTING runs launched by this process; one daemon thread for all.

    Args:
        instance: the Dagster instance the runs belong to.
        api_client: dagster-k8s's ``DagsterKubernetesClient`` (``core_api``, ``delete_job``).
        timeout_seconds: how long a run is watched (the instance's start timeout).
    """

    def __init__(
        self, instance: dg.DagsterInstance, api_client: Any, timeout_seconds: float, poll_seconds: float = POLL_SECONDS
    ):
        self._instance = instance
        self._api = api_client
        self._timeout = timeout_seconds
        self._poll = poll_seconds
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def watch(self, run_id: str, namespace: str, job_name: str) -> None:
        with self._lock:
            self._watched[run_id] = _Watched(run_id, namespace, job_name, time.monotonic() + self._timeout)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="dagctl-k8s-start-watch", daemon=True)
                self._thread.start()

    def watching(self) -> set[str]:
        with self._lock:
            return set(self._watched)

    def stop(self) -> None:
        """End the watch of every run (the launcher is disposed)."""
        self._stopped.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopped.wait(self._poll):
            if not self.poll_once():
                return

    def poll_once(self) -> bool:
        """One look at every watched run's pods; False when nothing is left to watch."""
        with self._lock:
            pending = list(self._watched.values())
            if not pending or self._stopped.is_set():
                self._thread = None
                return False
        for item in pending:
            try:
                done = self.check(item)
            except Exception as exc:  # a flaky API call must not end the watch of every run
                logger.warning("checking the pod of run %s failed (%s); trying again", item.run_id, exc)
                done = time.monotonic() > item.deadline
            if done:
                with self._lock:
                    self._watched.pop(item.run_id, None)
        return True

    def check(self, item: _Watched) -> bool:
        """One look at the run's pods; True when the watch is over."""
        run = self._instance.get_run_by_id(item.run_id)
        if run is None or run.status != dg.DagsterRunStatus.STARTING or time.monotonic() > item.deadline:
            return True
        pods = self._api.core_api.list_namespaced_pod(item.namespace, label_selector=f"job-name={item.job_name}").items
        for pod in pods:
            problem = start_problem(
                pod, lambda pod_name, container: self._read_log(item.namespace, pod_name, container)
            )
            if problem is not None:
                self._fail(run, item, problem)
                return True
        return False

    def _read_log(self, namespace: str, pod_name: str, container: str) -> str:
        try:
            return self._api.core_api.read_namespaced_pod_log(
                pod_name, namespace, container=container, tail_lines=LOG_TAIL_LINES
            )
        except Exception as exc:
            return f"(no log: {type(exc).__name__})"

    def _fail(self, run: dg.DagsterRun, item: _Watched, problem: StartProblem) -> None:
        current = self._instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTING:
            return  # the worker started after all; run monitoring owns it now
        try:
            self._api.delete_job(job_name=item.job_name, namespace=item.namespace)
            deleted = f"The Job {item.job_name} was deleted."
        except Exception as exc:
            deleted = f"Deleting the Job {item.job_name} failed ({type(exc).__name__}); delete it with kubectl."
        self._instance.report_run_failed(current, problem.message(item.job_name, deleted))
