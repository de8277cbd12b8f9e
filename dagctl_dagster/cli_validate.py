"""`dagctl-dagster validate`: check a config file (and its projects) without starting Dagster."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="validate .dagctl/config.yaml and load every project")
    parser.add_argument("--config", default=".dagctl/config.yaml")
    parser.add_argument("--config-only", action="store_true", help="skip loading the projects")
    parser.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from dagctl_dagster.config import ConfigError, load_config
    from dagctl_dagster.errors import ProjectLoadError

    try:
        loaded = load_config(args.config)
        if not args.config_only:
            from dagctl_dagster.definitions import load_definitions

            load_definitions(args.config)
    except (ConfigError, ProjectLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {args.config} (version {loaded.version}, {len(loaded.projects)} projects)")
    return 0
