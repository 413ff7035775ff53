"""The shipped migrations build exactly the schema the code declares, and opening is idempotent.

Parametrised by backend: a backend supplies a `SchemaBackend` (fresh databases, a store on
them, a sync engine to inspect them). PostgreSQL joins by adding one more entry to BACKENDS.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from strongroom.adapters._sql import MIGRATIONS_DIR, SqlMetadataStore, metadata, schema_heads
from strongroom.adapters._sqlite import SqliteMetadataStore
from strongroom.errors import UnsupportedFormat
from strongroom.models import Provider, ProviderType

VERSION_TABLE = "alembic_version"


@dataclass
class SchemaBackend:
    """Fresh empty databases of one backend, and the two ways to put a schema in them."""

    name: str
    new_database: Callable[[], str]  # returns a sync SQLAlchemy URL of a new, empty database
    store_for: Callable[[str], SqlMetadataStore]
    engines: list[sa.Engine] = field(default_factory=list)

    def engine(self, url: str) -> sa.Engine:
        engine = sa.create_engine(url)
        self.engines.append(engine)
        return engine

    async def migrated(self) -> sa.Engine:
        """A database brought to head by the store's own open()."""
        url = self.new_database()
        store = self.store_for(url)
        await store.open()
        await store.close()
        return self.engine(url)

    def created(self) -> sa.Engine:
        """A database built by MetaData.create_all, no migrations."""
        engine = self.engine(self.new_database())
        metadata.create_all(engine)
        return engine


def sqlite_backend(tmp_path: Path) -> SchemaBackend:
    counter = iter(range(1_000_000))

    def new_database() -> str:
        return f"sqlite:///{tmp_path / f'db{next(counter)}.sqlite'}"

    def store_for(url: str) -> SqlMetadataStore:
        return SqliteMetadataStore(Path(sa.make_url(url).database or ""))

    return SchemaBackend("sqlite", new_database, store_for)


BACKENDS: dict[str, Callable[[Path], SchemaBackend]] = {"sqlite": sqlite_backend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SchemaBackend]:
    made = BACKENDS[request.param](tmp_path)
    yield made
    for engine in made.engines:
        engine.dispose()


def describe_schema(engine: sa.Engine) -> dict[str, Any]:
    """Everything the drift test compares, per table, in a form that prints readably."""
    inspector = sa.inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {VERSION_TABLE}):
        pk = inspector.get_pk_constraint(table)
        schema[table] = {
            "columns": [
                (
                    column["name"],
                    column["type"].compile(dialect=engine.dialect),
                    column["nullable"],
                    column.get("default"),
                )
                for column in inspector.get_columns(table)
            ],
            "primary_key": (pk.get("name"), tuple(pk["constrained_columns"])),
            "foreign_keys": sorted(
                (
                    fk.get("name"),
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    tuple(sorted((fk.get("options") or {}).items())),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ),
            "unique_constraints": sorted(
                (uq["name"], tuple(uq["column_names"]))
                for uq in inspector.get_unique_constraints(table)
            ),
        }
    return schema


def current_revisions(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


async def test_migrations_build_exactly_the_declared_schema(backend: SchemaBackend) -> None:
    migrated = describe_schema(await backend.migrated())
    created = describe_schema(backend.created())
    assert set(migrated) == {table.name for table in metadata.sorted_tables}
    assert migrated == created


async def test_autogenerate_finds_nothing_to_migrate(backend: SchemaBackend) -> None:
    engine = await backend.migrated()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


async def test_open_brings_a_new_database_to_head(backend: SchemaBackend) -> None:
    engine = await backend.migrated()
    assert current_revisions(engine) == set(schema_heads())


async def test_opening_twice_is_idempotent_and_keeps_the_data(backend: SchemaBackend) -> None:
    url = backend.new_database()
    store = backend.store_for(url)
    await store.open()
    await store.open()  # already open: a no-op
    await store.put_provider(_provider())
    await store.close()

    again = backend.store_for(url)
    await again.open()
    try:
        assert [p.provider_id for p in await again.list_providers()] == ["local"]
    finally:
        await again.close()
    engine = backend.engine(url)
    assert current_revisions(engine) == set(schema_heads())
    with engine.connect() as conn:
        assert conn.scalar(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")) == 1


async def test_concurrent_first_opens_migrate_once(backend: SchemaBackend) -> None:
    url = backend.new_database()
    stores = [backend.store_for(url) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    for store in stores:
        await store.close()
    assert current_revisions(backend.engine(url)) == set(schema_heads())


async def test_a_database_from_a_newer_strongroom_is_refused(backend: SchemaBackend) -> None:
    engine = await backend.migrated()
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999_from_the_future'"))
    store = backend.store_for(str(engine.url))
    with pytest.raises(UnsupportedFormat) as caught:
        await store.open()
    assert caught.value.details["reason"] == "schema_too_new"
    await store.close()


async def test_downgrade_to_base_and_upgrade_again_round_trips(backend: SchemaBackend) -> None:
    engine = await backend.migrated()
    before = describe_schema(engine)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert describe_schema(engine) == {}
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    assert describe_schema(engine) == before


# -- SQLite only -------------------------------------------------------------------------------


async def test_reopening_an_up_to_date_sqlite_database_needs_no_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.db"
    store = SqliteMetadataStore(path)
    await store.open()
    await store.close()

    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
        again = SqliteMetadataStore(path)
        await asyncio.wait_for(again.open(), timeout=10)
        await again.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def _provider() -> Provider:
    return Provider(
        provider_id="local",
        name="Local",
        type=ProviderType.FILESYSTEM,
        owner="ops",
        base_uri="file:///srv",
    )
