"""No module of dagctl-dagster but the two seams reaches into SQLMesh's or dbt's internals.

The seams are ``dagctl_dagster/sqlmesh/internals/`` (SQLMesh) and ``dagctl_dagster/dbt/internals/``
(dagster-dbt's unexported helpers, dbt-core, dbt-adapters and dbt-duckdb); their docstrings say
what counts as public. Every other module is read (its syntax tree, function-local imports
included) and these are refused in it:

- **imports** of anything but the public API: for SQLMesh ``from sqlmesh import Context`` and the
  ``...Config`` classes ``sqlmesh.core.config`` exports (what users write in ``config.py``); for
  dagster-dbt the names ``dagster_dbt/__init__.py`` exports (``X as X``), imported from
  ``dagster_dbt`` itself; for dbt nothing (``dbt.*``, ``dbt_common.*``);
- **private names**: ``x._name``, ``getattr(x, "_name")`` where the library's source defines
  ``_name`` (``context._models``, ``model._path``, ``DbtCliResource._cli_version``);
- **internal members**: ``x.member`` (or ``getattr(x, "member")``) where ``member`` is a member
  of the library's internal classes (:data:`SQLMESH_INTERNAL_CLASSES`, :data:`DBT_INTERNAL_CLASSES`)
  that is not public (SQLMesh's :data:`~dagctl_dagster.sqlmesh.internals.PUBLIC_CONTEXT_MEMBERS`,
  :data:`~dagctl_dagster.sqlmesh.internals.PUBLIC_MODEL_PROPERTIES`, its config fields) and not a
  name that builtins or pydantic/sqlglot objects have, or that this project defines itself
  (its functions, arguments, fields): ``context.state_sync``, ``plan.context_diff``,
  ``model.columns_to_types``, ``adapter.cleanup_connections()``;
- **subclasses** of a library class (SQLMesh: any; dagster-dbt: any but ``DagsterDbtTranslator``,
  its documented extension point, and none overriding a private name) and **patches** (assigning
  a member of a library object: ``console.update_cleanup_progress = ...``).

The member check is by name, so it cannot tell a SQLMesh ``Plan`` from a project object with an
attribute of the same name: names this project defines itself are never flagged. The other
checks are exact.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import logging
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dagster as dg
import pydantic
import pytest
import sqlalchemy
from sqlglot import exp

import dagctl_dagster
from dagctl_dagster.sqlmesh.internals import PUBLIC_CONTEXT_MEMBERS, PUBLIC_MODEL_PROPERTIES

PACKAGE = Path(dagctl_dagster.__file__).parent
SQLMESH_SEAM = PACKAGE / "sqlmesh" / "internals"
DBT_SEAM = PACKAGE / "dbt" / "internals"

# The SQLMesh classes whose objects the seam handles (its TYPE_CHECKING types).
SQLMESH_INTERNAL_CLASSES = (
    "sqlmesh.core.context:GenericContext",
    "sqlmesh.core.state_sync:StateSync",
    "sqlmesh.core.state_sync:StateReader",
    "sqlmesh.core.scheduler:Scheduler",
    "sqlmesh.core.snapshot.evaluator:SnapshotEvaluator",
    "sqlmesh.core.plan:Plan",
    "sqlmesh.core.plan:PlanBuilder",
    "sqlmesh.core.context_diff:ContextDiff",
    "sqlmesh.core.snapshot:Snapshot",
    "sqlmesh.core.snapshot:SnapshotTableInfo",
    "sqlmesh.core.environment:Environment",
    "sqlmesh.core.environment:EnvironmentSummary",
    "sqlmesh.core.console:Console",
    "sqlmesh.core.model:SqlModel",
    "sqlmesh.core.model:PythonModel",
    "sqlmesh.core.model:SeedModel",
    "sqlmesh.core.model:ExternalModel",
    "sqlmesh.core.model.kind:ModelKind",
    "sqlmesh.core.model.definition:AuditResult",
    "sqlmesh.core.audit:StandaloneAudit",
    "sqlmesh.core.engine_adapter:EngineAdapter",
    "sqlmesh.core.config:Config",
    "sqlmesh.core.config:GatewayConfig",
    "sqlmesh.core.config:DuckDBConnectionConfig",
    "sqlmesh.utils.connection_pool:ThreadLocalSharedConnectionPool",
    "sqlmesh.utils.errors:NodeAuditsErrors",
)
# dbt's adapter objects (dagster-dbt hands them out as `DbtCliInvocation.adapter`).
DBT_INTERNAL_CLASSES = (
    "dbt.adapters.base.impl:BaseAdapter",
    "dbt.adapters.base.connections:BaseConnectionManager",
    "dbt.adapters.duckdb.impl:DuckDBAdapter",
    "dbt.adapters.duckdb.connections:DuckDBConnectionManager",
)


@dataclass(frozen=True)
class Library:
    name: str
    packages: tuple[str, ...]  # top-level import names
    seam: Path
    public_imports: frozenset[tuple[str, str]]  # (module, name) pairs importable anywhere
    extensible: frozenset[str]  # documented base classes (subclassing them is public)
    private_names: frozenset[str]
    internal_members: frozenset[str]

    def owns(self, module: str) -> bool:
        return module.split(".")[0] in self.packages

    def is_seam(self, path: Path) -> bool:
        return path == self.seam or self.seam in path.parents


# -- what the libraries define ---------------------------------------------------------------


def _source_files(package: str) -> Iterator[Path]:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    for root in spec.submodule_search_locations:
        yield from Path(root).rglob("*.py")


def _defined_names(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id


def _private_names_of(packages: tuple[str, ...]) -> frozenset[str]:
    names: set[str] = set()
    for package in packages:
        for path in _source_files(package):
            try:
                tree = ast.parse(path.read_bytes())
            except SyntaxError:  # templates shipped as .py
                continue
            names.update(n for n in _defined_names(tree) if n.startswith("_") and not n.startswith("__"))
    return frozenset(names)


def _members_of(classes: tuple[str, ...]) -> set[str]:
    members: set[str] = set()
    for spec in classes:
        module, name = spec.split(":")
        kind = getattr(importlib.import_module(module), name)
        fields = [*getattr(kind, "model_fields", {}), *getattr(kind, "__dataclass_fields__", {})]  # not in dir()
        members.update(n for n in [*dir(kind), *fields] if not n.startswith("_"))
    return members


def _explicit_reexports(module: str) -> set[str]:
    """Names a package's ``__init__`` re-exports as ``from x import Name as Name``."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin
    tree = ast.parse(Path(spec.origin).read_text())
    return {
        alias.asname
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname and alias.asname == alias.name
    }


