"""The run index benchmark's baseline must run exactly the SQL the adapter runs.

``benchmarks/run_index.py`` times hand-written (capped) COUNT + page statements through plain
``sqlite3`` / ``psycopg`` beside ``vault.runs.list``; if the adapter's statements change
(another filter order, a cast, a new clause) the baseline would silently measure a different
query. These tests compile the adapter's own statements for both dialects and compare.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from strongroom.adapters._cursor import encode_run_cursor
from strongroom.adapters._sql import run_index_statements
from strongroom.ids import new_id
from strongroom.models import RunQuery, RunStatus

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the benchmarks package lives beside src/, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks._backends import qmark_to_format  # noqa: E402
from benchmarks.run_index import (  # noqa: E402
    COUNT_LIMIT,
    PAGE,
    POSTGRES_SQL,
    SQLITE_SQL,
    IndexSql,
)

DIALECTS: dict[str, tuple[Dialect, IndexSql]] = {
    "sqlite": (sqlite.dialect(), SQLITE_SQL),
    # SQLAlchemy 2.1's default PostgreSQL dialect is psycopg 3's, the adapter's driver
    "postgresql": (postgresql.dialect(), POSTGRES_SQL),  # type: ignore[no-untyped-call]
}


def _compiled(statement: ClauseElement, dialect: Dialect) -> str:
    """The statement as the driver receives it: IN lists expanded, one line, and named
    pyformat placeholders (``%(name)s``) turned into psycopg's positional ``%s``."""
    text = str(statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))
    return re.sub(r"%\([a-z0-9_]+\)s", "%s", " ".join(text.split()))


def _flat(sql: str) -> str:
    return " ".join(sql.split())


def _count_cap(statement: ClauseElement, dialect: Dialect) -> list[object]:
    """The integer parameters of a capped COUNT: its LIMIT (and SQLite's OFFSET)."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return [value for value in compiled.params.values() if isinstance(value, int)]


def test_the_baseline_counts_with_the_default_count_limit() -> None:
    assert RunQuery().count_limit == COUNT_LIMIT == 10_000


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_filtered_page_sql_is_the_adapters(dialect_name: str) -> None:
    dialect, sql = DIALECTS[dialect_name]
    assert dialect.driver in ("pysqlite", "psycopg")
    query = RunQuery(status=[RunStatus.RUNNING], project="project-00", limit=PAGE)
    count, page = run_index_statements(query)
    assert _flat(sql.count_filtered) == _compiled(count, dialect)
    assert _count_cap(count, dialect) == [COUNT_LIMIT + 1, *sql.page_tail]
    assert _flat(sql.page_filtered.format(cursor="")) == _compiled(page, dialect)


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_cursor_page_sql_is_the_adapters(dialect_name: str) -> None:
    dialect, sql = DIALECTS[dialect_name]
    cursor = encode_run_cursor(datetime(2026, 7, 1, tzinfo=UTC), new_id())
    query = RunQuery(status=[RunStatus.RUNNING], project="project-00", limit=PAGE, cursor=cursor)
    _, page = run_index_statements(query)
    assert _flat(sql.page_filtered.format(cursor=sql.cursor)) == _compiled(page, dialect)


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_search_sql_is_the_adapters(dialect_name: str) -> None:
    dialect, sql = DIALECTS[dialect_name]
    count, page = run_index_statements(RunQuery(purpose_contains="ledger", limit=PAGE))
    assert _flat(sql.count_search) == _compiled(count, dialect)
    assert _count_cap(count, dialect) == [COUNT_LIMIT + 1, *sql.page_tail]
    assert _flat(sql.page_search) == _compiled(page, dialect)


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_exact_count_is_a_plain_count(dialect_name: str) -> None:
    dialect, _ = DIALECTS[dialect_name]
    query = RunQuery(status=[RunStatus.RUNNING], project="project-00", count_limit=None)
    count, _ = run_index_statements(query)
    assert _compiled(count, dialect).startswith("SELECT count(*) AS count_1 FROM runs WHERE ")
    assert "LIMIT" not in _compiled(count, dialect)


def test_postgres_raw_records_placeholders() -> None:
    assert qmark_to_format("INSERT INTO t (a, b) VALUES (?, ?)") == (
        "INSERT INTO t (a, b) VALUES (%s, %s)"
    )
    with pytest.raises(ValueError, match="execute_native"):
        qmark_to_format("SELECT 1 WHERE a LIKE '%' || ?")
