"""Which schema revision a records database is at, and bringing it to head with Alembic.

The revisions themselves live in ``adapters/migrations``; this module only points Alembic at
them and runs them on a connection the store already holds inside its write transaction.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

__all__ = [
    "MIGRATIONS_DIR",
    "current_revisions",
    "known_revisions",
    "schema_heads",
    "upgrade_to_head",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent.parent / "migrations"


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    # ConfigParser interpolation: a '%' in the install path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def schema_heads() -> frozenset[str]:
    """The head revision(s) of the shipped migrations (parsed once per process)."""
    return frozenset(ScriptDirectory.from_config(_alembic_config()).get_heads())


@cache
def known_revisions() -> frozenset[str]:
    """Every revision the shipped migrations know (a database at any other is newer)."""
    script = ScriptDirectory.from_config(_alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


def upgrade_to_head(connection: Connection) -> None:
    # The connection is already inside our write transaction, so env.py runs every
    # migration in it: concurrent openers serialize on the write lock, and the loser
    # finds the schema at head and does nothing.
    command.upgrade(_alembic_config(connection), "head")
