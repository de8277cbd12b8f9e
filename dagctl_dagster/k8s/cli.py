"""`dagctl-dagster k8s render`: print a project's run Job manifest, without a cluster.

Example::

    dagctl-dagster k8s render --project analytics --run-id 6f1c... --config .dagctl/config.yaml

The manifest is the one :class:`~dagctl_dagster.k8s.launcher.DagctlK8sRunLauncher` would
create (both use :func:`~dagctl_dagster.k8s.manifest.build_run_job`); Secrets appear only
as references. The launcher settings assumed are the Helm chart's defaults
(:class:`~dagctl_dagster.k8s.manifest.LauncherSettings`).
"""

from __future__ import annotations

import argparse
import sys

from dagctl_dagster.extras import K8S_USERS, is_installed, missing_extra

# The k8s modules (dagster-k8s, the Kubernetes client) load only when `k8s render` runs, so
# every other command starts without them; without the extra, the command says what is missing.
if not (is_installed("dagster_k8s") and is_installed("kubernetes")):
    raise missing_extra("k8s", K8S_USERS)


def register(subparsers: argparse._SubParsersAction) -> None:
    k8s = subparsers.add_parser("k8s", help="Kubernetes run Jobs")
    commands = k8s.add_subparsers(dest="k8s_command", required=True)
    render = commands.add_parser(
        "render", help="print the Job manifest the run launcher would create for a project, as YAML"
    )
    render.add_argument("--project", required=True, help="project name from the config")
    render.add_argument("--run-id", default=None, help="run id to render the Job for (default: a placeholder)")
    render.add_argument("--config", default=None, help="config file (default: $DAGCTL_CONFIG or .dagctl/config.yaml)")
    render.add_argument(
        "--image", default=None, help="run image (default: the project's k8s.image, else a placeholder)"
    )
    render.add_argument(
        "--namespace",
        default=None,
        help="launcher namespace when the project sets none (default: the Dagster Helm chart's launcher namespace)",
    )
    render.set_defaults(handler=_render)


def _render(args: argparse.Namespace) -> int:
    from dagctl_dagster.config import ConfigError, default_config_path, load_config
    from dagctl_dagster.k8s.manifest import (
        PLACEHOLDER_RUN_ID,
        LauncherSettings,
        LiteralSecretError,
        manifest_yaml,
        render_run_job,
    )

    config_path = args.config or default_config_path()
    try:
        loaded = load_config(config_path, check_paths=False)
        project = loaded.config.project(args.project)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"error: {loaded.path}: {exc.args[0]}", file=sys.stderr)
        return 1
    settings = LauncherSettings(namespace=args.namespace) if args.namespace else LauncherSettings()
    try:
        manifest = render_run_job(
            project,
            run_id=args.run_id or PLACEHOLDER_RUN_ID,
            image=args.image,
            settings=settings,
            defaults=loaded.config.k8s_defaults,
        )
    except LiteralSecretError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(manifest_yaml(manifest))
    return 0
