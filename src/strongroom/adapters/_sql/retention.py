"""Retention on SQL: holds, deleting a run under its tombstone, blob usage and the blob claims
of garbage collection (`strongroom.ports.retention`).

Deleting rows of the append-only tables goes through the one door migration 0004 left open: on
PostgreSQL ``set_config('strongroom.allow_delete', <table>, true)`` for the rest of the
transaction, on SQLite a marker table created and dropped inside the deleting transaction.

On PostgreSQL the claim and deletion transactions take the audit lock first (the lock every
audited write takes before it commits), so they and the writes they must not race are
serialised: a record write that uses a blob looks for a claim on it after taking that lock
(`refuse_reclaimed`), and a hold is checked after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, exists, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.audit import AuditRecords
from strongroom.adapters._sql.base import PAGE_SIZE, check_limit, fetch_all, parse_body
from strongroom.adapters._sql.registry_tables import definition_versions_table
from strongroom.adapters._sql.tables import (
    artifact_tags_table,
    artifacts_table,
    catalog_objects_table,
    gc_blob_claims_table,
    holds_table,
    log_entries_table,
    log_refs_table,
    run_labels_table,
    run_metrics_table,
    runs_table,
    snapshots_table,
    step_claims_table,
)
from strongroom.errors import Conflict
from strongroom.models import (
    TERMINAL_STATUSES,
    AuditEntry,
    AuditEvent,
    Hold,
    HoldQuery,
    LogReference,
    RunStatus,
    bind,
    stored_body,
    utcnow,
)
from strongroom.ports.retention import (
    BlobClaim,
    DeletionManifest,
    RetentionRecords,
    RunForRetention,
    RunUsage,
    deletion_refusal,
)

__all__ = ["RetentionRecordsSql", "allow_delete", "held_clause"]

_h = holds_table.c
_r = runs_table.c
_claims = gc_blob_claims_table.c
_ENDED: Final = sorted(s.value for s in TERMINAL_STATUSES)
_SQLITE_MARKER: Final = "strongroom_allow_delete_"  # migration 0004's door


def allow_delete(conn: Connection, table: str, stmt: Any) -> int:
    """Run one DELETE on an append-only table through migration 0004's door."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('strongroom.allow_delete', :t, true)"), {"t": table})
        count = conn.execute(stmt).rowcount
        conn.execute(text("SELECT set_config('strongroom.allow_delete', '', true)"))
        return int(count)
    marker = f"{_SQLITE_MARKER}{table}"  # a constant table name, never input
    conn.execute(text(f"CREATE TABLE {marker} (x INTEGER)"))
    try:
        return int(conn.execute(stmt).rowcount)
    finally:
        conn.execute(text(f"DROP TABLE {marker}"))


def held_clause() -> Any:
    """SQL true for a ``runs`` row an active hold covers (on the run or on its project)."""
    return or_(
        exists().where(_h.run_id == _r.run_id, _h.active.is_(True)),
        exists().where(_h.project == _r.project, _h.active.is_(True)),
    )


