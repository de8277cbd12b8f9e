"""Several SQLMesh repositories in one `.dagctl/config.yaml`.

A SQLMesh multi-repository layout (each repository's config names a `project:`, one reads
another's models) loads into one Context: every model is exactly one asset, of the project
whose repository defines it, with the edge across repositories; a run over both executes
them in dependency order. Projects that are not such a layout but define the same model
are refused by `validate` with the two project names, not by a code location that fails.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from conftest import venv_command
from projects.sqlmesh_repo import CONFIG_YAML, dagster_env

FIDELITY_MULTI_REPO = Path(__file__).parent / "fidelity" / "projects" / "multi_repo"


def _two_projects_with_one_model(root: Path) -> Path:
    for name in ("a", "b"):
        (root / name / "models").mkdir(parents=True)
        (root / name / "config.yaml").write_text(CONFIG_YAML)
        (root / name / "models" / "orders.sql").write_text("MODEL (name shared.orders, kind FULL);\nSELECT 1 AS id\n")
    (root / ".dagctl").mkdir()
    (root / ".dagctl" / "config.yaml").write_text(
        "version: 1\nprojects:\n"
        "  - {name: a, framework: sqlmesh, path: a}\n"
        "  - {name: b, framework: sqlmesh, path: b}\n"
    )
    return root


@pytest.mark.timeout(300)
def test_validate_names_both_projects_that_define_one_model(tmp_path: Path):
    root = _two_projects_with_one_model(tmp_path / "repo")
    result = subprocess.run(
        [venv_command("dagctl-dagster"), "validate"], cwd=root, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 1
    assert "projects 'a' and 'b' both define the model with asset key 'shared/orders'" in result.stderr
    assert "`project:`" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _copy_multi_repo(destination: Path) -> Path:
    shutil.copytree(FIDELITY_MULTI_REPO, destination, ignore=shutil.ignore_patterns("*.duckdb", ".cache", "logs"))
    return destination


@pytest.mark.timeout(300)
def test_two_repositories_are_one_graph_with_one_asset_per_model(tmp_path: Path):
    from dagctl_dagster import load_definitions

    root = _copy_multi_repo(tmp_path / "multi")
    defs = load_definitions(root / ".dagctl" / "config.yaml")
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    by_group = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_executable:
            by_group.setdefault(node.group_name, set()).add(key.to_user_string())
    repo_1, repo_2 = by_group["repo_1"], by_group["repo_2"]
    assert repo_1 and repo_2 and not repo_1 & repo_2
    crossing = [
        (parent.to_user_string(), key.to_user_string())
        for key in graph.get_all_asset_keys()
        if key.to_user_string() in repo_2
        for parent in graph.get(key).parent_keys
        if parent.to_user_string() in repo_1
    ]
    assert crossing, "a repo_2 model reads a repo_1 model: the edge must cross the projects"


@pytest.mark.timeout(600)
def test_one_run_over_both_repositories_executes_them_in_dependency_order(tmp_path: Path):
    root = _copy_multi_repo(tmp_path / "multi")
    (root / "definitions.py").write_text(
        "from dagctl_dagster import load_definitions\n"
        f"defs = load_definitions({str(root / '.dagctl' / 'config.yaml')!r})\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            venv_command("dagster"),
            "asset",
            "materialize",
            "-f",
            str(root / "definitions.py"),
            "--select",
            "group:repo_1 or group:repo_2",
        ],
        cwd=elsewhere,
        env=dagster_env(home),
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        logs = instance.all_logs(run.run_id)
    finished_at = {r.step_key: r.timestamp for r in logs if r.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS}
    started_at = {r.step_key: r.timestamp for r in logs if r.dagster_event_type == dg.DagsterEventType.STEP_START}
    crossing = _crossing_edges(root)
    assert crossing
    for parent_step, child_step in crossing:
        assert finished_at[parent_step] <= started_at[child_step], (parent_step, child_step)
    # The group's warehouse: the database file beside both repositories, as `sqlmesh -p repo_1
    # -p repo_2` run from their parent directory writes it.
    assert (root / "db.duckdb").exists() and not (elsewhere / "db.duckdb").exists()


def _crossing_edges(root: Path) -> list[tuple[str, str]]:
    """(step of a repo_1 model, step of a repo_2 model reading it), from the asset graph."""
    from dagctl_dagster import load_definitions

    graph = load_definitions(root / ".dagctl" / "config.yaml").get_repository_def().asset_graph
    group_of = {key: graph.get(key).group_name for key in graph.get_all_asset_keys()}

    def step(key: dg.AssetKey) -> str:
        return "__".join([group_of[key], *key.path])

    return [
        (step(parent), step(key))
        for key, group in group_of.items()
        if group == "repo_2"
        for parent in graph.get(key).parent_keys
        if group_of.get(parent) == "repo_1"
    ]
