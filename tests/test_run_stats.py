"""Run statistics (`RunService.stats`) beyond the conformance suite
(`strongroom.testing._run_stats`): every backend against a pure-Python reference on random
populations, the duration sample's edge, the percentile method, the query model, the
statements' index use, and the blocking twin."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from _three_backends import vault as three_backend_vault
from strongroom.adapters import _run_stats as shared
from strongroom.adapters._sql import run_stats as sql_stats
from strongroom.ids import new_id
from strongroom.models import (
    RUN_STATS_SAMPLE,
    TERMINAL_STATUSES,
    PlaybookRef,
    Run,
    RunStats,
    RunStatsQuery,
    RunStatus,
)
from strongroom.sync import SyncVault
from strongroom.vault import Vault

EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
SLOT = timedelta(days=50)
"""Each hypothesis example writes its runs in a slot of its own (runs within 20 days of the
slot's start, windows within [start - 2 days, start + 40 days)), so examples sharing one
vault never see each other's runs."""
_slots = itertools.count()

vault = three_backend_vault  # the fixture, one vault per backend


@pytest.fixture
def small_sample(monkeypatch: pytest.MonkeyPatch) -> int:
    """A duration sample of 4 runs instead of 100,000, on every backend."""
    monkeypatch.setattr(shared, "RUN_STATS_SAMPLE", 4)
    monkeypatch.setattr(sql_stats, "RUN_STATS_SAMPLE", 4)
    return 4


# -- the reference ---------------------------------------------------------------------------


def _rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(percent * len(ordered) / 100) - 1]


def reference(runs: list[Run], query: RunStatsQuery, sample: int) -> dict[str, Any]:
    """What `RunStats` must say, written out plainly (independent of the adapters' code)."""

    def playbook(run: Run) -> str | None:
        return run.playbook.playbook_id if run.playbook else None

    inside = [
        r
        for r in runs
        if query.since <= r.created_at < query.until
        and query.project in (None, r.project)
        and query.playbook_id in (None, playbook(r))
    ]
    per_day = Counter((r.created_at.astimezone(UTC).date(), r.status) for r in inside)
    order = list(RunStatus)
    days = sorted(
        ((day, status, n) for (day, status), n in per_day.items()),
        key=lambda t: (t[0], order.index(t[1])),
    )
    finished = sorted(
        (r for r in inside if r.status in TERMINAL_STATUSES),
        key=lambda r: (r.created_at, r.run_id),
        reverse=True,
    )
    measured: defaultdict[str | None, list[float]] = defaultdict(list)
    for r in finished[:sample]:
        if r.started_at is not None and r.completed_at is not None:
            measured[playbook(r)].append((r.completed_at - r.started_at).total_seconds())
    durations = [
        (pb, len(v), _rank(v, 50), _rank(v, 90), _rank(v, 95), max(v))
        for pb, v in sorted(measured.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))
    ]
    per_playbook = Counter(playbook(r) for r in inside)
    failed = Counter((playbook(r), r.current_step) for r in inside if r.status is RunStatus.FAILED)
    failures = sorted(
        ((pb, step, n, per_playbook[pb]) for (pb, step), n in failed.items()),
        key=lambda t: (t[0] is not None, t[0] or "", t[1] is not None, t[1] or ""),
    )
    return {
        "days": days,
        "durations": durations,
        "failures": failures,
        "runs_counted": len(inside),
        "sampled": len(finished) > sample,
    }


def observed(stats: RunStats) -> dict[str, Any]:
    return {
        "days": [(d.day, d.status, d.count) for d in stats.days],
        "durations": [
            (d.playbook_id, d.runs, d.p50_seconds, d.p90_seconds, d.p95_seconds, d.max_seconds)
            for d in stats.durations
        ],
        "failures": [(f.playbook_id, f.step, f.failed, f.runs) for f in stats.step_failures],
        "runs_counted": stats.runs_counted,
        "sampled": stats.sampled,
    }


# -- random populations against the reference ------------------------------------------------

