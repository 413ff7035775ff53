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
from sqlalchemy import Column, Select, Table, and_, func, literal, select, tuple_
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.audit import AuditRecords, row_binding
from strongroom.adapters._sql.base import PAGE_SIZE, AnyRow, parse_body
from strongroom.adapters._sql.registry_tables import (
    approvals_table,
    channel_moves_table,
    definition_versions_table,
)
from strongroom.adapters._sql.tables import (
    artifacts_table,
    audit_bindings_table,
    audit_checkpoints_table,
    catalog_objects_table,
    log_entries_table,
    log_refs_table,
    namespaces_table,
    providers_table,
    runs_table,
    snapshots_table,
)
from strongroom.errors import IntegrityError
from strongroom.models import (
    Approval,
    ArtifactMetadata,
    BoundRecord,
    CatalogObject,
    ChannelMove,
    DefinitionVersion,
    LogReference,
    MerkleCheckpoint,
    Namespace,
    Provider,
    RecordBinding,
    Run,
    SnapshotRecord,
    VerifyProblem,
    binding_id,
    record_digest,
)
from strongroom.ports.verify import binding_problem, log_head_problem

__all__ = ["BindingChecks"]

_Latest = tuple[int, RecordBinding]


@dataclass(frozen=True)
class _Bound:
    """A table of records that are bound into the audit chain."""

    kind: str
    table: Table
    model: type[BaseModel]
    keys: tuple[str, ...]  # the table's primary key, for keyset pages
    # binding id -> the values of ``lookup`` columns that find the row
    lookup: tuple[str, ...]
    parse_id: Callable[[str], tuple[Any, ...] | None]


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


_BOUND: tuple[_Bound, ...] = (
    _Bound("run", runs_table, Run, ("run_id",), ("run_id",), _one),
    _Bound(
        "snapshot",
        snapshots_table,
        SnapshotRecord,
        ("run_id", "revision"),
        ("run_id", "revision"),
        _snapshot_key,
    ),
    _Bound("artifact", artifacts_table, ArtifactMetadata, ("artifact_id",), ("artifact_id",), _one),
    _Bound("log_ref", log_refs_table, LogReference, ("run_id",), ("run_id",), _one),
    _Bound("provider", providers_table, Provider, ("provider_id",), ("provider_id",), _one),
    _Bound("namespace", namespaces_table, Namespace, ("namespace_id",), ("namespace_id",), _one),
    _Bound("object", catalog_objects_table, CatalogObject, ("object_id",), ("object_id",), _one),
    _Bound(
        "definition",
        definition_versions_table,
        DefinitionVersion,
        ("kind", "definition_id", "digest"),
        ("kind", "definition_id", "version"),
        _definition_key,
    ),
    _Bound("channel_move", channel_moves_table, ChannelMove, ("move_id",), ("move_id",), _one),
    _Bound("approval", approvals_table, Approval, ("approval_id",), ("approval_id",), _one),
    _Bound(
        "checkpoint",
        audit_checkpoints_table,
        MerkleCheckpoint,
        ("tree_size",),
        ("tree_size",),
        _size,
    ),
)

_b = audit_bindings_table.c


