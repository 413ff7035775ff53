"""SQL adapter of the records port: SQLAlchemy Core tables, queries and the one error mapping.

Dialect-neutral on purpose: the same statements run on SQLite and PostgreSQL. A backend module
(``_sqlite``, later ``_postgres``) only builds the engine and decides how a transaction begins.

Schema (created only by the Alembic migrations in ``adapters/migrations``; a drift test proves
they build exactly ``metadata``):

- Every record is stored whole as JSON (``model_dump_json``) in ``body`` and read back with
  ``Model.model_validate_json``; the other columns are copies of fields, kept for filtering,
  sorting, joining and constraints. A row edited by hand therefore fails validation (reported
  as `IntegrityError`) or breaks a hash chain that ``verify`` recomputes from the body.
- Timestamps (`UtcTimestamp`): fixed-width ISO-8601 UTC text on SQLite
  (``2026-11-22T06:36:29.123456+00:00``, 32 characters, so text order is time order), native
  ``timestamptz`` on PostgreSQL. Both round-trip tz-aware UTC datetimes to the microsecond.
- Sorted keys (ids, names, paths) compare byte-wise on both backends: SQLite's default BINARY
  collation, ``COLLATE "C"`` on PostgreSQL (a locale collation would order paths differently).
- Referential integrity is the database's: snapshots, artifacts, log entries and log references
  need their run, namespaces their provider, objects their namespace (violations: `NotFound`).

Run index: one composite index per common filter, each ending in the sort key, and keyset
pagination on (sort column, run_id). The cursor is ``base64url(JSON [sort_value_iso, run_id])``.
Time filters are half-open: ``*_after`` is inclusive, ``*_before`` exclusive.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from abc import abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

import pydantic
import sqlalchemy.exc as sa_exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Dialect,
    Executable,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeEngine

from strongroom.errors import (
    Conflict,
    IntegrityError,
    NotFound,
    StorageIOError,
    StrongroomError,
    UnsupportedFormat,
    ValidationError,
)
from strongroom.ids import check_entity_id
from strongroom.models import (
    LEVEL_ORDER,
    ArtifactMetadata,
    ArtifactQuery,
    AuditEntry,
    CatalogObject,
    LogEntry,
    LogQuery,
    LogReference,
    MerkleCheckpoint,
    Namespace,
    Provider,
    Run,
    RunPage,
    RunQuery,
    SnapshotRecord,
)
from strongroom.ports.metadata import MetadataStore

__all__ = [
    "MIGRATIONS_DIR",
    "SqlMetadataStore",
    "UtcTimestamp",
    "decode_run_cursor",
    "encode_run_cursor",
    "format_timestamp",
    "map_db_errors",
    "metadata",
    "run_index_statements",
    "schema_heads",
    "scrub_secrets",
]

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Rows fetched per round trip by the streaming iterators (each page is its own short read
# transaction, so a slow consumer never pins a snapshot or blocks a WAL checkpoint).
_PAGE_SIZE: Final = 500


# -- column types ------------------------------------------------------------------------------


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
            return datetime.fromisoformat(value)
        assert isinstance(value, datetime)
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

runs_table = Table(
    "runs",
    metadata,
    Column("run_id", _key(_ID), primary_key=True),
    Column("project", _key(_NAME), nullable=False),
    Column("playbook_id", _key(_NAME), nullable=True),
    Column("actor", _key(_NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("purpose", Text(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("updated_at", UtcTimestamp(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("body", Text(), nullable=False),
    # Each index ends with the keyset (sort column, run_id), so a filtered page is one index
    # range walked in order (no sort step) and its COUNT is answered from the same index.
    Index("ix_runs_status_project_created", "status", "project", "created_at", "run_id"),
    Index("ix_runs_status_project_updated", "status", "project", "updated_at", "run_id"),
    Index("ix_runs_status_created", "status", "created_at", "run_id"),
    Index("ix_runs_project_created", "project", "created_at", "run_id"),
    Index("ix_runs_project_updated", "project", "updated_at", "run_id"),
    Index("ix_runs_created", "created_at", "run_id"),
    Index("ix_runs_updated", "updated_at", "run_id"),
    Index("ix_runs_actor_created", "actor", "created_at", "run_id"),
    Index("ix_runs_playbook_created", "playbook_id", "created_at", "run_id"),
)

snapshots_table = Table(
    "snapshots",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("revision", Integer(), nullable=False),
    Column("sha256", String(_DIGEST), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    PrimaryKeyConstraint("run_id", "revision"),
)

artifacts_table = Table(
    "artifacts",
    metadata,
    Column("artifact_id", _key(_ID), primary_key=True),
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("phase", _key(_NAME), nullable=True),
    Column("step", _key(_NAME), nullable=True),
    Column("namespace", _key(_NAME), nullable=False),
    Column("sha256", String(_DIGEST), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    Index("ix_artifacts_run_id_artifact_id", "run_id", "artifact_id"),
    Index("ix_artifacts_namespace_artifact_id", "namespace", "artifact_id"),
)

# Tags get their own table so that "artifacts tagged X" is an index lookup, not a JSON scan.
artifact_tags_table = Table(
    "artifact_tags",
    metadata,
    Column("artifact_id", _key(_ID), ForeignKey("artifacts.artifact_id"), nullable=False),
    Column("tag", _key(_NAME), nullable=False),
    PrimaryKeyConstraint("artifact_id", "tag"),
    Index("ix_artifact_tags_tag_artifact_id", "tag", "artifact_id"),
)

log_entries_table = Table(
    "log_entries",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("seq", BigInteger(), nullable=False),
    Column("level", String(16), nullable=False),
    Column("event", String(128), nullable=False),
    Column("phase", _key(_NAME), nullable=True),
    Column("timestamp", UtcTimestamp(), nullable=False),
    Column("hash", String(_DIGEST), nullable=False),
    Column("body", Text(), nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
)

log_refs_table = Table(
    "log_refs",
    metadata,
    Column("run_id", _key(_ID), ForeignKey("runs.run_id"), primary_key=True),
    Column("body", Text(), nullable=False),
)

audit_entries_table = Table(
    "audit_entries",
    metadata,
    Column("seq", _seq(), primary_key=True, autoincrement=False),
    Column("hash", String(_DIGEST), nullable=False),
    Column("body", Text(), nullable=False),
)

audit_checkpoints_table = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", _seq(), primary_key=True, autoincrement=False),
    Column("body", Text(), nullable=False),
)

providers_table = Table(
    "providers",
    metadata,
    Column("provider_id", _key(_NAME), primary_key=True),
    Column("body", Text(), nullable=False),
)

namespaces_table = Table(
    "namespaces",
    metadata,
    Column("namespace_id", _key(_NAME), primary_key=True),
    Column("provider_id", _key(_NAME), ForeignKey("providers.provider_id"), nullable=False),
    Column("body", Text(), nullable=False),
    Index("ix_namespaces_provider_id_namespace_id", "provider_id", "namespace_id"),
)

catalog_objects_table = Table(
    "catalog_objects",
    metadata,
    Column("object_id", _key(_ID), primary_key=True),
    Column("namespace_id", _key(_NAME), ForeignKey("namespaces.namespace_id"), nullable=False),
    Column("path", _key(1024), nullable=False),
    Column("sha256", String(_DIGEST), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("body", Text(), nullable=False),
    UniqueConstraint("namespace_id", "path"),
    Index("ix_catalog_objects_path", "path"),
)


# -- error mapping -----------------------------------------------------------------------------

_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")
_SECRET_RE = re.compile(
    r"(?P<key>password|passwd|pwd|secret|token|sslpassword|access_key|secret_key)"
    r"(?P<sep>\s*[=:]\s*)(?:'[^']*'|\"[^\"]*\"|[^\s,;&]+)",
    re.IGNORECASE,
)

_SQLITE_REASONS: Final = {
    "SQLITE_BUSY": "database_locked",
    "SQLITE_LOCKED": "database_locked",
    "SQLITE_CANTOPEN": "cannot_open",
    "SQLITE_FULL": "disk_full",
    "SQLITE_READONLY": "read_only",
    "SQLITE_IOERR": "io_error",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "not_a_database",
    "SQLITE_PERM": "permission_denied",
    "SQLITE_AUTH": "permission_denied",
    "SQLITE_PROTOCOL": "locking_protocol",
    "SQLITE_NOMEM": "out_of_memory",
}

_SQLSTATE_CLASS_REASONS: Final = {
    "08": "connection_failed",
    "28": "authentication_failed",
    "3D": "unknown_database",
    "40": "transaction_rollback",
    "53": "insufficient_resources",
    "57": "operator_intervention",
    "58": "system_error",
    "XX": "internal_error",
}


def scrub_secrets(text: str) -> str:
    """Remove URL user-info and ``password=...``-like pairs from a driver message."""
    text = _USERINFO_RE.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_RE.sub(lambda m: f"{m.group('key')}{m.group('sep')}***", text)


def _driver_message(exc: sa_exc.DBAPIError) -> str:
    """The driver's own first line (never SQLAlchemy's str(), which appends SQL and params)."""
    orig = exc.orig if exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    first = lines[0] if lines else type(orig).__name__
    return scrub_secrets(first)[:300]


def _sqlite_error_name(exc: sa_exc.DBAPIError) -> str | None:
    name = getattr(exc.orig, "sqlite_errorname", None)
    return name if isinstance(name, str) else None


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    orig = exc.orig
    for attr in ("sqlstate", "pgcode"):
        value = getattr(orig, attr, None)
        if isinstance(value, str) and len(value) == 5:
            return value
    return None


def _constraint_kind(exc: sa_exc.IntegrityError) -> str:
    """'unique', 'foreign_key' or 'other', from the driver's code (message as a fallback)."""
    name = _sqlite_error_name(exc)
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return "unique"
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return "foreign_key"
    state = _sqlstate(exc)
    if state == "23505":
        return "unique"
    if state == "23503":
        return "foreign_key"
    message = str(exc.orig).lower()
    if "unique" in message or "duplicate key" in message:
        return "unique"
    if "foreign key" in message:
        return "foreign_key"
    return "other"


