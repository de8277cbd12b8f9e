"""dbt node → Dagster asset: keys prefixed by the project, group = project, dagctl tags.

Example::

    from dagctl_dagster.dbt.translator import DagctlDbtTranslator

    class MyTranslator(DagctlDbtTranslator):
        def get_description(self, dbt_resource_props):
            return dbt_resource_props.get("description") or "undocumented"

    assets = dbt_assets("dbt/marts", name="marts", translator=MyTranslator("marts"))
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from dagctl_dagster.dbt import FRAMEWORK
from dagctl_dagster.names import FRAMEWORK_TAG, PROJECT_TAG

# Dagster's key for an asset's source files (dagster-dbt's code references use it too).
CODE_REFERENCES_KEY = "dagster/code_references"


class DagctlDbtTranslator(DagsterDbtTranslator):
    """dagster-dbt's translator with the conventions every dagctl project shares.

    - Models, seeds and snapshots get the key ``[<project>, *<dagster-dbt default key>]``,
      so two projects (dbt or SQLMesh) may both have a ``customers`` model. A source whose
      relation (``schema.identifier``) is a model of a configured SQLMesh project gets that
      model's asset key (``upstream_keys``): one asset, one edge across the projects. Other
      sources keep dagster-dbt's key.
    - The group is the project name; tags ``dagctl/project`` and ``dagctl/framework``.
    - The description is the node's dbt description, else ``dbt <type> <name>``; never its SQL.
      The node's file (``.sql``, a seed's ``.csv``) is the asset's code reference
      (``dagster/code_references``) when ``project_dir`` is given, as dagster-dbt's
      ``enable_code_references`` does, without putting the ``DbtProject`` on every asset.
    - dbt tests become asset checks (``enable_asset_checks``); kinds stay dagster-dbt's
      (``dbt`` and the adapter, e.g. ``duckdb``).
    """

    def __init__(
        self,
        project_name: str,
        settings: DagsterDbtTranslatorSettings | None = None,
        upstream_keys: Container[dg.AssetKey] = (),
        project_dir: str | Path | None = None,
    ):
        super().__init__(settings or DagsterDbtTranslatorSettings(enable_asset_checks=True))
        self.project_name = project_name
        self.upstream_keys = upstream_keys
        self.project_dir = Path(project_dir).resolve() if project_dir else None

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        default_key = super().get_asset_key(dbt_resource_props)
        if dbt_resource_props.get("resource_type") == "source":
            return self._upstream_model_key(dbt_resource_props) or default_key
        return default_key.with_prefix(self.project_name)

    def _upstream_model_key(self, source: Mapping[str, Any]) -> dg.AssetKey | None:
        """The SQLMesh model this source reads, when one of the configured projects builds it."""
        table = source.get("identifier") or source.get("name")
        schema = source.get("schema")
        if not table or not schema:
            return None
        key = dg.AssetKey([str(schema).lower(), str(table).lower()])
        return key if key in self.upstream_keys else None

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """The dbt description, else ``dbt <type> <name>``; the SQL is the code reference's."""
        props = dbt_resource_props
        return (props.get("description") or "").strip() or f"dbt {props['resource_type']} {props['name']}"

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        metadata = super().get_metadata(dbt_resource_props)
        source = self._source_file(dbt_resource_props)
        if source is None:
            return metadata
        references = dg.CodeReferencesMetadataValue(code_references=[dg.LocalFileCodeReference(file_path=str(source))])
        return {**metadata, CODE_REFERENCES_KEY: references}

    def _source_file(self, props: Mapping[str, Any]) -> Path | None:
        relative = props.get("original_file_path")
        if self.project_dir is None or not relative or props.get("resource_type") == "source":
            return None
        return self.project_dir / relative

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self.project_name

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {
            **super().get_tags(dbt_resource_props),
            PROJECT_TAG: self.project_name,
            FRAMEWORK_TAG: FRAMEWORK,
        }
