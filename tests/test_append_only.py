"""The chained and immutable tables are append-only in the database itself (migration 0004):
INSERT works, UPDATE / DELETE / TRUNCATE fail with ``strongroom: <table> is append-only``, a
deliberate DELETE is possible only through the documented bypass (one table, one transaction),
and on PostgreSQL the documented role setup leaves the application role unable to change
history or to remove the guards even without them.

On SQLite and PostgreSQL: each test populates a fresh vault through the public API, then goes
at its database with raw SQL, as an application bug or a person at a SQL prompt would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from _pg_fixtures import libpq_url
from _pg_roles import Roles, documented_role_sql, execute_as, load_migration, psycopg_url
from _sql_tamper import drop_append_only_guards
from strongroom.adapters._sql import MIGRATIONS_DIR, SqlMetadataStore, metadata
from strongroom.errors import UnsupportedFormat, ValidationError
from strongroom.vault import Vault

APPEND_ONLY = (
    "artifact_tags",
    "artifacts",
    "audit_bindings",
    "audit_checkpoints",
    "audit_entries",
    "inline_blobs",  # guarded by migration 0012, the same way
    "log_entries",
    "snapshots",
)
GUARDED_LATER = {"inline_blobs"}  # the tables of APPEND_ONLY a later migration guards
# Everything else the application may change (runs by compare-and-set, log references, the
# catalog, registry pointers, approvals being revoked...).
MUTABLE = (
    "actors",
    "approvals",
    "catalog_objects",
    "channel_moves",
    "channel_pointers",
    "definition_versions",
    "gc_blob_claims",
    "holds",
    "log_refs",
    "namespaces",
    "providers",
    "run_labels",
    "run_metrics",
    "runs",
    "step_claims",
)
KEYS = {
    "artifact_tags": ("artifact_id", "tag"),
    "artifacts": ("artifact_id",),
    "audit_bindings": ("seq", "pos"),
    "audit_checkpoints": ("tree_size",),
    "audit_entries": ("seq",),
    "inline_blobs": ("sha256",),
    "log_entries": ("run_id", "seq"),
    "snapshots": ("run_id", "revision"),
}
# The column an UPDATE tries to rewrite.
EDITED = dict.fromkeys(APPEND_ONLY, "body") | {
    "artifact_tags": "tag",
    "audit_bindings": "digest",
    "inline_blobs": "data",
}
CHECKPOINT_INTERVAL = 2

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def migration() -> ModuleType:
    """The 0004 revision module."""
    return load_migration("0004_append_only")


# -- a vault and raw access to its records database --------------------------------------------


def _sqlite_engine(path: Path) -> sa.Engine:
    """pysqlite with real transactions (BEGIN IMMEDIATE, transactional DDL, savepoints), as
    the store itself runs them: the driver's own implicit BEGIN skips DDL statements."""
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@dataclass
class Db:
    """A records database of one dialect, the vault on it, and raw access as its owner."""

    dialect: str
    vault_url: str
    blobs_url: str | None
    engine: sa.Engine

    async def open(self, **options: Any) -> Vault:
        return await Vault.open(
            self.vault_url,
            blobs_url=self.blobs_url,
            checkpoint_interval=CHECKPOINT_INTERVAL,
            **options,
        )


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        vault_dir = tmp_path / "vault"
        made = Db("sqlite", str(vault_dir), None, _sqlite_engine(vault_dir / "vault.db"))
    else:
        pg_url: str = request.getfixturevalue("pg_url")
        made = Db(
            "postgresql", pg_url, str(tmp_path / "blobs"), sa.create_engine(psycopg_url(pg_url))
        )
    try:
        yield made
    finally:
        made.engine.dispose()


async def populate(vault: Vault) -> None:
    """Two rows or more in every append-only table, written the ordinary way (audit entries,
    bindings and checkpoints follow from the rest)."""
    run = await vault.runs.create(project="append-only", actor="alice")
    await vault.runs.start(run.run_id)
    for revision in range(2):
        await vault.snapshots.save(
            run.run_id, {"data": {"step": revision}}, expected_revision=revision
        )
    await vault.artifacts.put_bytes(run.run_id, b"tagged", name="tagged.txt", tags=["keep", "also"])
    await vault.artifacts.put_bytes(run.run_id, b"plain", name="plain.txt")
    # Bytes of this run's own (a row of inline_blobs each time: equal bytes are stored once).
    await vault.artifacts.put_bytes(run.run_id, run.run_id.encode(), name="own.txt")
    await vault.logs.append_many(
        run.run_id, [{"event": "step", "message": f"line {n}"} for n in range(3)]
    )