def _constraint_name(exc: sa_exc.IntegrityError) -> str | None:
    """The violated constraint: SQLite names its columns, PostgreSQL drivers its name."""
    orig = exc.orig
    for holder in (orig, getattr(orig, "diag", None)):
        name = getattr(holder, "constraint_name", None)
        if isinstance(name, str):
            return name
    message = str(orig)
    if _sqlite_error_name(exc) is not None and "constraint failed: " in message:
        return message.split("constraint failed: ", 1)[1].strip()[:200]
    return None


def _operational_reason(exc: sa_exc.DBAPIError) -> str:
    name = _sqlite_error_name(exc)
    if name is not None:
        for prefix, reason in _SQLITE_REASONS.items():
            if name == prefix or name.startswith(prefix + "_"):
                return reason
        return name.removeprefix("SQLITE_").lower()
    state = _sqlstate(exc)
    if state is not None:
        return _SQLSTATE_CLASS_REASONS.get(state[:2], f"sqlstate_{state.lower()}")
    if exc.connection_invalidated:
        return "connection_lost"
    message = str(exc.orig).lower()
    if "locked" in message or "busy" in message:
        return "database_locked"
    if "timeout" in message or "timed out" in message:
        return "timeout"
    return "database_error"


@contextmanager
def map_db_errors(operation: str, backend: str, **details: Any) -> Iterator[None]:
    """Translate driver errors raised inside the block into the strongroom tree, ``from exc``.

    unique violation -> `Conflict`; foreign-key violation -> `NotFound`; other constraint or
    bad value -> `ValidationError`; anything else from the driver (connection, locking, disk,
    corruption) -> `StorageIOError` with a ``reason``. Messages carry the driver's first line
    with URL user-info and password-like pairs removed, never SQLAlchemy's statement dump.
    ``details`` (run_id, path of a local database file...) are attached to the error.
    """
    context = {"operation": operation, "backend": backend, **details}
    try:
        yield
    except StrongroomError:
        raise
    except sa_exc.IntegrityError as exc:
        kind = _constraint_kind(exc)
        found = {**context, "constraint": _constraint_name(exc)}
        if kind == "unique":
            raise Conflict(
                f"{operation}: a record with the same key already exists",
                **{**found, "reason": "unique_violation"},
            ) from exc
        if kind == "foreign_key":
            raise NotFound(
                f"{operation}: a record it refers to does not exist",
                **{**found, "reason": "foreign_key_violation"},
            ) from exc
        raise ValidationError(
            f"{operation}: the record violates a database constraint ({_driver_message(exc)})",
            **{**found, "reason": "constraint_violation"},
        ) from exc
    except sa_exc.DataError as exc:
        raise ValidationError(
            f"{operation}: the database refused a value ({_driver_message(exc)})",
            **{**context, "reason": "invalid_value"},
        ) from exc
    except sa_exc.DBAPIError as exc:
        raise StorageIOError(
            f"{operation}: database error: {_driver_message(exc)}",
            **{**context, "reason": _operational_reason(exc)},
        ) from exc


