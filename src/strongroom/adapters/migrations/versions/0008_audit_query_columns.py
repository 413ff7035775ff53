"""Audit query columns: the index behind ``audit show --event/--actor/--run`` and
``vault.audit.query`` (an `AuditQuery` answered from an index at any chain length).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Written by hand and frozen: plain SQLAlchemy types only (``.with_variant`` for PostgreSQL),
never the live table definitions of ``_sql/tables.py`` nor the live rules of
``strongroom.models.audit_columns`` (copied below as they stood).

Three nullable columns on ``audit_entries``, copies of fields of the entry's body, written with
the row by every append from this revision on:

- ``event`` (the event name), ``actor`` (the actor name): each only when it is a value a query
  can ask for (an event name as `AuditEvent` allows it, an actor name as `ActorName` does),
  else NULL;
- ``run_id``: the run the entry is about (its subject when that is a run, else
  ``details.run_id``, else ``details.target.run_id`` of a run approval's target), only a
  canonical id, else NULL;

each with an index (column, seq), so a filtered page newest first is one index range walked
backwards. ``verify`` compares the three columns of every row with its body (an edited column
is reported like an edited hash column).

Entries stored before this revision get their columns from their bodies here. The table is
append-only by trigger (migration 0004), so the backfill lifts the UPDATE guard for its own
transaction and restores it before COMMIT: SQLite drops ``audit_entries_no_update`` and creates
it again (created even if it had been dropped); PostgreSQL disables the trigger
``audit_entries_append_only`` and enables it again, which needs the table's owner: the owner role
runs migrations (see 0004, "Roles"). A body that does not parse leaves its columns NULL (verify
reports that body anyway). The backfill reads the chain once in pages (about a minute per
million entries); a vault without entries skips it.

PostgreSQL roles: no new table, so nothing to grant.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAGE: Final = 2000
_MAX_BODY_CHARS: Final = 16 * 1024 * 1024  # verify reports longer bodies unread
_EVENT_RE: Final = re.compile(r"^[a-z][a-z0-9_.]*$")
_ACTOR_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$")
_ULID_RE: Final = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_INDEXES: Final = (
    ("ix_audit_entries_event_seq", "event"),
    ("ix_audit_entries_actor_seq", "actor"),
    ("ix_audit_entries_run_id_seq", "run_id"),
)
_SQLITE_GUARD: Final = (
    "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'strongroom: audit_entries is append-only'); END"
)


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Byte-order comparison everywhere: SQLite's BINARY default, COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _canonical_id(value: object) -> str | None:
    """``value`` when it is a run id as strongroom writes it (a ULID, or a UUID in canonical
    lowercase form), else None."""
    if not isinstance(value, str):
        return None
    if _ULID_RE.fullmatch(value):
        return value
    if len(value) != 36:
        return None
    try:
        return value if str(uuid.UUID(value)) == value else None
    except ValueError:
        return None


def _columns(body: object) -> dict[str, str | None]:
    """The three columns of one stored body (all None when it is not an entry)."""
    if not isinstance(body, dict):
        return {"event": None, "actor": None, "run_id": None}
    event, actor = body.get("event"), body.get("actor")
    details = body.get("details")
    details = details if isinstance(details, dict) else {}
    if body.get("subject_type") == "run":
        candidate = body.get("subject_id")
    else:
        candidate = details.get("run_id")
        if candidate is None:
            target = details.get("target")
            if isinstance(target, dict) and target.get("scope") == "run":
                candidate = target.get("run_id")
    return {
        "event": event
        if isinstance(event, str) and len(event) <= 128 and _EVENT_RE.fullmatch(event)
        else None,
        "actor": actor if isinstance(actor, str) and _ACTOR_RE.fullmatch(actor) else None,
        "run_id": _canonical_id(candidate),
    }


def _backfill(conn: sa.Connection) -> None:
    entries = sa.table(
        "audit_entries",
        sa.column("seq", sa.BigInteger()),
        sa.column("body", sa.Text()),
    )
    update = sa.text(
        "UPDATE audit_entries SET event = :event, actor = :actor, run_id = :run_id "
        "WHERE seq = :row_seq"
    )
    page = (
        sa.select(entries.c.seq, sa.func.length(entries.c.body), entries.c.body)
        .where(entries.c.seq > sa.bindparam("after"))
        .order_by(entries.c.seq)
        .limit(_PAGE)
    )
    after = 0
    while True:
        rows = conn.execute(page, {"after": after}).all()
        if not rows:
            return
        values: list[dict[str, Any]] = []
        for seq, chars, text in rows:
            body: object = None
            if (chars or 0) <= _MAX_BODY_CHARS:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = None  # a damaged body is verify's to report, not the migration's
            columns = _columns(body)
            if any(value is not None for value in columns.values()):
                values.append({**columns, "row_seq": seq})
        if values:
            conn.execute(update, values)
        after = int(rows[-1][0])


def _postgres_guard(conn: sa.Connection) -> bool:
    found = conn.execute(
        sa.text(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'audit_entries_append_only' "
            "AND tgrelid = 'audit_entries'::regclass"
        )
    ).first()
    return found is not None


def upgrade() -> None:
    op.add_column("audit_entries", sa.Column("event", _key(128), nullable=True))
    op.add_column("audit_entries", sa.Column("actor", _key(128), nullable=True))
    op.add_column("audit_entries", sa.Column("run_id", _key(36), nullable=True))
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM audit_entries LIMIT 1")).first() is not None:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            op.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
            _backfill(conn)
            op.execute(_SQLITE_GUARD)
        else:
            guarded = _postgres_guard(conn)
            if guarded:
                op.execute("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only")
            _backfill(conn)
            if guarded:
                op.execute("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only")
    for name, column in _INDEXES:
        op.create_index(name, "audit_entries", [column, "seq"])


def downgrade() -> None:
    for name, _ in reversed(_INDEXES):
        op.drop_index(name, table_name="audit_entries")
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild would drop the table's triggers.
    for column in ("run_id", "actor", "event"):
        op.execute(f"ALTER TABLE audit_entries DROP COLUMN {column}")
