"""The README leads: short, with the two commands, a map of the code and links that resolve."""

from __future__ import annotations

import re

from conftest import REPO_ROOT


def test_the_readme_is_short_and_every_link_it_gives_exists():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    assert "scripts/dev.sh" in readme and "scripts/test.sh" in readme and "## Map of the code" in readme
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert {"docs/config.md", "docs/kubernetes.md", "docs/alerts.md", "docs/benchmarks.md"} <= set(links)
    missing = [link for link in links if not (REPO_ROOT / link).exists()]
    assert not missing, missing


def test_the_map_names_only_rooms_that_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Map of the code") : readme.index("**How a run flows.**")]
    rooms = re.findall(r"`([a-z_]+(?:/|\.py))`", section)
    assert rooms
    for room in rooms:
        candidates = [*REPO_ROOT.joinpath("dagctl_dagster").rglob(room.rstrip("/")), REPO_ROOT / room]
        assert any(path.exists() for path in candidates), room