# -- cursors -----------------------------------------------------------------------------------


def encode_run_cursor(sort_value: datetime, run_id: str) -> str:
    """Opaque keyset cursor: base64url (unpadded) of JSON ``[sort_value_iso, run_id]``."""
    raw = json.dumps([format_timestamp(sort_value), run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("ascii")).rstrip(b"=").decode("ascii")


def decode_run_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of `encode_run_cursor`; anything else raises `ValidationError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(part, str) for part in value)
        ):
            raise ValueError("cursor must encode [sort_value, run_id]")
        sort_value = datetime.fromisoformat(value[0])
        if sort_value.tzinfo is None:
            raise ValueError("cursor timestamp must be timezone-aware")
        run_id = check_entity_id(value[1])
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(
            "invalid run index cursor: pass back the next_cursor of a previous page",
            field="cursor",
            reason="bad_cursor",
        ) from exc
    return sort_value.astimezone(UTC), run_id


# -- row <-> record ----------------------------------------------------------------------------


def _parse(model: type[M], body: str, kind: str, subject: str) -> M:
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise IntegrityError(
            f"stored {kind} {subject} does not validate: the row was edited or corrupted",
            kind=kind,
            subject=subject,
            reason="invalid_stored_record",
        ) from exc


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "project": run.project,
        "playbook_id": run.playbook.playbook_id if run.playbook is not None else None,
        "actor": run.actor,
        "status": run.status.value,
        "purpose": run.purpose,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "version": run.version,
        "body": run.model_dump_json(),
    }


def _snapshot_row(record: SnapshotRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "revision": record.revision,
        "sha256": record.sha256,
        "size_bytes": record.size_bytes,
        "created_at": record.created_at,
        "body": record.model_dump_json(),
    }


def _artifact_row(artifact: ArtifactMetadata) -> dict[str, Any]:
    return {
        "artifact_id": artifact.artifact_id,
        "run_id": artifact.run_id,
        "role": artifact.role.value,
        "phase": artifact.phase,
        "step": artifact.step,
        "namespace": artifact.namespace,
        "sha256": artifact.sha256,
        "size_bytes": artifact.size_bytes,
        "created_at": artifact.created_at,
        "body": artifact.model_dump_json(),
    }


def _log_row(entry: LogEntry, timestamp: Any) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "seq": entry.seq,
        "level": entry.level.value,
        "event": entry.event,
        "phase": entry.phase,
        "timestamp": timestamp,
        "hash": entry.hash,
        "body": entry.model_dump_json(),
    }


def _object_row(obj: CatalogObject) -> dict[str, Any]:
    return {
        "object_id": obj.object_id,
        "namespace_id": obj.namespace_id,
        "path": obj.path,
        "sha256": obj.sha256,
        "size_bytes": obj.size_bytes,
        "created_at": obj.created_at,
        "body": obj.model_dump_json(),
    }


def _prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (byte order)."""
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i])
        if code < 0x10FFFF and not 0xD7FF <= code < 0xE000:
            return prefix[:i] + chr(code + 1)
    return None


def _require_next_seqs(
    operation: str, head: int | None, entries: Sequence[LogEntry | AuditEntry], **details: Any
) -> None:
    """A batch must continue the chain right after its head: head+1, head+2, ... Anything
    else means the caller computed it from a stale head (another writer appended first)."""
    expected = (head or 0) + 1
    for offset, entry in enumerate(entries):
        if entry.seq != expected + offset:
            raise Conflict(
                f"{operation}: the chain moved on concurrently (expected seq "
                f"{expected + offset}, got {entry.seq}); re-read the head and retry",
                operation=operation,
                reason="stale_head",
                expected_seq=expected + offset,
                seq=entry.seq,
                **details,
            )


def _check_limit(limit: int, operation: str) -> None:
    if limit < 1:
        raise ValidationError(
            f"{operation}: limit must be at least 1", operation=operation, field="limit"
        )


# -- run index ---------------------------------------------------------------------------------


def run_index_statements(query: RunQuery) -> tuple[Select[int], Select[str, datetime, str]]:
    """The COUNT (filters only) and the page SELECT (filters + keyset + limit+1) of a query.

    Both are answered from one composite index when the filters match its prefix, e.g.
    status + project -> ``ix_runs_status_project_created``. A bad cursor -> `ValidationError`.
    """
    c = runs_table.c
    sort_column = c.created_at if query.sort == "created_at" else c.updated_at
    filters = _run_filters(query)
    count_stmt = select(func.count()).select_from(runs_table).where(*filters)
    if query.cursor is not None:
        value, after_id = decode_run_cursor(query.cursor)
        # A row-value comparison, which both SQLite and PostgreSQL turn into an index range.
        position = tuple_(sort_column, c.run_id)
        bound = tuple_(literal(value, UtcTimestamp()), literal(after_id, c.run_id.type))
        filters.append(position < bound if query.descending else position > bound)
    if query.descending:
        order = (sort_column.desc(), c.run_id.desc())
    else:
        order = (sort_column.asc(), c.run_id.asc())
    page_stmt = (
        select(c.run_id, sort_column.label("sort_value"), c.body)
        .where(*filters)
        .order_by(*order)
        .limit(query.limit + 1)
    )
    return count_stmt, page_stmt


def _run_filters(query: RunQuery) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if query.status is not None:
        filters.append(runs_table.c.status.in_([status.value for status in query.status]))
    if query.project is not None:
        filters.append(runs_table.c.project == query.project)
    if query.playbook_id is not None:
        filters.append(runs_table.c.playbook_id == query.playbook_id)
    if query.actor is not None:
        filters.append(runs_table.c.actor == query.actor)
    if query.created_after is not None:
        filters.append(runs_table.c.created_at >= query.created_after)
    if query.created_before is not None:
        filters.append(runs_table.c.created_at < query.created_before)
    if query.updated_after is not None:
        filters.append(runs_table.c.updated_at >= query.updated_after)
    if query.updated_before is not None:
        filters.append(runs_table.c.updated_at < query.updated_before)
    if query.purpose_contains is not None:
        # autoescape: '%' and '_' in the needle match themselves. Case folding is
        # ASCII-only on SQLite (its lower()), full Unicode on PostgreSQL.
        filters.append(runs_table.c.purpose.icontains(query.purpose_contains, autoescape=True))
    return filters


# -- migrations --------------------------------------------------------------------------------


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
def _known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(_alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def _current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


def _upgrade_to_head(connection: Connection) -> None:
    # The connection is already inside our write transaction, so env.py runs every
    # migration in it: concurrent openers serialize on the write lock, and the loser
    # finds the schema at head and does nothing.
    command.upgrade(_alembic_config(connection), "head")


# -- the store ---------------------------------------------------------------------------------

Operation = Callable[[AsyncConnection], Awaitable[T]]
AnyRow: TypeAlias = Row[*tuple[Any, ...]]


class SqlMetadataStore(MetadataStore):
    """`MetadataStore` on SQLAlchemy Core. Subclasses supply the engine and the transaction
    discipline (`_create_engine`, optionally `_prepare` and `_run_transaction`)."""

    backend: str = "sql"

    def __init__(self) -> None:
        self._engine: AsyncEngine | None = None
        self._open_lock = asyncio.Lock()

    # -- backend hooks ----------------------------------------------------------------------

    @abstractmethod
    def _create_engine(self) -> AsyncEngine:
        """A new engine for this store (connections are made lazily)."""

    async def _prepare(self, engine: AsyncEngine) -> None:
        """Runs once in `open` before migrations (create directories, set file modes...)."""

    def _error_details(self) -> dict[str, Any]:
        """Context attached to every mapped error; must never hold credentials."""
        return {}

    async def _lock_for_migration(self, conn: AsyncConnection) -> None:
        """Make concurrent openers migrate one at a time, inside the migration transaction.
        SQLite needs nothing (its write transaction is exclusive); PostgreSQL would take a
        transaction-scoped advisory lock here."""

    async def _run_transaction(self, fn: Operation[T], *, write: bool) -> T:
        """Run ``fn`` in one transaction; a backend adds locking and retries here."""
        async with self._require_engine().connect() as conn, conn.begin():
            return await fn(conn)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._open_lock:  # a second caller waits until the schema is ready
            if self._engine is not None:
                return
            engine = self._create_engine()
            self._engine = engine
            try:
                await self._prepare(engine)
                await self._migrate()
            except BaseException:
                self._engine = None
                await engine.dispose()
                raise

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    async def __aenter__(self) -> SqlMetadataStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        heads = schema_heads()
        current = await self._read("open", lambda conn: conn.run_sync(_current_revisions))
        if current == heads:
            return  # the common case: one indexed read, no write lock
        unknown = current - _known_revisions()
        if unknown:
            raise UnsupportedFormat(
                "the records database was migrated by a newer strongroom "
                f"(schema revision {', '.join(sorted(unknown))}); upgrade strongroom to open it",
                operation="open",
                backend=self.backend,
                reason="schema_too_new",
                **self._error_details(),
            )

        async def upgrade(conn: AsyncConnection) -> None:
            await self._lock_for_migration(conn)
            await conn.run_sync(_upgrade_to_head)

        await self._write("migrate", upgrade)

    def _not_found(self, operation: str, message: str, **details: Any) -> NotFound:
        return NotFound(message, operation=operation, backend=self.backend, **details)

    def _require_engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StorageIOError(
                "the records store is not open (call open() first)",
                backend=self.backend,
                reason="not_open",
            )
        return self._engine

    async def _read(self, operation: str, fn: Operation[T], **details: Any) -> T:
        with map_db_errors(operation, self.backend, **self._error_details(), **details):
            return await self._run_transaction(fn, write=False)

    async def _write(self, operation: str, fn: Operation[T], **details: Any) -> T:
        with map_db_errors(operation, self.backend, **self._error_details(), **details):
            return await self._run_transaction(fn, write=True)

    @staticmethod
    def _upsert(
        conn: AsyncConnection, table: Table, values: Mapping[str, Any], key: Sequence[str]
    ) -> Executable:
        """INSERT ... ON CONFLICT (key) DO UPDATE: atomic insert-or-replace on both dialects."""
        dialect = conn.dialect.name
        changed = [name for name in values if name not in key]
        if dialect == "sqlite":
            sq = sqlite_dialect.insert(table).values(dict(values))
            return sq.on_conflict_do_update(
                index_elements=list(key), set_={name: sq.excluded[name] for name in changed}
            )
        if dialect == "postgresql":
            pg = postgresql.insert(table).values(dict(values))
            return pg.on_conflict_do_update(
                index_elements=list(key), set_={name: pg.excluded[name] for name in changed}
            )
        raise UnsupportedFormat(f"no upsert for SQL dialect {dialect!r}", backend=dialect)

    # -- runs -------------------------------------------------------------------------------

    async def insert_run(self, run: Run) -> None:
        row = _run_row(run)

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(insert(runs_table), row)

        await self._write("insert_run", op, run_id=run.run_id)

    async def get_run(self, run_id: str) -> Run:
        stmt = select(runs_table.c.body).where(runs_table.c.run_id == run_id)
        body = await self._read("get_run", _scalar(stmt), run_id=run_id)
        if body is None:
            raise self._not_found("get_run", f"no run {run_id}", run_id=run_id)
        return _parse(Run, body, "run", run_id)

    async def update_run(self, run: Run, *, expected_version: int) -> Run:
        stored = run.model_copy(update={"version": expected_version + 1})
        row = _run_row(stored)
        del row["run_id"]

        async def op(conn: AsyncConnection) -> None:
            result = await conn.execute(
                update(runs_table)
                .where(runs_table.c.run_id == run.run_id, runs_table.c.version == expected_version)
                .values(row)
            )
            if result.rowcount == 1:
                return
            actual = await conn.scalar(
                select(runs_table.c.version).where(runs_table.c.run_id == run.run_id)
            )
            if actual is None:
                raise self._not_found("update_run", f"no run {run.run_id}", run_id=run.run_id)
            raise Conflict(
                f"run {run.run_id} is at version {actual}, not {expected_version}: "
                "it was changed by someone else; reload it and retry",
                operation="update_run",
                backend=self.backend,
                reason="stale_version",
                run_id=run.run_id,
                expected_version=expected_version,
                actual_version=actual,
            )

        await self._write("update_run", op, run_id=run.run_id)
        return stored

    async def query_runs(self, query: RunQuery) -> RunPage:
        count_stmt, page_stmt = run_index_statements(query)

        async def op(conn: AsyncConnection) -> tuple[int, list[AnyRow]]:
            # One read transaction: the total and the page see the same snapshot.
            total = await conn.scalar(count_stmt)
            rows = (await conn.execute(page_stmt)).all()
            return int(total or 0), list(rows)

        total, rows = await self._read("query_runs", op)
        page = rows[: query.limit]
        items = [_parse(Run, row.body, "run", row.run_id) for row in page]
        next_cursor = None
        if len(rows) > query.limit:
            # From the indexed columns, not the body: the cursor must match what is compared.
            next_cursor = encode_run_cursor(page[-1].sort_value, page[-1].run_id)
        return RunPage(items=items, total=total, next_cursor=next_cursor)

    # -- snapshots --------------------------------------------------------------------------

    async def insert_snapshot(self, record: SnapshotRecord) -> None:
        row = _snapshot_row(record)

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(insert(snapshots_table), row)

        await self._write("insert_snapshot", op, run_id=record.run_id, revision=record.revision)

    async def get_snapshot(self, run_id: str, revision: int | None = None) -> SnapshotRecord:
        stmt = select(snapshots_table.c.body).where(snapshots_table.c.run_id == run_id)
        if revision is None:
            stmt = stmt.order_by(snapshots_table.c.revision.desc()).limit(1)
        else:
            stmt = stmt.where(snapshots_table.c.revision == revision)

        body = await self._read("get_snapshot", _scalar(stmt), run_id=run_id, revision=revision)
        if body is None:
            which = "any snapshot" if revision is None else f"snapshot revision {revision}"
            raise self._not_found(
                "get_snapshot", f"run {run_id} has no {which}", run_id=run_id, revision=revision
            )
        return _parse(SnapshotRecord, body, "snapshot", f"{run_id}@{revision or 'latest'}")

    async def list_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        stmt = (
            select(snapshots_table.c.revision, snapshots_table.c.body)
            .where(snapshots_table.c.run_id == run_id)
            .order_by(snapshots_table.c.revision)
        )

        rows = await self._read("list_snapshots", _rows(stmt), run_id=run_id)
        return [
            _parse(SnapshotRecord, row.body, "snapshot", f"{run_id}@{row.revision}") for row in rows
        ]

    # -- artifacts --------------------------------------------------------------------------

    async def insert_artifacts(self, artifacts: Sequence[ArtifactMetadata]) -> None:
        if not artifacts:
            return
        rows = [_artifact_row(artifact) for artifact in artifacts]
        tag_rows = [
            {"artifact_id": artifact.artifact_id, "tag": tag}
            for artifact in artifacts
            for tag in dict.fromkeys(artifact.tags)
        ]
        ids = [artifact.artifact_id for artifact in artifacts]
        run_ids = sorted({artifact.run_id for artifact in artifacts})

        async def op(conn: AsyncConnection) -> None:
            # Checked first so that the error names every failing item (the constraints
            # below stay the guarantee, e.g. against a concurrent writer on PostgreSQL).
            taken = await _existing(conn, artifacts_table.c.artifact_id, ids)
            duplicates = sorted(taken | {i for i, n in Counter(ids).items() if n > 1})
            if duplicates:
                raise Conflict(
                    f"insert_artifacts: {len(duplicates)} artifact id(s) already exist",
                    operation="insert_artifacts",
                    backend=self.backend,
                    reason="duplicate_id",
                    items=duplicates,
                )
            missing = sorted(set(run_ids) - await _existing(conn, runs_table.c.run_id, run_ids))
            if missing:
                raise self._not_found(
                    "insert_artifacts",
                    f"insert_artifacts: {len(missing)} run(s) do not exist",
                    reason="unknown_run",
                    items=missing,
                )
            await conn.execute(insert(artifacts_table), rows)
            if tag_rows:
                await conn.execute(insert(artifact_tags_table), tag_rows)

        await self._write("insert_artifacts", op, artifact_id=ids[0] if len(ids) == 1 else None)

    async def get_artifact(self, artifact_id: str) -> ArtifactMetadata:
        stmt = select(artifacts_table.c.body).where(artifacts_table.c.artifact_id == artifact_id)
        body = await self._read("get_artifact", _scalar(stmt), artifact_id=artifact_id)
        if body is None:
            raise self._not_found(
                "get_artifact", f"no artifact {artifact_id}", artifact_id=artifact_id
            )
        return _parse(ArtifactMetadata, body, "artifact", artifact_id)

    async def list_artifacts(self, query: ArtifactQuery) -> list[ArtifactMetadata]:
        c = artifacts_table.c
        stmt = select(c.artifact_id, c.body)
        if query.run_id is not None:
            stmt = stmt.where(c.run_id == query.run_id)
        if query.role is not None:
            stmt = stmt.where(c.role == query.role.value)
        if query.phase is not None:
            stmt = stmt.where(c.phase == query.phase)
        if query.step is not None:
            stmt = stmt.where(c.step == query.step)
        if query.namespace is not None:
            stmt = stmt.where(c.namespace == query.namespace)
        if query.tag is not None:
            stmt = stmt.where(
                exists().where(
                    artifact_tags_table.c.artifact_id == c.artifact_id,
                    artifact_tags_table.c.tag == query.tag,
                )
            )
        if query.after_id is not None:
            stmt = stmt.where(c.artifact_id > query.after_id)
        stmt = stmt.order_by(c.artifact_id).limit(query.limit)

        rows = await self._read("list_artifacts", _rows(stmt), run_id=query.run_id)
        return [_parse(ArtifactMetadata, row.body, "artifact", row.artifact_id) for row in rows]

    # -- logs -------------------------------------------------------------------------------

    async def append_log_entries(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        run_id = entries[0].run_id
        if any(entry.run_id != run_id for entry in entries):
            raise ValidationError(
                "append_log_entries: a batch extends one run's chain; got several run ids",
                operation="append_log_entries",
                run_id=run_id,
            )
        dialect = self._require_engine().dialect
        to_db = _TIMESTAMP.process_bind_param
        rows = [_log_row(entry, to_db(entry.timestamp, dialect)) for entry in entries]
        c = log_entries_table.c
        head_stmt = select(func.max(c.seq)).where(c.run_id == run_id)

        async def op(conn: AsyncConnection) -> None:
            head = await conn.scalar(head_stmt)
            _require_next_seqs("append_log_entries", head, entries, run_id=run_id)
            await _driver_executemany(conn, log_entries_table, rows)

        await self._write(
            "append_log_entries",
            op,
            run_id=entries[0].run_id,
            first_seq=entries[0].seq,
            last_seq=entries[-1].seq,
        )

    async def read_log_entries(self, run_id: str, query: LogQuery) -> list[LogEntry]:
        c = log_entries_table.c
        stmt = select(c.seq, c.body).where(c.run_id == run_id, c.seq > query.after_seq)
        if query.min_level is not None:
            floor = LEVEL_ORDER[query.min_level]
            stmt = stmt.where(
                c.level.in_([level.value for level, rank in LEVEL_ORDER.items() if rank >= floor])
            )
        if query.event is not None:
            stmt = stmt.where(c.event == query.event)
        if query.phase is not None:
            stmt = stmt.where(c.phase == query.phase)
        if query.since is not None:
            stmt = stmt.where(c.timestamp >= query.since)
        stmt = stmt.order_by(c.seq).limit(query.limit)

        rows = await self._read("read_log_entries", _rows(stmt), run_id=run_id)
        return [_parse(LogEntry, row.body, "log_entry", f"{run_id}#{row.seq}") for row in rows]

    async def log_head(self, run_id: str) -> LogEntry | None:
        c = log_entries_table.c
        stmt = select(c.seq, c.body).where(c.run_id == run_id).order_by(c.seq.desc()).limit(1)

        row = await self._read("log_head", _first(stmt), run_id=run_id)
        if row is None:
            return None
        return _parse(LogEntry, row.body, "log_entry", f"{run_id}#{row.seq}")

    async def count_log_entries(self, run_id: str) -> int:
        stmt = (
            select(func.count())
            .select_from(log_entries_table)
            .where(log_entries_table.c.run_id == run_id)
        )

        async def op(conn: AsyncConnection) -> int:
            return int(await conn.scalar(stmt) or 0)

        return await self._read("count_log_entries", op, run_id=run_id)

    async def put_log_reference(self, ref: LogReference) -> None:
        values = {"run_id": ref.run_id, "body": ref.model_dump_json()}

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(self._upsert(conn, log_refs_table, values, ["run_id"]))

        await self._write("put_log_reference", op, run_id=ref.run_id)

    async def get_log_reference(self, run_id: str) -> LogReference | None:
        stmt = select(log_refs_table.c.body).where(log_refs_table.c.run_id == run_id)
        body = await self._read("get_log_reference", _scalar(stmt), run_id=run_id)
        return None if body is None else _parse(LogReference, body, "log_reference", run_id)

    async def iter_log_run_ids(self) -> AsyncIterator[str]:
        run_id = log_entries_table.c.run_id
        async for row in self._keyset_pages(select(run_id).distinct(), [run_id]):
            yield row.run_id

    # -- audit ------------------------------------------------------------------------------

    async def append_audit_entries(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        rows = [
            {"seq": entry.seq, "hash": entry.hash, "body": entry.model_dump_json()}
            for entry in entries
        ]

        head_stmt = select(func.max(audit_entries_table.c.seq))

        async def op(conn: AsyncConnection) -> None:
            head = await conn.scalar(head_stmt)
            _require_next_seqs("append_audit_entries", head, entries)
            await conn.execute(insert(audit_entries_table), rows)

        await self._write(
            "append_audit_entries", op, first_seq=entries[0].seq, last_seq=entries[-1].seq
        )

    async def audit_head(self) -> AuditEntry | None:
        c = audit_entries_table.c
        stmt = select(c.seq, c.body).order_by(c.seq.desc()).limit(1)

        row = await self._read("audit_head", _first(stmt))
        return None if row is None else _parse(AuditEntry, row.body, "audit_entry", str(row.seq))

    async def read_audit_entries(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        _check_limit(limit, "read_audit_entries")
        c = audit_entries_table.c
        stmt = select(c.seq, c.body).where(c.seq > after_seq).order_by(c.seq).limit(limit)

        rows = await self._read("read_audit_entries", _rows(stmt))
        return [_parse(AuditEntry, row.body, "audit_entry", str(row.seq)) for row in rows]

    async def insert_checkpoint(self, checkpoint: MerkleCheckpoint) -> None:
        row = {"tree_size": checkpoint.tree_size, "body": checkpoint.model_dump_json()}

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(insert(audit_checkpoints_table), row)

        await self._write("insert_checkpoint", op, tree_size=checkpoint.tree_size)

    async def list_checkpoints(self) -> list[MerkleCheckpoint]:
        c = audit_checkpoints_table.c
        stmt = select(c.tree_size, c.body).order_by(c.tree_size)

        rows = await self._read("list_checkpoints", _rows(stmt))
        return [
            _parse(MerkleCheckpoint, row.body, "checkpoint", str(row.tree_size)) for row in rows
        ]

    # -- catalog ----------------------------------------------------------------------------

    async def put_provider(self, provider: Provider) -> None:
        values = {"provider_id": provider.provider_id, "body": provider.model_dump_json()}

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(self._upsert(conn, providers_table, values, ["provider_id"]))

        await self._write("put_provider", op, provider_id=provider.provider_id)

    async def get_provider(self, provider_id: str) -> Provider:
        stmt = select(providers_table.c.body).where(providers_table.c.provider_id == provider_id)
        body = await self._read("get_provider", _scalar(stmt), provider_id=provider_id)
        if body is None:
            raise self._not_found(
                "get_provider", f"no provider {provider_id}", provider_id=provider_id
            )
        return _parse(Provider, body, "provider", provider_id)

    async def list_providers(self) -> list[Provider]:
        c = providers_table.c
        stmt = select(c.provider_id, c.body).order_by(c.provider_id)

        rows = await self._read("list_providers", _rows(stmt))
        return [_parse(Provider, row.body, "provider", row.provider_id) for row in rows]

    async def put_namespace(self, namespace: Namespace) -> None:
        values = {
            "namespace_id": namespace.namespace_id,
            "provider_id": namespace.provider_id,
            "body": namespace.model_dump_json(),
        }

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(self._upsert(conn, namespaces_table, values, ["namespace_id"]))

        await self._write(
            "put_namespace",
            op,
            namespace_id=namespace.namespace_id,
            provider_id=namespace.provider_id,
        )

    async def get_namespace(self, namespace_id: str) -> Namespace:
        stmt = select(namespaces_table.c.body).where(
            namespaces_table.c.namespace_id == namespace_id
        )
        body = await self._read("get_namespace", _scalar(stmt), namespace_id=namespace_id)
        if body is None:
            raise self._not_found(
                "get_namespace", f"no namespace {namespace_id}", namespace_id=namespace_id
            )
        return _parse(Namespace, body, "namespace", namespace_id)

    async def list_namespaces(self, provider_id: str | None = None) -> list[Namespace]:
        c = namespaces_table.c
        stmt = select(c.namespace_id, c.body).order_by(c.namespace_id)
        if provider_id is not None:
            stmt = stmt.where(c.provider_id == provider_id)

        rows = await self._read("list_namespaces", _rows(stmt), provider_id=provider_id)
        return [_parse(Namespace, row.body, "namespace", row.namespace_id) for row in rows]

    async def put_object(self, obj: CatalogObject) -> None:
        values = _object_row(obj)

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(self._upsert(conn, catalog_objects_table, values, ["object_id"]))

        await self._write(
            "put_object", op, object_id=obj.object_id, namespace_id=obj.namespace_id, uri=obj.path
        )

    async def get_object(self, object_id: str) -> CatalogObject:
        stmt = select(catalog_objects_table.c.body).where(
            catalog_objects_table.c.object_id == object_id
        )
        body = await self._read("get_object", _scalar(stmt), object_id=object_id)
        if body is None:
            raise self._not_found("get_object", f"no object {object_id}", object_id=object_id)
        return _parse(CatalogObject, body, "object", object_id)

    async def list_objects(
        self, namespace_id: str | None = None, *, prefix: str | None = None, limit: int = 1000
    ) -> list[CatalogObject]:
        _check_limit(limit, "list_objects")
        c = catalog_objects_table.c
        stmt = select(c.object_id, c.body)
        if namespace_id is not None:
            stmt = stmt.where(c.namespace_id == namespace_id)
        if prefix:
            # A byte-order range rather than LIKE: SQLite's LIKE ignores ASCII case, and a
            # range uses the (namespace_id, path) / path indexes on both backends.
            stmt = stmt.where(c.path >= prefix)
            successor = _prefix_successor(prefix)
            if successor is not None:
                stmt = stmt.where(c.path < successor)
        stmt = stmt.order_by(c.path, c.namespace_id).limit(limit)

        rows = await self._read("list_objects", _rows(stmt), namespace_id=namespace_id)
        return [_parse(CatalogObject, row.body, "object", row.object_id) for row in rows]

    async def delete_object(self, object_id: str) -> None:
        async def op(conn: AsyncConnection) -> int:
            result = await conn.execute(
                delete(catalog_objects_table).where(catalog_objects_table.c.object_id == object_id)
            )
            return result.rowcount

        deleted = await self._write("delete_object", op, object_id=object_id)
        if deleted == 0:
            raise self._not_found("delete_object", f"no object {object_id}", object_id=object_id)

    # -- references -------------------------------------------------------------------------

    async def iter_blob_references(self) -> AsyncIterator[tuple[str, str, str, int]]:
        s = snapshots_table.c
        snapshot_rows = select(s.run_id, s.revision, s.sha256, s.size_bytes)
        async for row in self._keyset_pages(snapshot_rows, [s.run_id, s.revision]):
            yield ("snapshot", f"{row.run_id}@{row.revision}", row.sha256, row.size_bytes)
        a = artifacts_table.c
        artifact_rows = select(a.artifact_id, a.sha256, a.size_bytes)
        async for row in self._keyset_pages(artifact_rows, [a.artifact_id]):
            yield ("artifact", row.artifact_id, row.sha256, row.size_bytes)
        o = catalog_objects_table.c
        object_rows = select(o.object_id, o.sha256, o.size_bytes)
        async for row in self._keyset_pages(object_rows, [o.object_id]):
            yield ("object", row.object_id, row.sha256, row.size_bytes)

    async def _keyset_pages(
        self, base: Select[*tuple[Any, ...]], keys: Sequence[Column[Any]]
    ) -> AsyncIterator[AnyRow]:
        """Every row of ``base`` in key order, one short read transaction per page, so a slow
        consumer never pins a snapshot (or, on SQLite, holds back WAL checkpoints)."""
        after: tuple[Any, ...] | None = None
        while True:
            stmt = base.order_by(*keys).limit(_PAGE_SIZE)
            if after is not None:
                bound = [literal(value, key.type) for value, key in zip(after, keys, strict=True)]
                stmt = stmt.where(tuple_(*keys) > tuple_(*bound))
            rows = await self._read("iterate", _rows(stmt))
            for row in rows:
                yield row
            if len(rows) < _PAGE_SIZE:
                return
            after = tuple(getattr(rows[-1], key.name) for key in keys)


_TIMESTAMP = UtcTimestamp()


_COMPILED_INSERTS: dict[tuple[str, str, str, str], tuple[str, tuple[str, ...] | None]] = {}


def _compiled_insert(table: Table, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
    """SQL text of ``INSERT INTO table (every column)`` and, for positional paramstyles,
    the parameter order (cached per driver, not per engine)."""
    key = (table.name, dialect.name, dialect.driver, dialect.paramstyle)
    if key not in _COMPILED_INSERTS:
        compiled = insert(table).compile(dialect=dialect)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        _COMPILED_INSERTS[key] = (compiled.string, order)
    return _COMPILED_INSERTS[key]


async def _driver_executemany(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """The hot-path bulk insert (log lines): the statement is compiled from the Core table
    once per dialect, and rows, already holding driver-ready values, go straight to the
    driver's executemany. That skips SQLAlchemy's per-row parameter processing, about a
    third of the cost of appending a log line on SQLite."""
    sql, order = _compiled_insert(table, conn.dialect)
    if order is None:
        await conn.exec_driver_sql(sql, [dict(row) for row in rows])
    else:
        await conn.exec_driver_sql(sql, [tuple(row[name] for name in order) for row in rows])


async def _existing(conn: AsyncConnection, column: Column[str], values: Sequence[str]) -> set[str]:
    """Which of ``values`` are present in ``column`` (in chunks: SQL has parameter limits)."""
    found: set[str] = set()
    for start in range(0, len(values), _PAGE_SIZE):
        chunk = values[start : start + _PAGE_SIZE]
        result = await conn.execute(select(column).where(column.in_(chunk)))
        found.update(result.scalars())
    return found


def _rows(stmt: Executable) -> Operation[list[AnyRow]]:
    async def op(conn: AsyncConnection) -> list[AnyRow]:
        return list((await conn.execute(stmt)).all())

    return op


def _first(stmt: Executable) -> Operation[AnyRow | None]:
    async def op(conn: AsyncConnection) -> AnyRow | None:
        return (await conn.execute(stmt)).first()

    return op


def _scalar(stmt: Executable) -> Operation[Any]:
    async def op(conn: AsyncConnection) -> Any:
        return await conn.scalar(stmt)

    return op


def _scalars(stmt: Executable) -> Operation[list[Any]]:
    async def op(conn: AsyncConnection) -> list[Any]:
        return list((await conn.execute(stmt)).scalars().all())

    return op
