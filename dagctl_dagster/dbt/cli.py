"""`dagctl-dagster dbt prepare`: write each dbt project's manifest ahead of time (image builds).

Example (a Dockerfile step)::

    RUN dagctl-dagster dbt prepare --config .dagctl/config.yaml

Like dagster-dbt's ``dagster-dbt project prepare-and-package``: the manifest and its
fingerprint ship in the image, so the code server and run workers start without running dbt.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    dbt = subparsers.add_parser("dbt", help="dbt projects")
    commands = dbt.add_subparsers(dest="dbt_command", required=True)
    prepare = commands.add_parser("prepare", help="parse every dbt project whose manifest is missing or stale")
    prepare.add_argument("--config", default=None, help="config file (default: $DAGCTL_CONFIG or .dagctl/config.yaml)")
    prepare.add_argument("--project", default=None, help="only this project (default: every dbt project)")
    prepare.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from dagctl_dagster.config import ConfigError, default_config_path, load_config
    from dagctl_dagster.dbt.manifest import manifest_is_current, open_dbt_project, prepare_manifest
    from dagctl_dagster.errors import ProjectLoadError

    try:
        loaded = load_config(args.config or default_config_path())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    projects = [p for p in loaded.projects if p.framework == "dbt" and args.project in (None, p.name)]
    if not projects:
        print(
            f"error: {loaded.path}: no dbt project{f' named {args.project!r}' if args.project else ''}", file=sys.stderr
        )
        return 1
    for project in projects:
        profiles_dir = loaded.profiles_dir(project)
        try:
            dbt_project = open_dbt_project(
                project.name, loaded.project_dir(project), target=project.target, profiles_dir=profiles_dir
            )
            state = "up to date" if manifest_is_current(dbt_project) else "parsed"
            manifest = prepare_manifest(project.name, dbt_project)
        except ProjectLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{project.name}: {state}: {manifest}")
    return 0
