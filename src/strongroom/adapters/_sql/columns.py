"""The column types and the one ``metadata`` every table of the records schema is declared on
(`tables`: runs, snapshots, artifacts, logs, audit, catalog; `registry_tables`: the registry
and actors). ``strongroom.adapters._sql`` imports both table modules, so its ``metadata`` holds
the whole schema whatever was imported first.

- Timestamps (`UtcTimestamp`): fixed-width ISO-8601 UTC text on SQLite
  (``2026-11-22T06:36:29.123456+00:00``, 32 characters, so text order is time order), native
  ``timestamptz`` on PostgreSQL. Both round-trip tz-aware UTC datetimes to the microsecond.
- Sorted keys (ids, names, paths, `_key`) compare byte-wise on both backends: SQLite's default
  BINARY collation, ``COLLATE "C"`` on PostgreSQL (a locale collation would order paths
  differently).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import BigInteger, Dialect, Integer, MetaData, String, TypeDecorator
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

__all__ = ["NAMING_CONVENTION", "UtcTimestamp", "format_timestamp", "metadata"]


class UtcTimestamp(TypeDecorator[datetime]):
    """A tz-aware UTC datetime: fixed-width ISO text on SQLite, ``timestamptz`` on PostgreSQL."""

    impl = String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(String(32))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps stored in the records database must be timezone-aware")
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        if dialect.name == "postgresql":
            return utc
        return utc.isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                # Text that is no timestamp can only be a hand edit (SQLite stores text):
                # read as missing, so the column-versus-body check names the row instead of
                # the whole read failing.
                return None
        if not isinstance(value, datetime):
            return None
        return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """The fixed-width text form: 32 characters (isoformat pads the year to 4 digits, and
    timespec keeps the microseconds even when they are zero), so text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _key(length: int) -> TypeEngine[str]:
    """A string compared byte-wise on every backend (ids, names, paths)."""
    return String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _seq() -> TypeEngine[int]:
    # INTEGER PRIMARY KEY is SQLite's rowid alias: the table is clustered by seq, no extra index.
    return BigInteger().with_variant(Integer(), "sqlite")


_ID = 36  # canonical UUID text; ULIDs (26) fit too
_NAME = 128
_DIGEST = 64

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
