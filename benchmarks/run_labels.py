"""Benchmark: the run index with a label filter (issue 17; target p95 ≤ 20 ms at 1,000,000
runs).

Standalone (not part of ``python -m benchmarks.run`` yet)::

    python -m benchmarks.run_labels --runs 200000 [--queries 200] [--postgres URL]
        [--no-sqlite] [--reuse]

``--reuse`` measures a PostgreSQL database an earlier run of the same ``--runs`` filled (and
left filled) instead of filling it again: a fill of 1,000,000 runs takes ~5 minutes.

Population: ``--runs`` runs built like ``benchmarks.run_index`` builds them (same
distributions, fixed seed), each with two labels, ``lang`` (8 values, skewed: the commonest
on ~35 % of runs) and ``batch`` (1,000 values: ~0.1 % each), and a ``cost`` metric; bulk
inserted 5,000 per transaction into ``runs``, ``run_labels`` and ``run_metrics`` through
SQLAlchemy Core (the rows the adapter itself writes), into a vault opened (and so migrated)
by strongroom first. Then ``ANALYZE`` (PostgreSQL: ``VACUUM ANALYZE``, the state autovacuum
leaves a loaded table in).

Measured through ``vault.runs.list`` (COUNT capped at 10,000 + page of 50 + parsing), after
10 unmeasured warm-up queries, ``--queries`` of each kind:

- ``label common``: ``labels={"lang": <drawn by popularity>}``, newest first;
- ``label rare``: ``labels={"batch": <random>}``, newest first;
- ``label + metric sort``: ``labels={"lang": ...}, sort="metrics.cost"``;
- ``metric where``: ``where=[metrics.cost < x]`` (x drawn), newest first.

Prints p50/p95 (ms) per kind and backend.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

from benchmarks._common import median, percentile
from benchmarks.run_index import _make_run
from strongroom import Vault
from strongroom.adapters._sql import _run_row, runs_table
from strongroom.adapters._sql.tables import run_labels_table, run_metrics_table
from strongroom.models import Run

LANGS = ["ja", "en", "de", "fr", "es", "zh", "ko", "pt"]
LANG_WEIGHTS = [1 / (k + 1) for k in range(len(LANGS))]
BATCHES = 1000
CHUNK = 5000
WARMUP = 10


def _labelled(rng: random.Random, i: int) -> Run:
    run = _make_run(rng, i)
    return run.model_copy(
        update={
            "labels": {
                "lang": rng.choices(LANGS, weights=LANG_WEIGHTS)[0],
                "batch": f"b{rng.randrange(BATCHES):04}",
            },
            "metrics": {"cost": round(rng.uniform(0, 10), 3)},
        }
    )


def populate(engine: Engine, n: int) -> float:
    """Insert ``n`` labelled runs; returns the seconds it took."""
    rng = random.Random(17)
    started = time.perf_counter()
    for start in range(0, n, CHUNK):
        runs = [_labelled(rng, i) for i in range(start, min(n, start + CHUNK))]
        with engine.begin() as conn:
            conn.execute(insert(runs_table), [_run_row(r) for r in runs])
            conn.execute(
                insert(run_labels_table),
                [
                    {"run_id": r.run_id, "key": k, "value": v}
                    for r in runs
                    for k, v in r.labels.items()
                ],
            )
            conn.execute(
                insert(run_metrics_table),
                [
                    {"run_id": r.run_id, "key": k, "value": v}
                    for r in runs
                    for k, v in r.metrics.items()
                ],
            )
    # PostgreSQL: VACUUM too, as autovacuum would soon after such a load: until the visibility
    # map is set, every "index-only" scan of the label index also reads the table's rows.
    postgres = engine.dialect.name == "postgresql"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if postgres else "ANALYZE"))
    return time.perf_counter() - started


async def _measure(call: Callable[[], Awaitable[Any]], queries: int) -> list[float]:
    for _ in range(WARMUP):
        await call()
    samples: list[float] = []
    for _ in range(queries):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def measure(vault: Vault, queries: int) -> dict[str, list[float]]:
    rng = random.Random(5)

    def lang() -> str:
        return rng.choices(LANGS, weights=LANG_WEIGHTS)[0]

    kinds: dict[str, Callable[[], Awaitable[Any]]] = {
        "label common": lambda: vault.runs.list(labels={"lang": lang()}, limit=50),
        "label rare": lambda: vault.runs.list(
            labels={"batch": f"b{rng.randrange(BATCHES):04}"}, limit=50
        ),
        "label + metric sort": lambda: vault.runs.list(
            labels={"lang": lang()}, sort="metrics.cost", limit=50
        ),
        "metric where": lambda: vault.runs.list(
            where=[{"key": "cost", "op": "<", "value": rng.uniform(0, 10)}], limit=50
        ),
    }
    return {name: await _measure(call, queries) for name, call in kinds.items()}


def report(backend: str, n: int, build_s: float, results: dict[str, list[float]]) -> None:
    print(f"{backend}: {n:,} runs (built in {build_s:.0f} s)")
    for name, samples in results.items():
        print(f"  {name:<22} p50 {median(samples):7.2f} ms   p95 {percentile(samples, 95):7.2f} ms")


async def run_sqlite(n: int, queries: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "vault"
        vault = await Vault.open(path)
        await vault.close()
        db = path / "vault.db"
        engine = create_engine(f"sqlite+pysqlite:///{db}")
        try:
            build_s = populate(engine, n)
        finally:
            engine.dispose()
        vault = await Vault.open(path)
        try:
            report("sqlite", n, build_s, await measure(vault, queries))
        finally:
            await vault.close()


async def run_postgres(url: str, n: int, queries: int, *, reuse: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        vault = await Vault.open(url, blobs_url=scratch)
        await vault.close()
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                held = conn.execute(text("SELECT count(*) FROM runs")).scalar_one()
            if reuse and held == n:
                build_s = 0.0
            elif held:
                raise SystemExit(f"{url} holds {held:,} runs: give an empty database")
            else:
                build_s = populate(engine, n)
        finally:
            engine.dispose()
        vault = await Vault.open(url, blobs_url=scratch)
        try:
            report("postgresql", n, build_s, await measure(vault, queries))
        finally:
            await vault.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--postgres", help="URL of an EMPTY PostgreSQL database to fill.")
    parser.add_argument("--no-sqlite", action="store_true", help="Measure PostgreSQL only.")
    parser.add_argument(
        "--reuse", action="store_true", help="Measure a database filled by an earlier run."
    )
    args = parser.parse_args()
    if not args.no_sqlite:
        asyncio.run(run_sqlite(args.runs, args.queries))
    if args.postgres:
        asyncio.run(run_postgres(args.postgres, args.runs, args.queries, reuse=args.reuse))


if __name__ == "__main__":
    main()
