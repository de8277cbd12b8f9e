"""Synthetic dbt projects for the benchmarks: N table models in a layered DAG, two tests each.

The same layout as the SQLMesh projects (:mod:`benchmarks.generate`): layer 0 generates
``rows`` rows with DuckDB's ``range``; every later model joins two models of the layer
before on ``id``. Every model is a table with a ``unique`` and a ``not_null`` test on
``id``, so ``dbt build`` runs 2N tests. The profile is DuckDB at an absolute path with
``threads`` set to what ``--threads`` will say for both contenders.

Example::

    repo = generate_dbt_repository(Path("/tmp/dbt_8"), models=8, width=4, threads=5)
    # repo.project_dir: dbt_project.yml, profiles.yml, models/; repo.root: .dagctl/config.yaml, definitions.py
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from benchmarks.generate import ROWS, RepositoryRoot, model_table_names, upstream_tables

DBT_PROJECT_NAME = "bench_dbt"
DBT_JOB_NAME = f"{DBT_PROJECT_NAME}_run"
FLOOR_DBT_JOB_NAME = "floor_dbt_run"
DBT_SCHEMA = "main"
TESTS_PER_MODEL = 2


@dataclass(frozen=True)
class DbtRepository(RepositoryRoot):
    root: Path
    models: int
    width: int
    threads: int
    rows: int = ROWS

    @property
    def project_dir(self) -> Path:
        return self.root / "dbt_project"

    @property
    def warehouse(self) -> Path:
        return self.project_dir / "warehouse.duckdb"

    @property
    def definitions_floor(self) -> Path:
        return self.root / "definitions_floor.py"

    def model_names(self) -> list[str]:
        return model_table_names(self.models, self.width)

    def expected_row_counts(self) -> dict[str, int]:
        return {name: self.rows for name in self.model_names()}

    def describe(self) -> str:
        return (
            f"dbt N={self.models} (width {self.width}, {TESTS_PER_MODEL * self.models} tests), "
            f"DuckDB, threads {self.threads}"
        )


def generate_dbt_repository(root: Path, *, models: int, width: int, threads: int, rows: int = ROWS) -> DbtRepository:
    repo = DbtRepository(root=Path(root).resolve(), models=models, width=width, threads=threads, rows=rows)
    models_dir = repo.project_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for stale in models_dir.glob("*.sql"):
        stale.unlink()
    graph = upstream_tables(models, width)
    for table, upstream in graph.items():
        (models_dir / f"{table}.sql").write_text(_model_sql(table, upstream, rows))
    (models_dir / "schema.yml").write_text(_schema_yml(list(graph)))
    (repo.project_dir / "dbt_project.yml").write_text(_project_yml())
    (repo.project_dir / "profiles.yml").write_text(_profiles_yml(repo))
    repo.config_path.parent.mkdir(parents=True, exist_ok=True)
    repo.config_path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            projects:
              - name: {DBT_PROJECT_NAME}
                framework: dbt
                path: dbt_project
            """
        )
    )
    repo.definitions.write_text(
        textwrap.dedent(
            f'''\
            """Benchmark code location: dbt project '{DBT_PROJECT_NAME}', job {DBT_JOB_NAME}."""

            from pathlib import Path

            from dagctl_dagster import load_definitions

            defs = load_definitions(Path(__file__).resolve().parent / ".dagctl" / "config.yaml")
            '''
        )
    )
    repo.definitions_floor.write_text(floor_definitions_source(threads))
    return repo


def floor_definitions_source(threads: int) -> str:
    """Stock dagster-dbt on the same project: ``@dbt_assets`` + ``DbtCliResource``, no claims.

    Job ``floor_dbt_run`` runs ``dbt build --threads <threads>`` in one step on Dagster's
    in-process executor, streaming dbt's events as dagster-dbt's documentation shows: what
    any dagster-dbt deployment pays for this project before anything dagctl adds.
    """
    return textwrap.dedent(
        f'''\
        """dagster-dbt's floor: stock @dbt_assets + DbtCliResource on project '{DBT_PROJECT_NAME}'; job {FLOOR_DBT_JOB_NAME}."""

        import sys
        from pathlib import Path

        import dagster as dg
        from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

        PROJECT_DIR = Path(__file__).resolve().parent / "dbt_project"
        PROJECT = DbtProject(PROJECT_DIR, profiles_dir=PROJECT_DIR)


        @dbt_assets(manifest=PROJECT.manifest_path)
        def floor_dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource):
            yield from dbt.cli(["build", "--threads", "{threads}"], context=context).stream()


        defs = dg.Definitions(
            assets=[floor_dbt_build],
            resources={{
                "dbt": DbtCliResource(
                    project_dir=PROJECT, dbt_executable=str(Path(sys.executable).parent / "dbt")
                )
            }},
            jobs=[dg.define_asset_job("{FLOOR_DBT_JOB_NAME}", executor_def=dg.in_process_executor)],
        )
        '''
    )


def _model_sql(table: str, upstream: tuple[str, ...], rows: int) -> str:
    if not upstream:
        return (
            "select\n  r.i as id,\n  r.i % 97 as bucket,\n"
            f"  (r.i * 7) % 1000 as amount\nfrom range(0, {rows}) as r(i)\n"
        )
    left, right = upstream
    return (
        "select\n  l.id as id,\n  l.bucket as bucket,\n  (l.amount + r.amount) % 1000 as amount\n"
        f"from {{{{ ref('{left}') }}}} as l\njoin {{{{ ref('{right}') }}}} as r\n  on l.id = r.id\n"
    )


def _schema_yml(tables: list[str]) -> str:
    lines = ["version: 2", "models:"]
    for table in tables:
        lines += [
            f"  - name: {table}",
            "    columns:",
            "      - name: id",
            "        data_tests: [unique, not_null]",
        ]
    return "\n".join(lines) + "\n"


def _project_yml() -> str:
    return textwrap.dedent(
        f"""\
        name: {DBT_PROJECT_NAME}
        version: "1.0.0"
        config-version: 2
        profile: {DBT_PROJECT_NAME}
        model-paths: ["models"]
        target-path: target
        models:
          {DBT_PROJECT_NAME}:
            +materialized: table
        """
    )


def _profiles_yml(repo: DbtRepository) -> str:
    return textwrap.dedent(
        f"""\
        {DBT_PROJECT_NAME}:
          target: dev
          outputs:
            dev:
              type: duckdb
              path: {repo.warehouse}
              threads: {repo.threads}
        """
    )
