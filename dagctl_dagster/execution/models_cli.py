"""`dagctl-dagster models`: pause, resume and list paused models.

    dagctl-dagster models pause --project P MODEL --reason "..." [--by NAME]
    dagctl-dagster models resume --project P MODEL
    dagctl-dagster models list [--project P]

MODEL is the SQLMesh model name (``demo.orders``), the dbt model name (``orders``) or the
asset key (``demo/orders``). Pauses are kept in the claim store's database, found as run
workers find it (``--url``, ``DAGCTL_CLAIMS_URL``, the instance in ``$DAGSTER_HOME``); with
``$DAGSTER_HOME`` set, the model's asset also records the pause (see
:mod:`dagctl_dagster.execution.pausing`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagctl_dagster.execution.claims import ClaimStore
    from dagctl_dagster.execution.pauses import Pause, PauseStore

_PauseAction = Callable[["PauseStore", str, str], int]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="pause, resume and list paused models")
    commands = parser.add_subparsers(dest="models_command", required=True)

    pause = commands.add_parser("pause", help="runs skip the model and its downstream until it is resumed")
    _common(pause, model=True)
    pause.add_argument("--reason", required=True, help="why; shown in every skip event")
    pause.add_argument("--by", default=None, help="who pauses it (default: the OS user)")
    pause.set_defaults(handler=_pause)

    resume = commands.add_parser("resume", help="lift a pause")
    _common(resume, model=True)
    resume.set_defaults(handler=_resume)

    listing = commands.add_parser("list", help="paused models: model, project, by, since, reason")
    _common(listing, model=False)
    listing.set_defaults(handler=_list)


def _common(parser: argparse.ArgumentParser, *, model: bool) -> None:
    parser.add_argument("--project", required=model, default=None, help="the project (its name in the config)")
    if model:
        parser.add_argument("model", help="SQLMesh model name, dbt model name, or asset key")
    parser.add_argument("--config", default=None, help="config file (default: $DAGCTL_CONFIG or .dagctl/config.yaml)")
    parser.add_argument("--url", default=None, help="claim store URL (default: as run workers find it)")


def _pause(args: argparse.Namespace) -> int:
    return _with_store(args, lambda pauses, key, project: _do_pause(args, pauses, key, project))


def _do_pause(args: argparse.Namespace, pauses: PauseStore, key: str, project: str) -> int:
    pause = pauses.pause(key, project=project, reason=args.reason, by=args.by)
    _record(key, pause)
    print(f"{key} {pause.describe()}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    def resume(pauses: PauseStore, key: str, project: str) -> int:
        if not pauses.resume(key):
            print(
                f"error: {key} (project '{project}') is not paused; `dagctl-dagster models list` shows what is",
                file=sys.stderr,
            )
            return 1
        _record(key, None)
        print(f"{key} resumed: the next run of project '{project}' runs it")
        return 0

    return _with_store(args, resume)


def _list(args: argparse.Namespace) -> int:
    from dagctl_dagster.execution.claims import ClaimStoreError
    from dagctl_dagster.execution.cli import _table
    from dagctl_dagster.execution.pauses import PauseStore

    try:
        store = _open_store(args.url)
        try:
            pauses = PauseStore.of(store).list(args.project)
        finally:
            store.dispose()
    except (ClaimStoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(pauses)} paused model(s)")
    if pauses:
        rows = [(p.model, p.project, p.paused_by, f"{p.paused_at:%Y-%m-%d %H:%M:%S} UTC", p.reason) for p in pauses]
        print(_table(("MODEL", "PROJECT", "BY", "SINCE", "REASON"), rows))
    return 0


def _with_store(args: argparse.Namespace, action: _PauseAction) -> int:
    from dagctl_dagster.config import ConfigError, default_config_path, load_config
    from dagctl_dagster.execution.claims import ClaimStoreError
    from dagctl_dagster.execution.pauses import PauseStore
    from dagctl_dagster.execution.pausing import model_key

    config_path = args.config or default_config_path()
    try:
        loaded = load_config(config_path, check_paths=False)
        try:
            project = loaded.config.project(args.project)
        except KeyError as exc:
            raise ValueError(f"{config_path}: {exc.args[0]}") from None
        key = model_key(project, args.model)
        store = _open_store(args.url)
        try:
            return action(PauseStore.of(store), key, project.name)
        finally:
            store.dispose()
    except (ConfigError, ClaimStoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _record(key: str, pause: Pause | None) -> None:
    """The asset page shows the pause when the CLI can reach the Dagster instance."""
    if not os.environ.get("DAGSTER_HOME"):
        return
    from dagster import DagsterInstance

    from dagctl_dagster.execution.pausing import record_on_asset

    with DagsterInstance.get() as instance:
        record_on_asset(instance, key, pause)


def _open_store(url: str | None) -> ClaimStore:
    from dagctl_dagster.execution.claims import ClaimStore

    return ClaimStore(url) if url else ClaimStore.from_environment()
