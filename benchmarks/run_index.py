"""Benchmark 4: run index queries over ``index_runs`` (default 100,000) runs.

Population: ``insert_sample`` runs go through ``vault.metadata.insert_run`` one by one (that
rate is reported); the rest are validated `Run` models turned into rows by the SQL adapter's
own ``_run_row`` and inserted 5,000 rows per transaction into its ``runs`` table (the store
has no bulk insert): SQLite with one SQLAlchemy Core ``executemany`` per transaction,
PostgreSQL with one psycopg ``COPY`` per transaction, then ``VACUUM (ANALYZE) runs`` (what
autovacuum does to a table that has been filled: planner statistics, and the visibility map
that lets the COUNT be an index-only scan). Distributions (fixed seed): 5 statuses
(completed 55 %, running 20 %, pending 10 %, failed 10 %, cancelled 5 %), 20 projects and 50
actors with skewed popularity, creation times spread over 180 days, purposes built from a
small vocabulary (verb, object, customer, batch number).

Queries (``index_queries`` filtered ones with (status, project) pairs drawn from the same
distributions, ``search_queries`` searches), strongroom and baseline alternating, after 10
unmeasured warm-up queries of each kind; every answer is checked equal to the baseline's:

- filter status + project, first page of 50 (``vault.runs.list(status=[s], project=p,
  limit=50)``: a COUNT and a page SELECT in one read transaction, 50 `Run` bodies parsed);
- the second page of the same filter through ``next_cursor`` (keyset pagination);
- a purpose text search (``purpose_contains=word``, no other filter).

Totals are the run index's default capped count (``count_limit`` 10,000: ``SELECT count(*)
FROM (SELECT 1 ... LIMIT 10001)``, so the database stops after 10,001 matches; more is
reported as ``total`` 10,000, ``total_is_exact`` false). The true size of every
(status, project) group is counted once, unmeasured, for the notes.

Baseline: the same two SQL statements (capped count + page, identical SQL to what the adapter
compiles for the dialect; ``tests/test_benchmarks.py`` checks it) in one read transaction
through plain ``sqlite3`` on the same database file, or plain ``psycopg`` on the same
database (REPEATABLE READ, READ ONLY, as strongroom reads), rows fetched but not parsed.
Target: p95 ≤ 20 ms for the filtered pages on SQLite, ≤ 30 ms on PostgreSQL.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, insert

from benchmarks._backends import RawRecords, VaultSpace
from benchmarks._common import Context, Figure, Sizes, Target, median, percentile
from strongroom import Vault
from strongroom.adapters._sql import _run_row, runs_table
from strongroom.ids import new_id
from strongroom.models import Run, RunPage, RunStatus
from strongroom.models.runs import DEFAULT_COUNT_LIMIT

NAME = "run_index"
TITLE = "Run index queries"

PAGE = 50
COUNT_LIMIT = DEFAULT_COUNT_LIMIT  # what vault.runs.list counts up to by default
TARGETS = {"sqlite": Target("at_most", 20.0), "postgresql": Target("at_most", 30.0)}
_INSERT_CHUNK = 5000
_WARMUP = 10

STATUS_WEIGHTS: dict[RunStatus, float] = {
    RunStatus.COMPLETED: 0.55,
    RunStatus.RUNNING: 0.20,
    RunStatus.PENDING: 0.10,
    RunStatus.FAILED: 0.10,
    RunStatus.CANCELLED: 0.05,
}
PROJECTS = [f"project-{k:02}" for k in range(20)]
PROJECT_WEIGHTS = [1 / (k + 1) ** 0.8 for k in range(20)]
ACTORS = [f"user-{k:02}" for k in range(50)]
ACTOR_WEIGHTS = [1 / (k + 1) ** 0.5 for k in range(50)]
VERBS = ["translate", "import", "export", "reconcile", "summarise", "index", "classify"]
OBJECTS = ["manual", "invoices", "catalogue", "tickets", "contracts", "reviews", "ledger"]
CUSTOMERS = [f"customer{k:03}" for k in range(200)]
PHASES = ["ingest", "translate", "qa", "export"]
EPOCH = datetime(2026, 6, 1, tzinfo=UTC)
SPAN = timedelta(days=180)


def _make_run(rng: random.Random, i: int) -> Run:
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    created = EPOCH + SPAN * rng.random()
    started = created + timedelta(seconds=rng.uniform(0.1, 30))
    data: dict[str, Any] = {
        "run_id": new_id(),
        "project": rng.choices(PROJECTS, weights=PROJECT_WEIGHTS)[0],
        "actor": rng.choices(ACTORS, weights=ACTOR_WEIGHTS)[0],
        "purpose": (
            f"{rng.choice(VERBS)} the {rng.choice(OBJECTS)} of {rng.choice(CUSTOMERS)} "
            f"(batch {i % 1000})"
        ),
        "status": status,
        "created_at": created,
        "updated_at": created,
        "progress": {"steps_total": len(PHASES), "steps_completed": 0},
        "version": 1,
    }
    if status is not RunStatus.PENDING:
        done = rng.randint(0, len(PHASES) - 1)
        data.update(
            started_at=started,
            updated_at=started + timedelta(seconds=rng.expovariate(1 / 600)),
            current_phase=PHASES[done],
            progress={"steps_total": len(PHASES), "steps_completed": done},
            version=2 + done,
        )
    if status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
        data["completed_at"] = data["updated_at"]
        data["outcome"] = {"completed": "success", "failed": "failure"}.get(status.value)
        if status is RunStatus.COMPLETED:
            data["progress"] = {"steps_total": len(PHASES), "steps_completed": len(PHASES)}
        if status is RunStatus.FAILED:
            data["last_error"] = {"code": "sandbox_violation", "message": "tool exited 137"}
    return Run.model_validate(data)


def _runs(rng: random.Random, start: int, stop: int) -> Iterator[Run]:
    for i in range(start, stop):
        yield _make_run(rng, i)


def bulk_insert(db: Path, runs: Iterator[Run]) -> int:
    """SQLite: rows built by the adapter's ``_run_row``, Core ``executemany`` per chunk."""
    engine = create_engine(URL.create("sqlite+pysqlite", database=str(db)))
    inserted = 0
    try:
        while True:
            rows = [_run_row(run) for _, run in zip(range(_INSERT_CHUNK), runs, strict=False)]
            if not rows:
                return inserted
            with engine.begin() as conn:
                conn.execute(insert(runs_table), rows)
            inserted += len(rows)
    finally:
        engine.dispose()


