"""SQLMesh model → Dagster asset: keys, groups, metadata, checks.

Subclass :class:`DagsterSQLMeshTranslator` to change any of them::

    class MyTranslator(DagsterSQLMeshTranslator):
        def get_asset_key(self, model) -> dg.AssetKey:
            return super().get_asset_key(model).with_prefix("warehouse")

    defs = dg.Definitions(assets=sqlmesh_assets(project_dir="analytics", translator=MyTranslator()))
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from dagctl_dagster.names import COLUMN_SCHEMA_KEY
from dagctl_dagster.sqlmesh import internals

if TYPE_CHECKING:
    from dagctl_dagster.config import ProjectConfig

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_CHECK_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class DagsterSQLMeshTranslator:
    """Holds the rules that turn SQLMesh models into Dagster asset specs.

    Every method takes the SQLMesh ``Model`` (``sqlmesh.core.model.Model``); the default
    key is the model name without its catalog, split on dots
    (``sqlmesh_example.full_model`` → ``["sqlmesh_example", "full_model"]``): see
    :func:`model_asset_key`, the one rule for SQLMesh model keys.
    """

    def __init__(self, project_name: str | None = None):
        self.project_name = project_name

    def get_asset_key(self, model: Any) -> dg.AssetKey:
        return model_asset_key(internals.model_fqn(model))

    def get_group_name(self, model: Any) -> str | None:
        """The project's name for its models; external tables it reads (``model`` external or
        None for an undeclared one) go to ``<project>_sources``, so that the project's group
        holds exactly what it builds and "Materialize all" on it works."""
        if self.project_name and (model is None or internals.is_external(model)):
            return f"{self.project_name}_sources"
        return self.project_name

    def get_description(self, model: Any) -> str | None:
        return model.description

    def get_owners(self, model: Any) -> Sequence[str]:
        owner = getattr(model, "owner", None)
        if not owner:
            return []
        return [owner if "@" in owner or owner.startswith("team:") else f"team:{_TAG_UNSAFE.sub('_', owner)}"]

    def get_tags(self, model: Any) -> Mapping[str, str]:
        return {_TAG_UNSAFE.sub("_", tag)[:63]: "" for tag in getattr(model, "tags", []) or []}

    def get_kinds(self, model: Any) -> set[str]:
        return {"sqlmesh", model.dialect or "sql"}

    def get_table_name(self, model: Any) -> str:
        """The name users query: the environment's view, ``catalog.schema.table``."""
        return internals.table_name(model)

    def get_metadata(self, model: Any) -> Mapping[str, Any]:
        metadata: dict[str, Any] = {
            "dagster/table_name": self.get_table_name(model),
            "sqlmesh/kind": str(getattr(model.kind.name, "value", model.kind.name)),
            "sqlmesh/cron": model.cron,
            "sqlmesh/dialect": model.dialect or "",
        }
        schema = self.get_column_schema(model)
        if schema is not None:
            metadata[COLUMN_SCHEMA_KEY] = schema
        path = internals.model_file(model)
        if path:
            metadata["sqlmesh/file"] = str(path)
        return metadata

    def get_column_schema(self, model: Any) -> dg.TableSchema | None:
        columns = internals.column_types(model)
        if not columns:
            return None
        descriptions = getattr(model, "column_descriptions", None) or {}
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=name,
                    type=_type_name(data_type, model.dialect),
                    description=descriptions.get(name),
                )
                for name, data_type in columns.items()
            ]
        )

    def get_check_name(self, audit_name: str, args: Mapping[str, Any]) -> str:
        return _CHECK_UNSAFE.sub("_", audit_name)

    def get_check_names(self, model: Any) -> dict[tuple[str, str], str]:
        """Each audit of the model (:func:`audit_identity`) → its check's name, unique per model."""
        return {audit_identity(audit.name, audit.args): name for audit, name in self._named_audits(model)}

    def get_check_specs(self, model: Any, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        return [
            dg.AssetCheckSpec(
                name=name,
                asset=asset_key,
                blocking=audit.blocking,
                description=f"SQLMesh audit `{audit.name}`"
                + (f" ({render_audit_args(audit.args)})" if audit.args else "")
                + ("; blocking" if audit.blocking else "; non-blocking"),
            )
            for audit, name in self._named_audits(model)
        ]

    def _named_audits(self, model: Any) -> Iterator[tuple[internals.ModelAudit, str]]:
        """The model's audits in order, each with its check name (a repeated name gets ``_2``...)."""
        used: set[str] = set()
        for audit in internals.audits_with_args(model):
            yield audit, unique_check_name(self.get_check_name(audit.name, audit.args), used)


_QUOTED_PART = re.compile(r'"((?:[^"]|"")*)"')


def model_asset_key(name: str) -> dg.AssetKey:
    """The asset key of the SQLMesh model named ``name``: its schema and table, no catalog.

    ``name`` is SQLMesh's FQN (``"catalog"."schema"."table"``) or a name as users write it
    (``[catalog.]schema.table``). The one rule for SQLMesh model keys: the default
    :meth:`DagsterSQLMeshTranslator.get_asset_key`, undeclared tables a project reads, and
    anything that names a model by its SQLMesh name use it.
    """
    return dg.AssetKey(schema_and_table(name))


def schema_and_table(fqn: str) -> list[str]:
    """``"catalog"."schema"."table"`` → ``["schema", "table"]`` (no catalog).

    SQLMesh's FQNs are normalized and quoted, so splitting the string is exact and costs far
    less than parsing it with sqlglot (it is done for every model at load).
    """
    parts = [p.replace('""', '"') for p in _QUOTED_PART.findall(fqn)]
    if not parts:
        from sqlglot import exp  # only for names SQLMesh did not quote (not imported on cached loads)

        table = exp.to_table(fqn)
        parts = [p.name for p in (table.args.get("catalog"), table.args.get("db"), table.this) if p is not None]
    return [p for p in parts[-2:] if p]


def _type_name(data_type: Any, dialect: str | None) -> str:
    if data_type is None:
        return "unknown"
    if not data_type.expressions and not data_type.args.get("nested"):
        return str(getattr(data_type.this, "value", data_type.this))
    return data_type.sql(dialect=dialect)


def unique_check_name(name: str, used: set[str]) -> str:
    candidate, suffix = name, 2
    while candidate in used:
        candidate = f"{name}_{suffix}"
        suffix += 1
    used.add(candidate)
    return candidate


def audit_identity(audit_name: str, args: Mapping[str, Any]) -> tuple[str, str]:
    """An audit as a model applies it: its name and its rendered arguments (one audit may be
    applied twice with different arguments); what SQLMesh reports after evaluating it."""
    return (audit_name, render_audit_args(args))


def render_audit_args(args: Mapping[str, Any]) -> str:
    from sqlglot import exp

    return ", ".join(
        f"{key} := {value.sql() if isinstance(value, exp.Expression) else value}" for key, value in args.items()
    )


def model_name_key(project: ProjectConfig, model: str) -> str:
    """The asset key (``a/b``) of a SQLMesh model a user names (``[catalog.]schema.name``),
    as :meth:`DagsterSQLMeshTranslator.get_asset_key` keys it."""
    parts = model.split(".")
    if len(parts) < 2:
        raise ValueError(
            f"'{model}' is not a SQLMesh model name of project '{project.name}': SQLMesh names "
            "models schema.name (e.g. demo.orders)"
        )
    return model_asset_key(model).to_user_string()
