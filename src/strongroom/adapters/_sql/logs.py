"""Each run's append-only hash-chained log, with its log reference. A batch must continue its
chain from the head it was built on; log lines take a hot-path bulk insert that bypasses
SQLAlchemy's per-row processing. (The audit chain is in ``audit.py``.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Dialect, Table, bindparam, case, func, insert, select
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.audit import AuditRecords
from strongroom.adapters._sql.base import (
    MAX_RECORD_CHARS,
    PAGE_SIZE,
    AnyRow,
    Operation,
    fetch_all,
    fetch_first,
    fetch_scalar,
    parse_body,
    rows_within_budget,
)
from strongroom.adapters._sql.columns import UtcTimestamp
from strongroom.adapters._sql.tables import (
    log_entries_table,
    log_refs_table,
)
from strongroom.errors import Conflict, IntegrityError, ValidationError
from strongroom.models import (
    LEVEL_ORDER,
    AuditEvent,
    LogEntry,
    LogQuery,
    LogReference,
    bind,
    stored_body,
)
from strongroom.ports.metadata import ChainRow, closed_log_reference, sealed_log_conflict

__all__ = ["LogRecords"]


def _log_row(entry: LogEntry, timestamp: Any) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "seq": entry.seq,
        "level": entry.level.value,
        "event": entry.event,
        "phase": entry.phase,
        "timestamp": timestamp,
        "hash": entry.hash,
        "body": entry.model_dump_json(),
    }


def _require_next_seqs(
    operation: str, head: int | None, entries: Sequence[LogEntry], **details: Any
) -> None:
    """A batch must continue the chain right after its head: head+1, head+2, ... Anything
    else means the caller computed it from a stale head (another writer appended first)."""
    expected = (head or 0) + 1
    for offset, entry in enumerate(entries):
        if entry.seq != expected + offset:
            raise Conflict(
                f"{operation}: the chain moved on concurrently (expected seq "
                f"{expected + offset}, got {entry.seq}); re-read the head and retry",
                operation=operation,
                reason="stale_head",
                expected_seq=expected + offset,
                seq=entry.seq,
                **details,
            )


_TIMESTAMP = UtcTimestamp()


_COMPILED_INSERTS: dict[tuple[str, str, str, str], tuple[str, tuple[str, ...] | None]] = {}


def _compiled_insert(table: Table, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
    """SQL text of ``INSERT INTO table (every column)`` and, for positional paramstyles,
    the parameter order (cached per driver, not per engine)."""
    key = (table.name, dialect.name, dialect.driver, dialect.paramstyle)
    if key not in _COMPILED_INSERTS:
        compiled = insert(table).compile(dialect=dialect)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        _COMPILED_INSERTS[key] = (compiled.string, order)
    return _COMPILED_INSERTS[key]


def _driver_executemany(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """The hot-path bulk insert (log lines): the statement is compiled from the Core table
    once per dialect, and rows, already holding driver-ready values, go straight to the
    driver's executemany. That skips SQLAlchemy's per-row parameter processing, about a
    third of the cost of appending a log line on SQLite."""
    sql, order = _compiled_insert(table, conn.dialect)
    if order is None:
        conn.exec_driver_sql(sql, [dict(row) for row in rows])
    else:
        conn.exec_driver_sql(sql, [tuple(row[name] for name in order) for row in rows])


# The hot paths' statements, built once (see `fetch_scalar`).
_LOG_HEAD_SEQ: Final = select(func.max(log_entries_table.c.seq)).where(
    log_entries_table.c.run_id == bindparam("run_id")
)
_GET_LOG_REFERENCE: Final = select(log_refs_table.c.body).where(
    log_refs_table.c.run_id == bindparam("run_id")
)
# The row lock that orders appends and `close_log` on one run (PostgreSQL: FOR UPDATE;
# SQLite renders no clause: its write transactions are exclusive anyway).
_LOCK_LOG_REFERENCE: Final = _GET_LOG_REFERENCE.with_for_update()
_LOG_HEAD_BODY: Final = (
    select(log_entries_table.c.body)
    .where(log_entries_table.c.run_id == bindparam("run_id"))
    .order_by(log_entries_table.c.seq.desc())
    .limit(1)
)


def _is_sealed(body: str | None) -> bool:
    return body is not None and bool(json.loads(body).get("sealed"))


class LogRecords(AuditRecords):
    """The run log methods of `SqlMetadataStore`."""

    async def append_log_entries(
        self, entries: Sequence[LogEntry], *, audit: AuditEvent | None = None
    ) -> None:
        if not entries:
            return
        run_id = entries[0].run_id
        if any(entry.run_id != run_id for entry in entries):
            raise ValidationError(
                "append_log_entries: a batch extends one run's chain; got several run ids",
                operation="append_log_entries",
                run_id=run_id,
            )
        await self._write_bound(
            "append_log_entries",
            self._append_log_op(entries),
            audit,
            (),
            log_run=run_id,
            run_id=entries[0].run_id,
            first_seq=entries[0].seq,
            last_seq=entries[-1].seq,
        )

    def _append_log_op(self, entries: Sequence[LogEntry]) -> Operation[None]:
        """The statements of `append_log_entries` (one run's batch), for one transaction."""
        run_id = entries[0].run_id
        dialect = self._require_engine().dialect
        to_db = _TIMESTAMP.process_bind_param
        rows = [_log_row(entry, to_db(entry.timestamp, dialect)) for entry in entries]

        def op(conn: Connection) -> None:
            if _is_sealed(conn.scalar(_LOCK_LOG_REFERENCE, {"run_id": run_id})):
                raise sealed_log_conflict(run_id)
            head = conn.scalar(_LOG_HEAD_SEQ, {"run_id": run_id})
            _require_next_seqs("append_log_entries", head, entries, run_id=run_id)
            _driver_executemany(conn, log_entries_table, rows)

        return op

    async def read_log_entries(self, run_id: str, query: LogQuery) -> list[LogEntry]:
        c = log_entries_table.c
        stmt = select(c.seq, c.body).where(c.run_id == run_id, c.seq > query.after_seq)
        if query.min_level is not None:
            floor = LEVEL_ORDER[query.min_level]
            stmt = stmt.where(
                c.level.in_([level.value for level, rank in LEVEL_ORDER.items() if rank >= floor])
            )
        if query.event is not None:
            stmt = stmt.where(c.event == query.event)
        if query.phase is not None:
            stmt = stmt.where(c.phase == query.phase)
        if query.since is not None:
            stmt = stmt.where(c.timestamp >= query.since)
        stmt = stmt.order_by(c.seq).limit(query.limit)

        rows = await self._read("read_log_entries", fetch_all(stmt), run_id=run_id)
        return [parse_body(LogEntry, row.body, "log_entry", f"{run_id}#{row.seq}") for row in rows]

    async def log_head(self, run_id: str) -> LogEntry | None:
        c = log_entries_table.c
        stmt = select(c.seq, c.body).where(c.run_id == run_id).order_by(c.seq.desc()).limit(1)

        row = await self._read("log_head", fetch_first(stmt), run_id=run_id)
        if row is None:
            return None
        return parse_body(LogEntry, row.body, "log_entry", f"{run_id}#{row.seq}")

    async def count_log_entries(self, run_id: str) -> int:
        stmt = (
            select(func.count())
            .select_from(log_entries_table)
            .where(log_entries_table.c.run_id == run_id)
        )

        def op(conn: Connection) -> int:
            return int(conn.scalar(stmt) or 0)

        return await self._read("count_log_entries", op, run_id=run_id)

    async def put_log_reference(
        self, ref: LogReference, *, if_absent: bool = False, audit: AuditEvent | None = None
    ) -> None:
        values = {"run_id": ref.run_id, "body": stored_body(ref)}

        def op(conn: Connection) -> bool:
            if if_absent:
                conn.execute(self._insert_if_absent(conn, log_refs_table, values, ["run_id"]))
                # Ours unless another writer's reference was there first (drivers report
                # rowcount unevenly for ON CONFLICT DO NOTHING: compare what is stored).
                stored = conn.scalar(_GET_LOG_REFERENCE, {"run_id": ref.run_id})
                return bool(stored == values["body"])
            conn.execute(self._upsert(conn, log_refs_table, values, ["run_id"]))
            return True

        def bindings(written: bool) -> list[Any]:
            return [bind(ref, values["body"])] if written else []

        await self._write_bound(
            "put_log_reference", op, audit, bindings, log_run=ref.run_id, run_id=ref.run_id
        )

    async def close_log(
        self, run_id: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> LogReference:
        def op(conn: Connection) -> LogReference:
            body = conn.scalar(_LOCK_LOG_REFERENCE, {"run_id": run_id})
            if body is None:
                ref = LogReference(
                    run_id=run_id, created_at=at, updated_at=at, location="records", entry_count=0
                )
            else:
                ref = parse_body(LogReference, body, "log_reference", run_id)
                if ref.sealed:
                    return ref
            head_body = conn.scalar(_LOG_HEAD_BODY, {"run_id": run_id})
            head = (
                None if head_body is None else parse_body(LogEntry, head_body, "log_entry", run_id)
            )
            closed = closed_log_reference(ref, head, at)
            values = {"run_id": run_id, "body": stored_body(closed)}
            conn.execute(self._upsert(conn, log_refs_table, values, ["run_id"]))
            return closed

        # A log sealed before is returned as it is; binding it again is harmless.
        return await self._write_bound(
            "close_log", op, audit, lambda ref: [bind(ref)], log_run=run_id, run_id=run_id
        )

    async def get_log_reference(self, run_id: str) -> LogReference | None:
        fetch = fetch_scalar(_GET_LOG_REFERENCE, {"run_id": run_id})
        body = await self._read("get_log_reference", fetch, run_id=run_id)
        return None if body is None else parse_body(LogReference, body, "log_reference", run_id)

    async def iter_log_rows(self, run_id: str) -> AsyncIterator[ChainRow[LogEntry]]:
        c = log_entries_table.c
        capped = case((func.length(c.body) > MAX_RECORD_CHARS, None), else_=c.body)
        sizes_stmt = (
            select(c.seq, func.length(c.body))
            .where(c.run_id == run_id, c.seq > bindparam("after"))
            .order_by(c.seq)
            .limit(PAGE_SIZE)
        )
        stmt = (
            select(
                c.seq,
                c.hash,
                c.level,
                c.event,
                c.phase,
                c.timestamp,
                capped.label("body"),
                func.length(c.body).label("chars"),
            )
            .where(c.run_id == run_id, c.seq > bindparam("after"), c.seq <= bindparam("upto"))
            .order_by(c.seq)
        )

        def page(conn: Connection, after: int) -> tuple[list[AnyRow], bool]:
            """The next rows within the page budget; whether more may follow."""
            sizes = conn.execute(sizes_stmt, {"after": after}).all()
            if not sizes:
                return [], False
            count = rows_within_budget(size for _, size in sizes)
            upto = sizes[count - 1][0]
            rows = list(conn.execute(stmt, {"after": after, "upto": upto}).all())
            return rows, count < len(sizes) or len(sizes) == PAGE_SIZE

        after = 0
        while True:

            def read(conn: Connection, after: int = after) -> tuple[list[AnyRow], bool]:
                return page(conn, after)

            rows, more = await self._read("iter_log_rows", read, run_id=run_id)
            for row in rows:
                subject = f"log:{run_id}#{row.seq}"
                entry: LogEntry | None = None
                error: IntegrityError | None = None
                if row.body is None:
                    error = IntegrityError(
                        f"log line {subject} is {row.chars} characters long, over the "
                        f"{MAX_RECORD_CHARS} verify reads: the row was edited",
                        subject=subject,
                        reason="oversized_record",
                    )
                else:
                    try:
                        entry = parse_body(LogEntry, row.body, "log_entry", subject)
                    except IntegrityError as exc:
                        error = exc
                yield ChainRow(
                    key=int(row.seq),
                    entry=entry,
                    error=error,
                    column_hash=str(row.hash),
                    columns={
                        "level": row.level,
                        "event": row.event,
                        "phase": row.phase,
                        "timestamp": row.timestamp,
                    },
                )
            if not more or not rows:
                return
            after = int(rows[-1].seq)

    async def iter_log_run_ids(self) -> AsyncIterator[str]:
        run_id = log_entries_table.c.run_id
        async for row in self._keyset_pages(select(run_id).distinct(), [run_id]):
            yield row.run_id
