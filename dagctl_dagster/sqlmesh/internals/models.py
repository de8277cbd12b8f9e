"""A loaded project's models and standalone audits, as the asset translation needs them.

The translator is handed SQLMesh ``Model`` objects (the public hooks of
:class:`~dagctl_dagster.sqlmesh.translator.DagsterSQLMeshTranslator` take them, as users'
translators do) and reads their documented properties itself; what else it needs of a model
(its FQN, table name, column types, file, audits) it reads through the functions here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlmesh import Context
    from sqlmesh.core.model import Model
    from sqlmesh.core.snapshot import SnapshotFingerprint
    from sqlmesh.core.snapshot.definition import Node

ModelRole = Literal["model", "external", "embedded"]


@dataclass(frozen=True)
class ModelNode:
    """One model of the Context; ``project`` is its SQLMesh ``project:`` ('' when none)."""

    fqn: str
    name: str
    role: ModelRole
    project: str
    depends_on: tuple[str, ...]
    model: Model


@dataclass(frozen=True)
class StandaloneAuditNode:
    fqn: str
    name: str
    project: str
    depends_on: tuple[str, ...]
    blocking: bool


@dataclass(frozen=True)
class ProjectNodes:
    """Every model (embedded ones included) by FQN, and the standalone audits by name."""

    models: dict[str, ModelNode]
    standalone_audits: list[StandaloneAuditNode]
    # The mapping SQLMesh fingerprints against, and the fingerprints computed so far.
    _nodes: dict[str, Node] = field(repr=False)
    _fingerprints: dict[str, SnapshotFingerprint] = field(default_factory=dict, repr=False)

    def code_version(self, fqn: str) -> str:
        """The model's version as SQLMesh fingerprints it (its data and its parents' data)."""
        from sqlmesh.core.snapshot.definition import fingerprint_from_node

        node = self.models[fqn].model
        return fingerprint_from_node(node, nodes=self._nodes, cache=self._fingerprints).to_version()


def project_nodes(context: Context) -> ProjectNodes:
    """The models and standalone audits of a loaded Context."""
    models = {
        fqn: ModelNode(
            fqn=fqn,
            name=model.name,
            role=_role(model),
            project=model.project or "",
            depends_on=tuple(sorted(model.depends_on or ())),
            model=model,
        )
        for fqn, model in context.models.items()
    }
    audits = [
        StandaloneAuditNode(
            fqn=audit.fqn,
            name=audit.name,
            project=audit.project or "",
            depends_on=tuple(sorted(audit.depends_on or ())),
            blocking=bool(audit.blocking),
        )
        for audit in sorted(context.standalone_audits.values(), key=lambda a: a.name)
    ]
    return ProjectNodes(models=models, standalone_audits=audits, _nodes=dict(context._models))


def _role(model: Model) -> ModelRole:
    if model.kind.is_embedded:
        return "embedded"
    return "external" if model.kind.is_external else "model"


# -- what the translator reads of a model, beyond its documented properties ---------------


@dataclass(frozen=True)
class ModelAudit:
    """An audit as a model applies it: its name, arguments and whether it blocks."""

    name: str
    args: dict[str, Any]
    blocking: bool


def model_fqn(model: Model) -> str:
    """SQLMesh's normalized, quoted name of the model: ``"catalog"."schema"."table"``."""
    return model.fqn


def is_external(model: Model | None) -> bool:
    return model is not None and bool(model.kind.is_external)


def is_embedded(model: Model | None) -> bool:
    return model is not None and bool(model.kind.is_embedded)


def table_name(model: Model) -> str:
    """The name users query (the environment's view): ``catalog.schema.table``, unquoted."""
    return ".".join(part.name for part in model.fully_qualified_table.parts)


def column_types(model: Model) -> dict[str, exp.DataType]:
    """The model's columns and their types, where SQLMesh knows them (empty otherwise)."""
    return dict(model.columns_to_types or {})


def model_file(model: Model) -> Path | None:
    """The file that defines the model, where SQLMesh recorded it."""
    path = model._path
    return Path(path) if path else None


def audits_with_args(model: Model) -> list[ModelAudit]:
    """The model's audits in declaration order, as SQLMesh resolves them."""
    return [
        ModelAudit(name=audit.name, args=dict(args), blocking=bool(audit.blocking))
        for audit, args in (getattr(model, "audits_with_args", []) or [])
    ]
