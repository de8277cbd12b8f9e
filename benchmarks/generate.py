"""Synthetic SQLMesh projects for the benchmarks: N FULL models in a layered DAG.

Layer 0 holds ``width`` seed-like models that each generate :data:`ROWS` rows with
``generate_series`` (DuckDB and PostgreSQL alike); every model of a later layer joins two models of the layer before
it on ``id``, so every model holds exactly :data:`ROWS` rows — which is what the
contenders' correctness checks assert.

Example::

    from benchmarks.generate import generate_repository

    repo = generate_repository(Path("/tmp/bench_100"), models=100, width=10)
    # repo.project_dir holds config.yaml + models/; repo.root holds .dagctl/config.yaml,
    # definitions.py, definitions_multiprocess.py and workspace.yaml.

The warehouse and the SQLMesh state are two DuckDB files in the project directory
(absolute paths in ``config.yaml``, so every process opens the same files whatever its
working directory). A second gateway, ``postgres``, keeps both in the PostgreSQL database
named by ``BENCH_PG_*`` environment variables: the multiprocess executor runs each step in
its own process, and DuckDB lets only one process at a time open a database file.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

ROWS = 1000
SCHEMA = "bench"
PROJECT_NAME = "bench"
JOB_NAME = f"{PROJECT_NAME}_run"
CONCURRENT_TASKS = 5
MODEL_START = "2026-01-01"


@dataclass(frozen=True)
class GeneratedRepository:
    """Where a generated benchmark repository keeps its parts."""

    root: Path
    models: int
    width: int

    @property
    def project_dir(self) -> Path:
        return self.root / "project"

    @property
    def warehouse(self) -> Path:
        return self.project_dir / "warehouse.duckdb"

    @property
    def state_db(self) -> Path:
        return self.project_dir / "state.duckdb"

    @property
    def config_path(self) -> Path:
        return self.root / ".dagctl" / "config.yaml"

    @property
    def postgres_config_path(self) -> Path:
        return self.root / ".dagctl" / "config.postgres.yaml"

    @property
    def definitions(self) -> Path:
        return self.root / "definitions.py"

    @property
    def definitions_postgres(self) -> Path:
        return self.root / "definitions_postgres.py"

    @property
    def definitions_multiprocess(self) -> Path:
        return self.root / "definitions_multiprocess.py"

    def model_names(self) -> list[str]:
        return [f"{SCHEMA}.{name}" for name in model_table_names(self.models, self.width)]


def model_table_names(models: int, width: int) -> list[str]:
    """Table names in DAG order: ``m_<layer>_<position>``."""
    _check_shape(models, width)
    return [_table(index // width, index % width) for index in range(models)]


def upstream_tables(models: int, width: int) -> dict[str, tuple[str, ...]]:
    """Each model's table name → the tables it joins (none for layer 0)."""
    _check_shape(models, width)
    graph: dict[str, tuple[str, ...]] = {}
    for index in range(models):
        layer, position = divmod(index, width)
        if layer == 0:
            graph[_table(layer, position)] = ()
            continue
        left = _table(layer - 1, position)
        right = _table(layer - 1, (position + 1) % width)
        graph[_table(layer, position)] = (left, right)
    return graph


def generate_repository(root: Path, *, models: int, width: int) -> GeneratedRepository:
    """Write a benchmark repository at ``root`` (overwriting generated files) and return it."""
    _check_shape(models, width)
    repo = GeneratedRepository(root=Path(root).resolve(), models=models, width=width)
    models_dir = repo.project_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for stale in models_dir.glob("*.sql"):
        stale.unlink()
    for table, upstream in upstream_tables(models, width).items():
        (models_dir / f"{table}.sql").write_text(model_sql(table, upstream))
    (repo.project_dir / "config.yaml").write_text(sqlmesh_config(repo))
    repo.config_path.parent.mkdir(parents=True, exist_ok=True)
    repo.config_path.write_text(dagctl_config(gateway="local"))
    repo.postgres_config_path.write_text(dagctl_config(gateway="postgres"))
    repo.definitions.write_text(definitions_source(repo.config_path.name))
    repo.definitions_postgres.write_text(definitions_source(repo.postgres_config_path.name))
    repo.definitions_multiprocess.write_text(multiprocess_definitions_source(repo.postgres_config_path.name))
    (repo.root / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: definitions.py\n      location_name: bench\n"
    )
    return repo