class BindingChecks(AuditRecords):
    """``iter_binding_problems`` of `SqlMetadataStore`."""

    def _latest_of(
        self, conn: Connection, record_type: str, ids: Sequence[str]
    ) -> dict[str, _Latest]:
        newest = (
            select(_b.record_id, func.max(_b.seq).label("newest"))
            .where(_b.record_type == record_type, _b.record_id.in_(ids))
            .group_by(_b.record_id)
            .subquery()
        )
        stmt = (
            select(_b.record_type, _b.record_id, _b.seq, _b.pos, _b.digest, _b.log_seq)
            .join(newest, and_(_b.record_id == newest.c.record_id, _b.seq == newest.c.newest))
            .where(_b.record_type == record_type)
            .order_by(_b.record_id, _b.pos)
        )
        out: dict[str, _Latest] = {}
        for row in conn.execute(stmt):
            out[row.record_id] = (int(row.seq), row_binding(row))
        return out

    async def _latest_pages(self, record_type: str) -> AsyncIterator[dict[str, _Latest]]:
        """Every bound id of a type with its newest binding, a page of ids at a time."""
        after: str | None = None
        while True:
            ids_stmt = select(_b.record_id).where(_b.record_type == record_type)
            if after is not None:
                ids_stmt = ids_stmt.where(_b.record_id > literal(after, _b.record_id.type))
            ids_stmt = ids_stmt.group_by(_b.record_id).order_by(_b.record_id).limit(PAGE_SIZE)

            def page(conn: Connection, stmt: Select[Any] = ids_stmt) -> dict[str, _Latest]:
                ids = [str(r) for r in conn.execute(stmt).scalars()]
                return self._latest_of(conn, record_type, ids) if ids else {}

            found = await self._read("iter_binding_problems", page)
            if not found:
                return
            yield found
            after = max(found)

    async def iter_binding_problems(self) -> AsyncIterator[VerifyProblem]:
        for spec in _BOUND:
            matched = 0
            async for problem_or_match in self._check_records(spec):
                if problem_or_match is None:
                    matched += 1
                else:
                    yield problem_or_match
            live = await self._read("iter_binding_problems", self._live_count(spec.kind))
            if live > matched:  # the chain names records that are gone: find them
                async for problem in self._missing(spec):
                    yield problem
        async for problem in self._check_log_heads():
            yield problem

    def _live_count(self, record_type: str) -> Callable[[Connection], int]:
        newest = (
            select(_b.record_id, func.max(_b.seq).label("newest"))
            .where(_b.record_type == record_type)
            .group_by(_b.record_id)
            .subquery()
        )
        stmt = (
            select(func.count(func.distinct(_b.record_id)))
            .select_from(
                audit_bindings_table.join(
                    newest, and_(_b.record_id == newest.c.record_id, _b.seq == newest.c.newest)
                )
            )
            .where(_b.record_type == record_type, _b.digest.is_not(None))
        )

        def op(conn: Connection) -> int:
            return int(conn.scalar(stmt) or 0)

        return op

    async def _check_records(self, spec: _Bound) -> AsyncIterator[VerifyProblem | None]:
        """One item per record: None when it matches a live binding, else its problem."""
        columns: list[Column[Any]] = [spec.table.c[k] for k in spec.keys]
        body = spec.table.c.body
        after: tuple[Any, ...] | None = None
        while True:
            stmt = select(*columns, body).order_by(*columns).limit(PAGE_SIZE)
            if after is not None:
                bound = [literal(v, c.type) for v, c in zip(after, columns, strict=True)]
                stmt = stmt.where(tuple_(*columns) > tuple_(*bound))

            def page(
                conn: Connection, stmt: Select[Any] = stmt
            ) -> tuple[list[AnyRow], list[tuple[str, str] | None], dict[str, _Latest]]:
                rows = list(conn.execute(stmt).all())
                digests: list[tuple[str, str] | None] = []
                for row in rows:
                    try:
                        record = cast(BoundRecord, parse_body(spec.model, row.body, spec.kind, ""))
                    except IntegrityError:
                        digests.append(None)  # reported by iter_record_problems
                        continue
                    _, ident = binding_id(record)
                    digests.append((ident, record_digest(record)))
                ids = [d[0] for d in digests if d is not None]
                latest = self._latest_of(conn, spec.kind, ids) if ids else {}
                return rows, digests, latest

            rows, digests, latest = await self._read("iter_binding_problems", page)
            for found in digests:
                if found is None:
                    continue
                ident, digest = found
                problem = binding_problem(spec.kind, ident, digest, latest.get(ident))
                yield problem
            if len(rows) < PAGE_SIZE:
                return
            after = tuple(getattr(rows[-1], k) for k in spec.keys)

    async def _missing(self, spec: _Bound) -> AsyncIterator[VerifyProblem]:
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
