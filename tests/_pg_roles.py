"""The documented PostgreSQL role setup (migration 0004's docstring, repeated in
docs/security.md) made for real: a database, an owner role that migrates, an application role
that works, both dropped afterwards. Registered in ``tests/conftest.py``."""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from _pg_fixtures import DATABASE_PREFIX, admin_url, database_url, drop_database, libpq_url
from strongroom.adapters._sql import MIGRATIONS_DIR

__all__ = [
    "PLACEHOLDER_PASSWORD",
    "Roles",
    "documented_role_sql",
    "execute_as",
    "load_migration",
    "psycopg_url",
    "roles",
]


@cache
def load_migration(name: str) -> ModuleType:
    """A revision module by file stem (its file name is not importable as a module name)."""
    path = MIGRATIONS_DIR / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"strongroom_migration_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def psycopg_url(url: str) -> str:
    """A ``postgresql://`` URL for SQLAlchemy's psycopg 3 driver."""
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(False)


def documented_role_sql() -> dict[str, list[str]]:
    """The role setup SQL of the 0004 docstring (which docs/security.md repeats), by step."""
    doc = load_migration("0004_append_only").__doc__
    assert doc is not None
    block = doc.split("PostgreSQL roles", 1)[1].split("::\n\n", 1)[1]
    steps: dict[str, list[str]] = {}
    step = ""
    pending: list[str] = []
    for raw in block.splitlines():
        if raw and not raw.startswith("    "):
            break
        line = raw.strip()
        if found := re.match(r"-- (\d)\.", line):
            step = found.group(1)
            steps[step] = []
        elif line and not line.startswith("--"):
            pending.append(line)
            if line.endswith(";"):
                steps[step].append(" ".join(pending).removesuffix(";"))
                pending = []
    assert not pending, pending
    return steps


# The docstring's placeholder ``PASSWORD '...'``, used as is: the roles log in under trust and
# password authentication alike.
PLACEHOLDER_PASSWORD = "..."


@dataclass
class Roles:
    owner: str
    app: str
    database: str

    def url(self, role: str) -> str:
        return (
            make_url(database_url(self.database))
            .set(username=role, password=PLACEHOLDER_PASSWORD)
            .render_as_string(False)
        )

    def render(self, statement: str) -> str:
        statement = re.sub(r"\bstrongroom_owner\b", self.owner, statement)
        statement = re.sub(r"\bstrongroom_app\b", self.app, statement)
        return re.sub(r"\bDATABASE strongroom\b", f"DATABASE {self.database}", statement)


def execute_as(url: str, statements: list[str]) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


@pytest.fixture
def roles(pg_server: str) -> Iterator[Roles]:
    """A database and its two roles made by step 1 of the documented setup; all dropped."""
    suffix = uuid.uuid4().hex[:12]
    made = Roles(f"sr_owner_{suffix}", f"sr_app_{suffix}", f"{DATABASE_PREFIX}{suffix}")
    creating = [made.render(s) for s in documented_role_sql()["1"]]
    server_wide = [s for s in creating if s.startswith(("CREATE ROLE", "CREATE DATABASE"))]
    assert len(server_wide) == 3, creating
    assert all(f"PASSWORD '{PLACEHOLDER_PASSWORD}'" in s for s in server_wide[:2]), server_wide
    try:
        execute_as(admin_url(), server_wide)
        execute_as(database_url(made.database), [s for s in creating if s not in server_wide])
        yield made
    finally:
        drop_database(database_url(made.database))
        with psycopg.connect(libpq_url(admin_url()), autocommit=True) as conn:
            for role in (made.app, made.owner):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
