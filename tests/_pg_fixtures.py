"""PostgreSQL for the tests: a fresh, uniquely named database per test, dropped afterwards.

The server is found at ``STRONGROOM_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; the role must be allowed to CREATE DATABASE).
Unreachable, the PostgreSQL tests are skipped, except under CI (``CI=true``), where a missing
server is a failure rather than a silently green run.

Registered in ``tests/conftest.py``; tests using these fixtures are marked ``postgres``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from strongroom.adapters import safe_url

__all__ = [
    "POSTGRES_URL_ENV",
    "admin_url",
    "create_database",
    "database_url",
    "drop_database",
    "fresh_database",
    "libpq_url",
    "pg_server",
    "pg_url",
    "require_postgres",
]

POSTGRES_URL_ENV = "STRONGROOM_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "strongroom_test_"


def admin_url() -> str:
    """A libpq URL of a database on the test server that new databases are created from."""
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def libpq_url(url: str) -> str:
    """The URL as libpq reads it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@functools.cache
def _unreachable_reason() -> str | None:
    try:
        with psycopg.connect(libpq_url(admin_url()), connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return None


def require_postgres() -> None:
    """Skip (fail under CI) the calling test when the test server cannot be reached."""
    reason = _unreachable_reason()
    if reason is None:
        return
    where = safe_url(admin_url())
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL not reachable at {where} under CI ({reason})", pytrace=False)
    pytest.skip(
        f"PostgreSQL not reachable at {where}: start it or set {POSTGRES_URL_ENV} ({reason})"
    )


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server (same user, password and options)."""
    return make_url(admin_url()).set(database=name).render_as_string(hide_password=False)


def _admin_execute(statement: sql.Composed) -> None:
    with psycopg.connect(libpq_url(admin_url()), autocommit=True) as conn:
        conn.execute(statement)


def create_database() -> str:
    """Create an empty, uniquely named database; returns its URL."""
    require_postgres()
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex}"
    _admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(name)


def drop_database(url: str) -> None:
    """Drop a database made by `create_database`, disconnecting whoever is still on it."""
    name = make_url(url).database or ""
    if not name.startswith(DATABASE_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    _admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The test server's admin URL, once it is known to answer (skip or fail otherwise)."""
    require_postgres()
    return admin_url()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A new empty database for this test only (``postgresql://`` URL), dropped afterwards."""
    with fresh_database() as url:
        yield url
