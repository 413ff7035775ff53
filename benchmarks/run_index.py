"""Benchmark 4: run index queries over ``index_runs`` (default 100,000) runs.

Population: ``insert_sample`` runs go through ``vault.metadata.insert_run`` one by one (that
rate is reported); the rest are validated `Run` models turned into rows by the SQL adapter's
own ``_run_row`` and inserted with one SQLAlchemy Core ``executemany`` per 5,000 rows into
its ``runs`` table (the store has no bulk insert). Distributions (fixed seed): 5 statuses
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

Baseline: the same two SQL statements (count + page, identical SQL to what the adapter
compiles) through plain ``sqlite3`` on the same database file, rows fetched but not parsed.
Target: p95 ≤ 20 ms for the filtered pages.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, insert

from benchmarks._common import Context, Figure, Target, median, percentile, raw_sqlite
from strongroom import Vault
from strongroom.adapters._sql import _run_row, runs_table
from strongroom.ids import new_id
from strongroom.models import Run, RunPage, RunStatus

NAME = "run_index"
TITLE = "Run index queries"

PAGE = 50
_TARGET = Target("at_most", 20.0)
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
    """Insert rows built by the adapter's ``_run_row`` with Core ``executemany``."""
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


# -- baseline ----------------------------------------------------------------------------------

_COUNT_FILTERED = (
    "SELECT count(*) AS count_1 FROM runs WHERE runs.status IN (?) AND runs.project = ?"
)
_PAGE_FILTERED = (
    "SELECT runs.run_id, runs.created_at AS sort_value, runs.body FROM runs "
    "WHERE runs.status IN (?) AND runs.project = ?{cursor} "
    "ORDER BY runs.created_at DESC, runs.run_id DESC LIMIT ? OFFSET ?"
)
_CURSOR = " AND (runs.created_at, runs.run_id) < (?, ?)"
_SEARCH = "(lower(runs.purpose) LIKE '%' || lower(?) || '%' ESCAPE '/')"
_COUNT_SEARCH = f"SELECT count(*) AS count_1 FROM runs WHERE {_SEARCH}"
_PAGE_SEARCH = (
    "SELECT runs.run_id, runs.created_at AS sort_value, runs.body FROM runs "
    f"WHERE {_SEARCH} ORDER BY runs.created_at DESC, runs.run_id DESC LIMIT ? OFFSET ?"
)

RawPage = tuple[int, list[tuple[str, str, str]]]


def raw_filtered(
    conn: sqlite3.Connection, status: str, project: str, after: tuple[str, str] | None
) -> RawPage:
    params: list[Any] = [status, project]
    sql = _PAGE_FILTERED.format(cursor=_CURSOR if after else "")
    conn.execute("BEGIN")
    total = conn.execute(_COUNT_FILTERED, params).fetchone()[0]
    rows = conn.execute(sql, [*params, *(after or ()), PAGE + 1, 0]).fetchall()
    conn.execute("COMMIT")
    return total, rows


def raw_search(conn: sqlite3.Connection, word: str) -> RawPage:
    conn.execute("BEGIN")
    total = conn.execute(_COUNT_SEARCH, [word]).fetchone()[0]
    rows = conn.execute(_PAGE_SEARCH, [word, PAGE + 1, 0]).fetchall()
    conn.execute("COMMIT")
    return total, rows


def _plan(conn: sqlite3.Connection, sql: str, params: list[Any]) -> str:
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return "; ".join(str(row[-1]) for row in rows)


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
    if sr_page.total != raw_page[0] or ids != [row[0] for row in raw_page[1][:PAGE]]:
        raise RuntimeError("strongroom and the baseline disagree: not the same query")
    return raw_page, sr_page, raw_ms, sr_ms