async def populated(db: Db, **options: Any) -> dict[str, int]:
    async with await db.open(**options) as vault:
        await populate(vault)
        report = await vault.verify()
        assert report.ok, report.problems
    found = counts(db.engine)
    every = [t for t in APPEND_ONLY if options.get("inline_threshold") != 0 or t != "inline_blobs"]
    assert all(found[table] >= 2 for table in every), found
    return found


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in APPEND_ONLY
        }


def a_row(conn: sa.Connection, table: str, *, skip: int = 0) -> tuple[str, dict[str, Any]]:
    """A WHERE clause naming one row of ``table`` (an untagged artifact: a tagged one is held
    by its tags' foreign key), and its parameters."""
    keys = KEYS[table]
    condition = (
        "WHERE artifact_id NOT IN (SELECT artifact_id FROM artifact_tags)"
        if table == "artifacts"
        else ""
    )
    row = (
        conn.execute(
            sa.text(
                f"SELECT {', '.join(keys)} FROM {table} {condition} "
                f"ORDER BY {', '.join(keys)} LIMIT 1 OFFSET {skip}"
            )
        )
        .mappings()
        .one()
    )
    return " AND ".join(f"{key} = :{key}" for key in keys), dict(row)


def refused(conn: sa.Connection, statement: str, params: dict[str, Any] | None = None) -> str:
    """Run ``statement`` in a savepoint; it must fail as append-only. Returns the message."""
    with pytest.raises(sa.exc.IntegrityError) as caught, conn.begin_nested():
        conn.execute(sa.text(statement), params or {})
    return str(caught.value.orig)


def guards(conn: sa.Connection) -> set[tuple[str, str]]:
    """(table, trigger) of every trigger in the database."""
    if conn.dialect.name == "sqlite":
        query = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
    else:
        query = (
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal"
        )
    return {(table, name) for table, name in conn.execute(sa.text(query)).all()}


def expected_guards(dialect: str) -> set[tuple[str, str]]:
    """The append-only guards (0004) and, on PostgreSQL, the guard of who wrote an approval
    (0006)."""
    if dialect == "sqlite":
        suffixes = ("no_update", "no_delete")
        extra = set()
    else:
        suffixes = ("append_only", "no_truncate")
        extra = {("approvals", "approvals_writer_fixed")}
    return {(table, f"{table}_{suffix}") for table in APPEND_ONLY for suffix in suffixes} | extra


def guard_function_exists(conn: sa.Connection) -> bool:
    if conn.dialect.name == "sqlite":
        return False
    found = conn.execute(
        sa.text("SELECT count(*) FROM pg_proc WHERE proname = 'strongroom_append_only'")
    ).scalar_one()
    return bool(found)


