"""Warehouse pools: a project's model steps in a Dagster concurrency pool, so that at most the
pool's limit of them run at once across every run and project on that warehouse.

Dagster owns the pool (its limit is what the UI's "Concurrency" page shows and edits); a
``pools:`` entry in `.dagctl/config.yaml` sets it when a run of the pool's models starts, so
the config stays the source of truth, as it is for schedules. The claim-aware executor claims
a pool slot before it starts a step and frees it the moment the step settles.

Example (`.dagctl/config.yaml`)::

    pools:
      warehouse_pg: 4
    projects:
      - {name: shop, framework: sqlmesh, path: shop, pool: warehouse_pg}
      - {name: marts, framework: dbt, path: marts, pool: warehouse_pg}
"""

from __future__ import annotations

from dataclasses import dataclass

from dagctl_dagster.config import DagctlConfig, ProjectConfig
from dagctl_dagster.names import POOL_LIMIT_TAG

__all__ = ["ModelPool", "model_pool"]


@dataclass(frozen=True)
class ModelPool:
    """The pool of a project's model steps and the limit the config gives it."""

    name: str | None = None
    limit: int | None = None

    @property
    def op_tags(self) -> dict[str, str]:
        return {POOL_LIMIT_TAG: str(self.limit)} if self.name and self.limit else {}


NO_POOL = ModelPool()


def model_pool(config: DagctlConfig, project: ProjectConfig) -> ModelPool:
    return ModelPool(project.pool, config.pool_limit(project))