async def _filtered_queries(
    vault: Vault, conn: sqlite3.Connection, combos: list[tuple[RunStatus, str]]
) -> dict[str, list[float]]:
    ms: dict[str, list[float]] = {"p1": [], "p1/raw": [], "p2": [], "p2/raw": []}
    for i, (status, project) in enumerate(combos):
        raw1, page1, raw_ms, sr_ms = await _pair(
            partial(raw_filtered, conn, status.value, project, None),
            partial(vault.runs.list, status=[status], project=project, limit=PAGE),
            i % 2 == 0,
        )
        if i >= _WARMUP:
            ms["p1"].append(sr_ms)
            ms["p1/raw"].append(raw_ms)
        if page1.next_cursor is None:
            continue  # a single page: nothing to follow
        last = raw1[1][PAGE - 1]
        _, _, raw_ms, sr_ms = await _pair(
            partial(raw_filtered, conn, status.value, project, (last[1], last[0])),
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


async def _searches(
    vault: Vault, conn: sqlite3.Connection, words: list[str]
) -> dict[str, list[float]]:
    ms: dict[str, list[float]] = {"q": [], "q/raw": []}
    for i, word in enumerate(words):
        _, _, raw_ms, sr_ms = await _pair(
            partial(raw_search, conn, word),
            partial(vault.runs.list, purpose_contains=word, limit=PAGE),
            i % 2 == 0,
        )
        if i >= _WARMUP:
            ms["q"].append(sr_ms)
            ms["q/raw"].append(raw_ms)
    return ms


async def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    rng = random.Random(20261122)
    total_runs = max(sizes.index_runs, sizes.insert_sample)

    with ctx.fresh_dir(NAME) as root:
        vault_dir = root / "vault"
        db = vault_dir / "vault.db"
        async with await Vault.open(vault_dir) as vault:
            start = time.perf_counter()
            for run_record in _runs(rng, 0, sizes.insert_sample):
                await vault.metadata.insert_run(run_record)
            insert_run_rate = sizes.insert_sample / (time.perf_counter() - start)

        start = time.perf_counter()
        bulk = bulk_insert(db, _runs(rng, sizes.insert_sample, total_runs))
        bulk_rate = bulk / (time.perf_counter() - start)

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
        conn = raw_sqlite(db)
        try:
            plan = _plan(
                conn, _PAGE_FILTERED.format(cursor=""), ["running", PROJECTS[0], PAGE + 1, 0]
            )
            async with await Vault.open(vault_dir) as vault:
                ms = await _filtered_queries(vault, conn, combos)
                ms.update(await _searches(vault, conn, words))
        finally:
            conn.close()

    def summary(key: str) -> str:
        return (
            f"median {median(ms[key]):.2f} ms (baseline {median(ms[key + '/raw']):.2f}); "
            f"{len(ms[key])} queries"
        )

    def extra(key: str) -> dict[str, float]:
        return {"median_ms": median(ms[key]), "baseline_median_ms": median(ms[key + "/raw"])}

    figures = [
        Figure(
            benchmark=NAME,
            name=f"status + project filter, page 1 of {PAGE}, p95",
            unit="ms",
            value=percentile(ms["p1"], 95),
            baseline=percentile(ms["p1/raw"], 95),
            baseline_name="the same COUNT + page SELECT in sqlite3, rows not parsed",
            higher_is_better=False,
            target=_TARGET,
            samples=len(ms["p1"]),
            notes=f"{summary('p1')}; plan: {plan}",
            extra=extra("p1"),
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
                baseline_name="the same COUNT + keyset page SELECT in sqlite3",
                higher_is_better=False,
                target=_TARGET,
                samples=len(ms["p2"]),
                notes=summary("p2"),
                extra=extra("p2"),
            )
        )
    figures += [
        Figure(
            benchmark=NAME,
            name="purpose text search, page 1, p95",
            unit="ms",
            value=percentile(ms["q"], 95),
            baseline=percentile(ms["q/raw"], 95),
            baseline_name="the same COUNT + page SELECT (lower() LIKE) in sqlite3",
            higher_is_better=False,
            samples=len(ms["q"]),
            notes=summary("q") + "; no index serves it: the COUNT scans every run",
            extra=extra("q"),
        ),
        Figure(
            benchmark=NAME,
            name=f"populate: Core executemany, {bulk:,} runs",
            unit="runs/s",
            value=bulk_rate,
            higher_is_better=True,
            samples=bulk,
            notes="setup; validated Run models + the adapter's _run_row, 5,000 rows/txn",
        ),
        Figure(
            benchmark=NAME,
            name=f"populate: metadata.insert_run one by one, {sizes.insert_sample:,} runs",
            unit="runs/s",
            value=insert_run_rate,
            higher_is_better=True,
            samples=sizes.insert_sample,
            notes=f"setup; at this rate {total_runs:,} runs take "
            f"{total_runs / insert_run_rate:,.0f} s",
        ),
    ]
    return figures
