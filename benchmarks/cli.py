"""Command-line options of the benchmark, shared by `dagctl-dagster bench` and `python benchmarks/run.py`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmarks.harness import SECTIONS

    parser.add_argument("--models", default="100,500", help="SQLMesh sweep: model counts (default 100,500)")
    parser.add_argument("--widths", default="5,20,50", help="SQLMesh sweep: models per DAG layer (default 5,20,50)")
    parser.add_argument("--rows", default="1000,100000", help="SQLMesh sweep: rows per table (default 1000,100000)")
    parser.add_argument(
        "--sweep",
        choices=("full", "axes", "concurrency"),
        default="full",
        help="full: every models x widths x rows "
        "(default); axes: a base shape, each axis varied alone, and the largest corner; concurrency: every "
        "models x widths at the fewest rows for concurrent_tasks 1, 4 and 8, on DuckDB and on the latency "
        "warehouse (N 100 and 500 there), with stock Dagster's floor beside every DuckDB shape",
    )
    parser.add_argument(
        "--concurrent-tasks",
        help="SQLMesh gateways' concurrent_tasks for both contenders, comma-separated: an axis of the sweep "
        "(default: SQLMesh's own, DuckDB 1 and PostgreSQL 4; 1,4,8 for --sweep concurrency); also "
        "MAX_CONCURRENT_MODELS",
    )
    parser.add_argument(
        "--dagster-storage",
        default="sqlite",
        help="Dagster instance storages, comma-separated: sqlite (a new DAGSTER_HOME, the default) and/or "
        "postgres (dagster-postgres in a new database of the benchmark's PostgreSQL server, as a deployment runs); "
        "every Dagster contender runs on each",
    )
    parser.add_argument(
        "--floors",
        choices=("each", "base"),
        help="stock Dagster's floor beside every shape of the sweep (each; default for --sweep concurrency) "
        "or in the floor section's base shape only (base; default otherwise)",
    )
    parser.add_argument(
        "--kinds-models", type=int, default=100, help="size of the FULL/VIEW/INCREMENTAL mix (default 100)"
    )
    parser.add_argument(
        "--latency-models",
        help="sizes of the PostgreSQL latency projects, comma-separated (default 100; 100,500 for --sweep concurrency)",
    )
    parser.add_argument("--dbt-models", default="8,200", help="dbt project sizes (default 8,200)")
    parser.add_argument("--dbt-threads", type=int, default=5, help="dbt --threads for both contenders (default 5)")
    parser.add_argument(
        "--peer-python",
        type=Path,
        help="python of a separate virtualenv with dagster-sqlmesh "
        "(default: $DAGCTL_BENCH_PEER_PYTHON; without it the peer row is left out)",
    )
    parser.add_argument("--peer-models", type=int, default=100, help="size of the peer comparison (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each contender (default 3)")
    parser.add_argument(
        "--multiprocess-models", type=int, default=100, help="project size of the multiprocess row (default 100)"
    )
    parser.add_argument(
        "--load-models", type=int, default=1000, help="project size of the load-time row (default 1000)"
    )
    parser.add_argument("--rss-models", type=int, default=1000, help="project size of the peak-RSS row (default 1000)")
    parser.add_argument("--claim-clients", type=int, default=8, help="concurrent claim-store clients (default 8)")
    parser.add_argument(
        "--claim-seconds", type=float, default=10.0, help="duration of the claim-store load (default 10)"
    )
    parser.add_argument(
        "--platform-projects",
        type=int,
        default=10,
        help="platform section: projects in one deployment, the last a dbt project (default 10)",
    )
    parser.add_argument(
        "--platform-models",
        type=int,
        default=2000,
        help="platform section: models in total, split evenly over the projects (default 2000)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated sections to leave out: {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: every section at 20 models (dbt 8, latency 10, platform 2 projects of 10), "
        "width 5, 1k rows, one repetition",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where generated projects go (default: a temporary directory, removed)"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory for inspection")
    parser.add_argument(
        "--postgres-url",
        help="PostgreSQL server for the multiprocess and claims rows "
        "(default: $DAGCTL_BENCH_POSTGRES_URL, else an embedded server)",
    )
    parser.add_argument(
        "--write-results", action="store_true", help=f"update {RESULTS_PATH.name} with the table and machine"
    )


def options_from_args(args: argparse.Namespace):
    from benchmarks.harness import BenchOptions

    models = _integers(args.models, "--models", "100,500")
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    common = dict(
        skip=skip,
        workdir=args.workdir,
        keep_workdir=args.keep_workdir,
        postgres_url=args.postgres_url,
        claim_clients=args.claim_clients,
        concurrent_tasks=_integers(args.concurrent_tasks, "--concurrent-tasks", "1,4,8")
        if args.concurrent_tasks
        else None,
        dagster_storage=[part.strip() for part in args.dagster_storage.split(",") if part.strip()],
        floors=args.floors,
        dbt_threads=args.dbt_threads,
        peer_python=args.peer_python,
        sweep_mode=args.sweep,
    )
    try:
        if args.quick:
            return BenchOptions.quick(**common)
        return BenchOptions(
            models=models,
            widths=_integers(args.widths, "--widths", "5,20,50"),
            rows=_integers(args.rows, "--rows", "1000,100000"),
            kinds_models=args.kinds_models,
            latency_models=_integers(args.latency_models, "--latency-models", "100,500")
            if args.latency_models
            else ([100, 500] if args.sweep == "concurrency" else [100]),
            dbt_models=_integers(args.dbt_models, "--dbt-models", "8,200"),
            peer_models=args.peer_models,
            repeats=args.repeats,
            multiprocess_models=args.multiprocess_models,
            load_models=args.load_models,
            rss_models=args.rss_models,
            claim_seconds=args.claim_seconds,
            platform_projects=args.platform_projects,
            platform_models=args.platform_models,
            **common,
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def _integers(raw: str, option: str, example: str) -> list[int]:
    try:
        values = [int(part) for part in str(raw).split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"{option}: expected comma-separated integers such as {example} (got {raw!r})") from None
    if not values:
        raise SystemExit(f"{option}: expected at least one integer, such as {example}")
    return values


def run_from_args(args: argparse.Namespace, *, command: str) -> int:
    """Run the benchmark, print the table, and with --write-results update RESULTS.md."""
    from benchmarks.contenders import ContenderFailed
    from benchmarks.harness import BenchResults, run_benchmarks
    from benchmarks.report import markdown_table, results_section, write_results

    options = options_from_args(args)
    results = BenchResults()
    try:
        run_benchmarks(options, results=results)
    except (ContenderFailed, KeyboardInterrupt) as exc:
        print(f"benchmark failed: {exc or 'interrupted'}", file=sys.stderr)
        if results.rows:
            print("Sections finished before the failure (not written to RESULTS.md):", file=sys.stderr)
            print(markdown_table(results.rows), file=sys.stderr)
        return 1
    print(markdown_table(results.rows))
    for note in results.notes:
        print(f"- {note}")
    if args.write_results:
        write_results(RESULTS_PATH, results_section(results.rows, command=command, notes=results.notes))
        print(f"updated {RESULTS_PATH}", file=sys.stderr)
    return 0


def command_line(argv: list[str], program: str) -> str:
    return " ".join([program, *(shlex.quote(a) for a in argv)])
