"""What a dbt deploy must build, from the git diff between the last deployed commit and HEAD.

Example::

    from dagctl_dagster.dbt.deploy_scope import deploy_scope

    scope = deploy_scope(Path("dbt/marts"), base_commit="3f2a9c1")
    scope.select        # "stg_orders+ customers+"  (or None: build everything)
    scope.changed_files # ["models/staging/stg_orders.sql", "models/marts/customers.sql"]

Rules:

- a changed model, seed or snapshot file → that node and everything downstream (``name+``);
- a changed schema file under ``models/`` → the models it describes, with their downstream;
- a changed macro, ``dbt_project.yml``, ``profiles.yml`` or package file → a full build;
- no known base commit (first deploy, not a git checkout, history rewritten) → a full build;
- anything else (docs, analyses, READMEs) builds nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from dagctl_dagster.git import GitError, git

FULL_BUILD_FILES = frozenset(
    {"dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml", "package-lock.yml"}
)
FULL_BUILD_DIRS = frozenset({"macros"})
NODE_DIRS = frozenset({"models", "seeds", "snapshots"})
_SNAPSHOT_BLOCK = re.compile(r"{%-?\s*snapshot\s+([A-Za-z_][A-Za-z0-9_]*)\s*-?%}")


@dataclass(frozen=True)
class DeployScope:
    """The nodes one dbt deploy builds, and why.

    ``select`` is ``None`` for a full build, else a ``dbt build --select`` argument.
    """

    full_build: bool
    selectors: tuple[str, ...] = ()
    changed_files: tuple[str, ...] = ()
    reason: str = ""

    @property
    def select(self) -> str | None:
        return None if self.full_build else " ".join(self.selectors)

    @property
    def is_empty(self) -> bool:
        return not self.full_build and not self.selectors

    def describe(self) -> str:
        if self.full_build:
            return f"full build ({self.reason})"
        if self.is_empty:
            return f"nothing to build ({self.reason})"
        return f"dbt build --select {self.select} ({self.reason})"


def changed_files(project_dir: Path, base_commit: str, head: str = "HEAD") -> list[str]:
    """Files under ``project_dir`` that differ between two commits, relative to the project.

    Raises:
        GitError: when ``project_dir`` is not in a git repository or a commit is unknown.
    """
    output = git(project_dir, "diff", "--name-only", "--relative", "--no-renames", base_commit, head, "--", ".")
    return sorted(line for line in output.splitlines() if line)


def deploy_scope(project_dir: Path, base_commit: str | None, head: str = "HEAD") -> DeployScope:
    """The scope of a deploy of the dbt project at ``project_dir`` since ``base_commit``."""
    if base_commit is None:
        return DeployScope(full_build=True, reason="no previously deployed commit is known")
    try:
        files = changed_files(project_dir, base_commit, head)
    except GitError as exc:
        return DeployScope(full_build=True, reason=f"git diff against {base_commit[:12]} failed: {exc}")
    return scope_of_changes(project_dir, files)


def scope_of_changes(project_dir: Path, files: list[str]) -> DeployScope:
    """Apply the scope rules to a list of changed files (paths relative to the project)."""
    changed = tuple(files)
    selectors: list[str] = []
    for name in files:
        path = PurePosixPath(name)
        if path.name in FULL_BUILD_FILES or (path.parts and path.parts[0] in FULL_BUILD_DIRS):
            return DeployScope(full_build=True, changed_files=changed, reason=f"{name} changed")
        if not path.parts or path.parts[0] not in NODE_DIRS:
            continue
        nodes = _nodes_of_file(project_dir, path)
        if nodes is None:
            return DeployScope(full_build=True, changed_files=changed, reason=f"{name} changed and could not be read")
        selectors.extend(f"{node}+" for node in nodes if f"{node}+" not in selectors)
    if not selectors:
        reason = "no model, seed, snapshot or project file changed" if files else "no file changed"
        return DeployScope(full_build=False, changed_files=changed, reason=reason)
    return DeployScope(
        full_build=False,
        selectors=tuple(selectors),
        changed_files=changed,
        reason=f"{len(selectors)} changed node(s) and their downstream",
    )


def _nodes_of_file(project_dir: Path, path: PurePosixPath) -> list[str] | None:
    """The dbt node names a changed file defines; None when a schema file cannot be parsed."""
    if path.suffix in (".sql", ".py", ".csv"):
        if path.parts[0] == "snapshots" and path.suffix == ".sql":
            text = _read(project_dir / path)
            names = _SNAPSHOT_BLOCK.findall(text) if text else []
            return names or [path.stem]
        return [path.stem]
    if path.suffix in (".yml", ".yaml"):
        text = _read(project_dir / path)
        if text is None:  # deleted: its models lost their tests/docs only
            return []
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            return None
        if not isinstance(document, dict):
            return None
        return [
            entry["name"]
            for section in ("models", "seeds", "snapshots")
            for entry in document.get(section) or []
            if isinstance(entry, dict) and entry.get("name")
        ]
    return []


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
