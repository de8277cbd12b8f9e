"""`dagctl-dagster workspace`: a workspace.yaml serving the config as one code location per
project (or per ``location:``), so that one team's broken project stops only its own location."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagctl_dagster.config import LoadedConfig


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
    parser.add_argument(
        "--helm-values",
        default=None,
        help="instead: a values override for the Dagster chart with this values file's user-code "
        "deployment repeated per location (e.g. helm-values/dagster-values.yaml)",
    )
    parser.add_argument("--output", default=None, help="where to write it (default: print it)")
    parser.set_defaults(handler=_workspace)


def _workspace(args: argparse.Namespace) -> int:
    from dagctl_dagster.config import ConfigError, default_config_path, load_config
    from dagctl_dagster.locations import locations, workspace_yaml

    try:
        loaded = load_config(args.config or default_config_path())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    output = Path(args.output) if args.output else None
    if args.helm_values:
        text = _helm_override(loaded, Path(args.helm_values))
    else:
        definitions = Path(args.definitions)
        if not definitions.is_file():
            print(
                f"error: {definitions}: no such file; pass --definitions with the file that serves the config",
                file=sys.stderr,
            )
            return 1
        text = workspace_yaml(loaded, definitions, (output or Path("workspace.yaml")).resolve().parent)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        print(f"wrote {output}: {len(locations(loaded.config))} code locations")
    return 0


def _helm_override(loaded: LoadedConfig, values_path: Path) -> str:
    import yaml

    from dagctl_dagster.locations import helm_user_deployments

    values = yaml.safe_load(values_path.read_text())
    deployments = (values.get("dagster-user-deployments") or {}).get("deployments") or []
    if len(deployments) != 1:
        raise SystemExit(
            f"error: {values_path}: dagster-user-deployments.deployments: give exactly one deployment to repeat "
            f"per location (found {len(deployments)})"
        )
    header = (
        f"# One code server per location of {loaded.path.name} (dagctl-dagster workspace --helm-values "
        f"{values_path}).\n# helm upgrade --install dagster dagster/dagster -f {values_path} -f <this file>\n"
    )
    return header + yaml.safe_dump(helm_user_deployments(loaded, deployments[0]), sort_keys=False)
