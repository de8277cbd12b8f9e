"""The few git questions the code location asks of the checkout it was loaded from."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["GitError", "git", "head_commit"]


class GitError(RuntimeError):
    """git could not answer (not a repository, unknown commit, git missing)."""


def head_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory``'s git repository, or None when it is not one."""
    try:
        return git(directory, "rev-parse", "HEAD")
    except GitError:
        return None


def git(directory: Path, *args: str) -> str:
    """``git -C directory args...``'s output; :class:`GitError` with git's last line on failure."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(str(exc)) from exc
    if completed.returncode != 0:
        raise GitError((completed.stderr.strip().splitlines() or ["git failed"])[-1])
    return completed.stdout.strip()
