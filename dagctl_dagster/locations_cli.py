"""`dagctl-dagster workspace`: a workspace.yaml serving the config as one code location per
project (or per ``location:``), so that one team's broken project stops only its own location."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "workspace", help="write a workspace.yaml with one code location per project or `location:`"
    )
    parser.add_argument("--config", default=None, help="config file (default: $DAGCTL_CONFIG or .dagctl/config.yaml)")
    parser.add_argument(
        "--definitions",
        default="definitions.py",
        help="the definitions.py whose module __getattr__ serves a location by name (default: definitions.py)",
    )
    parser.add_argument("--output", default=None, help="where to write it (default: print it)")
    parser.set_defaults(handler=_workspace)


def _workspace(args: argparse.Namespace) -> int:
    from dagctl_dagster.config import ConfigError, default_config_path, load_config
    from dagctl_dagster.locations import workspace_yaml

    try:
        loaded = load_config(args.config or default_config_path())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    definitions = Path(args.definitions)
    if not definitions.is_file():
        print(
            f"error: {definitions}: no such file; pass --definitions with the file that serves the config",
            file=sys.stderr,
        )
        return 1
    output = Path(args.output) if args.output else None
    text = workspace_yaml(loaded, definitions, (output or Path("workspace.yaml")).resolve().parent)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        print(f"wrote {output}: {text.count('location_name')} code locations")
    return 0
