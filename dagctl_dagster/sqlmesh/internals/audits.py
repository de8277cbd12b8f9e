"""What SQLMesh's audits reported, as this project's :class:`AuditOutcome`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlmesh.core.model.definition import AuditResult


@dataclass(frozen=True)
class AuditOutcome:
    name: str
    args: dict[str, Any]
    blocking: bool
    failed_rows: int

    @property
    def passed(self) -> bool:
        return self.failed_rows == 0


def audit_outcomes(results: Iterable[AuditResult]) -> list[AuditOutcome]:
    """The audits one evaluated batch ran (skipped ones left out)."""
    return [
        AuditOutcome(
            name=result.audit.name,
            args=dict(result.audit_args or {}),
            blocking=bool(result.blocking),
            failed_rows=int(result.count or 0),
        )
        for result in results
        if not result.skipped
    ]


def audit_failures(exc: BaseException) -> list[AuditOutcome]:
    """The failed blocking audits a ``NodeAuditsErrors`` carries (empty for any other error)."""
    from sqlmesh.utils.errors import NodeAuditsErrors

    if not isinstance(exc, NodeAuditsErrors):
        return []
    return [
        AuditOutcome(name=e.audit_name, args=dict(e.audit_args or {}), blocking=True, failed_rows=int(e.count))
        for e in exc.errors
    ]
