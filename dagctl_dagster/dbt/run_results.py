"""dbt's ``run_results.json`` → one record per node, and what a failed invocation did.

Example::

    results = RunResults.read(invocation.target_path / "run_results.json")
    results.node("model.jaffle_shop.orders").execution_time_s   # 0.41
    results.outcome(manifest).failure_message("jaffle_shop")    # names failed and skipped models
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
SKIPPED_STATUS = "skipped"
REFABLE_TYPES = frozenset({"model", "seed", "snapshot"})
RUN_RESULTS_FILE = "run_results.json"


@dataclass(frozen=True)
class NodeResult:
    """What dbt recorded for one model, seed, snapshot or test of an invocation."""

    unique_id: str
    status: str
    execution_time_s: float
    rows_affected: int | None
    message: str | None
    failures: int | None

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.unique_id.split(".")[2]

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def skipped(self) -> bool:
        return self.status == SKIPPED_STATUS

    @classmethod
    def from_json(cls, result: Mapping[str, Any]) -> NodeResult:
        adapter_response = result.get("adapter_response") or {}
        rows = adapter_response.get("rows_affected")
        return cls(
            unique_id=result["unique_id"],
            status=str(result["status"]).lower(),
            execution_time_s=float(result.get("execution_time") or 0.0),
            rows_affected=rows if isinstance(rows, int) and rows >= 0 else None,
            message=result.get("message"),
            failures=result.get("failures"),
        )


@dataclass(frozen=True)
class RunResults:
    """All node results of one dbt invocation, keyed by unique id."""

    invocation_id: str | None
    nodes: Mapping[str, NodeResult]

    @classmethod
    def read(cls, path: Path) -> RunResults:
        return cls.from_json(json.loads(Path(path).read_text()))

    @classmethod
    def of_invocation(cls, invocation: Any, what: str) -> tuple[RunResults, Path]:
        """The results of a finished dagster-dbt invocation and their path.

        Raises:
            dagster.Failure: dbt wrote no ``run_results.json`` (it failed before running
                anything); names ``what`` ran and dbt's error, secrets masked.
        """
        import dagster as dg

        from dagctl_dagster.secrets import redact

        path = invocation.target_path / RUN_RESULTS_FILE
        if not path.is_file():
            error = invocation.get_error()
            raise dg.Failure(
                description=redact(f"{what} wrote no {RUN_RESULTS_FILE}: {error or 'no error reported'}")
            ) from None
        return cls.read(path), path

    @classmethod
    def from_json(cls, artifact: Mapping[str, Any]) -> RunResults:
        nodes = {r["unique_id"]: NodeResult.from_json(r) for r in artifact.get("results", [])}
        return cls(invocation_id=artifact.get("metadata", {}).get("invocation_id"), nodes=nodes)

    def node(self, unique_id: str) -> NodeResult | None:
        return self.nodes.get(unique_id)

    def outcome(self, manifest: Mapping[str, Any]) -> InvocationOutcome:
        """Which nodes failed, and which refable nodes were skipped because of which failure."""
        failed = [n for n in self.nodes.values() if n.failed]
        parent_map = _parent_map(manifest)
        # dbt build skips the children of a failed model and of a model whose test failed.
        blocked_at = {
            n.unique_id: set(parent_map.get(n.unique_id, [])) if n.resource_type == "test" else {n.unique_id}
            for n in failed
        }
        skipped: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if node.skipped and node.resource_type in REFABLE_TYPES:
                ancestors = _ancestors(node.unique_id, parent_map)
                skipped[node.unique_id] = sorted(uid for uid, at in blocked_at.items() if at & ancestors)
        return InvocationOutcome(failed=failed, skipped_because=skipped, manifest=manifest)


@dataclass(frozen=True)
class InvocationOutcome:
    """The failed nodes and the skipped models, seeds and snapshots of one invocation."""

    failed: list[NodeResult]
    skipped_because: Mapping[str, list[str]]
    manifest: Mapping[str, Any]

    @property
    def succeeded(self) -> bool:
        return not self.failed

    @property
    def failed_models(self) -> list[str]:
        """Unique ids of the models, seeds and snapshots that failed to build or whose tests failed."""
        found: set[str] = set()
        for node in self.failed:
            if node.resource_type in REFABLE_TYPES:
                found.add(node.unique_id)
            elif node.resource_type == "test":
                tested = self.manifest.get("nodes", {}).get(node.unique_id, {}).get("depends_on", {}).get("nodes", [])
                found.update(uid for uid in tested if uid.split(".", 1)[0] in REFABLE_TYPES)
        return sorted(found)

    def failure_message(self, project_name: str) -> str:
        """One message naming each failed node (with its file) and each skipped model."""
        lines = [f"dbt build of project '{project_name}' failed:"]
        for node in sorted(self.failed, key=lambda n: n.unique_id):
            detail = " ".join((node.message or node.status).split())
            lines.append(f"- {self._describe(node.unique_id)} {node.status}: {detail}")
        if self.skipped_because:
            names = []
            for unique_id, causes in sorted(self.skipped_because.items()):
                because = f" (upstream {', '.join(_name(c) for c in causes)} failed)" if causes else ""
                names.append(f"{_name(unique_id)}{because}")
            lines.append(f"skipped downstream: {'; '.join(names)}")
        return "\n".join(lines)

    def _describe(self, unique_id: str) -> str:
        props = self.manifest.get("nodes", {}).get(unique_id, {})
        kind = unique_id.split(".", 1)[0]
        path = props.get("original_file_path")
        if kind == "test":
            tested = [_name(p) for p in props.get("depends_on", {}).get("nodes", [])]
            on = f" on {', '.join(tested)}" if tested else ""
            return f"test {_name(unique_id)}{on}"
        return f"{kind} {_name(unique_id)}" + (f" ({path})" if path else "")


def _name(unique_id: str) -> str:
    return unique_id.split(".")[2]


def _parent_map(manifest: Mapping[str, Any]) -> Mapping[str, list[str]]:
    parent_map = manifest.get("parent_map")
    if parent_map:
        return parent_map
    return {uid: props.get("depends_on", {}).get("nodes", []) for uid, props in manifest.get("nodes", {}).items()}


def _ancestors(unique_id: str, parent_map: Mapping[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(parent_map.get(unique_id, []))
    while stack:
        parent = stack.pop()
        if parent not in seen:
            seen.add(parent)
            stack.extend(parent_map.get(parent, []))
    return seen
