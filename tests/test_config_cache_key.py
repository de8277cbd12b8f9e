"""The translation-cache key reads only regular files, streaming, with a per-file size bound."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.sqlmesh import translation_cache
from dagctl_dagster.sqlmesh.translator import DagsterSQLMeshTranslator

PROJECT = ProjectConfig(name="shop", framework="sqlmesh", path="shop")

KEY_SCRIPT = """
import sys
from pathlib import Path
from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.sqlmesh.translation_cache import _cache_key
from dagctl_dagster.sqlmesh.translator import DagsterSQLMeshTranslator
project = ProjectConfig(name="shop", framework="sqlmesh", path="shop")
print(_cache_key(Path(sys.argv[1]), project, DagsterSQLMeshTranslator()))
"""


def key_in_subprocess(project_dir: Path) -> subprocess.CompletedProcess[str]:
    """The key computed in a child limited to 1 GiB of address space, with a timeout."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))

    return subprocess.run(
        [sys.executable, "-c", KEY_SCRIPT, str(project_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def key(project_dir: Path) -> str:
    return translation_cache._cache_key(project_dir, PROJECT, DagsterSQLMeshTranslator())


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    (project / "models").mkdir(parents=True)
    (project / "models" / "orders.sql").write_text("MODEL (name shop.orders); SELECT 1 AS x")
    return project


@pytest.mark.timeout(300)
def test_pipes_and_links_to_devices_are_skipped(project_dir: Path):
    before = key(project_dir)
    os.mkfifo(project_dir / "models" / "pipe.sql")
    (project_dir / "zero.csv").symlink_to("/dev/zero")
    (project_dir / "dangling.sql").symlink_to(project_dir / "missing.sql")
    result = key_in_subprocess(project_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == before
    # a symlink to a regular file still counts
    (project_dir / "linked.sql").symlink_to(project_dir / "models" / "orders.sql")
    assert key(project_dir) != before


@pytest.mark.timeout(300)
def test_large_files_are_keyed_by_size_and_mtime_not_read(project_dir: Path, monkeypatch):
    monkeypatch.setattr(translation_cache, "MAX_KEYED_FILE_BYTES", 1024)
    big = project_dir / "seed.csv"
    big.write_bytes(b"a" * 4096)
    os.utime(big, ns=(1_000_000_000, 1_000_000_000))
    first = key(project_dir)
    big.write_bytes(b"b" * 4096)  # same size, other content
    os.utime(big, ns=(1_000_000_000, 1_000_000_000))
    assert key(project_dir) == first  # content of a file above the bound is not read
    os.utime(big, ns=(2_000_000_000, 2_000_000_000))
    assert key(project_dir) != first


@pytest.mark.timeout(300)
def test_small_files_are_keyed_by_content_and_env_names_across_chunks(project_dir: Path, monkeypatch):
    monkeypatch.setattr(translation_cache, "_CHUNK_BYTES", 16)
    monkeypatch.setenv("SHOP_WAREHOUSE", "one")
    (project_dir / "config.py").write_text("x = 1  # padding......\nos.environ['SHOP_WAREHOUSE']\n")
    first = key(project_dir)
    monkeypatch.setenv("SHOP_WAREHOUSE", "two")
    assert key(project_dir) != first  # the name was found although it spans chunks
    second = key(project_dir)
    (project_dir / "models" / "orders.sql").write_text("MODEL (name shop.orders); SELECT 2 AS x")
    assert key(project_dir) != second


@pytest.mark.timeout(300)
def test_a_large_file_costs_no_memory(project_dir: Path):
    with (project_dir / "big.csv").open("wb") as handle:
        handle.truncate(1536 * 1024**2)  # sparse: larger than the child's address-space limit
    result = key_in_subprocess(project_dir)
    assert result.returncode == 0, result.stderr[-2000:]
