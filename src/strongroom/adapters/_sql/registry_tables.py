"""The registry's tables: published definition versions, channel pointers with their history,
and approvals (same conventions as `tables`: ``body`` is the record's JSON as read, the other
columns are copies kept for keys, filtering and sorting).

- ``definition_versions``: one row per published version. The primary key
  ``(kind, definition_id, digest)`` and the unique ``(kind, definition_id, version)`` are the
  real guards of a publish: a racing publisher of the same label or content collides.
- ``channel_pointers``: where each set channel points now (no body: derived state, moved
  only by a compare-and-set ``UPDATE ... WHERE digest = <expected>`` in the transaction that
  appends the move to ``channel_moves``).
- ``channel_moves``: the history, read in ``(at, move_id)`` order.
- ``approvals``: listed by ``(created_at, approval_id)``, optionally of one scope;
  ``written_by`` is the PostgreSQL role that wrote the row (see migration 0006).
- ``actors``: the people's keys, one row per key (``key_id``), listed by ``(added_at,
  key_id)``; revoking rewrites the row's body (like an approval's).

``strongroom.adapters._sql`` imports this module and `tables`, so its ``metadata`` holds both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from strongroom.adapters._sql.columns import _DIGEST, _ID, _NAME, UtcTimestamp, _key, metadata

__all__ = [
    "actors_table",
    "approvals_table",
    "channel_moves_table",
    "channel_pointers_table",
    "definition_versions_table",
]


class CurrentRole(ColumnElement[str]):
    """The server default of ``approvals.written_by``: ``CURRENT_USER`` on PostgreSQL, NULL
    on SQLite (no roles), as migration 0006 made them."""

    inherit_cache = True
    type = String()


@compiles(CurrentRole)
def _current_role(element: CurrentRole, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_USER"


@compiles(CurrentRole, "sqlite")
def _no_role(element: CurrentRole, compiler: SQLCompiler, **kw: Any) -> str:
    return "NULL"


_KIND = 32
_LABEL = 64
_CHANNEL = 16
_SCOPE = 16

definition_versions_table = Table(
    "definition_versions",
    metadata,
    Column("kind", String(_KIND), nullable=False),
    Column("definition_id", _key(_NAME), nullable=False),
    Column("version", _key(_LABEL), nullable=False),
    Column("digest", String(_DIGEST), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("published_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    PrimaryKeyConstraint("kind", "definition_id", "digest"),
    UniqueConstraint("kind", "definition_id", "version"),
    Index(
        "ix_definition_versions_kind_definition_id_published_at",
        "kind",
        "definition_id",
        "published_at",
    ),
)

channel_pointers_table = Table(
    "channel_pointers",
    metadata,
    Column("kind", String(_KIND), nullable=False),
    Column("definition_id", _key(_NAME), nullable=False),
    Column("channel", String(_CHANNEL), nullable=False),
    Column("digest", String(_DIGEST), nullable=False),
    Column("move_id", _key(_ID), nullable=False),
    PrimaryKeyConstraint("kind", "definition_id", "channel"),
)

channel_moves_table = Table(
    "channel_moves",
    metadata,
    Column("move_id", _key(_ID), primary_key=True),
    Column("kind", String(_KIND), nullable=False),
    Column("definition_id", _key(_NAME), nullable=False),
    Column("channel", String(_CHANNEL), nullable=False),
    Column("at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    Index("ix_channel_moves_kind_definition_id_at", "kind", "definition_id", "at", "move_id"),
)

approvals_table = Table(
    "approvals",
    metadata,
    Column("approval_id", _key(_ID), primary_key=True),
    Column("scope", String(_SCOPE), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    # The database role that wrote the row: filled in and enforced by PostgreSQL itself
    # (migration 0006: default current_user, forced row-level security); empty on SQLite.
    # strongroom never writes it.
    Column(
        "written_by",
        String(_NAME),
        nullable=True,
        server_default=CurrentRole(),
        info={"not_a_copy": True},  # the database's record of the writer, not a field
    ),
    Index("ix_approvals_scope_created_at", "scope", "created_at", "approval_id"),
    Index("ix_approvals_created_at", "created_at", "approval_id"),
)


actors_table = Table(
    "actors",
    metadata,
    Column("key_id", _key(16), nullable=False),
    Column("name", String(_NAME), nullable=False),
    Column("added_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    PrimaryKeyConstraint("key_id", name="pk_actors"),
    Index("ix_actors_added_at", "added_at", "key_id"),
    Index("ix_actors_name", "name", "key_id"),
)
