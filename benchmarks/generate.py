"""Synthetic SQLMesh projects for the benchmarks: N models in a layered DAG, in several shapes.

Layer 0 holds ``width`` seed-like models that each generate ``rows`` rows with
``generate_series`` (DuckDB and PostgreSQL alike); every model of a later layer joins two
models of the layer before it on ``id``, so every FULL or VIEW model holds exactly ``rows``
rows and an INCREMENTAL_BY_TIME_RANGE model ``rows`` per interval it computed — which is
what the contenders' correctness checks assert (:func:`expected_row_counts`).

A :class:`Shape` says the size (models, layer width, rows), the kinds (``full``: every
model FULL; ``mix``: from layer 1 on, FULL, VIEW and INCREMENTAL_BY_TIME_RANGE in turn,
the incremental ones with :data:`INCREMENTAL_INTERVALS` daily intervals due, one batch
each) and the warehouse (``duckdb``; or ``latency``: PostgreSQL, each model's query sleeps
100-300 ms with ``pg_sleep``, as a remote warehouse's round trips would).

Gateways keep SQLMesh's own defaults unless ``concurrent_tasks`` is given: a DuckDB
connection then runs one task at a time (SQLMesh's default 1, as ``sqlmesh init`` writes
it), a PostgreSQL connection four.

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
FLOOR_JOB_NAME = "floor_run"
CONCURRENT_TASKS = 5  # the multiprocess row's max_concurrent
MODEL_START = "2026-01-01"
INCREMENTAL_INTERVALS = 5
INCREMENTAL_END = "2026-01-05"  # MODEL_START + INCREMENTAL_INTERVALS - 1 days: a fixed count of intervals
KINDS = ("full", "mix")
WAREHOUSES = ("duckdb", "latency")
# SQLMesh's own defaults (ConnectionConfig.concurrent_tasks) when a gateway does not set it.
SQLMESH_DEFAULT_TASKS = {"duckdb": 1, "postgres": 4}
LATENCY_SLEEP_S = (0.1, 0.3)


@dataclass(frozen=True)
class Shape:
    """One generated project's shape; ``concurrent_tasks`` None keeps SQLMesh's default."""

    models: int
    width: int
    rows: int = ROWS
    kinds: str = "full"
    warehouse: str = "duckdb"
    concurrent_tasks: int | None = None
    schema: str = SCHEMA  # the models' schema; projects sharing a deployment each need their own

    def __post_init__(self) -> None:
        _check_shape(self.models, self.width)
        if not self.schema.isidentifier():
            raise ValueError(f"schema must be a plain SQL identifier (got {self.schema!r})")
        if self.kinds not in KINDS:
            raise ValueError(f"kinds must be one of {', '.join(KINDS)} (got {self.kinds!r})")
        if self.warehouse not in WAREHOUSES:
            raise ValueError(f"warehouse must be one of {', '.join(WAREHOUSES)} (got {self.warehouse!r})")
        if self.rows < 1:
            raise ValueError(f"--rows must be at least 1 (got {self.rows})")
        if self.concurrent_tasks is not None and self.concurrent_tasks < 1:
            raise ValueError(f"--concurrent-tasks must be at least 1 (got {self.concurrent_tasks})")

    @property
    def engine(self) -> str:
        return "postgres" if self.warehouse == "latency" else "duckdb"

    @property
    def tasks(self) -> int:
        """The ``concurrent_tasks`` both contenders run with."""
        return self.concurrent_tasks or SQLMESH_DEFAULT_TASKS[self.engine]

    @property
    def slug(self) -> str:
        slug = f"n{self.models}_w{self.width}_r{self.rows}_{self.kinds}_{self.warehouse}_t{self.tasks}"
        return slug if self.schema == SCHEMA else f"{slug}_{self.schema}"

    def describe(self) -> str:
        kinds = "FULL" if self.kinds == "full" else "FULL/VIEW/INCREMENTAL mix"
        where = "DuckDB" if self.warehouse == "duckdb" else "PostgreSQL, 100-300 ms per query"
        return f"N={self.models}, width {self.width}, {_rows(self.rows)} rows, {kinds}, {where}, concurrent_tasks {self.tasks}"


class RepositoryRoot:
    """The files at the root of every generated repository: its dagctl config and the
    ``definitions.py`` that loads it (``root`` is the dataclass field of each)."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / ".dagctl" / "config.yaml"

    @property
    def definitions(self) -> Path:
        return self.root / "definitions.py"


