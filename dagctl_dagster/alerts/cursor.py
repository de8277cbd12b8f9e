"""The tiered-alert sensor's cursor: how far the event log was read, and the cooldowns.

Kept in the sensor cursor, so both survive daemon and code-server restarts::

    cursor = AlertCursor.parse(context.cursor)
    if cursor.cooling_down("warning:slow_run:analytics_run", now, window_s=3600): ...
    context.update_cursor(cursor.serialize())
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Cooldown entries older than this are dropped, so the cursor stays small.
_FORGET_AFTER_S = 14 * 24 * 3600


@dataclass
class AlertCursor:
    storage_id: int | None = None
    cooldowns: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> AlertCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(storage_id=data.get("storage_id"), cooldowns=dict(data.get("cooldowns") or {}))

    def serialize(self) -> str:
        return json.dumps({"storage_id": self.storage_id, "cooldowns": self.cooldowns}, sort_keys=True)

    def cooling_down(self, cause: str, now: float, window_s: float) -> bool:
        last = self.cooldowns.get(cause)
        return last is not None and now - last < window_s

    def mark_sent(self, cause: str, now: float) -> None:
        self.cooldowns[cause] = now
        self.cooldowns = {c: t for c, t in self.cooldowns.items() if now - t < _FORGET_AFTER_S}

    def advance(self, storage_id: int | None) -> None:
        if storage_id is not None and (self.storage_id is None or storage_id > self.storage_id):
            self.storage_id = storage_id
