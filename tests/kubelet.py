"""A small local kubelet for tests: runs the pod of every Job the API stub receives, on this machine.

Attach it to a :class:`~k8s_stub.KubernetesApiStub`; each Job the real `kubernetes` client
creates is then run as its pod spec says:

1. **Volumes** get a host directory under ``<root>/pods/<pod>/volumes/<volume>``: ``emptyDir``
   empty; ``configMap`` / ``secret`` filled with one file per key of the object in the stub.
2. **Init containers** run one after another, then the containers, each only once (Jobs here
   have ``restartPolicy: Never``). A container whose image is git-sync's is emulated in
   process (:func:`git_sync`); any other image must be mapped by the test to an
   :class:`ImageStandIn` (the test's own installed environment stands for the image) and runs
   as a local process in its own process group, its stdout and stderr in the pod's log.
3. **Environment** is exactly what the spec resolves, nothing from the test's process: the
   image's ``PATH``, ``HOME`` and ENV, ``HOSTNAME`` = pod name, then ``envFrom`` (ConfigMaps and
   Secrets in order, later ones win), then ``env`` (literal ``value`` with ``$(VAR)``
   expansion, ``valueFrom.secretKeyRef`` / ``configMapKeyRef`` / ``fieldRef`` metadata.name and
   metadata.namespace), read from the objects the test created in the stub. A missing
   object or key (not ``optional``) leaves the pod ``Pending`` with the container waiting,
   reason ``CreateContainerConfigError`` and the kubelet's message (``couldn't find key K in
   Secret NS/NAME``), plus a Warning event; the Job stays active, as on a real node.
4. **Paths.** Each container process runs in its own mount namespace (``unshare --mount``,
   with ``--map-root-user`` when the tests do not run as root), where every ``volumeMounts[]``
   ``mountPath`` (plus ``subPath``) is a bind mount of its volume's host directory and every
   prefix of the image stand-in's ``paths`` (its filesystem, e.g. ``/opt/dagster/app`` → a
   repository copy) is one too. So the container's paths are real for the process and for
   nothing else on the machine: ``workingDir`` (default: the image's ``workdir``), ``args``,
   env values and, what textual rewriting could never reach, paths the process reads from
   storage (``dagster api execute_run`` loads the code origin from the run record). A mount
   point that does not exist on the host is created on a tmpfs laid over its deepest existing
   ancestor (not ``/``), whose original entries stay reachable there through symlinks.
   git-sync, emulated in this process, resolves its ``--root`` through the same mapping.
5. **Status** follows the processes: pod ``Pending`` → ``Running`` → ``Succeeded``/``Failed``
   with container states (``terminated`` exit code and reason ``Completed``/``Error``);
   Job ``active: 1`` from creation, then ``succeeded: 1`` with conditions
   ``SuccessCriteriaMet`` and ``Complete``, or ``failed: 1`` with ``FailureTarget`` and
   ``Failed`` (reason ``BackoffLimitExceeded``). An executable not on the image's ``PATH``
   fails the container with exit code 128, reason ``StartError``.
6. **Deletion.** Deleting a pod (dagster-k8s's ``terminate`` deletes the Job and its pods)
   sends SIGTERM to the container's process group and SIGKILL after the grace period
   (``gracePeriodSeconds``, else the pod's ``terminationGracePeriodSeconds``, else 30 s).
   :meth:`LocalKubelet.kill` is the node killing a container (OOM, eviction): the signal
   goes to the process group and the pod fails.

7. **Users and read-only paths.** A container runs as its ``securityContext.runAsUser`` /
   ``runAsGroup`` (else the pod's, else the image's ``USER``), with the pod's ``fsGroup`` as
   a supplementary group: the mount-namespace script switches to that user (``setpriv``)
   after mounting, so file permissions decide what it can read and write, as on a node.
   ``runAsNonRoot`` with uid 0 is ``CreateContainerConfigError``. ``readOnlyRootFilesystem``
   mounts the image's paths read-only, a ``volumeMounts[].readOnly`` its volume; emptyDirs
   are world-writable and configMap/secret files 0644, as the kubelet makes them. git-sync's
   git commands run as its container's user too. Host paths the image stand-in's programs
   use as they are (the Python installation behind the venv) are made reachable for that
   user in the container's namespace (``ImageStandIn.host_paths``).
8. **Bare pods** (:meth:`~k8s_stub.KubernetesApiStub.create_pod`, e.g. a code server's
   Deployment pod) run the same way; they belong to no Job.

Not emulated: ``backoffLimit`` above 0 (one pod per Job), ``activeDeadlineSeconds``,
``ttlSecondsAfterFinished``, resources, capabilities, seccomp, probes, sidecars, image pulls.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from k8s_stub import KubernetesApiStub, now_rfc3339

GIT_SYNC_IMAGE = re.compile(r"(^|/)git-sync(:|@|$)")
DEFAULT_GRACE_SECONDS = 30.0
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


@dataclass(frozen=True)
class ImageStandIn:
    """What stands for a container image on this machine.

    Attributes:
        bin_dir: put first on ``PATH`` (the test's ``.venv/bin`` stands for the image's Python).
        workdir: the image's WORKDIR, a container path (mapped through ``paths``).
        paths: container path prefix → host directory (the image's filesystem).
        entrypoint: the image's ENTRYPOINT, used when the container sets no ``command``.
        env: the image's ENV besides PATH (the official Python images set ``LANG``).
        uid, gid: the image's ``USER`` (None: root).
        home: the image user's home directory (a container path), given a fresh writable
            directory per pod; None: a per-pod directory on the host.
        host_paths: host directories the image's programs reach by their host path (the
            interpreter a venv links to), made reachable for a non-root user.
    """

    bin_dir: Path
    workdir: str = "/"
    paths: Mapping[str, Path] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: {"LANG": "C.UTF-8"})
    uid: int | None = None
    gid: int | None = None
    home: str | None = None
    host_paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Identity:
    """The user a container process runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def container_identity(
    pod_spec: Mapping[str, Any], container: Mapping[str, Any], stand_in: ImageStandIn | None
) -> Identity:
    """runAsUser/runAsGroup of the container, else of the pod, else the image's USER; fsGroup added.

    Raises:
        ContainerConfigError: ``runAsNonRoot`` and the user would be root (the kubelet's message).
    """
    pod_context = pod_spec.get("securityContext") or {}
    context = container.get("securityContext") or {}
    image_uid = stand_in.uid if stand_in and stand_in.uid is not None else 0
    uid = context.get("runAsUser", pod_context.get("runAsUser", image_uid))
    image_gid = stand_in.gid if stand_in and stand_in.gid is not None else uid
    gid = context.get("runAsGroup", pod_context.get("runAsGroup", image_gid))
    if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) and uid == 0:
        raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    groups = [pod_context["fsGroup"]] if "fsGroup" in pod_context else []
    groups += list(pod_context.get("supplementalGroups") or [])
    return Identity(int(uid), int(gid), tuple(int(g) for g in groups))


