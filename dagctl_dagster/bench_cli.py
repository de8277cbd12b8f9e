"""``dagctl-dagster bench``: issue 4's benchmark (the harness lives in the checkout's ``benchmarks/``).

Example::

    dagctl-dagster bench --quick
    dagctl-dagster bench --models 100,500 --width 10 --repeats 3 --write-results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the claim-aware executor against native `sqlmesh run` (and more)",
        description="Generate synthetic SQLMesh projects and compare native `sqlmesh run`, the "
        "claim-aware `bench_run` job and Dagster's multiprocess executor; also definitions "
        "load time, run worker peak RSS and claim-store throughput.",
    )
    benchmarks_cli = _benchmarks_cli()
    if benchmarks_cli is None:
        parser.set_defaults(handler=_missing_checkout)
        return
    benchmarks_cli.add_arguments(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    benchmarks_cli = _benchmarks_cli()
    argv = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else []
    return benchmarks_cli.run_from_args(args, command=benchmarks_cli.command_line(argv, "dagctl-dagster bench"))


def _missing_checkout(args: argparse.Namespace) -> int:
    raise SystemExit(
        f"dagctl-dagster bench needs the source checkout's benchmarks/ directory (looked in {CHECKOUT}); "
        "run it from a checkout installed in development mode (uv sync)"
    )


def _benchmarks_cli():
    if not (CHECKOUT / "benchmarks" / "harness.py").is_file():
        return None
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    import benchmarks.cli

    return benchmarks.cli