HOUR = 60
# Runs on the hour often, so they fall on windows' edges (windows start on the hour).
created_minutes = st.one_of(
    st.integers(0, 20 * 24 - 1).map(lambda hours: hours * HOUR),
    st.integers(0, 20 * 24 * HOUR - 1),
)
run_specs = st.lists(
    st.tuples(
        created_minutes,
        st.sampled_from([*RunStatus, *TERMINAL_STATUSES, RunStatus.COMPLETED]),
        st.sampled_from([None, "alpha", "alpha", "beta"]),  # playbook
        st.sampled_from(["p", "p", "q"]),  # project
        st.sampled_from([None, "load", "qa"]),  # current_step
        st.one_of(st.none(), st.integers(-5, 10**7)),  # duration in milliseconds
    ),
    max_size=24,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    specs=run_specs,
    start=st.integers(-2 * 24, 15 * 24),  # the window's start, hours after the slot's start
    length=st.one_of(  # minutes
        st.integers(1, 25 * 24).map(lambda hours: hours * HOUR), st.integers(1, 25 * 24 * HOUR)
    ),
    project=st.sampled_from([None, None, "p"]),
    playbook_id=st.sampled_from([None, None, "alpha"]),
)
async def test_statistics_match_a_python_reference(
    vault: Vault,
    small_sample: int,
    specs: list[tuple[int, RunStatus, str | None, str, str | None, int | None]],
    start: int,
    length: int,
    project: str | None,
    playbook_id: str | None,
) -> None:
    base = EPOCH + next(_slots) * SLOT
    runs: list[Run] = []
    for minutes, status, playbook, proj, step, millis in specs:
        created = base + timedelta(minutes=minutes)
        started = completed = None
        if millis is not None and status is not RunStatus.PENDING:
            started = created + timedelta(seconds=1)
            if status in TERMINAL_STATUSES:
                completed = started + timedelta(milliseconds=millis, microseconds=minutes % 7)
        run = Run(
            run_id=new_id(),
            project=proj,
            actor="prop",
            status=status,
            playbook=PlaybookRef(playbook_id=playbook) if playbook else None,
            created_at=created,
            updated_at=created,
            started_at=started,
            completed_at=completed,
            current_step=step,
        )
        await vault.metadata.insert_run(run)
        runs.append(run)
    since = base + timedelta(hours=start)
    query = RunStatsQuery(
        since=since,
        until=since + timedelta(minutes=length),
        project=project,
        playbook_id=playbook_id,
    )
    stats = await vault.runs.stats(query)
    assert observed(stats) == reference(runs, query, small_sample)
    assert (stats.since, stats.until) == (query.since, query.until)


async def test_the_duration_sample_is_the_newest_finished_runs(
    vault: Vault, small_sample: int
) -> None:
    base = datetime(2024, 2, 1, tzinfo=UTC)

    async def put(minutes: int, seconds: float | None, status: RunStatus) -> Run:
        created = base + timedelta(minutes=minutes)
        started = created if seconds is not None else None
        done = created + timedelta(seconds=seconds) if seconds is not None else None
        run = Run(
            run_id=new_id(),
            project="p",
            actor="a",
            status=status,
            created_at=created,
            updated_at=created,
            started_at=started,
            completed_at=done,
        )
        await vault.metadata.insert_run(run)
        return run

    # Oldest first: 100 s, then three runs at the same moment (ties: run_id decides), then
    # a cancelled run that never started (finished, not measured), and an unfinished one.
    await put(0, 100.0, RunStatus.COMPLETED)
    tied = [await put(5, s, RunStatus.COMPLETED) for s in (1.0, 2.0, 3.0)]
    await put(9, None, RunStatus.CANCELLED)
    await put(10, 50.0, RunStatus.RUNNING)
    stats = await vault.runs.stats(since=base, until=base + timedelta(hours=1))
    # Five finished runs, four in the sample: the oldest (100 s) is left out.
    assert stats.sampled is True
    [durations] = stats.durations
    assert (durations.runs, durations.max_seconds) == (3, 3.0)
    assert stats.runs_counted == 6
    # Four finished runs exactly: not sampled, and the 100 s run is measured.
    fewer = await vault.runs.stats(since=base, until=base + timedelta(minutes=9))
    assert fewer.sampled is False
    assert (fewer.durations[0].runs, fewer.durations[0].max_seconds) == (4, 100.0)
    # Among runs created at the same moment the higher run_id is newer.
    assert sorted(r.run_id for r in tied) == [r.run_id for r in tied]  # UUIDv7: in order
    await put(20, 7.0, RunStatus.FAILED)
    later = await vault.runs.stats(
        since=base + timedelta(minutes=5), until=base + timedelta(hours=1)
    )
    # Finished: the three tied, the cancelled one, the failed one; the sample of four holds
    # the failed (7 s), the cancelled (not measured) and the two newest tied (3 s, 2 s).
    assert later.sampled is True
    assert (later.durations[0].runs, later.durations[0].p50_seconds) == (3, 3.0)


def test_the_default_sample_is_one_hundred_thousand() -> None:
    assert RUN_STATS_SAMPLE == 100_000
    # The adapters read the one constant (what `small_sample` patches).
    assert (
        vars(shared)["RUN_STATS_SAMPLE"] is vars(sql_stats)["RUN_STATS_SAMPLE"] is RUN_STATS_SAMPLE
    )


# -- the percentile method and the query ----------------------------------------------------


def test_nearest_rank_picks_a_value_at_rank_ceil_p_n() -> None:
    ten = [float(n) for n in range(1, 11)]
    assert [shared.nearest_rank(ten, p) for p in (0, 10, 11, 50, 90, 95, 100)] == [
        1.0,
        1.0,
        2.0,
        5.0,
        9.0,
        10.0,
        10.0,
    ]
    assert shared.nearest_rank([4.5], 95) == 4.5
    assert shared.nearest_rank([1.0, 2.0], 50) == 1.0
    big = list(range(1, 100_001))
    assert shared.nearest_rank(big, 95) == 95_000  # integer arithmetic: no float drift
    with pytest.raises(ValueError, match="no values"):
        shared.nearest_rank([], 50)
    with pytest.raises(ValueError, match="0-100"):
        shared.nearest_rank(ten, 101)


