"""The version ranges pyproject.toml declares, as the seams' pin tests compare them."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def declared_range(name: str) -> SpecifierSet:
    """The specifier of ``name`` in [project.dependencies] or an extra (one place in all)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    found = {str(r.specifier) for r in map(Requirement, lines) if r.name == name}
    assert len(found) == 1, f"{name}: declared {sorted(found) or 'nowhere'} in pyproject.toml"
    return SpecifierSet(found.pop())


def assert_seam_covers(name: str, seam_range: str) -> None:
    """The seam's tested range is what pyproject.toml declares, holds the installed version, and
    lies within one minor series (what the seam's pin tests were written for)."""
    declared = declared_range(name)
    assert declared == SpecifierSet(seam_range), f"pyproject.toml declares {name}{declared}, the seam {seam_range}"
    assert Version(version(name)) in declared, f"installed {name} {version(name)} is outside {declared}"
    bounds = {spec.operator: Version(spec.version) for spec in declared}
    assert set(bounds) == {">=", "<"}, f"{name}{declared}: give a lower and an upper bound"
    major, minor = bounds[">="].release[:2]
    assert bounds["<"] == Version(f"{major}.{minor + 1}"), f"{name}{declared} reaches past {major}.{minor}"
