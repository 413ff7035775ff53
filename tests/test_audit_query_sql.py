"""`AuditQuery` on the SQL stores: every filter walks its own index in the page's order (no
scan of the chain, no sort), the filter with the fewest rows drives a page with several, and
migration 0008 fills the query columns of entries written before it, under the append-only
guard, so that verify and the filters agree with the chain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from _pg_roles import psycopg_url
from strongroom.adapters._sql import MIGRATIONS_DIR
from strongroom.adapters._sql.audit import _count_statement, _driver, audit_page_statement
from strongroom.models import GENESIS_HASH, AuditEntry, AuditQuery, audit_columns, entry_hash
from strongroom.vault import Vault

RUN = "01890000-0000-7000-8000-000000000001"


@dataclass
class Db:
    """A vault's records database: its URL for `Vault.open` and a sync engine on it."""

    url: str
    blobs: str
    engine: sa.Engine

    async def open(self, **options: Any) -> Vault:
        return await Vault.open(self.url, blobs_url=self.blobs, checkpoint_interval=4, **options)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        url = str(tmp_path / "vault")
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'vault' / 'vault.db'}")
    else:
        url = request.getfixturevalue("pg_url")
        engine = sa.create_engine(psycopg_url(url))
    try:
        yield Db(url, str(tmp_path / "blobs"), engine)
    finally:
        engine.dispose()


def plan(db: Db, statement: sa.ClauseElement) -> str:
    """The plan of ``statement``; on PostgreSQL with sequential scans and sorts priced out
    (as on a chain far too long to scan or sort per page)."""
    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "sqlite":
            return "\n".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_sort = off")
        return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))


@pytest.mark.parametrize(
    ("query", "driver", "index"),
    [
        (AuditQuery(event="run.created"), "event", "ix_audit_entries_event_seq"),
        (AuditQuery(event="run.", before_seq=90), "event", "ix_audit_entries_event_seq"),
        (AuditQuery(actor="ada", before_seq=90), "actor", "ix_audit_entries_actor_seq"),
        (AuditQuery(actor="ada", after_seq=10), "actor", "ix_audit_entries_actor_seq"),
        (AuditQuery(run_id=RUN, before_seq=90), "run_id", "ix_audit_entries_run_id_seq"),
        (
            AuditQuery(run_id=RUN, event="log.", actor="ada"),
            "run_id",
            "ix_audit_entries_run_id_seq",
        ),
        (AuditQuery(event="run.", actor="ada"), "actor", "ix_audit_entries_actor_seq"),
    ],
)
async def test_a_filtered_page_walks_one_index_in_order(
    db: Db, query: AuditQuery, driver: str, index: str
) -> None:
    async with await db.open():
        pass  # the schema
    # An event prefix drives as one range per name under it.
    name = "run.created" if driver == "event" and query.event_prefix else None
    page = plan(db, audit_page_statement(query, driver, name))
    assert index in page, page
    assert "TEMP B-TREE" not in page, page
    assert "Sort" not in page, page
    if db.engine.dialect.name == "sqlite":
        assert f"SEARCH audit_entries USING INDEX {index}" in page, page
    counted = plan(db, _count_statement(query, driver))
    assert index in counted, counted
    assert "Seq Scan" not in counted, counted


async def test_an_unfiltered_page_walks_the_chain_key_backwards(db: Db) -> None:
    async with await db.open():
        pass
    page = plan(db, audit_page_statement(AuditQuery(before_seq=1000), None))
    for step in ("TEMP B-TREE", "Sort", "Seq Scan"):
        assert step not in page, page


async def test_the_filter_with_the_fewest_rows_drives(db: Db) -> None:
    async with await db.open() as vault:
        for _ in range(12):
            await vault.runs.create(project="p", actor="busy")
        quiet = await vault.runs.create(project="p", actor="quiet")
        await vault.runs.start(quiet.run_id, actor="busy")
    with db.engine.connect() as conn:
        assert _driver(conn, AuditQuery(actor="busy", run_id=quiet.run_id)) == "run_id"
        assert _driver(conn, AuditQuery(actor="quiet", event="run.")) == "actor"
        assert _driver(conn, AuditQuery(actor="busy", event="run.status")) == "event"
        assert _driver(conn, AuditQuery(actor="busy")) == "actor"
        assert _driver(conn, AuditQuery()) is None


# -- migration 0008 ----------------------------------------------------------------------------


