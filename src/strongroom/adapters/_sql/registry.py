"""The registry's records: published definition versions, channel pointers with their history,
and approvals (the `RegistryRecords` port on SQL, same semantics as the memory version).

Every conditional write is one statement the database makes atomic, then a read that names
the winner when it lost:

- a publish is ``INSERT ... ON CONFLICT DO NOTHING`` against both unique keys (label, digest);
  nothing inserted -> look up which key is taken: `LabelConflict` or `Conflict`
  (``digest_exists``). On PostgreSQL a racing uncommitted publisher makes the insert wait for
  its outcome, and the read (a new snapshot at READ COMMITTED) sees the winner.
- a channel move is ``UPDATE channel_pointers ... WHERE digest = <from_digest>`` (or an
  insert-if-absent when the channel is expected unset): no row changed -> `StaleChannel`
  naming the current digest. The move row is appended in the same transaction.
- revoking locks the approval row (``FOR UPDATE``; SQLite's writer is exclusive anyway).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import Executable, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.audit import AuditRecords
from strongroom.adapters._sql.base import fetch_all, fetch_scalar, parse_body
from strongroom.adapters._sql.registry_tables import (
    approvals_table,
    channel_moves_table,
    channel_pointers_table,
    definition_versions_table,
)
from strongroom.errors import (
    Conflict,
    UnsupportedFormat,
)
from strongroom.models import (
    ActSignature,
    Approval,
    ApprovalScope,
    AuditEvent,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    bind,
    stored_body,
)
from strongroom.ports.registry import (
    already_revoked,
    approval_exists,
    approval_not_found,
    digest_exists,
    label_taken,
    require_one_selector,
    stale_channel,
    version_not_found,
)

__all__ = ["RegistryRecordsSql", "definition_subject", "insert_or_skip"]

_dv = definition_versions_table.c
_cp = channel_pointers_table.c
_cm = channel_moves_table.c
_ap = approvals_table.c

_VERSION_ORDER: Final = (_dv.published_at, _dv.digest)
_MOVE_ORDER: Final = (_cm.at, _cm.move_id)
_APPROVAL_ORDER: Final = (_ap.created_at, _ap.approval_id)

_OF_DEFINITION_VERSION: Final = (_dv.kind == bindparam("kind")) & (
    _dv.definition_id == bindparam("definition_id")
)
_VERSION_BY_LABEL: Final = select(_dv.version, _dv.digest, _dv.body).where(
    _OF_DEFINITION_VERSION & (_dv.version == bindparam("version"))
)
_VERSION_BY_DIGEST: Final = select(_dv.version, _dv.body).where(
    _OF_DEFINITION_VERSION & (_dv.digest == bindparam("digest"))
)
_VERSIONS: Final = (
    select(_dv.version, _dv.body).where(_OF_DEFINITION_VERSION).order_by(*_VERSION_ORDER)
)
_POINTER: Final = select(_cp.digest).where(
    (_cp.kind == bindparam("kind"))
    & (_cp.definition_id == bindparam("definition_id"))
    & (_cp.channel == bindparam("channel"))
)
# An UPDATE's bind names must differ from its column names.
_MOVE_POINTER: Final = (
    update(channel_pointers_table)
    .where(
        (_cp.kind == bindparam("b_kind"))
        & (_cp.definition_id == bindparam("b_definition_id"))
        & (_cp.channel == bindparam("b_channel"))
        & (_cp.digest == bindparam("b_from_digest"))
    )
    .values(digest=bindparam("b_to_digest"), move_id=bindparam("b_move_id"))
)
_CURRENT_MOVES: Final = (
    select(_cm.move_id, _cm.body)
    .join(channel_pointers_table, _cp.move_id == _cm.move_id)
    .where((_cp.kind == bindparam("kind")) & (_cp.definition_id == bindparam("definition_id")))
)
_MOVES: Final = (
    select(_cm.move_id, _cm.body)
    .where((_cm.kind == bindparam("kind")) & (_cm.definition_id == bindparam("definition_id")))
    .order_by(*_MOVE_ORDER)
)
_GET_APPROVAL: Final = select(_ap.body).where(_ap.approval_id == bindparam("approval_id"))
_LOCK_APPROVAL: Final = _GET_APPROVAL.with_for_update()


def definition_subject(kind: str, definition_id: str, version: str) -> str:
    """How a definition version is named in verify reports: ``kind/definition_id@version``."""
    return f"{kind}/{definition_id}@{version}"


def insert_or_skip(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on any unique key (no conflict target); True if the
    row was inserted (RETURNING, not rowcount, which drivers report unevenly here)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite_dialect.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
    else:
        raise UnsupportedFormat(f"no insert-if-absent for SQL dialect {dialect!r}", backend=dialect)
    first = next(iter(table.primary_key.columns))
    return conn.execute(stmt.returning(first)).first() is not None


def _version_row(version: DefinitionVersion) -> dict[str, Any]:
    return {
        "kind": version.kind.value,
        "definition_id": version.definition_id,
        "version": version.version,
        "digest": version.digest,
        "size_bytes": version.size_bytes,
        "published_at": version.published_at,
        "body": stored_body(version),
    }


def _parse_version(row: Any, kind: str, definition_id: str) -> DefinitionVersion:
    return parse_body(
        DefinitionVersion,
        row.body,
        "definition",
        definition_subject(kind, definition_id, row.version),
    )


def _parse_move(row: Any) -> ChannelMove:
    return parse_body(ChannelMove, row.body, "channel_move", str(row.move_id))


class RegistryRecordsSql(AuditRecords):
    """The registry methods of `SqlMetadataStore`."""

    # -- definition versions ----------------------------------------------------------------

    async def insert_definition_version(
        self, version: DefinitionVersion, *, audit: AuditEvent | None = None
    ) -> None:
        values = _version_row(version)
        key = {"kind": version.kind.value, "definition_id": version.definition_id}

        def op(conn: Connection) -> None:
            if insert_or_skip(conn, definition_versions_table, values):
                return
            # Lost to an existing row: name the key it holds (the label is checked first).
            taken = conn.execute(_VERSION_BY_LABEL, {**key, "version": version.version}).first()
            if taken is not None:
                raise label_taken(version, taken.digest)
            same = conn.execute(_VERSION_BY_DIGEST, {**key, "digest": version.digest}).first()
            if same is not None:
                raise digest_exists(version, same.version)
            raise Conflict(  # pragma: no cover - a row that collided and vanished
                f"{version.kind.value} {version.definition_id}: a record with the same key "
                "already exists",
                operation="publish",
                reason="unique_violation",
                definition_id=version.definition_id,
                version=version.version,
            )

        await self._write_bound(
            "publish",
            op,
            audit,
            [bind(version, values["body"])],
            blobs=[version.digest],
            **key,
            version=version.version,
        )

    async def get_definition_version(
        self,
        kind: DefinitionKind,
        definition_id: str,
        *,
        version: str | None = None,
        digest: str | None = None,
    ) -> DefinitionVersion:
        require_one_selector(version, digest)
        key = {"kind": kind.value, "definition_id": definition_id}
        stmt: Executable
        params: dict[str, Any]
        if version is not None:
            stmt = _VERSION_BY_LABEL
            params = {**key, "version": version}
        else:
            stmt = _VERSION_BY_DIGEST
            params = {**key, "digest": digest}
        rows = await self._read("get_definition_version", fetch_all(stmt, params), **key)
        if not rows:
            raise version_not_found(kind, definition_id, version or f"sha256:{digest}")
        return _parse_version(rows[0], kind.value, definition_id)

    async def list_definition_versions(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[DefinitionVersion]:
        key = {"kind": kind.value, "definition_id": definition_id}
        rows = await self._read("list_definition_versions", fetch_all(_VERSIONS, key), **key)
        return [_parse_version(row, kind.value, definition_id) for row in rows]

    async def list_definitions(self, kind: DefinitionKind | None = None) -> list[DefinitionVersion]:
        newest_first = (
            func.row_number()
            .over(
                partition_by=(_dv.kind, _dv.definition_id),
                order_by=(_dv.published_at.desc(), _dv.digest.desc()),
            )
            .label("newest")
        )
        ranked = select(_dv.kind, _dv.definition_id, _dv.version, _dv.body, newest_first)
        if kind is not None:
            ranked = ranked.where(_dv.kind == kind.value)
        sub = ranked.subquery()
        stmt = (
            select(sub.c.kind, sub.c.definition_id, sub.c.version, sub.c.body)
            .where(sub.c.newest == 1)
            .order_by(sub.c.kind, sub.c.definition_id)
        )
        rows = await self._read(
            "list_definitions", fetch_all(stmt), kind=kind.value if kind else None
        )
        return [_parse_version(row, row.kind, row.definition_id) for row in rows]

    # -- channels ---------------------------------------------------------------------------

    async def get_channels(
        self, kind: DefinitionKind, definition_id: str
    ) -> dict[Channel, ChannelMove]:
        key = {"kind": kind.value, "definition_id": definition_id}
        rows = await self._read("get_channels", fetch_all(_CURRENT_MOVES, key), **key)
        moves = {move.channel: move for move in map(_parse_move, rows)}
        return {channel: moves[channel] for channel in Channel if channel in moves}

    async def move_channel(self, move: ChannelMove, *, audit: AuditEvent | None = None) -> None:
        key = {"kind": move.kind.value, "definition_id": move.definition_id}
        pointer = {**key, "channel": move.channel.value}
        body = stored_body(move)
        move_row = {"move_id": move.move_id, **pointer, "at": move.at, "body": body}

        def op(conn: Connection) -> None:
            exists = conn.execute(_VERSION_BY_DIGEST, {**key, "digest": move.to_digest}).first()
            if exists is None:
                raise version_not_found(move.kind, move.definition_id, f"sha256:{move.to_digest}")
            if move.from_digest is None:
                values = {**pointer, "digest": move.to_digest, "move_id": move.move_id}
                moved = insert_or_skip(conn, channel_pointers_table, values)
            else:
                moved = (
                    conn.execute(
                        _MOVE_POINTER,
                        {
                            "b_kind": move.kind.value,
                            "b_definition_id": move.definition_id,
                            "b_channel": move.channel.value,
                            "b_from_digest": move.from_digest,
                            "b_to_digest": move.to_digest,
                            "b_move_id": move.move_id,
                        },
                    ).rowcount
                    == 1
                )
            if not moved:
                current = conn.execute(_POINTER, pointer).scalar()
                raise stale_channel(move, current)
            conn.execute(channel_moves_table.insert().values(move_row))

        await self._write_bound(
            "move_channel",
            op,
            audit,
            [bind(move, body)],
            **pointer,
            move_id=move.move_id,
        )

    async def list_channel_moves(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[ChannelMove]:
        key = {"kind": kind.value, "definition_id": definition_id}
        rows = await self._read("list_channel_moves", fetch_all(_MOVES, key), **key)
        return [_parse_move(row) for row in rows]

    # -- approvals --------------------------------------------------------------------------

    async def insert_approval(self, approval: Approval, *, audit: AuditEvent | None = None) -> None:
        body = stored_body(approval)
        values = {
            "approval_id": approval.approval_id,
            "scope": approval.scope.value,
            "created_at": approval.created_at,
            "body": body,
        }

        def op(conn: Connection) -> None:
            if not insert_or_skip(conn, approvals_table, values):
                raise approval_exists(approval.approval_id)

        await self._write_bound(
            "insert_approval",
            op,
            audit,
            [bind(approval, body)],
            approval_id=approval.approval_id,
        )

    async def get_approval(self, approval_id: str) -> Approval:
        params = {"approval_id": approval_id}
        body = await self._read(
            "get_approval", fetch_scalar(_GET_APPROVAL, params), approval_id=approval_id
        )
        if body is None:
            raise approval_not_found(approval_id)
        return parse_body(Approval, body, "approval", approval_id)

    async def list_approvals(self, scope: ApprovalScope | None = None) -> list[Approval]:
        stmt = select(_ap.approval_id, _ap.body).order_by(*_APPROVAL_ORDER)
        if scope is not None:
            stmt = stmt.where(_ap.scope == scope.value)
        rows = await self._read(
            "list_approvals", fetch_all(stmt), scope=scope.value if scope else None
        )
        return [parse_body(Approval, row.body, "approval", row.approval_id) for row in rows]

    async def revoke_approval(
        self,
        approval_id: str,
        *,
        at: datetime,
        by: str,
        reason: str,
        audit: AuditEvent | None = None,
        signature: ActSignature | None = None,
    ) -> Approval:
        def op(conn: Connection) -> Approval:
            body = conn.execute(_LOCK_APPROVAL, {"approval_id": approval_id}).scalar()
            if body is None:
                raise approval_not_found(approval_id)
            approval = parse_body(Approval, body, "approval", approval_id)
            if approval.revoked_at is not None:
                raise already_revoked(approval_id)
            revoked = approval.model_copy(
                update={
                    "revoked_at": at,
                    "revoked_by": by,
                    "revoke_reason": reason,
                    "revoke_signature": signature,
                }
            )
            conn.execute(
                update(approvals_table)
                .where(_ap.approval_id == approval_id)
                .values(body=stored_body(revoked))
            )
            return revoked

        return await self._write_bound(
            "revoke_approval",
            op,
            audit,
            lambda revoked: [bind(revoked)],
            approval_id=approval_id,
        )
