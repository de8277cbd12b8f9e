"""`dagctl-dagster validate`: check a config file (and its projects) without starting Dagster.

Every problem is one line on stderr naming the file and the field (exit code 1), never a
traceback; ``--config-only`` checks everything the full load would reject at config level.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="validate .dagctl/config.yaml and load every project")
    parser.add_argument("--config", default=None, help="config file (default: $DAGCTL_CONFIG or .dagctl/config.yaml)")
    parser.add_argument("--config-only", action="store_true", help="skip loading the projects")
    parser.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from dagctl_dagster.config import ConfigError, default_config_path, load_config, shorten
    from dagctl_dagster.errors import ProjectLoadError
    from dagctl_dagster.secrets import redact

    config_path = args.config or default_config_path()
    try:
        loaded = load_config(config_path)
        if not args.config_only:
            import dagster as dg

            from dagctl_dagster.definitions import load_definitions

            # What a code server does on load: duplicate keys and bad jobs surface here.
            dg.Definitions.validate_loadable(load_definitions(config_path))
    except (ConfigError, ProjectLoadError) as exc:
        print(f"error: {_one_line(redact(str(exc)))}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an engine's own error: still one line, no traceback
        message = shorten(_one_line(redact(str(exc))), 500)
        print(f"error: {config_path}: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    print(f"ok: {config_path} (version {loaded.version}, {len(loaded.projects)} projects)")
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())
