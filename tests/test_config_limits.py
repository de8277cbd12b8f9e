"""Bad config fails fast and clearly: `dagctl-dagster validate` in a subprocess under a memory
limit (RLIMIT_AS) and a timeout. The limits only guard against runaway; each test asserts the
one-line message naming the file and the field, and that no traceback is printed."""

from __future__ import annotations

import math
import os
import resource
import subprocess
from pathlib import Path

import pytest
from conftest import venv_command

from dagctl_dagster.config import ConfigError, load_config
from dagctl_dagster.execution.claims import ClaimStore, ClaimStoreError
from dagctl_dagster.execution.executor import ExecutorConfigError, ExecutorSettings

MEMORY_LIMIT_BYTES = 2 * 1024**3
TIMEOUT_SECONDS = 120

HEADER = "version: 1\nprojects:\n  - name: shop\n    framework: sqlmesh\n    path: shop\n"

ANCHOR_BOMB = "".join(
    f"      {chr(97 + level)}: &{chr(97 + level)} [" + ",".join([f"*{chr(96 + level)}"] * 9) + "]\n"
    for level in range(1, 9)
)


def bomb_in(block: str) -> str:
    """An anchor bomb (9^9 values once expanded) inside ``block`` of the project."""
    return (
        HEADER
        + f"    {block}:\n      a0: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + ANCHOR_BOMB.replace("*`", "*a")
    )


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def validate(repo: Path, *args: str, config: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    command = [venv_command("dagctl-dagster"), "validate", *args]
    if config is not None:
        command += ["--config", str(config)]
    environ = {k: v for k, v in os.environ.items() if k != "DAGCTL_CONFIG"} | env
    return subprocess.run(
        command,
        cwd=repo,
        env=environ,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        preexec_fn=limit_memory,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "shop").mkdir()
    (tmp_path / ".dagctl").mkdir()
    return tmp_path


def write(repo: Path, text: str, name: str = "config.yaml") -> Path:
    path = repo / ".dagctl" / name
    path.write_text(text)
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], path: Path, field: str, words: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: {field}"), line[:500]
    assert words in line, line[:500]
    return line


def test_bomb_has_the_expected_shape():
    # Guards the fixture itself: 9 levels of 9 aliases, under 700 bytes, valid YAML.
    text = bomb_in("alerts")
    assert len(text.encode()) < 700
    assert text.count("*") == 8 * 9


@pytest.mark.parametrize("block", ["alerts", "k8s"])
@pytest.mark.parametrize("flags", [["--config-only"], []])
@pytest.mark.timeout(300)
def test_an_anchor_bomb_is_refused_with_the_field(repo: Path, block: str, flags: list[str]):
    path = write(repo, bomb_in(block))
    result = validate(repo, *flags, config=path)
    assert_one_line_error(result, path, f"projects[0].{block}.", "expands to more than 100000 values")


@pytest.mark.timeout(300)
def test_deep_nesting_is_refused_without_recursion_error(repo: Path):
    path = write(repo, HEADER + "    alerts: " + "[" * 600 + "]" * 600 + "\n")
    result = validate(repo, "--config-only", config=path)
    line = assert_one_line_error(result, path, "projects[0].alerts[0][0]", "nesting is deeper than 40 levels")
    assert "RecursionError" not in line


@pytest.mark.timeout(300)
def test_huge_values_are_refused_and_never_echoed_whole(repo: Path):
    big_file = write(repo, HEADER + "    gateway: '" + "x" * (2 * 1024 * 1024) + "'\n")
    result = validate(repo, "--config-only", config=big_file)
    assert_one_line_error(result, big_file, "", "larger than 1024 KiB")

    long_value = write(repo, HEADER + "    gateway: '" + "x" * 20_000 + "'\n", "long.yaml")
    result = validate(repo, "--config-only", config=long_value)
    line = assert_one_line_error(result, long_value, "projects[0].gateway", "a value of 20000 characters is longer")
    assert len(line) < 1000

    bad_cron = write(repo, HEADER + "    schedule: '" + "y" * 10_000 + "'\n", "cron.yaml")
    result = validate(repo, "--config-only", config=bad_cron)
    line = assert_one_line_error(result, bad_cron, "projects[0].schedule", "... (10000 characters)' is not a cron")
    assert len(line) < 1000


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ("    alerts: {cooldown_minutes: soon}\n", "projects[0].alerts.cooldown_minutes", "valid integer"),
        (
            "    alerts: {thresholds: {history_days: 0}}\n",
            "projects[0].alerts.thresholds.history_days",
            "greater than or equal to 1",
        ),
        ("    alerts: {failure_chanel: '#x'}\n", "projects[0].alerts.failure_chanel", "unknown key"),
        (
            "    state_backup: {schedule: daily}\n",
            "projects[0].state_backup.schedule",
            "'daily' is not a cron expression",
        ),
        (
            "    k8s: {git_sync: {repository: r, mount_path: relative}}\n",
            "projects[0].k8s.git_sync.mount_path",
            "'relative' is not an absolute path; it must start with '/'",
        ),
        (
            "    k8s: {git_sync: {repository: r, link: a/b}}\n",
            "projects[0].k8s.git_sync.link",
            "'a/b' is not a single directory name",
        ),
    ],
)
@pytest.mark.timeout(300)
def test_config_only_catches_what_the_full_load_rejects(repo: Path, extra: str, field: str, words: str):
    path = write(repo, HEADER + extra)
    assert_one_line_error(validate(repo, "--config-only", config=path), path, field, words)


@pytest.mark.parametrize("project_path", ["../../../etc", "/etc", "escape"])
@pytest.mark.timeout(300)
def test_project_paths_must_stay_inside_the_repository(repo: Path, tmp_path_factory, project_path: str):
    outside = tmp_path_factory.mktemp("outside")
    (repo / "escape").symlink_to(outside, target_is_directory=True)
    path = write(repo, HEADER.replace("path: shop", f"path: {project_path}"))
    result = validate(repo, "--config-only", config=path)
    assert_one_line_error(result, path, "projects[0].path", "outside the repository root")


@pytest.mark.timeout(300)
def test_validate_honours_dagctl_config_and_accepts_aliases_within_bounds(repo: Path):
    path = write(
        repo,
        "version: 1\ndefaults: &d {framework: sqlmesh, path: shop}\n".replace("defaults", "x-defaults")
        + "projects:\n  - name: shop\n    framework: sqlmesh\n    path: shop\n",
        "elsewhere.yaml",
    )
    # `x-defaults` is an unknown key: the error proves DAGCTL_CONFIG's file was read.
    result = validate(repo, "--config-only", DAGCTL_CONFIG=str(path))
    assert_one_line_error(result, path, "x-defaults", "unknown key")

    good = write(repo, "version: 1\nprojects:\n  - &p {name: shop, framework: sqlmesh, path: shop}\n", "good.yaml")
    result = validate(repo, "--config-only", DAGCTL_CONFIG=str(good))
    assert (result.returncode, result.stdout) == (0, f"ok: {good} (version 1, 1 projects)\n"), result.stderr


def test_load_config_raises_the_same_one_line_errors(repo: Path):
    path = write(repo, bomb_in("alerts"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.field.startswith("projects[0].alerts.")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("lease", [0.001, 0, -5, 4.9, 86401, math.inf, math.nan, True])
def test_executor_lease_seconds_bounded(lease):
    with pytest.raises(ExecutorConfigError) as raised:
        ExecutorSettings.resolve({"lease_seconds": lease}, environ={})
    assert "executor config `lease_seconds` must be a number of seconds from 5 to 86400" in str(raised.value)


def test_executor_lease_seconds_in_range_accepted():
    assert ExecutorSettings.resolve({"lease_seconds": 5}, environ={}).lease_seconds == 5.0
    assert ExecutorSettings.resolve({}, environ={}).lease_seconds == 60.0


@pytest.mark.parametrize("timeout", [0, 1, 601, -3, 2.5, math.nan, True, "10"])
def test_executor_claims_timeout_seconds_bounded(timeout):
    with pytest.raises(ExecutorConfigError) as raised:
        ExecutorSettings.resolve({"claims_timeout_seconds": timeout}, environ={})
    assert "executor config `claims_timeout_seconds` must be a whole number of seconds from 2 to 600" in str(
        raised.value
    )


def test_executor_claims_timeout_seconds_in_range_accepted():
    assert ExecutorSettings.resolve({"claims_timeout_seconds": 2}, environ={}).claims_timeout_seconds == 2
    assert ExecutorSettings.resolve({}, environ={}).claims_timeout_seconds == 10


def test_claim_store_refuses_a_timeout_out_of_range(tmp_path: Path):
    with pytest.raises(ClaimStoreError, match="timeout_seconds must be a whole number of seconds from 2 to 600"):
        ClaimStore(f"sqlite:///{tmp_path / 'claims.sqlite'}", timeout_seconds=0)


@pytest.mark.parametrize(("lease", "words"), [(math.inf, "at most 86400"), (math.nan, "positive number")])
def test_claim_store_refuses_infinite_and_nan_leases(tmp_path: Path, lease: float, words: str):
    with pytest.raises(ClaimStoreError, match=words):
        ClaimStore(f"sqlite:///{tmp_path / 'claims.sqlite'}", lease_seconds=lease)
