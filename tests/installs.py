"""Fresh virtual environments outside the repository, made with uv, shared by test workers.

A venv costs tens of seconds, so each one is made once per test session: in a directory all
pytest-xdist workers share, under a file lock, with a marker written only when it is complete.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.parser import Parser
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement

# dagster-dbt asks for sqlglot[rs], whose compiled build breaks `import sqlmesh`; a uv
# project says `override-dependencies = ["sqlglot==30.8.0"]`, as pyproject.toml does.
SQLGLOT_OVERRIDE = "sqlglot==30.8.0"
INSTALL_TIMEOUT_S = 600


INSTALLS_ENV = "DAGCTL_TEST_INSTALLS"
# Set beside INSTALLS_ENV when this session made the directory (and so deletes what is in it).
OWNED_ENV = "DAGCTL_TEST_INSTALLS_OWNED"


def make_installs_root() -> None:
    """Called once per test session, before xdist starts its workers (they inherit the variable).

    Not under pytest's basetemp: a concurrent pytest session prunes older basetemp
    directories, which would delete a venv while a test runs in it."""
    if INSTALLS_ENV not in os.environ:  # set by hand: kept after the session, to look into
        _made.append(tempfile.mkdtemp(prefix="dagctl-installs-"))
        os.environ[INSTALLS_ENV] = _made[0]
        os.environ[OWNED_ENV] = "1"


def remove_installs_root() -> None:
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)


_made: list[str] = []


def shared_dir(name: str) -> Path:
    """A directory every xdist worker of this session sees."""
    path = Path(os.environ[INSTALLS_ENV]) / name
    path.mkdir(exist_ok=True)
    return path


def discard_shared_dir(name: str) -> None:
    """Delete ``shared_dir(name)`` once the one test module using it is done.

    A venv is some 50,000 files: deleted here, on the worker, beside the other workers'
    tests, rather than by :func:`remove_installs_root` at the session's end, when nothing
    else runs. Kept when the directory was set by hand (INSTALLS_ENV), to look into."""
    if os.environ.get(OWNED_ENV) == "1":
        shutil.rmtree(Path(os.environ[INSTALLS_ENV]) / name, ignore_errors=True)


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    with open(path.parent / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def once(path: Path, make: Callable[[Path], None]) -> Path:
    """``make(path)`` unless another worker already completed it."""
    done = path.parent / f"{path.name}.done"
    with exclusive(path):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            make(path)
            done.touch()
    return path


# Set on the CI machines: with it, every process in a fresh venv would compile each module it
# imports (Dagster, SQLMesh, dbt) from source; without it, the first process writes the
# bytecode a pip-installed environment has, and later ones read it.
NO_BYTECODE_ENV = "PYTHONDONTWRITEBYTECODE"


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not on PATH: run scripts/bootstrap.sh, which installs it")
    return found


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command; a failure shows its output."""
    kwargs.setdefault("timeout", INSTALL_TIMEOUT_S)
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def interpreter(version: str) -> str:
    """A CPython ``version`` (e.g. "3.12") on this machine: $DAGCTL_TEST_PYTHON_3_12, pyenv's, or PATH's."""
    variable = "DAGCTL_TEST_PYTHON_" + version.replace(".", "_")
    candidates = [os.environ.get(variable, "")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.startswith(version + "."):
            return candidate
    pytest.fail(
        f"no Python {version} on this machine (looked at ${variable}, {pyenv_root}/versions, PATH): "
        f"install one (`pyenv install {version}`) or set {variable} to its path"
    )


def build_wheel(out_dir: Path) -> Path:
    run([uv(), "build", "--wheel", "--quiet", "--out-dir", str(out_dir), str(REPO_ROOT)])
    (wheel,) = out_dir.glob("dagctl_dagster-*.whl")
    return wheel


def wheel_requirements(wheel: Path, extras: set[str]) -> list[Requirement]:
    """The wheel's own dependencies with the given extras (markers dropped)."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist") or []
    chosen = []
    for line in lines:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
            requirement.marker = None
            chosen.append(requirement)
    return chosen


def make_venv(path: Path, python: str) -> Path:
    run([uv(), "venv", "--quiet", "--python", python, str(path)])
    return path / "bin" / "python"


def installed_versions(python: Path) -> dict[str, str]:
    listing = run([uv(), "pip", "list", "--python", str(python), "--format", "freeze"]).stdout
    pairs = (line.split("==") for line in listing.splitlines() if "==" in line)
    return {name.lower().replace("_", "-"): version for name, version in pairs}