def bulk_copy(url: str, runs: Iterator[Run]) -> int:
    """PostgreSQL: rows built by the adapter's ``_run_row``, one ``COPY`` per chunk (the
    values are the ones SQLAlchemy would bind: ``UtcTimestamp`` hands psycopg the UTC
    datetime itself)."""
    import psycopg

    columns = [column.name for column in runs_table.columns]
    statement = f"COPY runs ({', '.join(columns)}) FROM STDIN".encode()
    inserted = 0
    with psycopg.connect(url) as conn:
        while True:
            rows = [_run_row(run) for _, run in zip(range(_INSERT_CHUNK), runs, strict=False)]
            if not rows:
                return inserted
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row([row[name] for name in columns])
            inserted += len(rows)


def vacuum_analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) runs")


# -- baseline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSql:
    """The statements the SQL adapter compiles for one dialect (``run_index_statements``
    with the default ``count_limit``, IN lists expanded), in the driver's placeholder
    syntax. The counts are capped: their LIMIT parameter is ``COUNT_LIMIT + 1``."""

    count_filtered: str
    page_filtered: str  # {cursor}: empty, or the keyset condition below
    cursor: str
    count_search: str
    page_search: str
    page_tail: tuple[int, ...]  # parameters after LIMIT's: SQLite compiles an OFFSET 0 too
    explain: str


