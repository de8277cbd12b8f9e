"""The `dagctl-dagster` command: validate, workspace, claims, models, k8s render, dbt, bench.

Each area registers its own sub-commands (``register(subparsers)`` in its ``cli`` module),
so this file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# module path -> registers sub-commands on the top-level parser
COMMAND_MODULES = (
    "dagctl_dagster.cli_validate",
    "dagctl_dagster.locations_cli",
    "dagctl_dagster.execution.cli",
    "dagctl_dagster.execution.models_cli",
    "dagctl_dagster.k8s.cli",
    "dagctl_dagster.dbt.cli",
    "dagctl_dagster.bench_cli",
)


def build_parser() -> argparse.ArgumentParser:
    from dagctl_dagster.extras import MissingExtra

    parser = argparse.ArgumentParser(prog="dagctl-dagster", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_path in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name == module_path:
                continue
            raise
        except MissingExtra as exc:  # the area's extra is not installed: its command says which
            _register_unavailable(subparsers, module_path.split(".")[-2], str(exc))
            continue
        module.register(subparsers)
    return parser


def _register_unavailable(subparsers: argparse._SubParsersAction, name: str, reason: str) -> None:
    def refuse(_args: argparse.Namespace) -> int:
        print(f"error: {reason}", file=sys.stderr)
        return 1

    command = subparsers.add_parser(name, help=f"(not installed) {reason}")
    command.add_argument("rest", nargs=argparse.REMAINDER)
    command.set_defaults(handler=refuse)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
