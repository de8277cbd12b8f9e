"""The dbt seam: the only package that relies on dagster-dbt's, dbt-core's and dbt-duckdb's internals.

**Public** (usable anywhere in dagctl-dagster): what ``dagster_dbt/__init__.py`` exports
(``from X import Name as Name``; dagster-dbt has no ``__all__``), imported from ``dagster_dbt``
itself, with the public members of those classes (``DbtCliResource.cli``,
``DbtCliInvocation.stream_raw_events``, ``DagsterDbtTranslator.get_asset_key``, ...), and
subclassing ``DagsterDbtTranslator`` through its public ``get_*`` hooks. **Internal**, so here:
dagster-dbt's other modules and unexported helpers (``dagster_dbt.asset_utils``,
``dagster_dbt.dbt_manifest``), its private members, anything of dbt-core (``dbt.*``,
``dbt_common.*``), and dbt's adapter objects (dbt-adapters, dbt-duckdb), which dagster-dbt
hands out as ``DbtCliInvocation.adapter``. ``tests/test_seams.py`` fails when any other module
reaches into them; ``tests/test_dbt_internals.py`` pins every name used here to the versions in
:data:`TESTED_DAGSTER_DBT`, :data:`TESTED_DBT_CORE` and :data:`TESTED_DBT_DUCKDB`.

- :mod:`.resources`: what the code server and the run worker use (dagster-dbt's helpers, the
  CLI resource without the work dbt's result does not need, measuring from the run worker);
- :mod:`.measuring`: what a built relation measures as, and ``dagctl-dbt``, dbt's CLI measuring
  in dbt's own process. It imports neither Dagster nor dagster-dbt: it starts with every dbt
  invocation on DuckDB.

This module itself stays as light as :mod:`.measuring`.
"""

from __future__ import annotations

import importlib.metadata

from packaging import version
from packaging.specifiers import SpecifierSet

# The versions every name used here is pinned on (tests/test_dbt_internals.py), as pyproject.toml
# declares them; the wheel test runs the lowest.
TESTED_DAGSTER_DBT = ">=0.29.5,<0.30"
TESTED_DBT_CORE = ">=1.11.2,<1.12"
TESTED_DBT_DUCKDB = ">=1.11.1,<1.12"
TESTED_VERSIONS = {"dagster-dbt": TESTED_DAGSTER_DBT, "dbt-core": TESTED_DBT_CORE, "dbt-duckdb": TESTED_DBT_DUCKDB}

__all__ = ["TESTED_DAGSTER_DBT", "TESTED_DBT_CORE", "TESTED_DBT_DUCKDB", "TESTED_VERSIONS", "untested_versions"]


def untested_versions() -> dict[str, str]:
    """The installed distributions outside their tested range, with the installed version."""
    found: dict[str, str] = {}
    for distribution, tested in TESTED_VERSIONS.items():
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:  # dbt-duckdb is optional for other warehouses
            continue
        if version.parse(installed) not in SpecifierSet(tested):
            found[distribution] = installed
    return found


if _untested := untested_versions():  # pragma: no cover
    import warnings

    warnings.warn(
        "dagctl-dagster's dbt seam was tested with "
        + ", ".join(f"{name} {TESTED_VERSIONS[name]}" for name in _untested)
        + "; installed: "
        + ", ".join(f"{name} {installed}" for name, installed in _untested.items())
        + ". Run tests/test_dbt_internals.py before relying on it.",
        stacklevel=1,
    )