def _alembic(db: Db, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def _columns(db: Db) -> dict[int, dict[str, str | None]]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT seq, event, actor, run_id FROM audit_entries"))
        return {
            int(seq): {"event": event, "actor": actor, "run_id": run_id}
            for seq, event, actor, run_id in rows
        }


async def _history(vault: Vault) -> str:
    run = await vault.runs.create(project="m", actor="ada")
    await vault.runs.start(run.run_id)
    await vault.artifacts.put_bytes(run.run_id, b"x", name="x.bin")
    await vault.audit.record(
        {
            "event": "execution.start",
            "subject_type": "tool_invocation",
            "subject_id": "r1",
            "details": {"run_id": run.run_id},
        }
    )
    await vault.audit.record(
        {
            "event": "registry.approved",
            "subject_type": "approval",
            "subject_id": "a1",
            "details": {"target": {"scope": "run", "run_id": run.run_id}},
        }
    )
    await vault.runs.complete(run.run_id)
    # An entry copied verbatim from elsewhere whose actor no query can ask for.
    head = await vault.audit.head()
    assert head is not None
    odd = AuditEntry.model_construct(
        seq=head.seq + 1,
        timestamp=head.timestamp,
        event="imported.thing",
        actor="not a name " * 20,
        subject_type="run",
        subject_id="not-an-id",
        details={},
        records=[],
        prev_hash=head.hash,
        hash=GENESIS_HASH,
        canon=head.canon,
    )
    await vault.metadata.append_audit_entries([odd.model_copy(update={"hash": entry_hash(odd)})])
    return run.run_id


# The two tests below downgrade to 0007, below inline blobs (0012), which is refused while
# rows would be lost: their vaults keep no blob inline.
NO_INLINE = {"inline_threshold": 0}


async def test_the_migration_fills_the_columns_of_older_entries(db: Db) -> None:
    async with await db.open(**NO_INLINE) as vault:
        run_id = await _history(vault)
        entries = await vault.audit.entries(limit=1000)
    expected = {e.seq: audit_columns(e) for e in entries}
    assert _columns(db) == expected
    odd = entries[-1]
    assert expected[odd.seq] == {"event": "imported.thing", "actor": None, "run_id": None}
    assert {s for s, c in expected.items() if c["run_id"] == run_id} >= {
        e.seq for e in entries if e.event in ("execution.start", "registry.approved")
    }

    _alembic(db, "downgrade", "0007")
    with db.engine.connect() as conn:
        names = {c["name"] for c in sa.inspect(conn).get_columns("audit_entries")}
    assert names == {"seq", "hash", "body"}

    async with await db.open() as vault:  # migrates to head: the backfill
        assert _columns(db) == expected
        report = await vault.verify()
        assert report.ok, report.problems
        page = await vault.audit.query(run_id=run_id, after_seq=0, limit=1000)
        assert [e.seq for e in page.entries] == sorted(
            s for s, c in expected.items() if c["run_id"] == run_id
        )
        await vault.runs.create(project="m", actor="ada")  # appends still work
    # The guard is back: history cannot be edited.
    with pytest.raises(sa.exc.DBAPIError) as caught, db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 1"))
    assert "append-only" in str(caught.value)


async def test_the_migration_leaves_a_damaged_body_to_verify(db: Db) -> None:
    async with await db.open(**NO_INLINE) as vault:
        await _history(vault)
    _alembic(db, "downgrade", "0007")
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "sqlite":
            conn.execute(sa.text("DROP TRIGGER audit_entries_no_update"))
        else:
            conn.execute(
                sa.text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only")
            )
        conn.execute(sa.text("UPDATE audit_entries SET body = '{not json' WHERE seq = 2"))
    async with await db.open(bootstrap=False) as vault:
        assert _columns(db)[2] == {"event": None, "actor": None, "run_id": None}
        report = await vault.verify()
        assert [p.subject for p in report.problems if p.kind == "audit_chain"] == ["audit#2"]


def test_queries_from_threads_see_the_same_pages(db: Db) -> None:
    """Pages read while another task appends stay consistent (one read transaction)."""

    async def scenario() -> None:
        async with await db.open() as vault:
            run = await vault.runs.create(project="t", actor="ada")

            async def write() -> None:
                for _ in range(20):
                    await vault.audit.record(
                        {"event": "t.tick", "subject_type": "run", "subject_id": run.run_id}
                    )

            async def read() -> None:
                for _ in range(20):
                    page = await vault.audit.query(run_id=run.run_id, limit=5)
                    seqs = [e.seq for e in page.entries]
                    assert seqs == sorted(seqs, reverse=True)
                    assert all(e.event in ("run.created", "t.tick") for e in page.entries)

            await asyncio.gather(write(), read())

    asyncio.run(scenario())
