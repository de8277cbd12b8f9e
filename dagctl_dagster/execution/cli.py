"""`dagctl-dagster claims`: inspect and free model claims.

    dagctl-dagster claims list [--url URL]
    dagctl-dagster claims release --run-id RUN_ID [--force] [--url URL]

``list`` shows each holder run's status as the Dagster instance (``$DAGSTER_HOME``) knows
it. ``release`` refuses the live (unexpired) claims of a run that is not known to be
finished: freeing them lets another run evaluate the same models while this one may still
be working on them. ``--force`` releases anyway; the run then notices at its next check
and starts no more of those models, but a model already running finishes.

Without ``--url`` the store is found as a run worker finds it: ``DAGCTL_CLAIMS_URL``, else
the PostgreSQL storage of the instance in ``$DAGSTER_HOME/dagster.yaml``, else
``$DAGSTER_HOME/dagctl_claims.sqlite``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagctl_dagster.execution.claims import ClaimStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("claims", help="list or release model claims")
    commands = parser.add_subparsers(dest="claims_command", required=True)

    list_parser = commands.add_parser("list", help="show every claim: model, run id, since, expires")
    _add_url_argument(list_parser)
    list_parser.set_defaults(handler=_list)

    release_parser = commands.add_parser("release", help="free every claim of one run")
    release_parser.add_argument("--run-id", required=True, help="the Dagster run id whose claims to free")
    release_parser.add_argument(
        "--force",
        action="store_true",
        help="release even when the run may still be running (risks a model evaluated by two runs)",
    )
    _add_url_argument(release_parser)
    release_parser.set_defaults(handler=_release)


def _add_url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="SQLAlchemy URL of the claim store (default: DAGCTL_CLAIMS_URL, the Dagster instance, DAGSTER_HOME)",
    )


def _list(args: argparse.Namespace) -> int:
    from dagctl_dagster.execution.claims import ClaimStoreError

    try:
        store = _open_store(args.url)
        try:
            claims = store.list_claims()
        finally:
            store.dispose()
    except ClaimStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(claims)} claim(s) in {store.masked_url}")
    if claims:
        statuses = _run_statuses({c.run_id for c in claims})
        rows = [
            (
                c.model,
                c.run_id,
                statuses[c.run_id],
                _format_time(c.claimed_at),
                _format_time(c.expires_at) + (" (expired)" if c.expired else ""),
            )
            for c in claims
        ]
        print(_table(("MODEL", "RUN ID", "RUN STATUS", "SINCE", "EXPIRES"), rows))
    return 0


def _release(args: argparse.Namespace) -> int:
    from dagctl_dagster.execution.claims import ClaimStoreError

    try:
        store = _open_store(args.url)
        try:
            live = [c for c in store.list_claims() if c.run_id == args.run_id and not c.expired]
            status = _run_statuses({args.run_id})[args.run_id]
            if live and status not in FINISHED_STATUSES and not args.force:
                print(
                    f"error: run {args.run_id} holds {len(live)} live claim(s) and its status is {status}: "
                    "releasing them lets another run evaluate the same models while this run may still be "
                    "working on them (a model it is running now would be evaluated twice). Terminate the "
                    "run first, wait for its lease to expire, or pass --force.",
                    file=sys.stderr,
                )
                return 1
            released = store.release(args.run_id)
        finally:
            store.dispose()
    except ClaimStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"released {released} claim(s) of run {args.run_id}")
    return 0


FINISHED_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
UNKNOWN_STATUS = "UNKNOWN"


def _run_statuses(run_ids: set[str]) -> dict[str, str]:
    """Each run's Dagster status from the instance in $DAGSTER_HOME; UNKNOWN when it cannot tell."""
    import os

    statuses = dict.fromkeys(run_ids, UNKNOWN_STATUS)
    if not os.environ.get("DAGSTER_HOME"):
        return statuses
    try:
        from dagster import DagsterInstance

        with DagsterInstance.get() as instance:
            for run_id in run_ids:
                run = instance.get_run_by_id(run_id)
                statuses[run_id] = run.status.value if run is not None else "NOT_IN_INSTANCE"
    except Exception:  # an unreadable instance says nothing about the runs
        return dict.fromkeys(run_ids, UNKNOWN_STATUS)
    return statuses


def _open_store(url: str | None) -> ClaimStore:
    from dagctl_dagster.execution.claims import ClaimStore

    return ClaimStore(url) if url else ClaimStore.from_environment()


def _format_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