class ContainerConfigError(Exception):
    """The container cannot be created from its spec (what the kubelet reports as
    ``CreateContainerConfigError``)."""


class PathMap:
    """Container path prefixes → host directories; ``rewrite`` maps a container path to the host."""

    def __init__(self, prefixes: Mapping[str, Path]):
        ordered = sorted(prefixes.items(), key=lambda item: len(item[0].rstrip("/")), reverse=True)
        self._prefixes = {prefix.rstrip("/") or "/": Path(host) for prefix, host in ordered}
        alternatives = "|".join(re.escape(p) for p in self._prefixes if p != "/")
        self._pattern = re.compile(rf"(?<![\w./-])({alternatives})(?=/|$|[^\w.-])") if alternatives else None

    @property
    def mounts(self) -> list[tuple[str, Path]]:
        """(container path, host directory), parents before children."""
        return sorted(self._prefixes.items(), key=lambda item: len(item[0]))

    def host_path(self, container_path: str) -> Path:
        rewritten = self.rewrite(container_path)
        return Path(rewritten)

    def rewrite(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: str(self._prefixes[match.group(1)]), text)


@dataclass
class _Container:
    name: str
    process: subprocess.Popen | None = None
    exit_code: int | None = None
    killed_by: str | None = None


@dataclass
class _Pod:
    namespace: str
    job_name: str  # a bare pod's own name
    name: str
    directory: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, _Container] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False


