"""A cache of a SQLMesh project's translation to Dagster assets, so loads skip the Context.

Loading definitions means loading the SQLMesh Context (parsing every model, even with
SQLMesh's own cache warm) and translating each model. Every code server start, reload and
run worker does it again for the same files. The translation only depends on:

- the content of every file of the project (models, macros, audits, config, seeds);
- the values of environment variables those files mention (``config.py`` reading
  ``os.environ["WAREHOUSE"]``, ``{{ env_var('WAREHOUSE') }}``): the database file decides
  the catalog, which is part of every model's name;
- the project's entry in ``.dagctl/config.yaml``, the translator (class, its module's
  source, its attributes) and the versions of Python, SQLMesh, Dagster and dagctl-dagster.

So that is the key. A hit returns the translated models without importing SQLMesh; a
miss (any change, a broken model) loads the Context as before, with its errors, and
stores the result. The cache lives in the project's ``.cache/dagctl/`` beside SQLMesh's
own cache; when that is not writable (a read-only git-sync volume), loads just miss.
``DAGCTL_ASSET_CACHE_DIR`` moves it elsewhere, one subdirectory per project: a volume the
code server and the run pods share, so a run pod whose git-sync clone is fresh (no
``.cache``) still skips the Context. The key holds the project's resolved path, so
clones at other paths never read each other's entries. ``DAGCTL_ASSET_CACHE=off`` turns it off.

Example::

    cache = TranslationCache.for_project(project_dir, project, translator)
    translated = cache.load() if cache else None
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import logging
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from dagctl_dagster.config import ProjectConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_ENV = "DAGCTL_ASSET_CACHE"
CACHE_DIR_ENV = "DAGCTL_ASSET_CACHE_DIR"
FORMAT_VERSION = 1
_SKIPPED_DIRS = {".cache", "logs", "target", "__pycache__", ".git", "dbt_packages", "node_modules"}
_SKIPPED_SUFFIXES = (".duckdb", ".duckdb.wal", ".db", ".db-wal", ".db-shm", ".pyc", ".log")
_KEPT_CACHE_FILES = 3
_TRANSLATION_KIND = "assets"
# Files above this are keyed by size and modification time instead of content (a data file
# in the project is not worth reading whole at every load).
MAX_KEYED_FILE_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ModelTranslation:
    """What the Dagster side needs of one model, as plain picklable data."""

    fqn: str
    name: str
    external: bool
    spec: dict[str, Any]  # AssetSpec fields; deps as AssetKeys
    check_specs: list[dict[str, Any]] = field(default_factory=list)
    check_names: dict[tuple[str, str], str] = field(default_factory=dict)
    # "model" (an asset with a step), "external" (a source whose audits are a check step),
    # "standalone_audit" (a check step on the first model it reads).
    role: str = "model"


@dataclass(frozen=True)
class ProjectTranslation:
    models: list[ModelTranslation]
    undeclared_sources: list[dict[str, Any]]  # AssetSpec fields of tables read but not declared


class CacheEntry(Generic[T]):
    """One pickled value of a type under a key, in a file ``<kind>-<key>.pickle``; the newest
    few entries of a kind are kept. A missing, unreadable or foreign file is a miss."""

    def __init__(self, path: Path, value_type: type[T]):
        self.path = path
        self.value_type = value_type

    @property
    def kind(self) -> str:
        return self.path.name.split("-", 1)[0]

    def load(self) -> T | None:
        try:
            with self.path.open("rb") as handle:
                value = pickle.load(handle)
        except FileNotFoundError:
            return None
        except Exception as exc:  # a truncated or foreign file is a miss, never an error
            logger.debug("ignoring unreadable cache entry %s: %s", self.path, exc)
            return None
        return value if isinstance(value, self.value_type) else None

    def store(self, value: T) -> None:
        """Write atomically (never a half-written entry), keep the newest few, ignore failures."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.kind}-", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self._prune()
        except Exception as exc:
            logger.debug("could not write cache entry %s: %s", self.path, exc)

    def _prune(self) -> None:
        entries = sorted(self.path.parent.glob(f"{self.kind}-*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[_KEPT_CACHE_FILES:]:
            stale.unlink(missing_ok=True)


def caching_enabled() -> bool:
    return os.environ.get(CACHE_ENV, "").strip().lower() not in {"0", "off", "false", "no"}


def entry_path(project_dir: Path, project: ProjectConfig, kind: str, key: str) -> Path:
    return _cache_dir(project_dir, project) / f"{kind}-{key}.pickle"


class TranslationCache(CacheEntry[ProjectTranslation]):
    def __init__(self, path: Path):
        super().__init__(path, ProjectTranslation)

    @classmethod
    def for_project(cls, project_dir: Path, project: ProjectConfig, translator: Any) -> TranslationCache | None:
        """The cache entry for the project as it is now, or None when it cannot be keyed."""
        if not caching_enabled():
            return None
        try:
            key = _cache_key(project_dir, project, translator)
        except (OSError, _NotCacheable) as exc:
            logger.debug("no asset cache for project %s: %s", project.name, exc)
            return None
        return cls(entry_path(project_dir, project, _TRANSLATION_KIND, key))


def _cache_dir(project_dir: Path, project: ProjectConfig) -> Path:
    shared = os.environ.get(CACHE_DIR_ENV, "").strip()
    # Per project, so one project's pruning never evicts another's entries.
    return Path(shared) / project.name if shared else project_dir / ".cache" / "dagctl"


class _NotCacheable(Exception):
    pass


class KeyDigest:
    """A digest of labelled values, each length-prefixed so that no two sequences collide."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, label: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        self._digest.update(f"{label}:{len(data)}:".encode())
        self._digest.update(data)

    def add_runtime(self) -> None:
        """The versions of Python and of the packages that load and translate projects."""
        self.add("python", sys.version)
        for package in ("sqlmesh", "dagster", "dagctl-dagster"):
            self.add(package, _version(package))

    def add_modules(self, *names: str) -> None:
        """The source of modules of this package (paths relative to ``dagctl_dagster/sqlmesh/``)."""
        for name in names:
            self.add(name, (Path(__file__).parent / name).read_bytes())

    def add_project_files(self, project_dir: Path) -> None:
        """Every file of the project, and the environment variables any of them mentions."""
        env_names = sorted(name for name in os.environ if len(name) >= 2)
        mentioned: set[str] = set()
        for path, info in _project_files(project_dir):
            relative = str(path.relative_to(project_dir))
            if info.st_size > MAX_KEYED_FILE_BYTES:
                self.add(relative, f"size={info.st_size} mtime_ns={info.st_mtime_ns}")
                continue
            file_digest = hashlib.sha256()
            tail = b""  # the end of the previous chunk, so a name across a chunk boundary is seen
            for chunk in _chunks(path):
                file_digest.update(chunk)
                window = tail + chunk
                mentioned.update(name for name in env_names if name.encode() in window)
                tail = chunk[-256:]
            self.add(relative, file_digest.hexdigest())
        for name in sorted(mentioned):
            self.add(f"env:{name}", os.environ[name])

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:32]


def _cache_key(project_dir: Path, project: ProjectConfig, translator: Any) -> str:
    digest = KeyDigest()
    digest.add("format", str(FORMAT_VERSION))
    digest.add_runtime()
    digest.add("project", project.model_dump_json())
    digest.add("project_dir", str(project_dir.resolve()))
    digest.add("translator", _translator_identity(translator))
    # The code that translates, and the code that loads the project it translates.
    digest.add_modules("asset_factory.py", "translation_cache.py", "context.py", "imports.py")
    digest.add_project_files(project_dir)
    return digest.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            yield chunk


def _project_files(project_dir: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Regular files only (a symlink counts when it points at one), with their stat.

    Named pipes, sockets and devices (or links to them, e.g. to /dev/zero) are skipped:
    reading one could block forever or never end.
    """
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in sorted(files):
            if name.endswith(_SKIPPED_SUFFIXES):
                continue
            path = Path(root, name)
            try:
                info = path.stat()
            except OSError:  # a dangling symlink
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, info


def _translator_identity(translator: Any) -> str:
    parts: list[str] = []
    for cls in type(translator).__mro__:
        if cls is object:
            continue
        try:
            source = Path(inspect.getsourcefile(cls) or "").read_bytes()
        except (OSError, TypeError) as exc:
            raise _NotCacheable(f"source of translator class {cls.__qualname__} unavailable") from exc
        parts.append(f"{cls.__module__}.{cls.__qualname__}:{hashlib.sha256(source).hexdigest()}")
    state = repr(sorted(vars(translator).items()))
    if " at 0x" in state:  # an attribute without a stable repr: its value cannot be keyed
        raise _NotCacheable("translator attributes have no stable representation")
    return "|".join(parts) + "|" + state


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
