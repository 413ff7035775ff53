"""The vault's audit chain on SQL: entries chained inside the transaction of the write they
vouch for, the binding index beside them, Merkle checkpoints, and the row-keyed readers verify
replays.

Chaining happens in the store, under the audit lock (PostgreSQL: a transaction-scoped
advisory lock taken as the last step of the write, so it is held only from there to COMMIT;
SQLite: its write transaction is exclusive anyway), from the head read after the lock. So two
writers never build on the same head, and a record is never committed without its entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, case, func, insert, literal, select
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.base import (
    MAX_RECORD_CHARS,
    AnyRow,
    Operation,
    SqlStoreBase,
    check_limit,
    fetch_all,
    fetch_first,
    parse_body,
    rows_within_budget,
)
from strongroom.adapters._sql.claims import refuse_reclaimed
from strongroom.adapters._sql.tables import (
    audit_bindings_table,
    audit_checkpoints_table,
    audit_entries_table,
    log_entries_table,
)
from strongroom.errors import Conflict, IntegrityError, ValidationError
from strongroom.models import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    AuditPage,
    AuditQuery,
    MerkleCheckpoint,
    RecordBinding,
    audit_columns,
    bind,
    chain_audit_rows,
    stored_body,
)
from strongroom.ports.metadata import BindingKey, ChainRow

__all__ = [
    "AUDIT_PAGE",
    "DRIVE_COUNT",
    "MAX_PREFIX_EVENTS",
    "AuditRecords",
    "Bindings",
    "audit_page_statement",
]

T = TypeVar("T")

# What a write binds: a fixed list, or one computed from the write's result.
Bindings = Sequence[RecordBinding] | Callable[[Any], Sequence[RecordBinding]]

# Entries per page when replaying the chain (see `rows_within_budget` for the characters).
AUDIT_PAGE: Final = 256

_AUDIT_HEAD: Final = (
    select(audit_entries_table.c.seq, audit_entries_table.c.hash)
    .order_by(audit_entries_table.c.seq.desc())
    .limit(1)
)
_AUDIT_HEAD_SEQ: Final = select(func.max(audit_entries_table.c.seq))
_INSERT_AUDIT: Final = insert(audit_entries_table)
_INSERT_BINDINGS: Final = insert(audit_bindings_table)
_LOG_HEAD: Final = (
    select(log_entries_table.c.seq, log_entries_table.c.hash)
    .where(log_entries_table.c.run_id == bindparam("run_id"))
    .order_by(log_entries_table.c.seq.desc())
    .limit(1)
)
_BINDING_SPAN: Final = select(
    func.min(audit_bindings_table.c.seq), func.max(audit_bindings_table.c.seq)
).where(
    audit_bindings_table.c.record_type == bindparam("record_type"),
    audit_bindings_table.c.record_id == bindparam("record_id"),
)
_LATEST_BINDING_SEQ: Final = (
    select(audit_bindings_table.c.seq)
    .where(
        audit_bindings_table.c.record_type == bindparam("record_type"),
        audit_bindings_table.c.record_id == bindparam("record_id"),
    )
    .order_by(audit_bindings_table.c.seq.desc())
    .limit(1)
)
_ENTRY_AT: Final = select(audit_entries_table.c.body).where(
    audit_entries_table.c.seq == bindparam("seq")
)


def binding_rows(entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    return [
        {
            "seq": entry.seq,
            "pos": pos,
            "record_type": b.type,
            "record_id": b.id,
            "digest": b.digest,
            "log_seq": b.seq,
        }
        for entry in entries
        for pos, b in enumerate(entry.records)
    ]


def row_binding(row: AnyRow) -> RecordBinding:
    """An index row as a binding, unvalidated: a hand-edited row must still compare (and
    differ from the chain's body), not stop the read."""
    return RecordBinding.model_construct(
        type=row.record_type, id=row.record_id, digest=row.digest, seq=row.log_seq
    )


_c = audit_entries_table.c
_bi = audit_bindings_table.c
_CHARS = func.length(_c.body)
_PAGE_SIZES: Final = (
    select(_c.seq, _CHARS).where(_c.seq > bindparam("after")).order_by(_c.seq).limit(AUDIT_PAGE)
)
_PAGE_ROWS: Final = (
    select(
        _c.seq,
        _c.hash,
        case((_CHARS > MAX_RECORD_CHARS, None), else_=_c.body),
        _CHARS,
        _c.event,
        _c.actor,
        _c.run_id,
    )
    .where(_c.seq > bindparam("after"), _c.seq <= bindparam("upto"))
    .order_by(_c.seq)
)
_INDEX_COLUMNS: Final = (_bi.seq, _bi.pos, _bi.record_type, _bi.record_id, _bi.digest, _bi.log_seq)
_PAGE_INDEX: Final = (
    select(*_INDEX_COLUMNS)
    .where(_bi.seq > bindparam("after"), _bi.seq <= bindparam("upto"))
    .order_by(_bi.seq, _bi.pos)
    .limit(bindparam("most"))
)
_TAIL_INDEX: Final = (
    select(*_INDEX_COLUMNS)
    .where(_bi.seq > bindparam("after"))
    .order_by(_bi.seq, _bi.pos)
    .limit(AUDIT_PAGE)
)
# A stored binding takes more than this many characters of its entry's body, so a page's
# bodies bound how many index rows can be genuine.
_MIN_BINDING_CHARS: Final = 40


@dataclass
class _AuditPage:
    """One page of the audit chain as verify reads it: at most `AUDIT_PAGE` entries and
    `PAGE_CHARS` characters of bodies, with their binding index rows."""

    # seq, hash, body (None: over MAX_RECORD_CHARS), characters, the query columns
    rows: list[tuple[int, str, str | None, int, dict[str, object]]] = field(default_factory=list)
    bindings: dict[int, list[BindingKey]] = field(default_factory=dict)
    positions: dict[int, list[int]] = field(default_factory=dict)
    orphans: dict[int, list[BindingKey]] = field(default_factory=dict)  # index rows, no entry
    overflow: int | None = None  # more index rows than the bodies can bind, up to this seq
    last_index: int | None = None  # past the last entry: the last index row read


def _read_audit_page(conn: Connection, after: int) -> _AuditPage:
    page = _AuditPage()
    sizes = conn.execute(_PAGE_SIZES, {"after": after}).all()
    if sizes:
        count = rows_within_budget(size for _, size in sizes)
        upto = int(sizes[count - 1][0])
        page.rows = [
            (
                int(seq),
                str(column_hash),
                body,
                int(chars or 0),
                {"event": event, "actor": actor, "run_id": run_id},
            )
            for seq, column_hash, body, chars, event, actor, run_id in conn.execute(
                _PAGE_ROWS, {"after": after, "upto": upto}
            )
        ]
        chars = sum(size or 0 for _, size in sizes[:count] if (size or 0) <= MAX_RECORD_CHARS)
        most = chars // _MIN_BINDING_CHARS + 1
        index = conn.execute(_PAGE_INDEX, {"after": after, "upto": upto, "most": most + 1})
        index_rows = index.all()
        if len(index_rows) > most:
            page.overflow = upto
            index_rows = index_rows[:most]
    else:
        index_rows = conn.execute(_TAIL_INDEX, {"after": after}).all()
        if index_rows:
            page.last_index = int(index_rows[-1][0])
    keys = {row[0] for row in page.rows}
    for seq, pos, record_type, record_id, digest, log_seq in index_rows:
        target = page.bindings if seq in keys else page.orphans
        target.setdefault(int(seq), []).append((record_type, record_id, digest, log_seq))
        page.positions.setdefault(int(seq), []).append(int(pos))
    return page


# -- AuditQuery: one index drives each page ---------------------------------------------------

# Rows of each candidate filter counted (up to this many, from its index) to choose the one
# whose index range drives a page with several filters: the page then reads at most about this
# many rows beyond its own, whatever the chain's length.
DRIVE_COUNT: Final = 5000
# An event prefix is answered as one index range per event name under it, merged.
MAX_PREFIX_EVENTS: Final = 200

_QUERY_INDEXES: Final = {
    "event": "ix_audit_entries_event_seq",
    "actor": "ix_audit_entries_actor_seq",
    "run_id": "ix_audit_entries_run_id_seq",
}


def _prefix_range(prefix: str) -> tuple[str, str]:
    """Event names starting with ``prefix`` (which ends in "."): [prefix, prefix[:-1] + "/")
    byte-wise ("/" follows "."; names hold only [a-z0-9_.])."""
    return prefix, prefix[:-1] + "/"


def _filter(query: AuditQuery, column: str, event: str | None = None) -> ColumnElement[bool]:
    """The condition of one filter; ``event``: one name of the query's event prefix."""
    if column == "event":
        if event is not None:
            return _c.event == event
        prefix = query.event_prefix
        if prefix is not None:
            low, high = _prefix_range(prefix)
            return (_c.event >= low) & (_c.event < high)
        return _c.event == query.event
    if column == "actor":
        return _c.actor == query.actor
    return _c.run_id == query.run_id


def _filters(query: AuditQuery) -> list[str]:
    """The query's filters, in the order that drives a page on a tie."""
    given = (("run_id", query.run_id), ("event", query.event), ("actor", query.actor))
    return [column for column, value in given if value is not None]


def _cursor(query: AuditQuery) -> list[ColumnElement[bool]]:
    if query.after_seq is not None:
        return [_c.seq > query.after_seq]
    if query.before_seq is not None:
        return [_c.seq < query.before_seq]
    return []


def _on_index(stmt: Select[Any], driver: str | None) -> Select[Any]:
    """SQLite walks ``driver``'s index (its planner has no statistics to choose by);
    PostgreSQL chooses by its own."""
    if driver is None:
        return stmt
    return stmt.with_hint(audit_entries_table, f"INDEXED BY {_QUERY_INDEXES[driver]}", "sqlite")


def audit_page_statement(
    query: AuditQuery, driver: str | None, event: str | None = None
) -> Select[Any]:
    """The seqs and body lengths of one page (``query.limit`` + 1 rows, to tell whether more
    follow), walking ``driver``'s index (None: the chain's key) in the page's order and
    checking the other filters on the rows it reads. ``event``: with an event prefix driving,
    the one name under it this range covers."""
    conditions = _cursor(query)
    for column in _filters(query):
        conditions.append(_filter(query, column, event if column == driver else None))
    order = _c.seq.desc() if query.newest_first else _c.seq.asc()
    stmt = select(_c.seq, _CHARS).where(*conditions).order_by(order).limit(query.limit + 1)
    return _on_index(stmt, driver)


def _count_statement(query: AuditQuery, column: str) -> Select[Any]:
    """How many rows (up to `DRIVE_COUNT`) one filter's index range holds past the cursor."""
    inner = (
        select(literal(1))
        .select_from(audit_entries_table)
        .where(_filter(query, column), *_cursor(query))
        .limit(DRIVE_COUNT)
    )
    return select(func.count()).select_from(_on_index(inner, column).subquery())


def _driver(conn: Connection, query: AuditQuery) -> str | None:
    """The filter whose index range drives the page: the only one, else the one with the
    fewest rows (counted up to `DRIVE_COUNT`)."""
    filters = _filters(query)
    if len(filters) <= 1:
        return filters[0] if filters else None
    counts = {column: int(conn.scalar(_count_statement(query, column)) or 0) for column in filters}
    return min(filters, key=lambda column: counts[column])


def _prefix_events(conn: Connection, prefix: str) -> list[str]:
    """The event names under ``prefix``, one index seek each."""
    low, high = _prefix_range(prefix)
    first = select(_c.event).where(_c.event >= low, _c.event < high).order_by(_c.event).limit(1)
    following = (
        select(_c.event)
        .where(_c.event > bindparam("name"), _c.event < high)
        .order_by(_c.event)
        .limit(1)
    )
    names: list[str] = []
    name = conn.scalar(_on_index(first, "event"))
    while name is not None:
        if len(names) == MAX_PREFIX_EVENTS:
            raise ValidationError(
                f"more than {MAX_PREFIX_EVENTS} event names start with {prefix!r}: name the "
                "event, or use a longer prefix",
                operation="audit.query",
                reason="too_many_events",
                field="event",
            )
        names.append(str(name))
        name = conn.scalar(_on_index(following, "event"), {"name": name})
    return names


_BODIES: Final = select(_c.seq, _c.body).where(_c.seq.in_(bindparam("seqs", expanding=True)))


def _query_page(conn: Connection, query: AuditQuery) -> tuple[list[tuple[int, str]], int | None]:
    """(seq, body) of the page's entries in its order, and the next page's cursor. The page
    stops early at `PAGE_CHARS` of bodies; a body over `MAX_RECORD_CHARS` is not read."""
    driver = _driver(conn, query)
    prefix = query.event_prefix
    if driver == "event" and prefix is not None:
        found = [
            (int(seq), chars)
            for name in _prefix_events(conn, prefix)
            for seq, chars in conn.execute(audit_page_statement(query, driver, name))
        ]
        found.sort(reverse=query.newest_first)
        found = found[: query.limit + 1]
    else:
        found = [
            (int(seq), chars) for seq, chars in conn.execute(audit_page_statement(query, driver))
        ]
    more = len(found) > query.limit
    found = found[: query.limit]
    count = rows_within_budget(chars for _, chars in found)
    if count < len(found):
        found, more = found[:count], True
    wanted = [seq for seq, chars in found if (chars or 0) <= MAX_RECORD_CHARS]
    bodies = (
        {int(seq): str(body) for seq, body in conn.execute(_BODIES, {"seqs": wanted})}
        if wanted
        else {}
    )
    for seq, chars in found:
        if seq not in bodies:
            raise IntegrityError(
                f"audit entry #{seq} is {chars} characters long, over the {MAX_RECORD_CHARS} "
                "strongroom reads: the row was edited",
                kind="audit_entry",
                subject=f"audit#{seq}",
                reason="oversized_record",
            )
    return [(seq, bodies[seq]) for seq, _ in found], (found[-1][0] if more and found else None)


def _require_next(head: int | None, entries: Sequence[AuditEntry]) -> None:
    expected = (head or 0) + 1
    for offset, entry in enumerate(entries):
        if entry.seq != expected + offset:
            raise Conflict(
                "append_audit_entries: the chain moved on concurrently (expected seq "
                f"{expected + offset}, got {entry.seq}); re-read the head and retry",
                operation="append_audit_entries",
                reason="stale_head",
                expected_seq=expected + offset,
                seq=entry.seq,
            )


class AuditRecords(SqlStoreBase):
    """The audit chain methods of `SqlMetadataStore`, and `_write_bound`, through which every
    record write binds what it stored."""

    def _lock_audit(self, conn: Connection) -> None:
        """Serialize audit appends until COMMIT. SQLite needs nothing (its write transactions
        are exclusive); PostgreSQL takes a transaction-scoped advisory lock."""

    def _chain_events(
        self,
        conn: Connection,
        events: Sequence[tuple[AuditEvent, Sequence[RecordBinding]]],
        *,
        log_run: str | None = None,
    ) -> list[AuditEntry]:
        """Inside a write transaction: chain ``events`` from the current head and insert them
        with their binding index rows. ``log_run``: also bind that run's log head (read
        here, so it is the head this transaction leaves)."""
        if log_run is not None:
            head = conn.execute(_LOG_HEAD, {"run_id": log_run}).first()
            if head is not None:
                extra = RecordBinding(type="log", id=log_run, digest=head.hash, seq=head.seq)
                *rest, (last_event, last_bindings) = events
                events = [*rest, (last_event, [*last_bindings, extra])]
        self._lock_audit(conn)
        row = conn.execute(_AUDIT_HEAD).first()
        head_seq, head_hash = (int(row.seq), str(row.hash)) if row else (0, GENESIS_HASH)
        chained = chain_audit_rows(events, head_seq=head_seq, head_hash=head_hash)
        conn.execute(
            _INSERT_AUDIT,
            [
                {"seq": e.seq, "hash": e.hash, "body": body, **audit_columns(e)}
                for e, body in chained
            ],
        )
        entries = [entry for entry, _ in chained]
        bindings = binding_rows(entries)
        if bindings:
            conn.execute(_INSERT_BINDINGS, bindings)
        return entries

    async def _write_bound(
        self,
        operation: str,
        op: Operation[T],
        audit: AuditEvent | None,
        bindings: Bindings,
        *,
        log_run: str | None = None,
        blobs: Sequence[str] = (),
        **details: Any,
    ) -> T:
        """Run ``op`` as `_write` does; with ``audit``, append it to the chain in the same
        transaction, binding ``bindings`` (or ``bindings(result)``) and, with ``log_run``,
        that run's log head. ``blobs``: the digests the written records use, refused while
        garbage collection claims one (`refuse_reclaimed`, checked under the audit lock)."""
        if audit is None:
            return await self._write(operation, op, **details)

        def transaction(conn: Connection) -> tuple[T, list[AuditEntry]]:
            result = op(conn)
            bound = bindings(result) if callable(bindings) else bindings
            entries = self._chain_events(conn, [(audit, bound)], log_run=log_run)
            refuse_reclaimed(conn, blobs, operation, self.backend)
            return result, entries

        result, entries = await self._write(operation, transaction, **details)
        await self._audit_appended(entries)
        return result

    # -- the port's audit methods -----------------------------------------------------------

    async def append_audit_events(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        if not events:
            return []

        def op(conn: Connection) -> list[AuditEntry]:
            return self._chain_events(conn, [(event, ()) for event in events])

        entries = await self._write("append_audit_events", op)
        await self._audit_appended(entries)
        return entries

    async def append_audit_entries(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        rows = [
            {"seq": e.seq, "hash": e.hash, "body": e.model_dump_json(), **audit_columns(e)}
            for e in entries
        ]
        bindings = binding_rows(entries)

        def op(conn: Connection) -> None:
            self._lock_audit(conn)
            _require_next(conn.scalar(_AUDIT_HEAD_SEQ), entries)
            conn.execute(_INSERT_AUDIT, rows)
            if bindings:
                conn.execute(_INSERT_BINDINGS, bindings)

        await self._write(
            "append_audit_entries", op, first_seq=entries[0].seq, last_seq=entries[-1].seq
        )

    async def audit_head(self) -> AuditEntry | None:
        c = audit_entries_table.c
        stmt = select(c.seq, c.body).order_by(c.seq.desc()).limit(1)

        row = await self._read("audit_head", fetch_first(stmt))
        return (
            None if row is None else parse_body(AuditEntry, row.body, "audit_entry", str(row.seq))
        )

    async def read_audit_entries(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        check_limit(limit, "read_audit_entries")
        c = audit_entries_table.c
        stmt = select(c.seq, c.body).where(c.seq > after_seq).order_by(c.seq).limit(limit)

        rows = await self._read("read_audit_entries", fetch_all(stmt))
        return [parse_body(AuditEntry, row.body, "audit_entry", str(row.seq)) for row in rows]

    async def query_audit(self, query: AuditQuery) -> AuditPage:
        def op(conn: Connection) -> tuple[list[tuple[int, str]], int | None]:
            return _query_page(conn, query)

        rows, next_cursor = await self._read("query_audit", op)
        return AuditPage(
            entries=[parse_body(AuditEntry, body, "audit_entry", str(seq)) for seq, body in rows],
            next_cursor=next_cursor,
        )

    async def read_audit_hashes(self, *, after_seq: int, limit: int) -> list[tuple[int, str]]:
        check_limit(limit, "read_audit_hashes")
        c = audit_entries_table.c
        stmt = select(c.seq, c.hash).where(c.seq > after_seq).order_by(c.seq).limit(limit)
        rows = await self._read("read_audit_hashes", fetch_all(stmt))
        return [(int(row.seq), str(row.hash)) for row in rows]

    async def iter_audit_rows(self, after_seq: int = 0) -> AsyncIterator[ChainRow[AuditEntry]]:
        # The next page is read (in the store's thread) while this one's rows are parsed and
        # replayed: two pages at most are held.
        def fetch(after: int) -> asyncio.Task[_AuditPage]:
            def read(conn: Connection) -> _AuditPage:
                return _read_audit_page(conn, after)

            return asyncio.create_task(self._read("iter_audit_rows", read))

        upcoming: asyncio.Task[_AuditPage] | None = fetch(after_seq)
        try:
            while upcoming is not None:
                page = await upcoming
                upcoming = None
                if page.rows:
                    upcoming = fetch(page.rows[-1][0])
                elif page.last_index is not None:
                    upcoming = fetch(page.last_index)
                for row in self._page_rows(page):
                    yield row
        finally:
            if upcoming is not None:
                upcoming.cancel()
                await asyncio.gather(upcoming, return_exceptions=True)

    @staticmethod
    def _page_rows(page: _AuditPage) -> Iterator[ChainRow[AuditEntry]]:
        """One page's rows as verify replays them: orphan index rows, an oversized index,
        then each entry parsed (or the error that stops it)."""
        for seq in sorted(page.orphans):
            yield ChainRow(
                key=seq,
                entry=None,
                error=IntegrityError(
                    f"the binding index names audit entry #{seq}, which does not exist",
                    kind="audit_binding",
                    subject=f"audit#{seq}",
                    reason="orphan_binding",
                ),
                bindings=page.orphans[seq],
            )
        if page.overflow is not None:
            yield ChainRow(
                key=page.overflow,
                entry=None,
                error=IntegrityError(
                    f"the binding index holds more rows for audit entries up to "
                    f"#{page.overflow} than their bodies can bind: the index was edited",
                    kind="audit_binding",
                    subject=f"audit#{page.overflow}",
                    reason="oversized_index",
                ),
            )
        for seq, column_hash, body, chars, columns in page.rows:
            entry: AuditEntry | None = None
            error: IntegrityError | None = None
            if body is None:
                error = IntegrityError(
                    f"audit entry #{seq} is {chars} characters long, over the "
                    f"{MAX_RECORD_CHARS} verify reads: the row was edited",
                    kind="audit_entry",
                    subject=f"audit#{seq}",
                    reason="oversized_record",
                )
            else:
                try:
                    entry = parse_body(AuditEntry, body, "audit_entry", f"audit#{seq}")
                except IntegrityError as exc:
                    error = exc
            yield ChainRow(
                key=seq,
                entry=entry,
                error=error,
                column_hash=str(column_hash),
                bindings=page.bindings.get(seq, []),
                columns=columns,
                positions=page.positions.get(seq, []),
                text=body,
            )

    async def binding_span(self, record_type: str, record_id: str) -> tuple[int, int] | None:
        params = {"record_type": record_type, "record_id": record_id}
        row = await self._read("binding_span", fetch_first(_BINDING_SPAN, params), **params)
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    async def latest_binding(
        self, record_type: str, record_id: str
    ) -> tuple[AuditEntry, RecordBinding] | None:
        params = {"record_type": record_type, "record_id": record_id}

        def op(conn: Connection) -> tuple[int, str | None] | None:
            seq = conn.scalar(_LATEST_BINDING_SEQ, params)
            if seq is None:
                return None
            return int(seq), conn.scalar(_ENTRY_AT, {"seq": seq})

        found = await self._read("latest_binding", op, **params)
        if found is None:
            return None
        seq, body = found
        subject = f"{record_type}:{record_id}"
        if body is None:
            raise IntegrityError(
                f"the binding index names audit entry #{seq} for {subject}, which does not "
                "exist: the audit log was edited",
                subject=subject,
                reason="orphan_binding",
            )
        entry = parse_body(AuditEntry, body, "audit_entry", f"audit#{seq}")
        matching = [r for r in entry.records if r.type == record_type and r.id == record_id]
        if not matching:
            raise IntegrityError(
                f"audit entry #{seq} does not bind {subject} although the binding index says "
                "it does: the index or the entry was edited",
                subject=subject,
                reason="binding_mismatch",
            )
        return entry, matching[-1]

    # -- checkpoints ------------------------------------------------------------------------

    async def insert_checkpoint(
        self, checkpoint: MerkleCheckpoint, *, audit: AuditEvent | None = None
    ) -> None:
        body = stored_body(checkpoint)
        row = {"tree_size": checkpoint.tree_size, "body": body}

        def op(conn: Connection) -> None:
            conn.execute(insert(audit_checkpoints_table), row)

        await self._write_bound(
            "insert_checkpoint",
            op,
            audit,
            [bind(checkpoint, body)],
            tree_size=checkpoint.tree_size,
        )

    async def list_checkpoints(self) -> list[MerkleCheckpoint]:
        c = audit_checkpoints_table.c
        stmt = select(c.tree_size, c.body).order_by(c.tree_size)

        rows = await self._read("list_checkpoints", fetch_all(stmt))
        return [
            parse_body(MerkleCheckpoint, row.body, "checkpoint", str(row.tree_size)) for row in rows
        ]