class LocalKubelet:
    """Runs the stub's Jobs as local processes; a context manager that kills what is left on exit.

    Args:
        stub: the API server stand-in whose Jobs it runs.
        root: host directory for pod volumes and logs.
        images: image name → its stand-in. git-sync's image needs none.
        repositories: git-sync repository URL → the test's local git repository.
    """

    def __init__(
        self,
        stub: KubernetesApiStub,
        root: Path,
        images: Mapping[str, ImageStandIn],
        repositories: Mapping[str, Path] | None = None,
    ):
        self.stub = stub
        self.root = Path(root)
        self.images = dict(images)
        self.repositories = dict(repositories or {})
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self.stub.attach_runtime(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            self._signal_pod(pod, signal.SIGKILL)
        for thread in self._threads:
            thread.join(timeout=30)

    # -- PodRuntime ------------------------------------------------------------------------

    def start_pod(self, namespace: str, job_name: str, pod_name: str) -> None:
        directory = self.root / "pods" / pod_name
        directory.mkdir(parents=True)
        pod = _Pod(namespace, job_name, pod_name, directory)
        with self._lock:
            self._pods[(namespace, pod_name)] = pod
        thread = threading.Thread(target=self._run_pod, args=(pod,), name=f"kubelet-{pod_name}", daemon=True)
        self._threads.append(thread)
        self._update_job(pod, active=1, startTime=now_rfc3339())
        thread.start()

    def delete_pod(self, namespace: str, pod_name: str, grace_seconds: float | None) -> None:
        with self._lock:
            pod = self._pods.get((namespace, pod_name))
        if pod is None:
            return
        pod.deleted = True
        if grace_seconds is None:
            grace_seconds = float(self._spec(pod).get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        self._signal_pod(pod, signal.SIGTERM)
        timer = threading.Timer(grace_seconds, self._signal_pod, args=(pod, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    # -- for tests -------------------------------------------------------------------------

    def kill(self, namespace: str, job_name: str, sig: int = signal.SIGKILL) -> None:
        """The node kills the Job's running containers (OOM, eviction): ``sig`` to each group."""
        for pod in self._pods_of(namespace, job_name):
            self._signal_pod(pod, sig)

    def pids(self, namespace: str, job_name: str) -> list[int]:
        """Process ids of the Job's running containers."""
        return [
            container.process.pid
            for pod in self._pods_of(namespace, job_name)
            for container in list(pod.running.values())
            if container.process is not None and container.exit_code is None
        ]

    def pod_log(self, namespace: str, job_name: str) -> str:
        return "".join(
            path.read_text(errors="replace")
            for pod in self._pods_of(namespace, job_name)
            for path in sorted((pod.directory / "logs").glob("*.log"))
        )

    def volume_dir(self, namespace: str, job_name: str, volume: str) -> Path:
        [pod] = self._pods_of(namespace, job_name)
        return pod.directory / "volumes" / volume

    def wait(self, namespace: str, job_name: str, timeout: float) -> None:
        """Wait until every container of the Job's pod has stopped."""
        for pod in self._pods_of(namespace, job_name):
            thread = next(t for t in self._threads if t.name == f"kubelet-{pod.name}")
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"pod {pod.name} still running after {timeout} s")

    # -- the pod's life --------------------------------------------------------------------

    def _pods_of(self, namespace: str, job_name: str) -> list[_Pod]:
        with self._lock:
            return [p for p in self._pods.values() if p.namespace == namespace and p.job_name == job_name]

    def _spec(self, pod: _Pod) -> dict[str, Any]:
        return pod.spec

    def _run_pod(self, pod: _Pod) -> None:
        spec = self._pod_spec(pod)
        volumes = self._prepare_volumes(pod, spec)
        if volumes is None:
            return
        init_statuses: list[dict[str, Any]] = []
        for container in spec.get("initContainers") or []:
            outcome = self._run_container(pod, spec, container, volumes, init_statuses, init=True)
            if outcome != 0:
                if outcome is not None:
                    self._finish(pod, succeeded=False, init_statuses=init_statuses, reason="Init:Error")
                return
        statuses: list[dict[str, Any]] = []
        codes = [
            self._run_container(pod, spec, c, volumes, statuses, init=False, init_statuses=init_statuses)
            for c in spec["containers"]
        ]
        if any(code is None for code in codes):
            return
        self._finish(pod, succeeded=all(code == 0 for code in codes), init_statuses=init_statuses, statuses=statuses)

    def _pod_spec(self, pod: _Pod) -> dict[str, Any]:
        with self.stub.lock:
            stored = self.stub.pods.get((pod.namespace, pod.name))
            pod.spec = dict(stored["spec"]) if stored else {}
        return pod.spec

    def _prepare_volumes(self, pod: _Pod, spec: dict[str, Any]) -> dict[str, Path] | None:
        volumes: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            host = pod.directory / "volumes" / volume["name"]
            host.mkdir(parents=True)
            host.chmod(0o777 if "emptyDir" in volume else 0o755)
            volumes[volume["name"]] = host
            for kind, source_key in (("configmaps", "configMap"), ("secrets", "secret")):
                source = volume.get(source_key)
                if source is None:
                    continue
                name = source.get("name") or source.get("secretName")
                data = self.stub.object_data(kind, pod.namespace, name)
                if data is None and not source.get("optional"):
                    message = f'MountVolume.SetUp failed for volume "{volume["name"]}" : {kind[:-1]} "{name}" not found'
                    self.stub.record_event(pod.namespace, pod.name, "Pod", "FailedMount", message)
                    self._set_pod_status(pod, {"phase": "Pending", "message": message})
                    return None
                for key, value in (data or {}).items():
                    (host / key).write_text(value)
                    (host / key).chmod(0o644)
        return volumes

    def _run_container(
        self,
        pod: _Pod,
        spec: dict[str, Any],
        container: dict[str, Any],
        volumes: dict[str, Path],
        statuses: list[dict[str, Any]],
        *,
        init: bool,
        init_statuses: list[dict[str, Any]] | None = None,
    ) -> int | None:
        """The container's exit code; None when it never started (the pod stays Pending)."""
        if pod.deleted:
            return None
        name = container["name"]
        image = container.get("image", "")
        status_key = "initContainerStatuses" if init else "containerStatuses"
        other = {} if init else {"initContainerStatuses": init_statuses or []}
        stand_in = None if GIT_SYNC_IMAGE.search(image) else self.images.get(image)
        if stand_in is None and not GIT_SYNC_IMAGE.search(image):
            message = f'Back-off pulling image "{image}"'
            statuses.append(
                _container_status(name, image, {"waiting": {"reason": "ImagePullBackOff", "message": message}})
            )
            self.stub.record_event(pod.namespace, pod.name, "Pod", "Failed", message)
            self._set_pod_status(pod, {"phase": "Pending", status_key: statuses, **other})
            return None
        paths = self._path_map(pod, container, volumes, stand_in)
        try:
            identity = container_identity(spec, container, stand_in)
            env = resolve_env(container, pod.namespace, pod.name, self.stub.object_data)
        except ContainerConfigError as exc:
            statuses.append(
                _container_status(
                    name, image, {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                )
            )
            self.stub.record_event(pod.namespace, pod.name, "Pod", "Failed", f"Error: {exc}")
            self._set_pod_status(pod, {"phase": "Pending", status_key: statuses, **other})
            return None
        started = now_rfc3339()
        running = [*statuses, _container_status(name, image, {"running": {"startedAt": started}}, ready=True)]
        phase = "Pending" if init else "Running"
        self._set_pod_status(pod, {"phase": phase, "startTime": started, status_key: running, **other})
        log_path = pod.directory / "logs" / f"{name}.log"
        log_path.parent.mkdir(exist_ok=True)
        with self.stub.lock:
            self.stub.pod_logs[(pod.namespace, f"{pod.name}/{name}")] = log_path
            self.stub.pod_logs.setdefault((pod.namespace, pod.name), log_path)
        if stand_in is None:
            code, reason = self._git_sync(pod, container, env, paths, identity, log_path), None
        else:
            code, reason = self._run_process(pod, container, env, paths, stand_in, identity, log_path)
        terminated = {
            "exitCode": code,
            "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": started,
            "finishedAt": now_rfc3339(),
        }
        statuses.append(_container_status(name, image, {"terminated": terminated}))
        return code

    def _path_map(
        self, pod: _Pod, container: dict[str, Any], volumes: dict[str, Path], stand_in: ImageStandIn | None
    ) -> PathMap:
        mounts = container.get("volumeMounts") or []
        # A volume hides what the image has at and below its mountPath (the git-sync emptyDir
        # at /opt/dagster/projects hides the image's copy of the code), as in a container.
        hidden = [m["mountPath"].rstrip("/") for m in mounts]
        prefixes: dict[str, Path] = {
            path: host
            for path, host in (stand_in.paths.items() if stand_in else ())
            if not any(path.rstrip("/") == h or path.startswith(h + "/") for h in hidden)
        }
        if stand_in is not None and stand_in.home:
            prefixes[stand_in.home] = self._home(pod, container)
        for mount in mounts:
            host = volumes[mount["name"]]
            if mount.get("subPath"):
                host = host / mount["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            prefixes[mount["mountPath"]] = host
        return PathMap(prefixes)

    def _home(self, pod: _Pod, container: dict[str, Any]) -> Path:
        home = pod.directory / "homes" / container["name"]
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o777)
        return home

    def _git_sync(
        self,
        pod: _Pod,
        container: dict[str, Any],
        env: dict[str, str],
        paths: PathMap,
        identity: Identity,
        log_path: Path,
    ) -> int:
        with log_path.open("a") as log:
            try:
                settings = GitSyncSettings.from_container(container, env)
                git_sync(settings, paths, self.repositories, log, identity, self._home(pod, container))
                return 0
            except GitSyncError as exc:
                log.write(f"git-sync failed: {exc}\n")
                return 1

    def _run_process(
        self,
        pod: _Pod,
        container: dict[str, Any],
        env: dict[str, str],
        paths: PathMap,
        stand_in: ImageStandIn,
        identity: Identity,
        log_path: Path,
    ) -> tuple[int, str | None]:
        full_env = {
            "PATH": f"{stand_in.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": stand_in.home or str(self._home(pod, container)),
            "HOSTNAME": pod.name,
            **stand_in.env,
            **env,
        }
        argv = [*(container.get("command") or stand_in.entrypoint), *(container.get("args") or [])]
        argv = [expand_references(arg, full_env) for arg in argv]
        workdir = container.get("workingDir") or stand_in.workdir
        executable = (
            argv[0] if argv and "/" in argv[0] else shutil.which(argv[0] if argv else "", path=full_env["PATH"])
        )
        if executable is None or not paths.host_path(workdir).is_dir():
            with log_path.open("a") as log:
                log.write(
                    f'exec: "{argv[0] if argv else ""}": executable file not found in $PATH or no directory {workdir}\n'
                )
            return 128, "StartError"
        wrapper = mount_namespace_command(
            paths,
            workdir,
            pod.directory / "shadowed",
            identity=identity,
            read_only=read_only_paths(container, stand_in),
            expose=stand_in.host_paths,
        )
        entry = _Container(container["name"])
        with pod.lock:
            if pod.deleted:
                return 137, "Error"
            with log_path.open("ab") as log:
                entry.process = subprocess.Popen(
                    [*wrapper, executable, *argv[1:]],
                    env=full_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            pod.running[entry.name] = entry
        entry.exit_code = entry.process.wait()
        code = entry.exit_code if entry.exit_code >= 0 else 128 - entry.exit_code
        return code, None

    def _signal_pod(self, pod: _Pod, sig: int) -> None:
        with pod.lock:
            containers = list(pod.running.values())
        for container in containers:
            if container.process is not None and container.exit_code is None:
                try:
                    os.killpg(container.process.pid, sig)
                except ProcessLookupError:
                    pass

    def _finish(
        self,
        pod: _Pod,
        *,
        succeeded: bool,
        init_statuses: list[dict[str, Any]],
        statuses: list[dict[str, Any]] | None = None,
        reason: str | None = None,
    ) -> None:
        status: dict[str, Any] = {
            "phase": "Succeeded" if succeeded else "Failed",
            "initContainerStatuses": init_statuses,
        }
        if statuses is not None:
            status["containerStatuses"] = statuses
        if reason:
            status["reason"] = reason
        self._set_pod_status(pod, status)
        now = now_rfc3339()
        with self.stub.lock:
            job = self.stub.jobs.get((pod.namespace, pod.job_name))
            started = (job or {}).get("status", {}).get("startTime", now)
        if succeeded:
            conditions = [_condition("SuccessCriteriaMet", now), _condition("Complete", now)]
            self._update_job(pod, succeeded=1, startTime=started, completionTime=now, conditions=conditions)
        else:
            message = "Job has reached the specified backoff limit"
            conditions = [
                _condition("FailureTarget", now, "BackoffLimitExceeded", message),
                _condition("Failed", now, "BackoffLimitExceeded", message),
            ]
            self._update_job(pod, failed=1, startTime=started, conditions=conditions)

    def _set_pod_status(self, pod: _Pod, status: dict[str, Any]) -> None:
        with self.stub.lock:
            stored = self.stub.pods.get((pod.namespace, pod.name))
            if stored is not None:
                stored["status"] = status

    def _update_job(self, pod: _Pod, **status: Any) -> None:
        with self.stub.lock:
            job = self.stub.jobs.get((pod.namespace, pod.job_name))
            if job is not None:
                job["status"] = status


def _container_status(name: str, image: str, state: dict[str, Any], ready: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": ready,
        "restartCount": 0,
        "started": ready,
        "state": state,
    }


def _condition(kind: str, when: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    condition = {"type": kind, "status": "True", "lastProbeTime": when, "lastTransitionTime": when}
    if reason:
        condition |= {"reason": reason, "message": message}
    return condition


# -- the container's filesystem ----------------------------------------------------------------


def read_only_paths(container: Mapping[str, Any], stand_in: ImageStandIn) -> tuple[str, ...]:
    """Container paths mounted read-only: the image's with ``readOnlyRootFilesystem``, and
    ``readOnly`` volume mounts."""
    read_only = [m["mountPath"] for m in container.get("volumeMounts") or [] if m.get("readOnly")]
    if (container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        read_only += list(stand_in.paths)
    return tuple(read_only)


def _expose_script(host_paths: tuple[Path, ...], shadow_root: Path) -> list[str]:
    """Make each host path reachable by its own path for any user: the first ancestor others
    cannot enter (``/root``) becomes an empty tmpfs holding only a bind mount of that path."""
    script: list[str] = []
    for index, path in enumerate(host_paths):
        closed = next((a for a in reversed(path.parents) if a != Path("/") and not a.stat().st_mode & 0o001), None)
        if closed is None:
            continue
        stage = shadow_root / f"expose-{index}"
        stage.mkdir(parents=True, exist_ok=True)
        q_path, q_stage = shlex.quote(str(path)), shlex.quote(str(stage))
        script += [
            f"mount --bind {q_path} {q_stage}",
            f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(closed))}",
            f"mkdir -p {q_path}",
            f"mount --bind {q_stage} {q_path}",
        ]
    return script


def mount_namespace_command(
    paths: PathMap,
    workdir: str,
    shadow_root: Path,
    *,
    identity: Identity | None = None,
    read_only: tuple[str, ...] = (),
    expose: tuple[Path, ...] = (),
) -> list[str]:
    """``unshare`` + a shell script that mounts ``paths`` over the container paths, enters
    ``workdir`` as ``identity`` and execs the arguments that follow; see the module
    docstring, points 4 and 7."""
    script = ["set -e"]
    if identity is not None and identity.uid != 0:
        script += _expose_script(expose, shadow_root)
    shadowed: set[str] = set()
    for container_path, host in paths.mounts:
        target = Path(container_path)
        if not target.exists() and not any(str(target).startswith(s + "/") for s in shadowed):
            ancestor = next(p for p in target.parents if p.exists())
            if ancestor == Path("/"):
                raise ContainerConfigError(
                    f"mount path {container_path} needs an existing directory below / on this machine"
                )
            saved = shadow_root / str(ancestor).strip("/").replace("/", "_")
            saved.mkdir(parents=True, exist_ok=True)
            q_saved, q_ancestor = shlex.quote(str(saved)), shlex.quote(str(ancestor))
            script += [
                f"mount --bind {q_ancestor} {q_saved}",
                f"mount -t tmpfs tmpfs {q_ancestor}",
                f'for entry in {q_saved}/* {q_saved}/.[!.]*; do [ -e "$entry" ] && ln -s "$entry" {q_ancestor}/; done; true',
            ]
            shadowed.add(str(ancestor))
        script += [
            f"mkdir -p {shlex.quote(container_path)}",
            f"mount --bind {shlex.quote(str(host))} {shlex.quote(container_path)}",
        ]
        if container_path in read_only or any(container_path.startswith(r.rstrip("/") + "/") for r in read_only):
            script.append(f"mount -o remount,bind,ro {shlex.quote(container_path)}")
    become: list[str] = []
    if identity is not None and identity.uid != 0:
        groups = ",".join(str(g) for g in identity.groups)
        become = [
            "setpriv",
            f"--reuid={identity.uid}",
            f"--regid={identity.gid}",
            f"--groups={groups}" if groups else "--clear-groups",
            "--",
        ]
    # the shell's own PWD/OLDPWD are not the container's environment
    script += [f"cd {shlex.quote(workdir)}", f'exec {" ".join(become)} /usr/bin/env -u PWD -u OLDPWD "$@"']
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        *user,
        "--",
        "/bin/sh",
        "-c",
        "\n".join(script),
        "container",
    ]


# -- the container's environment --------------------------------------------------------------

ObjectLookup = Callable[[str, str, str], "dict[str, str] | None"]


def resolve_env(container: dict[str, Any], namespace: str, pod_name: str, lookup: ObjectLookup) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ``envFrom`` in order, then ``env``.

    Raises:
        ContainerConfigError: a referenced ConfigMap, Secret or key is missing (and not
            ``optional``), with the kubelet's message.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = _referenced(kind, namespace, ref, lookup)
            if data is None:
                continue
            env.update({prefix + k: v for k, v in data.items() if _ENV_NAME.match(prefix + k)})
    for entry in container.get("env") or []:
        value = _env_value(entry, namespace, pod_name, env, lookup)
        if value is not None:
            env[entry["name"]] = value
    return env


def _referenced(kind: str, namespace: str, ref: dict[str, Any], lookup: ObjectLookup) -> dict[str, str] | None:
    """The data of the ConfigMap or Secret ``ref`` names; None if it is missing and optional."""
    data = lookup(kind, namespace, ref["name"])
    if data is None and not ref.get("optional"):
        raise ContainerConfigError(f'{kind[:-1]} "{ref["name"]}" not found')
    return data


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie (killed, not yet reaped by whoever inherited it:
    a pod's grandchild goes to init when its group is killed) has stopped."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state != "Z"


def _env_value(
    entry: dict[str, Any], namespace: str, pod_name: str, env: dict[str, str], lookup: ObjectLookup
) -> str | None:
    if "valueFrom" not in entry:
        return expand_references(entry.get("value", ""), env)
    source = entry["valueFrom"]
    for kind, key, label in (("secrets", "secretKeyRef", "Secret"), ("configmaps", "configMapKeyRef", "ConfigMap")):
        ref = source.get(key)
        if ref is None:
            continue
        data = _referenced(kind, namespace, ref, lookup)
        if data is None:
            return None
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"couldn't find key {ref['key']} in {label} {namespace}/{ref['name']}")
        return data[ref["key"]]
    field_path = (source.get("fieldRef") or {}).get("fieldPath")
    if field_path in ("metadata.name", "metadata.namespace"):
        return pod_name if field_path == "metadata.name" else namespace
    raise ContainerConfigError(f"env {entry['name']}: valueFrom {sorted(source)} is not supported by the local kubelet")


_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, others stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


# -- git-sync v4, one-time clone ----------------------------------------------------------------


class GitSyncError(Exception):
    """git-sync cannot clone what its spec asks for."""


@dataclass(frozen=True)
class GitSyncSettings:
    repo: str
    ref: str
    root: str
    link: str
    depth: int
    one_time: bool

    @classmethod
    def from_container(cls, container: dict[str, Any], env: Mapping[str, str]) -> GitSyncSettings:
        """git-sync v4's settings: ``--flag=value`` args win over ``GITSYNC_*`` env vars."""
        flags = {}
        for arg in container.get("args") or []:
            if arg.startswith("--"):
                name, _, value = arg[2:].partition("=")
                flags[name] = value or "true"

        def setting(name: str, default: str | None = None) -> str | None:
            return flags.get(name, env.get(f"GITSYNC_{name.upper().replace('-', '_')}", default))

        repo = setting("repo")
        root = setting("root")
        if not repo or not root:
            raise GitSyncError("git-sync needs --repo and --root (or GITSYNC_REPO and GITSYNC_ROOT)")
        return cls(
            repo=repo,
            ref=setting("ref", "HEAD") or "HEAD",
            root=root,
            link=setting("link", "") or Path(repo.rstrip("/")).name.removesuffix(".git"),
            depth=int(setting("depth", "1") or 1),
            one_time=(setting("one-time", "false") or "false").lower() == "true",
        )


def git_sync(
    settings: GitSyncSettings,
    paths: PathMap,
    repositories: Mapping[str, Path],
    log,
    identity: Identity | None = None,
    home: Path | None = None,
) -> str:
    """Clone ``settings.repo`` at ``ref`` and ``depth`` into ``root`` with git-sync v4's layout.

    ``<root>`` is the git repository, ``<root>/.worktrees/<sha>`` the checkout and
    ``<root>/<link>`` a relative symlink to it, swapped in atomically. Returns the sha.
    git runs as ``identity`` (the container's user); a git error is raised with git's own
    message, as git-sync logs it.
    """
    source = repositories.get(settings.repo)
    if source is None:
        raise GitSyncError(f"repository {settings.repo} is not mapped to a local repository by the test")
    root = paths.host_path(settings.root)
    root.mkdir(parents=True, exist_ok=True)

    as_user: dict[str, Any] = {}
    if identity is not None and identity.uid != 0:
        as_user = {"user": identity.uid, "group": identity.gid, "extra_groups": list(identity.groups)}
    git_home = home or root
    # The source repository belongs to the test's user, not the container's; git's local
    # transport drops `-c` settings, so this one goes to the git user's global config.
    (git_home / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
    git_env = {"PATH": "/usr/bin:/bin", "HOME": str(git_home), "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args: str) -> str:
        command = ["git", "-C", str(root), *args]
        result = subprocess.run(command, capture_output=True, text=True, env=git_env, **as_user)
        log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            subcommand = next(a for a in args if a in ("init", "fetch", "rev-parse", "worktree"))
            raise GitSyncError(
                f"error syncing repo: git {subcommand}: exit status {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout.strip()

    if not (root / ".git").exists():
        git("init", "-q")
    git(
        "-c",
        "uploadpack.allowAnySHA1InWant=true",
        "fetch",
        "-q",
        "--no-tags",
        f"--depth={settings.depth}",
        f"file://{Path(source).resolve()}",
        settings.ref,
    )
    sha = git("rev-parse", "FETCH_HEAD^{commit}")
    worktree = root / ".worktrees" / sha
    if not worktree.exists():
        git("worktree", "add", "-q", "--detach", str(worktree), sha)
    staging = root / f".{settings.link}.tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(Path(".worktrees") / sha)
    staging.replace(root / settings.link)
    log.write(f"git-sync: synced {settings.repo}@{settings.ref} ({sha}) to {root / settings.link}\n")
    return sha
