"""Frameworks are plugins (issue 29): outside `sqlmesh/` and `dbt/`, no module compares a
framework's name; every framework of the config has a plugin that builds, deploys and names
its models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dagctl_dagster
from dagctl_dagster.frameworks import FrameworkPlugin, all_plugins, framework_names, plugin_for

PACKAGE = Path(dagctl_dagster.__file__).parent
PLUGIN_ROOMS = {PACKAGE / name for name in framework_names()}


def _framework_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing a framework name (``x.framework == ...``, ``... == "dbt"``, ``in ("sqlmesh", ...)``)."""
    names = set(framework_names())

    def names_a_framework(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, ast.Attribute):
            return node.attr == "framework"
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(names_a_framework(element) for element in node.elts)
        return False

    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare) and any(names_a_framework(n) for n in [node.left, *node.comparators])
    ]


def test_no_module_outside_a_plugin_compares_a_framework_name():
    found = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if any(room in module.parents for room in PLUGIN_ROOMS):
            continue
        lines = _framework_comparisons(ast.parse(module.read_text(), str(module)))
        found += [f"{module.relative_to(PACKAGE)}:{line}" for line in lines]
    assert not found, f"framework names compared outside the plugins: {found}"


def test_the_check_finds_a_comparison():
    assert _framework_comparisons(ast.parse('if project.framework == "dbt": pass')) == [1]
    assert _framework_comparisons(ast.parse('ok = kind in ("sqlmesh", "other")')) == [1]


@pytest.mark.parametrize("framework", framework_names())
def test_every_framework_of_the_config_has_a_plugin(framework: str):
    plugin = plugin_for(framework)
    assert isinstance(plugin, FrameworkPlugin)
    assert plugin.name == framework


def test_plugins_build_in_a_stable_order():
    orders = [plugin.build_order for plugin in all_plugins()]
    assert len(set(orders)) == len(orders)


def test_the_config_accepts_exactly_the_registered_frameworks():
    from typing import get_args

    from dagctl_dagster.config import ProjectConfig

    assert get_args(ProjectConfig.model_fields["framework"].annotation) == framework_names()