@contextmanager
def allow_delete(conn: sa.Connection, table: str) -> Iterator[None]:
    """The documented bypass, inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SET LOCAL strongroom.allow_delete = '{table}'"))
        yield
        return
    marker = f"strongroom_allow_delete_{table}"
    conn.execute(sa.text(f"CREATE TABLE {marker} (x INTEGER)"))
    yield
    conn.execute(sa.text(f"DROP TABLE {marker}"))


def markers_seen_elsewhere(db: Db) -> list[str]:
    """SQLite bypass markers a separate, read-only connection sees."""
    database = make_url(str(db.engine.url)).database
    reader = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        found = reader.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'strongroom_allow_delete_%'"
        ).fetchall()
    finally:
        reader.close()
    return [name for (name,) in found]


def alembic(conn: sa.Connection, direction: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    getattr(command, direction)(config, revision)


def at_revision(db: Db, revision: str) -> None:
    """Bring the (new, empty) records database to ``revision`` only, as an older strongroom
    left it."""
    if db.dialect == "sqlite":
        Path(db.vault_url).mkdir()
    with db.engine.begin() as conn:
        alembic(conn, "upgrade", revision)


# -- the tables --------------------------------------------------------------------------------


def test_every_table_is_either_append_only_or_mutable() -> None:
    """A new table forces a decision here (and in the grants of the 0004 docstring)."""
    assert set(migration().APPEND_ONLY_TABLES) == set(APPEND_ONLY) - GUARDED_LATER
    assert not set(APPEND_ONLY) & set(MUTABLE)
    assert set(APPEND_ONLY) | set(MUTABLE) == {table.name for table in metadata.sorted_tables}


async def test_inserts_work_and_every_guard_is_in_place(db: Db) -> None:
    before = await populated(db)
    async with await db.open() as vault:  # a second session appends to every chain again
        await populate(vault)
        assert (await vault.verify()).ok
    after = counts(db.engine)
    assert all(after[table] > before[table] for table in APPEND_ONLY), (before, after)
    with db.engine.connect() as conn:
        assert guards(conn) == expected_guards(db.dialect)
        assert guard_function_exists(conn) == (db.dialect == "postgresql")


# -- UPDATE, DELETE, TRUNCATE ------------------------------------------------------------------


@pytest.mark.parametrize("table", APPEND_ONLY)
async def test_update_and_delete_are_refused(db: Db, table: str) -> None:
    before = await populated(db)
    message = f"strongroom: {table} is append-only"
    column = EDITED[table]
    with db.engine.begin() as conn:
        where, params = a_row(conn, table)
        row_before = conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"), params).one()
        assert message in refused(
            conn, f"UPDATE {table} SET {column} = 'forged' WHERE {where}", params
        )
        assert message in refused(conn, f"UPDATE {table} SET {column} = {column}")  # even a no-op
        assert message in refused(conn, f"DELETE FROM {table} WHERE {where}", params)
        assert message in refused(conn, f"DELETE FROM {table}")
        # An upsert's UPDATE half is an UPDATE.
        assert message in refused(
            conn,
            f"INSERT INTO {table} SELECT * FROM {table} WHERE {where} "
            f"ON CONFLICT ({', '.join(KEYS[table])}) DO UPDATE SET {column} = 'forged'",
            params,
        )
        if db.dialect == "postgresql":
            assert message in refused(conn, f"TRUNCATE {table} CASCADE")
        row_after = conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"), params).one()
        assert row_after == row_before
    assert counts(db.engine) == before


@pytest.mark.postgres
async def test_truncate_is_refused_also_by_cascade(pg_url: str, tmp_path: Path) -> None:
    db = Db("postgresql", pg_url, str(tmp_path / "blobs"), sa.create_engine(psycopg_url(pg_url)))
    try:
        before = await populated(db)
        with db.engine.begin() as conn:
            assert "is append-only" in refused(conn, "TRUNCATE runs CASCADE")
            assert "is append-only" in refused(conn, f"TRUNCATE {', '.join(APPEND_ONLY)}")
        assert counts(db.engine) == before
    finally:
        db.engine.dispose()


async def test_an_application_bug_gets_a_clear_validation_error(db: Db) -> None:
    await populated(db)
    async with await db.open() as vault:
        store = vault.metadata
        assert isinstance(store, SqlMetadataStore)

        def rewrite(conn: sa.Connection) -> None:
            conn.execute(sa.text("UPDATE audit_entries SET body = body"))

        with pytest.raises(ValidationError) as caught:
            await store._write("rewrite_history", rewrite)
        assert "strongroom: audit_entries is append-only" in caught.value.message
        assert caught.value.details["reason"] == "constraint_violation"
        assert (await vault.verify()).ok


# -- the deliberate DELETE ---------------------------------------------------------------------


@pytest.mark.parametrize("table", APPEND_ONLY)
async def test_the_bypass_deletes_from_the_named_table_only_in_its_transaction(
    db: Db, table: str
) -> None:
    before = await populated(db)
    other = next(name for name in APPEND_ONLY if name != table)
    with db.engine.connect() as conn:
        with conn.begin():
            where, params = a_row(conn, table)
            other_where, other_params = a_row(conn, other)
            with allow_delete(conn, table):
                deleted = conn.execute(sa.text(f"DELETE FROM {table} WHERE {where}"), params)
                assert deleted.rowcount == 1
                # Only the named table...
                assert f"strongroom: {other} is append-only" in refused(
                    conn, f"DELETE FROM {other} WHERE {other_where}", other_params
                )
                # ...and never an UPDATE.
                assert f"strongroom: {table} is append-only" in refused(
                    conn, f"UPDATE {table} SET {EDITED[table]} = 'forged'"
                )
                if db.dialect == "postgresql":
                    # Another session does not share the setting (it aims at the rows this
                    # transaction has not deleted, so it does not wait for its row lock).
                    with db.engine.begin() as elsewhere:
                        assert f"strongroom: {table} is append-only" in refused(
                            elsewhere, f"DELETE FROM {table} WHERE NOT ({where})", params
                        )
                    assert f"strongroom: {table} is append-only" in refused(
                        conn, f"TRUNCATE {table} CASCADE"
                    )
                else:
                    # Other connections never see the marker (SQLite has one writer at a
                    # time, and a reader sees only committed schema).
                    assert not markers_seen_elsewhere(db)
        # The transaction is over: the same connection is refused again.
        with conn.begin():
            assert f"strongroom: {table} is append-only" in refused(conn, f"DELETE FROM {table}")
        with conn.begin():
            if db.dialect == "sqlite":  # the marker table is gone with its transaction
                assert not markers_seen_elsewhere(db)
            else:
                assert not conn.execute(
                    sa.text("SELECT current_setting('strongroom.allow_delete', true)")
                ).scalar()
    assert counts(db.engine) == {**before, table: before[table] - 1}


async def test_a_rolled_back_bypass_deletes_nothing(db: Db) -> None:
    before = await populated(db)
    with db.engine.connect() as conn:
        transaction = conn.begin()
        with allow_delete(conn, "log_entries"):
            conn.execute(sa.text("DELETE FROM log_entries"))
        transaction.rollback()
        with conn.begin():
            assert "strongroom: log_entries is append-only" in refused(
                conn, "DELETE FROM log_entries"
            )
    assert counts(db.engine) == before


# -- the migration -----------------------------------------------------------------------------


async def test_a_database_at_0003_migrates_to_the_guards_and_back(db: Db) -> None:
    at_revision(db, "0003")
    with db.engine.connect() as conn:
        assert guards(conn) == set()

    # Opening migrates 0003 -> head. No blob is kept inline: below 0012 there is no place
    # for one, and a downgrade that would lose them is refused (the next test).
    await populated(db, inline_threshold=0)
    with db.engine.begin() as conn:
        assert guards(conn) == expected_guards(db.dialect)
        assert "is append-only" in refused(conn, "UPDATE audit_entries SET body = body")

    with db.engine.begin() as conn:
        alembic(conn, "downgrade", "0003")
    with db.engine.begin() as conn:
        assert guards(conn) == set()
        assert not guard_function_exists(conn)
        conn.execute(sa.text("UPDATE audit_entries SET body = body"))  # history is plain again

    async with await db.open() as vault:  # and back to head
        assert (await vault.verify()).ok
    with db.engine.connect() as conn:
        assert guards(conn) == expected_guards(db.dialect)


async def test_a_downgrade_that_would_lose_inline_blobs_is_refused(db: Db) -> None:
    before = await populated(db)
    assert before["inline_blobs"] >= 2
    with db.engine.begin() as conn, pytest.raises(UnsupportedFormat, match="would be lost"):
        alembic(conn, "downgrade", "0011")
    assert counts(db.engine) == before
    async with await db.open() as vault:
        assert (await vault.verify()).ok


# -- the tamper helper -------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["sqlalchemy", "driver"])
async def test_the_tamper_helper_drops_every_guard(db: Db, via: str) -> None:
    await populated(db)
    if via == "sqlalchemy":
        with db.engine.begin() as conn:
            drop_append_only_guards(conn)
            drop_append_only_guards(conn)  # idempotent
    elif db.dialect == "sqlite":
        database = make_url(str(db.engine.url)).database
        assert database is not None
        lite = sqlite3.connect(database)
        try:
            with lite:
                drop_append_only_guards(lite)
        finally:
            lite.close()
    else:
        with psycopg.connect(libpq_url(db.vault_url)) as pg:
            drop_append_only_guards(pg)
    with db.engine.begin() as conn:
        assert guards(conn) == set()
        conn.execute(sa.text("UPDATE log_entries SET body = body"))
        conn.execute(sa.text("DELETE FROM artifact_tags"))


# -- PostgreSQL: the documented roles ----------------------------------------------------------


@pytest.mark.postgres
async def test_the_documented_roles_keep_the_application_to_appending(
    roles: Roles, tmp_path: Path
) -> None:
    blobs = str(tmp_path / "blobs")
    # Step 2: the owner opens the vault, which creates the schema.
    async with await Vault.open(roles.url(roles.owner), blobs_url=blobs) as vault:
        await populate(vault)
    # Step 3: the owner grants.
    execute_as(roles.url(roles.owner), [roles.render(s) for s in documented_role_sql()["3"]])

    owner_engine = sa.create_engine(psycopg_url(roles.url(roles.owner)))
    try:
        before = counts(owner_engine)
        # The application works as the app role: it appends to every table, changes runs...
        async with await Vault.open(
            roles.url(roles.app), blobs_url=blobs, checkpoint_interval=CHECKPOINT_INTERVAL
        ) as vault:
            await populate(vault)
            page = await vault.runs.list()
            for run in page.items:
                await vault.runs.complete(run.run_id)  # seals the log: runs and log_refs
            assert (await vault.verify()).ok
        after = counts(owner_engine)
        assert all(after[table] > before[table] for table in APPEND_ONLY), (before, after)
    finally:
        owner_engine.dispose()

    # ...and can neither change history nor lift the guards, whatever it tries.
    with psycopg.connect(libpq_url(roles.url(roles.app)), autocommit=True) as app:
        attempts = [
            *(f"UPDATE {table} SET {EDITED[table]} = {EDITED[table]}" for table in APPEND_ONLY),
            *(f"DELETE FROM {table}" for table in APPEND_ONLY),
            *(f"TRUNCATE {table}" for table in APPEND_ONLY),
            "TRUNCATE runs CASCADE",
            "DROP TRIGGER audit_entries_append_only ON audit_entries",
            "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only",
            "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
            "DROP FUNCTION strongroom_append_only() CASCADE",
            "CREATE OR REPLACE FUNCTION strongroom_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN COALESCE(NEW, OLD); END $$",
            "ALTER TABLE audit_entries OWNER TO CURRENT_USER",
            "SET session_replication_role = replica",
            "CREATE TABLE audit_entries_shadow (seq bigint)",
        ]
        for attempt in attempts:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(attempt.encode())
    # The bypass needs DELETE privilege, which the app role does not have.
    with psycopg.connect(libpq_url(roles.url(roles.app))) as app_transaction:
        app_transaction.execute(b"SET LOCAL strongroom.allow_delete = 'log_entries'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_transaction.execute(b"DELETE FROM log_entries")
        app_transaction.rollback()
    owner_engine = sa.create_engine(psycopg_url(roles.url(roles.owner)))
    try:
        with owner_engine.connect() as conn:
            assert guards(conn) == expected_guards("postgresql")
        assert counts(owner_engine) == after
    finally:
        owner_engine.dispose()


async def test_a_run_deletion_leaves_the_door_closed(db: Db) -> None:
    """Retention's deletion opens DELETE for its own transaction only: afterwards no marker
    table is left (SQLite) and a plain DELETE of every chained table is refused again."""
    await populated(db)
    async with await db.open() as vault:
        run = await vault.runs.create(project="door", actor="tester")
        await vault.runs.start(run.run_id)
        await vault.artifacts.put_bytes(run.run_id, b"gone soon", name="g.txt")
        await vault.runs.complete(run.run_id)
        await vault.retention.delete_run(run.run_id, reason="door test")
        assert (await vault.verify(record=False)).ok
    with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            markers = conn.execute(
                sa.text("SELECT name FROM sqlite_master WHERE name LIKE 'strongroom_allow%'")
            ).all()
            assert markers == []
        for table in APPEND_ONLY:
            assert f"strongroom: {table} is append-only" in refused(conn, f"DELETE FROM {table}")