def model_sql(table: str, upstream: tuple[str, ...]) -> str:
    header = f"MODEL (\n  name {SCHEMA}.{table},\n  kind FULL,\n  grain id\n);\n\n"
    if not upstream:
        return header + (
            "SELECT\n"
            "  r.i AS id,\n"
            "  r.i % 97 AS bucket,\n"
            f"  (r.i * {_seed_factor(table)}) % 1000 AS amount\n"
            f"FROM generate_series(0, {ROWS - 1}) AS r(i)\n"
        )
    left, right = upstream
    return header + (
        "SELECT\n"
        "  l.id AS id,\n"
        "  l.bucket AS bucket,\n"
        "  (l.amount + r.amount) % 1000 AS amount\n"
        f"FROM {SCHEMA}.{left} AS l\n"
        f"JOIN {SCHEMA}.{right} AS r\n"
        "  ON l.id = r.id\n"
    )


def sqlmesh_config(repo: GeneratedRepository) -> str:
    return textwrap.dedent(
        f"""\
        # Generated by benchmarks/generate.py: {repo.models} models, width {repo.width}.
        gateways:
          local:
            connection:
              type: duckdb
              database: {repo.warehouse}
              concurrent_tasks: {CONCURRENT_TASKS}
            state_connection:
              type: duckdb
              database: {repo.state_db}
              concurrent_tasks: {CONCURRENT_TASKS}
          postgres:
            connection:
              type: postgres
              host: "{{{{ env_var('BENCH_PG_HOST', '127.0.0.1') }}}}"
              port: "{{{{ env_var('BENCH_PG_PORT', '5432') }}}}"
              user: "{{{{ env_var('BENCH_PG_USER', 'postgres') }}}}"
              password: "{{{{ env_var('BENCH_PG_PASSWORD', '') }}}}"
              database: "{{{{ env_var('BENCH_PG_DATABASE', 'bench') }}}}"
              concurrent_tasks: {CONCURRENT_TASKS}
        default_gateway: local
        model_defaults:
          dialect: duckdb
          start: '{MODEL_START}'
          cron: '@daily'
        """
    )


def dagctl_config(*, gateway: str) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        projects:
          - name: {PROJECT_NAME}
            framework: sqlmesh
            path: project
            gateway: {gateway}
            environment: prod
            janitor_schedule: null
            state_backup:
              enabled: false
        """
    )


def definitions_source(config_name: str) -> str:
    return textwrap.dedent(
        f'''\
        """Benchmark code location: every model of project '{PROJECT_NAME}' is an asset; job {JOB_NAME}."""

        from pathlib import Path

        from dagctl_dagster import load_definitions

        defs = load_definitions(Path(__file__).resolve().parent / ".dagctl" / "{config_name}")
        '''
    )


def multiprocess_definitions_source(config_name: str) -> str:
    return textwrap.dedent(
        f'''\
        """The same per-model assets, job {JOB_NAME} on Dagster's multiprocess executor (a process per step)."""

        from pathlib import Path

        import dagster as dg

        from dagctl_dagster import load_definitions

        def _on_multiprocess_executor() -> dg.Definitions:
            base = load_definitions(Path(__file__).resolve().parent / ".dagctl" / "{config_name}")
            model_keys = base.get_repository_def().get_job("{JOB_NAME}").asset_layer.executable_asset_keys
            job = dg.define_asset_job(
                "{JOB_NAME}",
                selection=dg.AssetSelection.assets(*model_keys),
                # forkserver is the faster start method (FACTS.md), which favours this contender.
                executor_def=dg.multiprocess_executor.configured(
                    {{"max_concurrent": {CONCURRENT_TASKS}, "start_method": {{"forkserver": {{}}}}}}
                ),
            )
            return dg.Definitions(assets=list(base.assets or []), resources=dict(base.resources or {{}}), jobs=[job])


        defs = _on_multiprocess_executor()
        '''
    )


def _table(layer: int, position: int) -> str:
    return f"m_{layer:03d}_{position:03d}"


def _seed_factor(table: str) -> int:
    return 7 + 2 * int(table.rsplit("_", 1)[1])


def _check_shape(models: int, width: int) -> None:
    if width < 2:
        raise ValueError(f"--width must be at least 2 (each model joins two models of the layer before); got {width}")
    if models < width:
        raise ValueError(f"--models ({models}) must be at least --width ({width}): layer 0 alone has {width} models")