SQLITE_SQL = IndexSql(
    count_filtered=(
        "SELECT count(*) AS count_1 FROM (SELECT 1 FROM runs "
        "WHERE runs.status IN (?) AND runs.project = ? LIMIT ? OFFSET ?) AS anon_1"
    ),
    page_filtered=(
        "SELECT runs.run_id, runs.created_at AS sort_value, runs.body FROM runs "
        "WHERE runs.status IN (?) AND runs.project = ?{cursor} "
        "ORDER BY runs.created_at DESC, runs.run_id DESC LIMIT ? OFFSET ?"
    ),
    cursor=" AND (runs.created_at, runs.run_id) < (?, ?)",
    count_search=(
        "SELECT count(*) AS count_1 FROM (SELECT 1 FROM runs "
        "WHERE (lower(runs.purpose) LIKE '%' || lower(?) || '%' ESCAPE '/') "
        "LIMIT ? OFFSET ?) AS anon_1"
    ),
    page_search=(
        "SELECT runs.run_id, runs.created_at AS sort_value, runs.body FROM runs "
        "WHERE (lower(runs.purpose) LIKE '%' || lower(?) || '%' ESCAPE '/') "
        "ORDER BY runs.created_at DESC, runs.run_id DESC LIMIT ? OFFSET ?"
    ),
    page_tail=(0,),
    explain="EXPLAIN QUERY PLAN ",
)

POSTGRES_SQL = IndexSql(
    count_filtered=(
        "SELECT count(*) AS count_1 FROM (SELECT 1 FROM runs "
        "WHERE runs.status IN (%s::VARCHAR) AND runs.project = %s::VARCHAR "
        "LIMIT %s::INTEGER) AS anon_1"
    ),
    page_filtered=(
        "SELECT runs.run_id, runs.created_at AS sort_value, runs.body FROM runs "
        "WHERE runs.status IN (%s::VARCHAR) AND runs.project = %s::VARCHAR{cursor} "
        "ORDER BY runs.created_at DESC, runs.run_id DESC LIMIT %s::INTEGER"
    ),
    cursor=(" AND (runs.created_at, runs.run_id) < (%s::TIMESTAMP WITH TIME ZONE, %s::VARCHAR)"),
    count_search=(
        "SELECT count(*) AS count_1 FROM (SELECT 1 FROM runs "
        "WHERE (runs.purpose ILIKE '%%' || %s::VARCHAR || '%%' ESCAPE '/') "
        "LIMIT %s::INTEGER) AS anon_1"
    ),
    page_search=(
        "SELECT runs.run_id, runs.created_at AS sort_value, runs.body FROM runs "
        "WHERE (runs.purpose ILIKE '%%' || %s::VARCHAR || '%%' ESCAPE '/') "
        "ORDER BY runs.created_at DESC, runs.run_id DESC LIMIT %s::INTEGER"
    ),
    page_tail=(),
    explain="EXPLAIN (COSTS OFF) ",
)

# (the capped count: up to COUNT_LIMIT + 1, the page's rows)
RawPage = tuple[int, list[tuple[Any, ...]]]