def test_durations_from_stored_text_and_records_agree() -> None:
    begin = datetime(2026, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    end = begin + timedelta(days=1, microseconds=2)
    as_text = shared.duration_seconds("2026-01-01T23:59:59.999999Z", "2026-01-03T00:00:00.000001Z")
    assert as_text == shared.duration_seconds(begin, end) == 86_400.000002
    assert shared.duration_seconds(None, end) is None
    assert shared.duration_seconds("yesterday", "2026-01-01T00:00:00Z") is None
    assert shared.duration_seconds("2026-01-01T00:00:00", "2026-01-01T00:00:01Z") is None


def test_the_query_resolves_until_and_bounds_the_window() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    before = datetime.now(UTC)
    query = RunStatsQuery(since=since)
    assert before <= query.until <= datetime.now(UTC)
    explicit = RunStatsQuery.model_validate({"since": "2026-01-01T02:00:00+02:00", "until": None})
    assert explicit.since == since
    assert RunStatsQuery(since=since, until=since + timedelta(days=366)).until.year == 2027
    with pytest.raises(pydantic.ValidationError, match="at most 366 days"):
        RunStatsQuery(since=since, until=since + timedelta(days=366, seconds=1))
    with pytest.raises(pydantic.ValidationError, match="later than since"):
        RunStatsQuery(since=since, until=since)
    with pytest.raises(pydantic.ValidationError):
        query.project = "changed"  # type: ignore[misc]  # frozen: until stays resolved
    assert set(RunStatsQuery.model_json_schema()["required"]) == {"since"}


# -- the statements stay on the indexes ----------------------------------------------------


QUERIES = [
    RunStatsQuery(since=EPOCH, until=EPOCH + timedelta(days=30)),
    RunStatsQuery(since=EPOCH, until=EPOCH + timedelta(days=30), project="p"),
]


def _plan(engine: sa.Engine, statement: sa.ClauseElement, prefix: str) -> list[str]:
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        return [
            str(row[-1] if len(row) > 1 else row[0]) for row in conn.exec_driver_sql(prefix + sql)
        ]


@pytest.mark.parametrize("query", QUERIES, ids=["all", "project"])
async def test_sqlite_counts_per_day_read_only_covering_indexes(
    tmp_path: Path, query: RunStatsQuery
) -> None:
    async with await Vault.open(tmp_path / "vault"):
        pass
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'vault' / 'vault.db'}")
    try:
        statements = sql_stats.stats_statements(query, "sqlite")
        per_day = _plan(engine, statements.per_day, "EXPLAIN QUERY PLAN ")
        index = "ix_runs_status_project_created" if query.project else "ix_runs_status_created"
        assert any(f"COVERING INDEX {index}" in step for step in per_day), per_day
        named, unnamed = sql_stats.playbook_runs_statements(query, ["a", None])
        for per_playbook in (named, unnamed) if query.project is None else ():
            counts = _plan(engine, per_playbook, "EXPLAIN QUERY PLAN ")
            assert any("COVERING INDEX ix_runs_playbook_created" in s for s in counts), counts
        for statement in (*statements, named, unnamed):
            plan = _plan(engine, statement, "EXPLAIN QUERY PLAN ")
            assert not any(step.startswith("SCAN runs") for step in plan), plan
    finally:
        engine.dispose()


@pytest.mark.postgres
async def test_postgres_statements_can_all_be_answered_from_an_index(
    tmp_path: Path, pg_url: str
) -> None:
    async with await Vault.open(pg_url, blobs_url=str(tmp_path / "blobs")):
        pass
    engine = sa.create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    try:
        for query in QUERIES:
            statements = sql_stats.stats_statements(query, "postgresql")
            by_playbook = sql_stats.playbook_runs_statements(query, ["a", None])
            for statement in (*statements, *by_playbook):
                plan = "\n".join(_plan(engine, statement, "EXPLAIN "))
                assert "Seq Scan" not in plan, plan
    finally:
        engine.dispose()


# -- the blocking twin -----------------------------------------------------------------------


def test_the_sync_vault_has_stats(tmp_path: Path) -> None:
    with SyncVault.open(tmp_path / "vault") as vault:
        run = vault.runs.create(project="sync")
        vault.runs.start(run.run_id)
        vault.runs.fail(run.run_id, {"code": "boom", "message": "it broke"})
        stats = vault.runs.stats(since=datetime.now(UTC) - timedelta(days=1))
    assert stats.runs_counted == 1
    assert [(d.day, d.status) for d in stats.days] == [(run.created_at.date(), RunStatus.FAILED)]
    [failure] = stats.step_failures
    assert (failure.playbook_id, failure.step, failure.failed, failure.runs) == (None, None, 1, 1)
    assert stats.durations[0].runs == 1
