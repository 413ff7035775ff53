"""verify's cross-check of records against the audit chain, on SQL: every record's canonical
digest must be the one its latest binding carries, every record must have a binding, and every
record the chain says exists must still be there (log heads the chain carried must still be
in the log).

Everything is streamed in keyset pages and answered by the binding index
(``record_type, record_id, seq``), so memory stays bounded whatever the vault's size. The index
itself is checked row for row against the chain's bodies while verify replays the chain (see
`AuditRecords.iter_audit_rows`), so what is compared here is what the chain says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import (
    Column,
    ColumnElement,
    FromClause,
    Select,
    String,
    Table,
    func,
    literal,
    literal_column,
    select,
    true,
    tuple_,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.audit import AuditRecords
from strongroom.adapters._sql.base import PAGE_SIZE, AnyRow
from strongroom.adapters._sql.registry import definition_subject
from strongroom.adapters._sql.registry_tables import (
    actors_table,
    approvals_table,
    channel_moves_table,
    definition_versions_table,
)
from strongroom.adapters._sql.tables import (
    artifacts_table,
    audit_bindings_table,
    audit_checkpoints_table,
    catalog_objects_table,
    holds_table,
    log_entries_table,
    log_refs_table,
    namespaces_table,
    providers_table,
    runs_table,
    snapshots_table,
)
from strongroom.models import (
    Actor,
    Approval,
    ArtifactMetadata,
    BindingType,
    CatalogObject,
    ChannelMove,
    DefinitionVersion,
    Hold,
    LogReference,
    MerkleCheckpoint,
    Namespace,
    Provider,
    RecordBinding,
    Run,
    SnapshotRecord,
    VerifyProblem,
)
from strongroom.ports.verify import binding_problem, log_head_problem

__all__ = ["BOUND", "BindingChecks", "Bound", "Latest", "Newest", "as_latest", "newest_join"]

# (audit seq, binding) of a record's newest binding
Latest = tuple[int, RecordBinding]
# the same as read from the index: (audit seq, digest, log seq)
Newest = tuple[int, str | None, int | None]


def as_latest(record_type: str, ident: str, newest: Newest) -> Latest:
    """An index row as a binding, unvalidated: a hand-edited row must still compare (and
    differ from the chain's body), not stop the read."""
    seq, digest, log_seq = newest
    binding = RecordBinding.model_construct(
        type=cast(BindingType, record_type), id=ident, digest=digest, seq=log_seq
    )
    return seq, binding


@dataclass(frozen=True)
class Bound:
    """A table of records that are bound into the audit chain, and how verify names them."""

    kind: str  # the binding type
    table: Table
    model: type[BaseModel]
    keys: tuple[str, ...]  # the table's primary key, for keyset pages
    # binding id -> the values of ``lookup`` columns that find the row
    lookup: tuple[str, ...]
    parse_id: Callable[[str], tuple[Any, ...] | None]
    # the binding id of a row, from its columns (what the row claims to be)
    ident_of: Callable[[AnyRow], str]
    # kind and subject under which a row that contradicts itself is reported
    problem_kind: str
    subject_of: Callable[[AnyRow], str]
    blob_column: str | None = None  # the column (and field) holding a blob digest


def _one(value: str) -> tuple[Any, ...]:
    return (value,)


def _size(value: str) -> tuple[Any, ...] | None:
    return (int(value),) if value.isdigit() else None


def _snapshot_key(value: str) -> tuple[Any, ...] | None:
    run_id, _, revision = value.rpartition("@")
    return (run_id, int(revision)) if run_id and revision.isdigit() else None


def _definition_key(value: str) -> tuple[Any, ...] | None:
    head, _, version = value.rpartition("@")
    kind, _, definition_id = head.partition("/")
    return (kind, definition_id, version) if kind and definition_id and version else None


def _column(name: str) -> Callable[[AnyRow], str]:
    def of(row: AnyRow) -> str:
        return str(getattr(row, name))

    return of


def _snapshot_id(row: AnyRow) -> str:
    return f"{row.run_id}@{row.revision}"


def _definition_id(row: AnyRow) -> str:
    return definition_subject(row.kind, row.definition_id, row.version)


def _checkpoint_subject(row: AnyRow) -> str:
    return f"checkpoint@{row.tree_size}"


def _log_subject(row: AnyRow) -> str:
    return f"log:{row.run_id}"


def _simple(
    kind: str, table: Table, model: type[BaseModel], key: str, blob: str | None = None
) -> Bound:
    of = _column(key)
    return Bound(kind, table, model, (key,), (key,), _one, of, kind, of, blob)


BOUND: tuple[Bound, ...] = (
    _simple("run", runs_table, Run, "run_id"),
    Bound(
        "snapshot",
        snapshots_table,
        SnapshotRecord,
        ("run_id", "revision"),
        ("run_id", "revision"),
        _snapshot_key,
        _snapshot_id,
        "snapshot",
        _snapshot_id,
        "sha256",
    ),
    _simple("artifact", artifacts_table, ArtifactMetadata, "artifact_id", "sha256"),
    _simple("object", catalog_objects_table, CatalogObject, "object_id", "sha256"),
    Bound(
        "definition",
        definition_versions_table,
        DefinitionVersion,
        ("kind", "definition_id", "digest"),
        ("kind", "definition_id", "version"),
        _definition_key,
        _definition_id,
        "definition",
        _definition_id,
        "digest",
    ),
    _simple("channel_move", channel_moves_table, ChannelMove, "move_id"),
    Bound(
        "checkpoint",
        audit_checkpoints_table,
        MerkleCheckpoint,
        ("tree_size",),
        ("tree_size",),
        _size,
        _column("tree_size"),
        "audit_checkpoint",
        _checkpoint_subject,
    ),
    Bound(
        "log_ref",
        log_refs_table,
        LogReference,
        ("run_id",),
        ("run_id",),
        _one,
        _column("run_id"),
        "log_ref",
        _log_subject,
    ),
    _simple("provider", providers_table, Provider, "provider_id"),
    _simple("namespace", namespaces_table, Namespace, "namespace_id"),
    _simple("approval", approvals_table, Approval, "approval_id"),
    _simple("actor", actors_table, Actor, "key_id"),
    _simple("hold", holds_table, Hold, "hold_id"),
)

_b = audit_bindings_table.c
_n = audit_bindings_table.alias("newest").c


def _ident_sql(spec: Bound) -> ColumnElement[Any]:
    """`Bound.ident_of` as SQL over the spec's table: the binding id a row claims."""
    c = spec.table.c
    if spec.kind == "snapshot":
        return c.run_id + "@" + sql_cast(c.revision, String)
    if spec.kind == "definition":
        return c.kind + "/" + c.definition_id + "@" + c.version
    if spec.kind == "checkpoint":
        return sql_cast(c.tree_size, String)
    (key,) = spec.lookup
    return c[key]


def newest_join(spec: Bound, dialect: str) -> tuple[FromClause, list[Any]]:
    """``spec.table`` joined with the newest binding of the id each row claims, and the three
    columns that brings: its audit seq, digest and log seq (all None when never bound). The
    newest is the last position of the newest entry (an entry may bind a record twice), as
    `_newest` answers; the database finds it in the binding index (record_type, record_id,
    seq) as it reads each row: on PostgreSQL by a lateral join, on SQLite (no lateral) by
    picking the binding's rowid and joining on it."""
    ident = _ident_sql(spec)
    bound = audit_bindings_table.alias("bound")
    pick: Select[Any] = select(bound.c.seq, bound.c.digest, bound.c.log_seq)
    if dialect == "sqlite":
        pick = select(literal_column("bound.rowid"))
    pick = (
        pick.where(bound.c.record_type == spec.kind, bound.c.record_id == ident)
        .order_by(bound.c.seq.desc(), bound.c.pos.desc())
        .limit(1)
    )
    if dialect == "sqlite":
        newest = audit_bindings_table.alias("newest")
        joined = spec.table.outerjoin(
            newest, literal_column("newest.rowid") == pick.scalar_subquery()
        )
        found: Any = newest.c
    else:
        lateral = pick.lateral("newest")
        joined = spec.table.outerjoin(lateral, true())
        found = lateral.c
    return joined, [
        found.seq.label("newest_seq"),
        found.digest.label("newest_digest"),
        found.log_seq.label("newest_log_seq"),
    ]


class BindingChecks(AuditRecords):
    """The chain-side half of verify's binding check on SQL: the newest binding of records,
    records the chain says exist but are gone, and log heads the log no longer holds. The
    record-side half (each stored record against its newest binding) is in `RecordChecks`."""

    def _newest(self, conn: Connection, record_type: str, ids: Sequence[str]) -> dict[str, Newest]:
        """The newest binding of each of ``ids`` (absent: never bound), as (audit seq,
        digest, log seq). Answered per id from the binding index (record_type, record_id,
        seq); the last position wins when one entry binds a record twice."""
        if not ids:
            return {}
        newest = (
            select(func.max(_n.seq))
            .where(_n.record_type == _b.record_type, _n.record_id == _b.record_id)
            .scalar_subquery()
        )
        stmt = (
            select(_b.record_id, _b.seq, _b.digest, _b.log_seq)
            .where(_b.record_type == record_type, _b.record_id.in_(ids), _b.seq == newest)
            .order_by(_b.record_id, _b.pos)
        )
        return {
            record_id: (int(seq), digest, log_seq)
            for record_id, seq, digest, log_seq in conn.execute(stmt).all()
        }

    def _latest_of(
        self, conn: Connection, record_type: str, ids: Sequence[str]
    ) -> dict[str, Latest]:
        """`_newest` with each binding as a `RecordBinding`."""
        return {
            ident: as_latest(record_type, ident, newest)
            for ident, newest in self._newest(conn, record_type, ids).items()
        }

    async def _latest_pages(self, record_type: str) -> AsyncIterator[dict[str, Latest]]:
        """Every bound id of a type with its newest binding, a page of ids at a time."""
        after: str | None = None
        while True:
            ids_stmt = select(_b.record_id).where(_b.record_type == record_type)
            if after is not None:
                ids_stmt = ids_stmt.where(_b.record_id > literal(after, _b.record_id.type))
            ids_stmt = ids_stmt.group_by(_b.record_id).order_by(_b.record_id).limit(PAGE_SIZE)

            def page(conn: Connection, stmt: Select[Any] = ids_stmt) -> dict[str, Latest]:
                ids = [str(r) for r in conn.execute(stmt).scalars()]
                return self._latest_of(conn, record_type, ids)

            found = await self._read("iter_binding_problems", page)
            if not found:
                return
            yield found
            after = max(found)

    def _live_count(self, record_type: str) -> Callable[[Connection], int]:
        """How many records of a type the chain says exist (newest binding not a deletion)."""
        newest = (
            select(func.max(_n.seq))
            .where(_n.record_type == _b.record_type, _n.record_id == _b.record_id)
            .scalar_subquery()
        )
        stmt = select(func.count(func.distinct(_b.record_id))).where(
            _b.record_type == record_type, _b.seq == newest, _b.digest.is_not(None)
        )

        def op(conn: Connection) -> int:
            return int(conn.scalar(stmt) or 0)

        return op

    async def _missing(self, spec: Bound) -> AsyncIterator[VerifyProblem]:
        lookup: list[Column[Any]] = [spec.table.c[k] for k in spec.lookup]
        async for latest in self._latest_pages(spec.kind):
            live = {i: b for i, b in latest.items() if b[1].digest is not None}
            keys = {i: spec.parse_id(i) for i in live}
            wanted = [k for k in keys.values() if k is not None]

            def present(conn: Connection, wanted: list[tuple[Any, ...]] = wanted) -> set[Any]:
                if not wanted:
                    return set()
                stmt = select(*lookup).where(tuple_(*lookup).in_(wanted))
                return {tuple(row) for row in conn.execute(stmt)}

            there = await self._read("iter_binding_problems", present)
            for ident, binding in live.items():
                key = keys[ident]
                if key is None or key not in there:
                    problem = binding_problem(spec.kind, ident, None, binding)
                    if problem is not None:
                        yield problem

    async def _check_log_heads(self) -> AsyncIterator[VerifyProblem]:
        """Each run's log must still hold the newest head the chain carried for it."""
        c = log_entries_table.c
        async for latest in self._latest_pages("log"):
            heads = {i: b for i, b in latest.items() if b[1].seq}
            wanted = [(i, b[1].seq) for i, b in heads.items()]

            def lines(
                conn: Connection, wanted: list[tuple[str, int | None]] = wanted
            ) -> dict[tuple[str, int], str]:
                if not wanted:
                    return {}
                stmt = select(c.run_id, c.seq, c.hash).where(tuple_(c.run_id, c.seq).in_(wanted))
                return {(r.run_id, int(r.seq)): str(r.hash) for r in conn.execute(stmt)}

            found = await self._read("iter_binding_problems", lines)
            for run_id, (seq, binding) in heads.items():
                at = found.get((run_id, binding.seq or 0))
                if at != binding.digest:
                    yield log_head_problem(run_id, seq, binding, at)