class Baseline:
    """The run index queries through the plain driver: the same SQL, one read transaction,
    rows fetched but not parsed."""

    def __init__(self, raw: RawRecords) -> None:
        self.raw = raw
        self.sql = POSTGRES_SQL if raw.dialect == "postgresql" else SQLITE_SQL
        self.count_ms = 0.0  # the last filtered query's COUNT alone (where the time goes)

    def filtered(self, status: str, project: str, after: tuple[Any, Any] | None) -> RawPage:
        sql = self.sql
        params: list[Any] = [status, project]
        cap = [COUNT_LIMIT + 1, *sql.page_tail]
        page = sql.page_filtered.format(cursor=sql.cursor if after else "")
        with self.raw.transaction(write=False):
            start = time.perf_counter()
            counted = self.raw.execute_native(sql.count_filtered, [*params, *cap])[0][0]
            self.count_ms = (time.perf_counter() - start) * 1e3
            rows = self.raw.execute_native(
                page, [*params, *(after or ()), PAGE + 1, *sql.page_tail]
            )
        return counted, rows

    def search(self, word: str) -> RawPage:
        sql = self.sql
        cap = [COUNT_LIMIT + 1, *sql.page_tail]
        with self.raw.transaction(write=False):
            counted = self.raw.execute_native(sql.count_search, [word, *cap])[0][0]
            rows = self.raw.execute_native(sql.page_search, [word, PAGE + 1, *sql.page_tail])
        return counted, rows

    def group_sizes(self) -> dict[tuple[str, str], int]:
        """The exact size of every (status, project) group (for the notes; not timed)."""
        with self.raw.transaction(write=False):
            rows = self.raw.execute_native(
                "SELECT status, project, count(*) FROM runs GROUP BY status, project"
            )
        return {(str(status), str(project)): int(n) for status, project, n in rows}

    def plan(self, sql: str, params: list[Any]) -> str:
        """The query plan, compacted to one line (PostgreSQL: node lines, conditions
        dropped)."""
        with self.raw.transaction(write=False):
            rows = self.raw.execute_native(self.sql.explain + sql, params)
        if self.raw.dialect != "postgresql":
            return "; ".join(str(row[-1]) for row in rows)
        nodes = [str(row[0]).strip().removeprefix("-> ").strip() for row in rows]
        return " → ".join(node for node in nodes if not node.split(":")[0].endswith(" Cond"))

    def plans(self) -> str:
        sql = self.sql
        params: list[Any] = ["running", PROJECTS[0]]
        page = self.plan(sql.page_filtered.format(cursor=""), [*params, PAGE + 1, *sql.page_tail])
        if self.raw.dialect != "postgresql":
            return page  # as reported since the first run
        count = self.plan(sql.count_filtered, [*params, COUNT_LIMIT + 1, *sql.page_tail])
        return f"page: {page}; COUNT: {count}"


# -- the benchmark -----------------------------------------------------------------------------


async def _pair(
    raw: Callable[[], RawPage], sr: Callable[[], Awaitable[RunPage]], raw_first: bool
) -> tuple[RawPage, RunPage, float, float]:
    """Run the baseline and strongroom versions of one query (in the given order), checking
    they agree; returns both answers and both durations in ms."""

    def timed_raw() -> tuple[RawPage, float]:
        start = time.perf_counter()
        page = raw()
        return page, (time.perf_counter() - start) * 1e3

    async def timed_sr() -> tuple[RunPage, float]:
        start = time.perf_counter()
        page = await sr()
        return page, (time.perf_counter() - start) * 1e3

    if raw_first:
        raw_page, raw_ms = timed_raw()
        sr_page, sr_ms = await timed_sr()
    else:
        sr_page, sr_ms = await timed_sr()
        raw_page, raw_ms = timed_raw()
    ids = [run.run_id for run in sr_page.items]
    counted = raw_page[0]  # the capped count: more than COUNT_LIMIT = "COUNT_LIMIT+"
    raw_total = (min(counted, COUNT_LIMIT), counted <= COUNT_LIMIT)
    if (sr_page.total, sr_page.total_is_exact) != raw_total or ids != [
        row[0] for row in raw_page[1][:PAGE]
    ]:
        raise RuntimeError("strongroom and the baseline disagree: not the same query")
    return raw_page, sr_page, raw_ms, sr_ms


async def _filtered_queries(
    vault: Vault,
    baseline: Baseline,
    combos: list[tuple[RunStatus, str]],
    groups: dict[tuple[str, str], int],
) -> dict[str, list[float]]:
    ms: dict[str, list[float]] = {
        "p1": [],
        "p1/raw": [],
        "p2": [],
        "p2/raw": [],
        "count/raw": [],  # the baseline's COUNT alone, page 1 queries
        "matched": [],  # runs matching each page 1 query (its group's true size)
    }
    for i, (status, project) in enumerate(combos):
        raw1, page1, raw_ms, sr_ms = await _pair(
            partial(baseline.filtered, status.value, project, None),
            partial(vault.runs.list, status=[status], project=project, limit=PAGE),
            i % 2 == 0,
        )
        if i >= _WARMUP:
            ms["p1"].append(sr_ms)
            ms["p1/raw"].append(raw_ms)
            ms["count/raw"].append(baseline.count_ms)
            ms["matched"].append(float(groups.get((status.value, project), 0)))
        if page1.next_cursor is None:
            continue  # a single page: nothing to follow
        last = raw1[1][PAGE - 1]
        _, _, raw_ms, sr_ms = await _pair(
            partial(baseline.filtered, status.value, project, (last[1], last[0])),
            partial(
                vault.runs.list,
                status=[status],
                project=project,
                limit=PAGE,
                cursor=page1.next_cursor,
            ),
            i % 2 == 1,
        )
        if i >= _WARMUP:
            ms["p2"].append(sr_ms)
            ms["p2/raw"].append(raw_ms)
    return ms