@dataclass(frozen=True)
class GeneratedRepository(RepositoryRoot):
    """Where a generated benchmark repository keeps its parts."""

    root: Path
    shape: Shape

    @property
    def models(self) -> int:
        return self.shape.models

    @property
    def width(self) -> int:
        return self.shape.width

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
    def postgres_config_path(self) -> Path:
        return self.root / ".dagctl" / "config.postgres.yaml"

    @property
    def definitions_postgres(self) -> Path:
        return self.root / "definitions_postgres.py"

    @property
    def definitions_multiprocess(self) -> Path:
        return self.root / "definitions_multiprocess.py"

    @property
    def definitions_floor(self) -> Path:
        return self.root / "definitions_floor.py"

    def model_names(self) -> list[str]:
        return [f"{self.shape.schema}.{name}" for name in model_table_names(self.models, self.width)]

    def expected_row_counts(self) -> dict[str, int]:
        return expected_row_counts(self.shape)


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


def model_kind(shape: Shape, table: str) -> str:
    """``FULL``, ``VIEW`` or ``INCREMENTAL_BY_TIME_RANGE`` for a model of ``shape``."""
    layer, position = (int(part) for part in table.split("_")[1:])
    if shape.kinds == "full" or layer == 0:
        return "FULL"
    return ("FULL", "VIEW", "INCREMENTAL_BY_TIME_RANGE")[position % 3]


def expected_row_counts(shape: Shape) -> dict[str, int]:
    """Each model table → the rows it holds after a run that computed everything due."""
    return {
        table: shape.rows * (INCREMENTAL_INTERVALS if model_kind(shape, table) == "INCREMENTAL_BY_TIME_RANGE" else 1)
        for table in model_table_names(shape.models, shape.width)
    }


def generate_repository(
    root: Path,
    *,
    models: int | None = None,
    width: int | None = None,
    shape: Shape | None = None,
) -> GeneratedRepository:
    """Write a benchmark repository at ``root`` (overwriting generated files) and return it."""
    if shape is None:
        if models is None or width is None:
            raise ValueError("generate_repository needs a shape, or models and width")
        shape = Shape(models=models, width=width)
    repo = GeneratedRepository(root=Path(root).resolve(), shape=shape)
    models_dir = repo.project_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for stale in models_dir.glob("*.sql"):
        stale.unlink()
    for table, upstream in upstream_tables(shape.models, shape.width).items():
        (models_dir / f"{table}.sql").write_text(model_sql(table, upstream, shape))
    (repo.project_dir / "config.yaml").write_text(sqlmesh_config(repo))
    repo.config_path.parent.mkdir(parents=True, exist_ok=True)
    repo.config_path.write_text(dagctl_config(gateway="postgres" if shape.warehouse == "latency" else "local"))
    repo.postgres_config_path.write_text(dagctl_config(gateway="postgres"))
    repo.definitions.write_text(definitions_source(repo.config_path.name))
    repo.definitions_postgres.write_text(definitions_source(repo.postgres_config_path.name))
    repo.definitions_multiprocess.write_text(multiprocess_definitions_source(repo.postgres_config_path.name))
    repo.definitions_floor.write_text(floor_definitions_source(shape.models, shape.width))
    (repo.root / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: definitions.py\n      location_name: bench\n"
    )
    return repo


def model_sql(table: str, upstream: tuple[str, ...], shape: Shape | None = None) -> str:
    shape = shape or _DEFAULT_SHAPE
    kind = model_kind(shape, table)
    incremental = kind == "INCREMENTAL_BY_TIME_RANGE"
    header = _model_header(shape.schema, table, kind)
    day = "  CAST(@start_ds AS DATE) AS ds,\n" if incremental else ""
    if not upstream:
        body = (
            "SELECT\n"
            "  r.i AS id,\n"
            "  r.i % 97 AS bucket,\n"
            f"  (r.i * {_seed_factor(table)}) % 1000 AS amount\n"
            f"FROM generate_series(0, {shape.rows - 1}) AS r(i)\n"
        )
        return header + body + _latency_join(shape, table)
    left, right = upstream
    body = (
        "SELECT\n"
        "  l.id AS id,\n"
        "  l.bucket AS bucket,\n"
        f"{day}"
        "  (l.amount + r.amount) % 1000 AS amount\n"
        f"FROM {_read(shape, left)} AS l\n"
        f"JOIN {_read(shape, right)} AS r\n"
        "  ON l.id = r.id\n"
    )
    return header + body + _latency_join(shape, table)


