"""How many rows a model's table holds after an evaluation, where that is known without counting.

Only models whose evaluation rebuilds the whole table (kinds ``FULL`` and ``SEED``) have one:
the rows SQLMesh's execution tracker counted as written by that evaluation (engines whose
adapter tracks them: PostgreSQL, Snowflake, BigQuery, ...), or, on DuckDB, whose cursor
reports no row count (SQLMesh leaves tracking off there), the size DuckDB's catalog keeps for
the table SQLMesh just created with ``CREATE OR REPLACE TABLE ... AS`` (exact for a table
nobody deleted from). An incremental model's batch writes some rows into a table that holds
others, and DuckDB's catalog size counts deleted rows too: no number is given there rather
than a wrong one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagctl_dagster.sqlmesh.internals.scheduling import ScheduledRun


def table_row_count(run: ScheduledRun, name: str, rows_written: int | None) -> int | None:
    """Rows in the physical table of ``name`` after its last evaluation; ``rows_written`` is
    what the tracker counted for that evaluation (None where the engine reports none)."""
    from sqlglot import exp

    scheduler = run.scheduler
    snapshot = scheduler.snapshots_by_name.get(name)
    if snapshot is None or not snapshot.is_model:
        return None
    kind = snapshot.model.kind
    if not (kind.is_full or kind.is_seed):
        return None
    if rows_written is not None:
        return rows_written
    adapter = scheduler.snapshot_evaluator.get_adapter(snapshot.model_gateway)
    if adapter.dialect != "duckdb":
        return None
    table = exp.to_table(
        snapshot.table_name(is_deployable=run.deployability_index.is_deployable(snapshot)), dialect="duckdb"
    )
    query = (
        exp.select("estimated_size")
        .from_(exp.Anonymous(this="duckdb_tables"))
        .where(
            exp.and_(
                exp.column("database_name").eq(exp.Literal.string(table.text("catalog"))),
                exp.column("schema_name").eq(exp.Literal.string(table.text("db"))),
                exp.column("table_name").eq(exp.Literal.string(table.name)),
            )
        )
    )
    row = adapter.fetchone(query)
    return int(row[0]) if row and row[0] is not None else None