def _generic_names() -> set[str]:
    """Member names of everyday objects (builtins, pydantic, sqlglot, DB-API and SQLAlchemy
    connections, threads, Dagster's classes): never evidence of reaching into SQLMesh or dbt."""
    kinds: list[type] = [dict, list, str, set, tuple, int, float, bytes, object, Path]
    kinds += [pydantic.BaseModel, exp.Expression, sqlite3.Connection, sqlite3.Cursor]
    kinds += [sqlalchemy.engine.Connection, sqlalchemy.engine.Engine, sqlalchemy.Column]
    kinds += [threading.Thread, threading.Timer, threading.Event, Future, ThreadPoolExecutor, subprocess.Popen]
    kinds += [logging.Logger]
    kinds += [value for name in dir(dg) if inspect.isclass(value := getattr(dg, name, None))]
    names = set(dir(builtins))
    for kind in kinds:
        names.update(dir(kind))
    return names


# -- what this project defines ---------------------------------------------------------------


def _module_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _library_bases(tree: ast.Module, packages: tuple[str, ...]) -> set[str]:
    """Local names bound to something imported from ``packages``."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in packages:
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            bound.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] in packages
            )
    return bound


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


@cache
def project_vocabulary() -> frozenset[str]:
    """Names this project defines (functions, classes, arguments, fields, ``self.x``), except
    inside classes that extend a library class (their members are the library's). Of the seams
    only the members of their own classes count (their dataclasses are the seams' contract;
    their functions are named after what they wrap)."""
    names: set[str] = set()
    for path in _module_files():
        tree = ast.parse(path.read_text())
        if any(seam == path or seam in path.parents for seam in (SQLMESH_SEAM, DBT_SEAM)):
            names.update(_class_members(tree))
        else:
            names.update(_names_defined_outside_library_classes(tree))
    return frozenset(names)


def _extends_a_library(node: ast.ClassDef, library_bound: set[str]) -> bool:
    return any(_root_name(b) in library_bound for b in node.bases)


def _class_members(tree: ast.Module) -> Iterator[str]:
    library_bound = _library_bases(tree, _THIRD_PARTY)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not _extends_a_library(node, library_bound):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield item.name
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    yield item.target.id


def _names_defined_outside_library_classes(tree: ast.Module) -> Iterator[str]:
    library_bound = _library_bases(tree, _THIRD_PARTY)
    extending = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and _extends_a_library(n, library_bound)]
    skipped = {id(n) for c in extending for n in ast.walk(c)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name
            yield from (a.arg for a in (*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs))
        elif isinstance(node, ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            yield node.attr


_THIRD_PARTY = ("sqlmesh", "dagster_dbt", "dbt", "dbt_common")


# -- the libraries -------------------------------------------------------------------------------


@cache
def sqlmesh_library() -> Library:
    from sqlmesh.core.config import Config

    configs = {name for name in _explicit_reexports("sqlmesh.core.config") if name.endswith("Config")}
    public = set(PUBLIC_CONTEXT_MEMBERS) | set(PUBLIC_MODEL_PROPERTIES) | set(Config.model_fields)
    members = _members_of(SQLMESH_INTERNAL_CLASSES) - public - _generic_names() - project_vocabulary()
    return Library(
        name="SQLMesh",
        packages=("sqlmesh",),
        seam=SQLMESH_SEAM,
        public_imports=frozenset({("sqlmesh", "Context")} | {("sqlmesh.core.config", n) for n in configs}),
        extensible=frozenset(),
        private_names=_private_names_of(("sqlmesh",)),
        internal_members=frozenset(members),
    )


@cache
def dbt_library() -> Library:
    exported = _explicit_reexports("dagster_dbt")
    members = _members_of(DBT_INTERNAL_CLASSES) - _generic_names() - project_vocabulary()
    return Library(
        name="dagster-dbt / dbt",
        packages=("dagster_dbt", "dbt", "dbt_common"),
        seam=DBT_SEAM,
        public_imports=frozenset({("dagster_dbt", n) for n in exported}),
        extensible=frozenset({"DagsterDbtTranslator"}),
        private_names=_private_names_of(("dagster_dbt", "dbt")),
        internal_members=frozenset(members),
    )


def libraries() -> tuple[Library, ...]:
    return (sqlmesh_library(), dbt_library())


# -- the check -------------------------------------------------------------------------------------

_ATTRIBUTE_CALLS = {"getattr", "hasattr", "setattr", "delattr"}


def violations(source: str, library: Library, where: str = "<module>", *, by_name: bool = True) -> list[str]:
    """What ``source`` does with ``library`` that only the library's seam may do.

    ``by_name``: also the checks by member name (private and internal members, patches); the
    other library's seam is checked for imports and subclasses only, as it handles objects
    whose private names may coincide with this library's.
    """
    tree = ast.parse(source)
    bound = _library_bases(tree, library.packages)
    # `sa.Column`, `dg.Definitions.merge`: members of what other libraries' imports name.
    elsewhere = _imported_names(tree) - bound
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if library.owns(alias.name) and alias.name not in {m for m, _ in library.public_imports}:
                    flag(node, f"imports {alias.name} ({library.name} internals)")
        elif isinstance(node, ast.ImportFrom) and node.module and library.owns(node.module):
            for alias in node.names:
                if (node.module, alias.name) not in library.public_imports:
                    flag(node, f"imports {alias.name} from {node.module} ({library.name} internals)")
        elif isinstance(node, ast.ClassDef):
            found.extend(_subclass_violations(node, library, bound, where))
        elif isinstance(node, ast.Attribute) and _root_name(node) not in elsewhere:
            found.extend(_member_violations(node, library, bound, where, by_name=by_name))
        elif (
            by_name
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ATTRIBUTE_CALLS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name = node.args[1].value
            if name in library.private_names or name in library.internal_members:
                verb = "patches" if node.func.id in ("setattr", "delattr") else "reads"
                flag(node, f"{verb} {library.name}'s {name!r} through {node.func.id}()")
    return found


def _imported_names(tree: ast.Module) -> set[str]:
    return {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }


def _member_violations(
    node: ast.Attribute, library: Library, bound: set[str], where: str, *, by_name: bool
) -> list[str]:
    base, name = node.value, node.attr
    if isinstance(base, ast.Name) and base.id in ("self", "cls"):
        return []
    if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
        return []
    line = f"{where}:{node.lineno}"
    if isinstance(base, ast.Name) and base.id in bound and library.owns(base.id):
        # `dagster_dbt.X` after `import dagster_dbt`: X must be exported.
        if (base.id, name) not in library.public_imports:
            return [f"{line}: uses {base.id}.{name} ({library.name} internals)"]
        return []
    if not by_name:
        return []
    if isinstance(node.ctx, ast.Store | ast.Del):
        if name in library.private_names or name in library.internal_members:
            return [f"{line}: patches {library.name}'s {name!r} on {ast.unparse(base)}"]
        return []
    if name in library.private_names:
        return [f"{line}: touches {library.name}-private {ast.unparse(base)}.{name}"]
    if name in library.internal_members:
        return [f"{line}: uses {library.name}-internal {ast.unparse(base)}.{name}"]
    return []


def _subclass_violations(node: ast.ClassDef, library: Library, bound: set[str], where: str) -> list[str]:
    bases = [b for b in node.bases if _root_name(b) in bound]
    if not bases:
        return []
    names = {ast.unparse(b).split(".")[-1] for b in bases}
    line = f"{where}:{node.lineno}"
    if not names <= library.extensible:
        return [f"{line}: class {node.name} extends {library.name}'s {', '.join(sorted(names))}"]
    overridden = sorted(
        item.name
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in library.private_names
    )
    if overridden:
        return [f"{line}: class {node.name} overrides {library.name}-private {', '.join(overridden)}"]
    return []


def package_violations() -> list[str]:
    found: list[str] = []
    for path in _module_files():
        source = path.read_text()
        where = str(path.relative_to(PACKAGE.parent))
        in_a_seam = any(library.is_seam(path) for library in libraries())
        for library in libraries():
            if not library.is_seam(path):
                found.extend(violations(source, library, where, by_name=not in_a_seam))
    return found


# -- the tests -------------------------------------------------------------------------------------


def test_no_module_but_the_seams_reaches_into_sqlmesh_or_dbt():
    found = package_violations()
    assert not found, "Move these behind dagctl_dagster/sqlmesh/internals/ or dbt/internals/:\n" + "\n".join(found)


def test_the_seams_are_where_the_check_expects_them():
    assert (SQLMESH_SEAM / "__init__.py").is_file() and (DBT_SEAM / "__init__.py").is_file()
    seams = [p for p in _module_files() if any(lib.is_seam(p) for lib in libraries())]
    assert SQLMESH_SEAM / "scheduling.py" in seams and DBT_SEAM / "measuring.py" in seams
    assert PACKAGE / "sqlmesh" / "session.py" not in seams


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from sqlmesh.core.console import NoopConsole\n", "imports NoopConsole from sqlmesh.core.console"),
        ("def f():\n    from sqlmesh.utils.date import now_timestamp\n", "imports now_timestamp from sqlmesh.utils"),
        ("import sqlmesh.core.snapshot\n", "imports sqlmesh.core.snapshot"),
        ("def f(context):\n    return context._models\n", "touches SQLMesh-private context._models"),
        ("def f(model):\n    return getattr(model, '_path', None)\n", "reads SQLMesh's '_path' through getattr()"),
        ("def f(context):\n    return context.state_sync\n", "uses SQLMesh-internal context.state_sync"),
        ("def f(plan):\n    return plan.context_diff\n", "uses SQLMesh-internal plan.context_diff"),
        ("def f(model):\n    return model.columns_to_types\n", "uses SQLMesh-internal model.columns_to_types"),
        ("def f(b):\n    return b.plan_builder('prod').build()\n", "uses SQLMesh-internal b.plan_builder"),
        (
            "def f(console, seen):\n    console.update_cleanup_progress = seen.append\n",
            "patches SQLMesh's 'update_cleanup_progress' on console",
        ),
        ("from sqlmesh import Context\nclass C(Context):\n    pass\n", "class C extends SQLMesh's Context"),
    ],
)
def test_the_check_refuses_each_way_of_reaching_into_sqlmesh(source: str, expected: str):
    found = violations(source, sqlmesh_library())
    assert any(expected in line for line in found), found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets\n",
            "imports get_manifest_and_translator_from_dbt_assets from dagster_dbt.asset_utils",
        ),
        ("from dagster_dbt.errors import DagsterDbtError\n", "imports DagsterDbtError from dagster_dbt.errors"),
        ("import dagster_dbt\nx = dagster_dbt.asset_utils\n", "uses dagster_dbt.asset_utils"),
        ("from dbt.version import __version__\n", "imports __version__ from dbt.version"),
        (
            "def f(adapter):\n    adapter.cleanup_connections()\n",
            "uses dagster-dbt / dbt-internal adapter.cleanup_connections",
        ),
        (
            "def f(adapter):\n    return getattr(type(adapter.connections), 'close_all_connections', None)\n",
            "reads dagster-dbt / dbt's 'close_all_connections' through getattr()",
        ),
        (
            "from dagster_dbt import DbtCliResource\nclass R(DbtCliResource):\n    pass\n",
            "class R extends dagster-dbt / dbt's DbtCliResource",
        ),
        (
            "from dagster_dbt import DagsterDbtTranslator\n"
            "class T(DagsterDbtTranslator):\n    def _cli_version(self):\n        pass\n",
            "class T overrides dagster-dbt / dbt-private _cli_version",
        ),
    ],
)
def test_the_check_refuses_each_way_of_reaching_into_dbt(source: str, expected: str):
    found = violations(source, dbt_library())
    assert any(expected in line for line in found), found


def test_the_check_lets_the_public_apis_through():
    source = (
        "import dagster_dbt\n"
        "from dagster_dbt import DagsterDbtTranslator, DbtCliResource\n"
        "from sqlmesh import Context\n"
        "from sqlmesh.core.config import Config, DuckDBConnectionConfig, GatewayConfig\n"
        "class T(DagsterDbtTranslator):\n"
        "    def get_asset_key(self, props):\n"
        "        return super().get_asset_key(props)\n"
        "def f(path, model):\n"
        "    context = Context(paths=[path])\n"
        "    names = [m.name for m in context.models.values()]\n"
        "    context.export_state(path, confirm=True)\n"
        "    context.close()\n"
        "    assets = dagster_dbt.dbt_assets\n"
        "    return names, model.cron, model.owner, getattr(model, 'tags', []), Config, DbtCliResource\n"
    )
    assert violations(source, sqlmesh_library()) == []
    assert violations(source, dbt_library()) == []
