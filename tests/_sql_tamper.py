"""Edit rows of a SQL records store behind the vault's back (tamper tests).

An intruder who owns the database first removes the append-only guards of migration 0004
(`drop_append_only_guards`): without that, every UPDATE or DELETE of a chained table fails with
``strongroom: <table> is append-only`` before it can change anything.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import Connection

from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.adapters._sql import SqlMetadataStore
from strongroom.models import DefinitionKind
from strongroom.vault import Vault

__all__ = [
    "corrupt_inline_blob",
    "corrupt_inline_row",
    "corrupt_stored_blob",
    "drop_append_only_guards",
    "forge_last_channel_move",
]

# Every trigger migration 0004 created (and, on PostgreSQL, 0006's guard of who wrote an
# approval), found by what it runs rather than by a list of names, so guards a later migration
# adds to those functions are dropped too.
_SQLITE_GUARDS = (
    "SELECT name FROM sqlite_master WHERE type = 'trigger' "
    "AND sql LIKE '%strongroom: % is append-only%' ORDER BY name"
)
_POSTGRES_GUARDS = (
    "SELECT t.tgname, c.relname FROM pg_catalog.pg_trigger t "
    "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
    "JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid "
    "WHERE p.proname IN ('strongroom_append_only', 'strongroom_approval_writer') "
    "AND NOT t.tgisinternal "
    "AND c.relnamespace = pg_catalog.to_regnamespace(pg_catalog.current_schema()) "
    "ORDER BY c.relname, t.tgname"
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def drop_append_only_guards(
    conn: Connection | sqlite3.Connection | psycopg.Connection[Any],
) -> None:
    """Drop every append-only trigger (migration 0004) of the records database ``conn`` is
    connected to, in its current transaction: a SQLAlchemy connection (SQLite or PostgreSQL),
    a stdlib ``sqlite3`` connection or a ``psycopg`` one. Idempotent (none left: no-op).

    The guards stay dropped once the transaction commits: call it only on a vault that is
    tampered with anyway. On PostgreSQL the connection must own the tables (the tests connect
    as the superuser that created them)."""
    if isinstance(conn, Connection):
        if conn.dialect.name == "sqlite":
            for (name,) in conn.execute(text(_SQLITE_GUARDS)).all():
                conn.execute(text(f"DROP TRIGGER {_quote(name)}"))
        elif conn.dialect.name == "postgresql":
            for name, table in conn.execute(text(_POSTGRES_GUARDS)).all():
                conn.execute(text(f"DROP TRIGGER {_quote(name)} ON {_quote(table)}"))
        else:
            raise NotImplementedError(f"no append-only guards on {conn.dialect.name}")
    elif isinstance(conn, sqlite3.Connection):
        for (name,) in conn.execute(_SQLITE_GUARDS).fetchall():
            conn.execute(f"DROP TRIGGER {_quote(name)}")
    else:
        for name, table in conn.execute(_POSTGRES_GUARDS).fetchall():
            conn.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), sql.Identifier(table))
            )


async def forge_last_channel_move(vault: Vault, kind: DefinitionKind, ident: str) -> None:
    """Rewrite the reason in the body of the definition's channel moves to ``forged``."""
    store = vault.metadata
    assert isinstance(store, SqlMetadataStore)

    def op(conn: Connection) -> None:
        drop_append_only_guards(conn)
        changed = conn.execute(
            text(
                'UPDATE channel_moves SET body = replace(body, \'"reason":"honest"\', '
                '\'"reason":"forged"\') WHERE kind = :kind AND definition_id = :ident'
            ),
            {"kind": kind.value, "ident": ident},
        ).rowcount
        assert changed >= 1

    await store._write("tamper", op)


async def corrupt_inline_blob(vault: Vault, sha256: str) -> bool:
    """Flip the first byte of the blob's row when the vault keeps it inline (an empty blob
    gets one byte); False, and nothing changed, when it is not a row."""
    return await corrupt_inline_row(vault.blobs.records, sha256)


async def corrupt_inline_row(store: object, sha256: str) -> bool:
    """`corrupt_inline_blob` on a records store (memory or SQL) itself."""
    assert isinstance(store, MemoryMetadataStore | SqlMetadataStore)
    if not await store.inline_blob_sizes([sha256]):
        return False
    if isinstance(store, MemoryMetadataStore):
        store._corrupt_inline_for_tests(sha256)
        return True

    def op(conn: Connection) -> None:
        drop_append_only_guards(conn)
        row = conn.execute(
            text("SELECT data FROM inline_blobs WHERE sha256 = :h"), {"h": sha256}
        ).one()
        data = bytearray(row.data or b"\0")
        data[0] ^= 0xFF
        conn.execute(
            text("UPDATE inline_blobs SET data = :d WHERE sha256 = :h"),
            {"d": bytes(data), "h": sha256},
        )

    await store._write("tamper", op)
    return True


async def corrupt_stored_blob(vault: Vault, sha256: str) -> None:
    """Change the stored bytes of a blob of a vault on memory blobs, wherever it is kept."""
    if await corrupt_inline_blob(vault, sha256):
        return
    large = vault.blobs.large
    assert isinstance(large, MemoryBlobStore)
    large._corrupt_for_tests(sha256)
