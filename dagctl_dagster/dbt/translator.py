"""dbt node → Dagster asset: keys prefixed by the project, group = project, dagctl tags.

Example::

    from dagctl_dagster.dbt.translator import DagctlDbtTranslator

    class MyTranslator(DagctlDbtTranslator):
        def get_description(self, dbt_resource_props):
            return dbt_resource_props.get("description") or "undocumented"

    assets = dbt_assets("dbt/marts", name="marts", translator=MyTranslator("marts"))
"""

from __future__ import annotations

import textwrap
from collections.abc import Container, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from dagctl_dagster.dbt import FRAMEWORK
from dagctl_dagster.names import FRAMEWORK_TAG, PROJECT_TAG


class DagctlDbtTranslator(DagsterDbtTranslator):
    """dagster-dbt's translator with the conventions every dagctl project shares.

    - Models, seeds and snapshots get the key ``[<project>, *<dagster-dbt default key>]``,
      so two projects (dbt or SQLMesh) may both have a ``customers`` model. A source whose
      relation (``schema.identifier``) is a model of a configured SQLMesh project gets that
      model's asset key (``upstream_keys``): one asset, one edge across the projects. Other
      sources keep dagster-dbt's key.
    - The group is the project name; tags ``dagctl/project`` and ``dagctl/framework``.
    - Descriptions show the node's SQL only when it has some (not for seeds).
    - dbt tests become asset checks (``enable_asset_checks``); kinds stay dagster-dbt's
      (``dbt`` and the adapter, e.g. ``duckdb``).
    """

    def __init__(
        self,
        project_name: str,
        settings: DagsterDbtTranslatorSettings | None = None,
        upstream_keys: Container[dg.AssetKey] = (),
    ):
        super().__init__(settings or DagsterDbtTranslatorSettings(enable_asset_checks=True))
        self.project_name = project_name
        self.upstream_keys = upstream_keys

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
        """The dbt description (else ``dbt <type> <name>``), then the node's SQL if it has any:
        seeds have none, and an empty "Raw SQL" block only clutters the page."""
        props = dbt_resource_props
        text = props.get("description") or f"dbt {props['resource_type']} {props['name']}"
        code = (props.get("raw_sql") or props.get("raw_code") or "").strip("\n")
        if not code.strip():
            return text
        return f"{text}\n\n#### Raw SQL:\n```sql\n{textwrap.indent(code, '    ')}\n```"

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self.project_name

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {
            **super().get_tags(dbt_resource_props),
            PROJECT_TAG: self.project_name,
            FRAMEWORK_TAG: FRAMEWORK,
        }