async def _searches(vault: Vault, baseline: Baseline, words: list[str]) -> dict[str, list[float]]:
    ms: dict[str, list[float]] = {"q": [], "q/raw": [], "q/capped": []}
    for i, word in enumerate(words):
        _, page, raw_ms, sr_ms = await _pair(
            partial(baseline.search, word),
            partial(vault.runs.list, purpose_contains=word, limit=PAGE),
            i % 2 == 0,
        )
        if i >= _WARMUP:
            ms["q"].append(sr_ms)
            ms["q/capped"].append(0.0 if page.total_is_exact else 1.0)
            ms["q/raw"].append(raw_ms)
    return ms


async def _populate(space: VaultSpace, rng: random.Random, sizes: Sizes) -> dict[str, Any]:
    """Fill the fresh vault; returns the rates and what was done, for the figures."""
    total_runs = max(sizes.index_runs, sizes.insert_sample)
    async with await space.open_vault() as vault:
        start = time.perf_counter()
        for run_record in _runs(rng, 0, sizes.insert_sample):
            await vault.metadata.insert_run(run_record)
        insert_run_rate = sizes.insert_sample / (time.perf_counter() - start)

    rest = _runs(rng, sizes.insert_sample, total_runs)
    start = time.perf_counter()
    if space.postgres_url is not None:
        bulk = bulk_copy(space.postgres_url, rest)
        bulk_s = time.perf_counter() - start
        start = time.perf_counter()
        vacuum_analyze(space.postgres_url)
        how = (
            f"psycopg COPY, {_INSERT_CHUNK:,} rows/txn; then VACUUM (ANALYZE) runs in "
            f"{time.perf_counter() - start:.1f} s"
        )
        method = "COPY"
    else:
        assert space.sqlite_path is not None
        bulk = bulk_insert(space.sqlite_path, rest)
        bulk_s = time.perf_counter() - start
        how = f"{_INSERT_CHUNK:,} rows/txn"
        method = "Core executemany"
    return {
        "total_runs": total_runs,
        "insert_run_rate": insert_run_rate,
        "bulk": bulk,
        "bulk_rate": bulk / bulk_s if bulk_s > 0 else 0.0,
        "bulk_method": method,
        "bulk_notes": f"setup; validated Run models + the adapter's _run_row, {how}",
    }


