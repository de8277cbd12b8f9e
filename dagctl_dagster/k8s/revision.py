"""The commit a code location was loaded from, so that its runs execute that commit.

git-sync (v4) checks a commit out at ``<root>/.worktrees/<sha>`` and points ``<root>/<link>``
at it; a code server loading ``<root>/<link>/definitions.py`` therefore loaded ``<sha>``,
even after git-sync moves the link to a newer commit. ``load_definitions`` tags its jobs
with that commit (:data:`~dagctl_dagster.names.CODE_REVISION_TAG`), every run carries the
tag, and the run launcher has the run's git-sync clone exactly that commit.

Example::

    code_revision(Path("/opt/dagster/projects/repo"))   # "3f9c0e1...", or None
"""

from __future__ import annotations

import re
from pathlib import Path

from dagctl_dagster.names import CODE_REVISION_TAG

GIT_SYNC_WORKTREES = ".worktrees"
_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def is_commit(text: str) -> bool:
    """A full SHA-1 or SHA-256 commit id (what git-sync names its worktrees)."""
    return bool(_COMMIT.match(text))


def code_revision(root: Path) -> str | None:
    """The commit of the git-sync checkout ``root`` is (or lies in), else None."""
    resolved = Path(root).resolve()
    for directory in (resolved, *resolved.parents):
        if directory.parent.name == GIT_SYNC_WORKTREES and is_commit(directory.name):
            return directory.name
    return None


def code_revision_tags(root: Path) -> dict[str, str]:
    """``{CODE_REVISION_TAG: <commit>}`` for code loaded from a git-sync checkout, else ``{}``."""
    revision = code_revision(root)
    return {CODE_REVISION_TAG: revision} if revision else {}
