"""The statements behind `RunRecords.run_stats`: four bounded reads of the run index, in one
read transaction, assembled by `strongroom.adapters._run_stats` (which defines the meaning).

1. Runs per (UTC day, status): ``GROUP BY`` on the day of ``created_at`` (SQLite stores it as
   fixed-width UTC ISO text, so the day is its first 10 characters; PostgreSQL formats the
   ``timestamptz`` in UTC). The ``status IN (every status)`` condition changes no result but
   lets the planner range-scan ``ix_runs_status_created`` (or
   ``ix_runs_status_project_created`` with a project): covering indexes, no row is read
   (with a playbook filter the playbook's rows of the window are).
2. Failed runs per (playbook, ``current_step``): the step is in the run's JSON body, so
   each failed run of the window is read once (``json_extract`` / ``json_extract_path_text``);
   the answer is one row per group.
3. Runs per playbook, for the playbooks of (2) only: one ``ix_runs_playbook_created``
   range per playbook (with a project filter, the project's index range instead).
4. Durations: ``started_at`` / ``completed_at`` from the bodies of the newest
   `RUN_STATS_SAMPLE` + 1 finished runs (``ORDER BY created_at DESC, run_id DESC LIMIT``);
   the duration is computed in Python from the timestamps' text, as the memory store does
   from the records, so both backends agree to the microsecond. (Filtering on the
   timestamps in SQL instead would parse every finished run's body of the window, not only
   the newest: 1.7 times slower on PostgreSQL for a year of 300,000 runs.)

Literal SQL arguments (``'UTC'``, the JSON paths) are inlined, not bound: PostgreSQL accepts
a grouped expression in the select list only when it is the same text, parameters included.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any, Final, NamedTuple

from sqlalchemy import ColumnElement, Select, String, cast, func, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from strongroom.adapters._run_stats import (
    DurationSample,
    assemble_stats,
    duration_seconds,
)
from strongroom.adapters._sql.base import PAGE_SIZE
from strongroom.adapters._sql.tables import runs_table
from strongroom.errors import UnsupportedFormat
from strongroom.models import (
    RUN_STATS_SAMPLE,
    TERMINAL_STATUSES,
    RunStats,
    RunStatsQuery,
    RunStatus,
)

__all__ = ["StatsStatements", "playbook_runs_statements", "read_run_stats", "stats_statements"]

_ALL_STATUSES: Final = [status.value for status in RunStatus]
_TERMINAL: Final = sorted(status.value for status in TERMINAL_STATUSES)


def _day(dialect: str) -> ColumnElement[str]:
    """``created_at``'s UTC calendar day as ``YYYY-MM-DD`` text."""
    c = runs_table.c
    if dialect == "sqlite":
        return func.substr(c.created_at, literal_column("1"), literal_column("10"), type_=String)
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), c.created_at)
        return func.to_char(utc, literal_column("'YYYY-MM-DD'"), type_=String)
    raise UnsupportedFormat(f"no run statistics for SQL dialect {dialect!r}", backend=dialect)


def _body_text(dialect: str, key: str) -> ColumnElement[str]:
    """A top-level string field of the run's JSON body (NULL when null or absent)."""
    body = runs_table.c.body
    if dialect == "sqlite":
        return func.json_extract(body, literal_column(f"'$.{key}'"), type_=String)
    if dialect == "postgresql":
        return func.json_extract_path_text(
            cast(body, postgresql.JSON), literal_column(f"'{key}'"), type_=String
        )
    raise UnsupportedFormat(f"no run statistics for SQL dialect {dialect!r}", backend=dialect)


def _window(query: RunStatsQuery) -> list[ColumnElement[bool]]:
    c = runs_table.c
    filters = [c.created_at >= query.since, c.created_at < query.until]
    if query.project is not None:
        filters.append(c.project == query.project)
    if query.playbook_id is not None:
        filters.append(c.playbook_id == query.playbook_id)
    return filters


class StatsStatements(NamedTuple):
    """The statements of one `read_run_stats`, built for one dialect."""

    per_day: Select[Any]
    """(day text, status, count) per day and status."""
    per_step: Select[Any]
    """(playbook_id, step, count) of the failed runs."""
    newest: Select[Any]
    """(playbook_id, started_at text, completed_at text) of the newest finished runs."""


def stats_statements(query: RunStatsQuery, dialect: str) -> StatsStatements:
    """The grouped counts and the bounded duration read of ``query`` on ``dialect``."""
    c = runs_table.c
    window = _window(query)
    day = _day(dialect)
    step = _body_text(dialect, "current_step")
    started, completed = _body_text(dialect, "started_at"), _body_text(dialect, "completed_at")
    return StatsStatements(
        per_day=select(day, c.status, func.count())
        .where(c.status.in_(_ALL_STATUSES), *window)
        .group_by(day, c.status),
        per_step=select(c.playbook_id, step, func.count())
        .where(c.status == RunStatus.FAILED.value, *window)
        .group_by(c.playbook_id, step),
        newest=select(c.playbook_id, started, completed)
        .where(c.status.in_(_TERMINAL), *window)
        .order_by(c.created_at.desc(), c.run_id.desc())
        .limit(RUN_STATS_SAMPLE + 1),
    )


def playbook_runs_statements(
    query: RunStatsQuery, playbooks: Iterable[str | None]
) -> list[Select[Any]]:
    """(playbook_id, count) of the window's runs of ``playbooks`` (null = runs without a
    playbook): one statement per chunk of names (SQL has parameter limits), each one
    ``ix_runs_playbook_created`` range per playbook."""
    c = runs_table.c
    wanted = set(playbooks)
    named = sorted(p for p in wanted if p is not None)
    conditions: list[ColumnElement[bool]] = [
        c.playbook_id.in_(named[start : start + PAGE_SIZE])
        for start in range(0, len(named), PAGE_SIZE)
    ]
    if None in wanted:
        conditions.append(c.playbook_id.is_(None))
    return [
        select(c.playbook_id, func.count())
        .where(condition, *_window(query))
        .group_by(c.playbook_id)
        for condition in conditions
    ]


def read_run_stats(conn: Connection, query: RunStatsQuery) -> RunStats:
    """`RunStats` of the window, read in the caller's (read) transaction."""
    statements = stats_statements(query, conn.dialect.name)
    day_counts = {
        (date.fromisoformat(day), RunStatus(status)): int(count)
        for day, status, count in conn.execute(statements.per_day)
    }
    failures: dict[tuple[str | None, str | None], int] = {
        (playbook_id, step): int(count)
        for playbook_id, step, count in conn.execute(statements.per_step)
    }
    playbook_runs: dict[str | None, int] = {}
    for stmt in playbook_runs_statements(query, (playbook for playbook, _ in failures)):
        playbook_runs.update((row[0], int(row[1])) for row in conn.execute(stmt))
    samples: list[DurationSample] = [
        (playbook_id, duration_seconds(begin, end))
        for playbook_id, begin, end in conn.execute(statements.newest)
    ]
    return assemble_stats(
        query,
        day_counts=day_counts,
        samples=samples,
        failures=failures,
        playbook_runs=playbook_runs,
    )