def _model_header(schema: str, table: str, kind: str) -> str:
    if kind == "INCREMENTAL_BY_TIME_RANGE":
        return (
            f"MODEL (\n  name {schema}.{table},\n"
            "  kind INCREMENTAL_BY_TIME_RANGE (time_column ds, batch_size 1),\n"
            f"  start '{MODEL_START}',\n  end '{INCREMENTAL_END}',\n"
            "  grain (id, ds)\n);\n\n"
        )
    return f"MODEL (\n  name {schema}.{table},\n  kind {kind},\n  grain id\n);\n\n"


def _read(shape: Shape, table: str) -> str:
    """An upstream table, one interval of it when it is incremental (keeps joins one-to-one)."""
    if model_kind(shape, table) != "INCREMENTAL_BY_TIME_RANGE":
        return f"{shape.schema}.{table}"
    return f"(SELECT * FROM {shape.schema}.{table} WHERE ds = CAST('{MODEL_START}' AS DATE))"


def _latency_join(shape: Shape, table: str) -> str:
    """On the latency warehouse, the query waits 100-300 ms in the server (once per query)."""
    if shape.warehouse != "latency":
        return ""
    low, high = LATENCY_SLEEP_S
    layer, position = (int(part) for part in table.split("_")[1:])
    seconds = low + (high - low) * (((layer * 7 + position * 13) % 11) / 10)
    return f"CROSS JOIN (SELECT pg_sleep({seconds:.2f})) AS latency\n"


def sqlmesh_config(repo: GeneratedRepository) -> str:
    shape = repo.shape
    tasks = f"\n              concurrent_tasks: {shape.concurrent_tasks}" if shape.concurrent_tasks else ""
    dialect = "postgres" if shape.warehouse == "latency" else "duckdb"
    default_gateway = "postgres" if shape.warehouse == "latency" else "local"
    return textwrap.dedent(
        f"""\
        # Generated by benchmarks/generate.py: {shape.describe()}.
        gateways:
          local:
            connection:
              type: duckdb
              database: {repo.warehouse}{tasks}
            state_connection:
              type: duckdb
              database: {repo.state_db}
          postgres:
            connection:
              type: postgres
              host: "{{{{ env_var('BENCH_PG_HOST', '127.0.0.1') }}}}"
              port: "{{{{ env_var('BENCH_PG_PORT', '5432') }}}}"
              user: "{{{{ env_var('BENCH_PG_USER', 'postgres') }}}}"
              password: "{{{{ env_var('BENCH_PG_PASSWORD', '') }}}}"
              database: "{{{{ env_var('BENCH_PG_DATABASE', 'bench') }}}}"{tasks}
        default_gateway: {default_gateway}
        model_defaults:
          dialect: {dialect}
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


def floor_definitions_source(models: int, width: int) -> str:
    """Stock Dagster doing nothing: no-op assets with the project's names and dependencies.

    Job ``floor_run`` runs them on Dagster's own in-process executor, so its time is what
    Dagster needs for this many asset steps before any model is evaluated.
    """
    return textwrap.dedent(
        f'''\
        """Dagster's floor: {models} no-op assets shaped like project '{PROJECT_NAME}'; job {FLOOR_JOB_NAME}."""

        import dagster as dg

        UPSTREAM = {upstream_tables(models, width)!r}


        def _no_op_asset(name: str, upstream: tuple[str, ...]) -> dg.AssetsDefinition:
            @dg.asset(name=name, deps=list(upstream))
            def _asset() -> dg.MaterializeResult:
                return dg.MaterializeResult()

            return _asset


        defs = dg.Definitions(
            assets=[_no_op_asset(name, upstream) for name, upstream in UPSTREAM.items()],
            jobs=[dg.define_asset_job("{FLOOR_JOB_NAME}", executor_def=dg.in_process_executor)],
        )
        '''
    )


def _table(layer: int, position: int) -> str:
    return f"m_{layer:03d}_{position:03d}"


def _seed_factor(table: str) -> int:
    return 7 + 2 * int(table.rsplit("_", 1)[1])


def _rows(rows: int) -> str:
    return f"{rows // 1000}k" if rows >= 1000 and rows % 1000 == 0 else str(rows)


def _check_shape(models: int, width: int) -> None:
    if width < 2:
        raise ValueError(f"--width must be at least 2 (each model joins two models of the layer before); got {width}")
    if models < width:
        raise ValueError(f"--models ({models}) must be at least --width ({width}): layer 0 alone has {width} models")


_DEFAULT_SHAPE = Shape(models=2, width=2)
