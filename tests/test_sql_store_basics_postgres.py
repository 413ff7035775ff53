"""The SQL records store's port tests (tests/test_sql_store_basics.py) on PostgreSQL.

Every test there that needs only the ``store`` fixture runs here unchanged, on a fresh
database per test; the two that edit a row behind the store's back have PostgreSQL twins below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

import test_sql_store_basics as basics
from _sql_tamper import drop_append_only_guards
from strongroom.adapters._postgres import PostgresMetadataStore, open_postgres_store
from strongroom.errors import IntegrityError
from strongroom.models import RunQuery

pytestmark = pytest.mark.postgres

_EDITS_SQLITE_ROWS = frozenset(
    {
        "test_a_hand_edited_row_that_no_longer_validates_is_an_integrity_error",
        "test_log_entries_are_read_from_the_body_not_the_index_columns",
    }
)
_PORT_TESTS: dict[str, Callable[..., Any]] = {
    name: test
    for name, test in vars(basics).items()
    if name.startswith("test_") and callable(test) and name not in _EDITS_SQLITE_ROWS
}
globals().update(_PORT_TESTS)  # collected by pytest as tests of this module


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresMetadataStore]:
    opened = await open_postgres_store(pg_url)
    yield opened
    await opened.close()


def edit_row(url: str, sql: bytes, *params: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        drop_append_only_guards(conn)  # the database's owner can drop them first
        assert conn.execute(sql, params).rowcount == 1


async def test_a_hand_edited_row_that_no_longer_validates_is_an_integrity_error(
    store: PostgresMetadataStore, pg_url: str
) -> None:
    run = basics.make_run()
    await store.insert_run(run)
    edit_row(pg_url, b"UPDATE runs SET body = replace(body, '\"pending\"', '\"hacked\"')")
    with pytest.raises(IntegrityError):
        await store.get_run(run.run_id)
    with pytest.raises(IntegrityError):
        await store.query_runs(RunQuery())


async def test_log_entries_are_read_from_the_body_not_the_index_columns(
    store: PostgresMetadataStore, pg_url: str
) -> None:
    run = basics.make_run()
    await store.insert_run(run)
    [entry] = basics.make_log_entries(run.run_id, range(1, 2))
    await store.append_log_entries([entry])
    edit_row(pg_url, b"UPDATE log_entries SET hash = %s, level = 'error'", "0" * 64)
    assert await store.log_head(run.run_id) == entry
