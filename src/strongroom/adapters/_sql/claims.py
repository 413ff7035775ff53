"""The writer's half of garbage collection's blob claims (migration 0010, docs/retention.md):
a write of a record that uses a blob refuses, inside its transaction and after the audit lock,
while garbage collection claims that blob."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.tables import gc_blob_claims_table
from strongroom.errors import Conflict

__all__ = ["refuse_reclaimed"]

_claims = gc_blob_claims_table.c


def refuse_reclaimed(
    conn: Connection, digests: Sequence[str], operation: str, backend: str
) -> None:
    """Inside a record write (after the audit lock): refuse when garbage collection claims a
    blob the record uses; the caller puts the blob again and retries."""
    wanted = sorted(set(digests))
    if not wanted:
        return
    found = conn.execute(
        select(_claims.sha256, _claims.state).where(
            _claims.sha256.in_(wanted), _claims.state.in_(["claimed", "deleted"])
        )
    ).all()
    if found:
        raise Conflict(
            f"{operation}: blob sha256:{found[0].sha256} is being reclaimed by garbage "
            "collection; put it again and retry",
            operation=operation,
            backend=backend,
            reason="blob_reclaimed",
            sha256=[row.sha256 for row in found],
        )
