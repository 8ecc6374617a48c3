"""The audit trail: every action asked for through the console or the CLI, who asked, as
what role, with which parameters (secrets left out by the caller), and how it ended,
refusals included (a viewer's forged request is recorded as ``refused``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from engine.catalog.db import Database

#: How an audited action ended.
RESULTS = ("ok", "refused", "failed", "queued")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    role: str | None
    source: str  # "cli", "console" or "agent"
    action: str  # e.g. "restore", "backup", "alerts.ack", "login"
    cluster: str | None
    params: dict[str, Any]
    result: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        from engine.catalog.store import iso

        return {**self.__dict__, "at": iso(self.at)}


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, actor: str, source: str, action: str, result: str, cluster: str | None = None,
               params: dict[str, Any] | None = None, detail: str = "", role: str | None = None) -> int:
        if result not in RESULTS:
            raise ValueError(f"audit result must be one of {', '.join(RESULTS)}")
        return self.db.insert(
            "INSERT INTO audit (at, actor, role, source, action, cluster, params, result, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), actor, role, source, action, cluster, json.dumps(params or {}, sort_keys=True),
             result, detail))

    def entries(self, since: float | None = None, cluster: str | None = None, actor: str | None = None,
                limit: int = 200) -> list[AuditEntry]:
        """Newest first."""
        where, values = ["at >= ?"], [since or 0.0]
        for column, value in (("cluster", cluster), ("actor", actor)):
            if value is not None:
                where.append(f"{column} = ?")
                values.append(value)
        rows = self.db.execute(
            "SELECT id, at, actor, role, source, action, cluster, params, result, detail FROM audit "
            f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*values, limit))
        return [AuditEntry(*r[:7], json.loads(r[7]), r[8], r[9]) for r in rows]