async def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    rng = random.Random(20261122)

    with ctx.fresh_vault(NAME) as space:
        filled = await _populate(space, rng, sizes)
        combos = [
            (
                rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0],
                rng.choices(PROJECTS, weights=PROJECT_WEIGHTS)[0],
            )
            for _ in range(_WARMUP + sizes.index_queries)
        ]
        # Half the searches look for a common word (an object, ~1 run in 7), half for a rare
        # one (a customer, ~1 run in 200).
        words = [
            rng.choice(OBJECTS) if i % 2 else rng.choice(CUSTOMERS)
            for i in range(_WARMUP + sizes.search_queries)
        ]
        raw = space.raw_records()
        try:
            baseline = Baseline(raw)
            plan = baseline.plans()
            groups = baseline.group_sizes()
            async with await space.open_vault() as vault:
                ms = await _filtered_queries(vault, baseline, combos, groups)
                ms.update(await _searches(vault, baseline, words))
        finally:
            raw.close()

    dialect = raw.dialect
    driver = "psycopg" if dialect == "postgresql" else "sqlite3"
    target = TARGETS[dialect]
    capped_searches = int(sum(ms["q/capped"]))
    unindexed = "it" if dialect == "sqlite" else "ILIKE '%word%'"
    scan = (
        f"no index serves {unindexed}: the capped COUNT reads runs until "
        f"{COUNT_LIMIT + 1:,} match ({capped_searches} of {len(ms['q'])} searches did: "
        f"total {COUNT_LIMIT:,}+), every run otherwise"
    )

    def summary(key: str) -> str:
        return (
            f"median {median(ms[key]):.2f} ms (baseline {median(ms[key + '/raw']):.2f}); "
            f"{len(ms[key])} queries"
        )

    def extra(key: str) -> dict[str, float]:
        return {"median_ms": median(ms[key]), "baseline_median_ms": median(ms[key + "/raw"])}

    matched = ms["matched"]
    over = [n for n in matched if n > COUNT_LIMIT]
    # Distinct (status, project) groups among the measured queries, and those over the cap.
    measured = set(combos[_WARMUP:])
    big = sum(1 for s, p in measured if groups.get((s.value, p), 0) > COUNT_LIMIT)
    capping = (
        f"totals capped at {COUNT_LIMIT:,} (the default count_limit): {len(over)} of "
        f"{len(matched)} queries ({big} of {len(measured)} distinct groups) matched more, "
        f"total {COUNT_LIMIT:,}+"
    )

    figures = [
        Figure(
            benchmark=NAME,
            name=f"status + project filter, page 1 of {PAGE}, p95",
            unit="ms",
            value=percentile(ms["p1"], 95),
            baseline=percentile(ms["p1/raw"], 95),
            baseline_name=f"the same capped COUNT + page SELECT in {driver}, rows not parsed",
            higher_is_better=False,
            target=target,
            samples=len(ms["p1"]),
            notes=(
                f"{summary('p1')}; {filled['total_runs']:,} runs, {median(matched):,.0f} "
                f"matching a query (median; max {max(matched):,.0f}); {capping}; counted in "
                f"{median(ms['count/raw']):.2f} ms (median; p95 "
                f"{percentile(ms['count/raw'], 95):.2f}) by the baseline's capped COUNT alone; "
                f"plan: {plan}"
            ),
            extra={
                **extra("p1"),
                "baseline_count_median_ms": median(ms["count/raw"]),
                "baseline_count_p95_ms": percentile(ms["count/raw"], 95),
                "matched_median": median(matched),
                "matched_max": max(matched),
                "count_limit": COUNT_LIMIT,
                "queries_over_count_limit": len(over),
                "groups_over_count_limit": big,
            },
        )
    ]
    if ms["p2"]:
        figures.append(
            Figure(
                benchmark=NAME,
                name="same filter, page 2 via cursor, p95",
                unit="ms",
                value=percentile(ms["p2"], 95),
                baseline=percentile(ms["p2/raw"], 95),
                baseline_name=f"the same capped COUNT + keyset page SELECT in {driver}",
                higher_is_better=False,
                target=target,
                samples=len(ms["p2"]),
                notes=summary("p2"),
                extra=extra("p2"),
            )
        )
    like = "lower() LIKE" if dialect == "sqlite" else "ILIKE"
    figures += [
        Figure(
            benchmark=NAME,
            name="purpose text search, page 1, p95",
            unit="ms",
            value=percentile(ms["q"], 95),
            baseline=percentile(ms["q/raw"], 95),
            baseline_name=f"the same capped COUNT + page SELECT ({like}) in {driver}",
            higher_is_better=False,
            samples=len(ms["q"]),
            notes=f"{summary('q')}; {scan}",
            extra={**extra("q"), "searches_over_count_limit": capped_searches},
        ),
        Figure(
            benchmark=NAME,
            name=f"populate: {filled['bulk_method']}, {filled['bulk']:,} runs",
            unit="runs/s",
            value=filled["bulk_rate"],
            higher_is_better=True,
            samples=filled["bulk"],
            notes=filled["bulk_notes"],
        ),
        Figure(
            benchmark=NAME,
            name=f"populate: metadata.insert_run one by one, {sizes.insert_sample:,} runs",
            unit="runs/s",
            value=filled["insert_run_rate"],
            higher_is_better=True,
            samples=sizes.insert_sample,
            notes=f"setup; at this rate {filled['total_runs']:,} runs take "
            f"{filled['total_runs'] / filled['insert_run_rate']:,.0f} s",
        ),
    ]
    return figures