def _finished(ref: LogReference) -> bool:
    """A log sealed with its artifact attached: the run's end is complete."""
    return ref.sealed and ref.sealed_artifact_id is not None


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class RetentionRecordsSql(AuditRecords, RetentionRecords):
    """The retention methods of `SqlMetadataStore`."""

    def _allow_delete(self, conn: Connection, table: str, stmt: Any) -> int:
        return allow_delete(conn, table, stmt)

    # -- holds --------------------------------------------------------------------------------

    async def insert_hold(self, hold: Hold, *, audit: AuditEvent | None = None) -> None:
        body = stored_body(hold)

        def op(conn: Connection) -> None:
            self._lock_audit(conn)  # serialised with run deletions (PostgreSQL)
            if conn.scalar(select(_h.hold_id).where(_h.hold_id == hold.hold_id)) is not None:
                raise Conflict(
                    f"hold {hold.hold_id} exists",
                    operation="insert_hold",
                    backend=self.backend,
                    reason="duplicate_id",
                )
            if (
                audit is not None
                and hold.run_id is not None
                and conn.scalar(select(_r.run_id).where(_r.run_id == hold.run_id)) is None
            ):
                raise self._not_found(
                    "insert_hold", f"run {hold.run_id} not found", run_id=hold.run_id
                )
            conn.execute(
                insert(holds_table).values(
                    hold_id=hold.hold_id,
                    run_id=hold.run_id,
                    project=hold.project,
                    active=hold.active,
                    created_at=hold.created_at,
                    body=body,
                )
            )

        await self._write_bound("insert_hold", op, audit, [bind(hold, body)], hold_id=hold.hold_id)

    async def release_hold(self, hold: Hold, *, audit: AuditEvent | None = None) -> None:
        body = stored_body(hold)

        def op(conn: Connection) -> None:
            stored = conn.scalar(select(_h.body).where(_h.hold_id == hold.hold_id))
            if stored is None:
                raise self._not_found(
                    "release_hold", f"no hold {hold.hold_id}", hold_id=hold.hold_id
                )
            result = conn.execute(
                update(holds_table)
                .where(_h.hold_id == hold.hold_id, _h.active.is_(True))
                .values(active=hold.active, body=body)
            )
            if result.rowcount == 0:
                raise Conflict(
                    f"hold {hold.hold_id} is already released",
                    operation="release_hold",
                    backend=self.backend,
                    reason="released",
                    hold_id=hold.hold_id,
                )

        await self._write_bound("release_hold", op, audit, [bind(hold, body)], hold_id=hold.hold_id)

    async def get_hold(self, hold_id: str) -> Hold:
        rows = await self._read(
            "get_hold", fetch_all(select(_h.body).where(_h.hold_id == hold_id)), hold_id=hold_id
        )
        if not rows:
            raise self._not_found("get_hold", f"no hold {hold_id}", hold_id=hold_id)
        return parse_body(Hold, rows[0].body, "hold", hold_id)

    async def list_holds(self, query: HoldQuery) -> list[Hold]:
        check_limit(query.limit, "list_holds")
        stmt = select(_h.hold_id, _h.body)
        if not query.include_released:
            stmt = stmt.where(_h.active.is_(True))
        if query.run_id is not None:
            stmt = stmt.where(_h.run_id == query.run_id)
        if query.project is not None:
            stmt = stmt.where(_h.project == query.project)
        stmt = stmt.order_by(_h.created_at.desc(), _h.hold_id.desc()).limit(query.limit)
        rows = await self._read("list_holds", fetch_all(stmt))
        return [parse_body(Hold, row.body, "hold", row.hold_id) for row in rows]

    async def iter_holds(self) -> AsyncIterator[Hold]:
        async for row in self._keyset_pages(select(_h.hold_id, _h.body), [_h.hold_id]):
            yield parse_body(Hold, row.body, "hold", row.hold_id)

    async def held_runs(self, run_ids: Sequence[str]) -> set[str]:
        wanted = sorted(set(run_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), PAGE_SIZE):
            page = wanted[start : start + PAGE_SIZE]
            stmt = select(_r.run_id).where(_r.run_id.in_(page), held_clause())
            rows = await self._read("held_runs", fetch_all(stmt))
            found.update(str(row.run_id) for row in rows)
        return found

    # -- runs ---------------------------------------------------------------------------------

    async def iter_ended_runs(self) -> AsyncIterator[RunForRetention]:
        base = select(
            _r.run_id, _r.project, _r.playbook_id, _r.status, _r.updated_at, _r.body
        ).where(_r.status.in_(_ENDED))
        async for row in self._keyset_pages(base, [_r.run_id]):
            yield RunForRetention(
                run_id=row.run_id,
                project=row.project,
                playbook_id=row.playbook_id,
                status=RunStatus(row.status),
                ended_at=row.updated_at,
                digest=_digest(row.body),
            )

    async def run_usage(self, run_id: str) -> RunUsage:
        s, a = snapshots_table.c, artifacts_table.c

        def op(conn: Connection) -> RunUsage:
            if conn.scalar(select(_r.run_id).where(_r.run_id == run_id)) is None:
                raise self._not_found("run_usage", f"run {run_id} not found", run_id=run_id)
            blobs: dict[str, int] = {}
            records = 0
            for stmt in (
                select(s.sha256, s.size_bytes).where(s.run_id == run_id),
                select(a.sha256, a.size_bytes).where(a.run_id == run_id),
            ):
                for row in conn.execute(stmt):
                    blobs[row.sha256] = int(row.size_bytes)
                    records += 1
            return RunUsage(blobs=blobs, records=records + 1)

        return await self._read("run_usage", op, run_id=run_id)

    async def delete_run(
        self, run_id: str, *, expected: str | None, audit: AuditEvent | None
    ) -> dict[str, object]:
        s, a, t, le = (
            snapshots_table.c,
            artifacts_table.c,
            artifact_tags_table.c,
            log_entries_table.c,
        )

        def transaction(conn: Connection) -> tuple[dict[str, object], list[AuditEntry]]:
            self._lock_audit(conn)  # holds and claims are decided under the same lock
            row = conn.execute(
                select(_r.status, _r.project, _r.body).where(_r.run_id == run_id)
            ).first()
            if row is None:
                raise self._not_found("delete_run", f"run {run_id} not found", run_id=run_id)
            digest = _digest(row.body)
            held = conn.execute(
                select(_h.hold_id).where(
                    _h.active.is_(True), or_(_h.run_id == run_id, _h.project == row.project)
                )
            ).first()
            ref = conn.scalar(
                select(log_refs_table.c.body).where(log_refs_table.c.run_id == run_id)
            )
            finished = ref is not None and _finished(
                parse_body(LogReference, ref, "log_ref", run_id)
            )
            refusal = deletion_refusal(
                run_id,
                status=row.status,
                digest=digest,
                expected=expected,
                hold_id=None if held is None else held.hold_id,
                finished=finished,
                operation="delete_run",
                backend=self.backend,
            )
            if refusal is not None and audit is not None:  # verbatim (an import): no checks
                raise refusal
            gone = DeletionManifest(run_id, digest)
            for snap in conn.execute(
                select(s.revision, s.sha256, s.body).where(s.run_id == run_id).order_by(s.revision)
            ):
                gone.add("snapshot", f"{run_id}@{snap.revision}", _digest(snap.body), snap.sha256)
            for art in conn.execute(
                select(a.artifact_id, a.sha256, a.body)
                .where(a.run_id == run_id)
                .order_by(a.artifact_id)
            ):
                gone.add("artifact", art.artifact_id, _digest(art.body), art.sha256)
            if ref is not None:
                gone.add("log_ref", run_id, _digest(ref))
            head = conn.execute(
                select(le.seq, le.hash).where(le.run_id == run_id).order_by(le.seq.desc()).limit(1)
            ).first()
            if head is not None:
                gone.add_log_head(int(head.seq), str(head.hash))
            computed = gone.details(row.project, row.status)
            # Derived rows first, then the records (children before the run: foreign keys).
            conn.execute(delete(run_labels_table).where(run_labels_table.c.run_id == run_id))
            conn.execute(delete(step_claims_table).where(step_claims_table.c.run_id == run_id))
            conn.execute(delete(run_metrics_table).where(run_metrics_table.c.run_id == run_id))
            ids = select(a.artifact_id).where(a.run_id == run_id).scalar_subquery()
            self._allow_delete(
                conn, "artifact_tags", delete(artifact_tags_table).where(t.artifact_id.in_(ids))
            )
            self._allow_delete(conn, "artifacts", delete(artifacts_table).where(a.run_id == run_id))
            self._allow_delete(conn, "snapshots", delete(snapshots_table).where(s.run_id == run_id))
            self._allow_delete(
                conn, "log_entries", delete(log_entries_table).where(le.run_id == run_id)
            )
            conn.execute(delete(log_refs_table).where(log_refs_table.c.run_id == run_id))
            conn.execute(delete(runs_table).where(_r.run_id == run_id))
            if audit is None:
                return computed, []
            event = audit.model_copy(update={"details": {**audit.details, **computed}})
            entries = self._chain_events(conn, [(event, gone.bindings)])
            return computed, entries

        computed, entries = await self._write("delete_run", transaction, run_id=run_id)
        await self._audit_appended(entries)
        return computed

    # -- blobs --------------------------------------------------------------------------------

    @staticmethod
    def _used(conn: Connection, digests: Sequence[str]) -> set[str]:
        used: set[str] = set()
        for column in (
            snapshots_table.c.sha256,
            artifacts_table.c.sha256,
            catalog_objects_table.c.sha256,
            definition_versions_table.c.digest,
        ):
            rest = [d for d in digests if d not in used]
            if not rest:
                break
            used.update(conn.execute(select(column).where(column.in_(rest)).distinct()).scalars())
        return used

    async def referenced_blobs(self, digests: Sequence[str]) -> set[str]:
        wanted = sorted(set(digests))
        found: set[str] = set()
        for start in range(0, len(wanted), PAGE_SIZE):
            page = wanted[start : start + PAGE_SIZE]

            def op(conn: Connection, page: list[str] = page) -> set[str]:
                return self._used(conn, page)

            found |= await self._read("referenced_blobs", op)
        return found

    async def blob_users(self, digests: Sequence[str]) -> dict[str, set[str]]:
        wanted = sorted(set(digests))
        users: dict[str, set[str]] = {}
        s, a, o = snapshots_table.c, artifacts_table.c, catalog_objects_table.c
        d = definition_versions_table.c
        for start in range(0, len(wanted), PAGE_SIZE):
            page = wanted[start : start + PAGE_SIZE]

            def op(conn: Connection, page: list[str] = page) -> list[tuple[str, str]]:
                found: list[tuple[str, str]] = []
                for stmt, prefix in (
                    (select(s.sha256, s.run_id).where(s.sha256.in_(page)).distinct(), "run:"),
                    (select(a.sha256, a.run_id).where(a.sha256.in_(page)).distinct(), "run:"),
                    (select(o.sha256, o.object_id).where(o.sha256.in_(page)), "object:"),
                ):
                    found += [(str(r[0]), prefix + str(r[1])) for r in conn.execute(stmt)]
                defs = conn.execute(select(d.digest).where(d.digest.in_(page)).distinct())
                found += [(str(r[0]), "definition") for r in defs]
                return found

            for digest, user in await self._read("blob_users", op):
                users.setdefault(digest, set()).add(user)
        return users

    async def claim_blobs(self, digests: Sequence[str], claim_id: str) -> list[str]:
        wanted = sorted(set(digests))
        claimed: list[str] = []
        for start in range(0, len(wanted), PAGE_SIZE):
            page = wanted[start : start + PAGE_SIZE]

            def op(conn: Connection, page: list[str] = page) -> list[str]:
                self._lock_audit(conn)  # after every record write in flight (PostgreSQL)
                taken = set(
                    conn.execute(select(_claims.sha256).where(_claims.sha256.in_(page))).scalars()
                )
                free = [d for d in page if d not in taken]
                used = self._used(conn, free)
                mine = [d for d in free if d not in used]
                if mine:
                    now = utcnow()
                    conn.execute(
                        insert(gc_blob_claims_table),
                        [
                            {
                                "sha256": d,
                                "claim_id": claim_id,
                                "state": "claimed",
                                "updated_at": now,
                            }
                            for d in mine
                        ],
                    )
                return mine

            claimed += await self._write("claim_blobs", op, claim_id=claim_id)
        return claimed

    async def finish_blob_claims(self, digests: Sequence[str]) -> None:
        wanted = sorted(set(digests))
        for start in range(0, len(wanted), PAGE_SIZE):
            page = wanted[start : start + PAGE_SIZE]
            stmt = (
                update(gc_blob_claims_table)
                .where(_claims.sha256.in_(page))
                .values(state="deleted", updated_at=utcnow())
            )

            def op(conn: Connection, stmt: Any = stmt) -> None:
                conn.execute(stmt)

            await self._write("finish_blob_claims", op)

    async def restore_blob_claims(self, digests: Sequence[str]) -> int:
        wanted = sorted(set(digests))
        changed = 0
        for start in range(0, len(wanted), PAGE_SIZE):
            stmt = (
                update(gc_blob_claims_table)
                .where(_claims.sha256.in_(wanted[start : start + PAGE_SIZE]))
                .where(_claims.state == "deleted")
                .values(state="restored", updated_at=utcnow())
            )

            def op(conn: Connection, stmt: Any = stmt) -> int:
                return int(conn.execute(stmt).rowcount)

            changed += await self._write("restore_blob_claims", op)
        return changed

    async def drop_blob_claims(self, *, before: datetime) -> int:
        stmt = delete(gc_blob_claims_table).where(
            _claims.state.in_(["deleted", "restored"]), _claims.updated_at < before
        )

        def op(conn: Connection) -> int:
            return int(conn.execute(stmt).rowcount)

        return await self._write("drop_blob_claims", op)

    async def list_blob_claims(
        self, *, state: str | None = None, digests: Sequence[str] | None = None, limit: int = 1000
    ) -> list[BlobClaim]:
        check_limit(limit, "list_blob_claims")
        stmt = select(_claims.sha256, _claims.claim_id, _claims.state, _claims.updated_at)
        if state is not None:
            stmt = stmt.where(_claims.state == state)
        if digests is not None:
            stmt = stmt.where(_claims.sha256.in_(sorted(set(digests))[:PAGE_SIZE]))
        stmt = stmt.order_by(_claims.updated_at, _claims.sha256).limit(limit)
        rows = await self._read("list_blob_claims", fetch_all(stmt))
        return [BlobClaim(r.sha256, r.claim_id, r.state, r.updated_at) for r in rows]
