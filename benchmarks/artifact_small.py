"""Benchmark 2: durable 4 KiB artifact puts per second.

Every payload is distinct random bytes (no deduplication). Measured, interleaved batch by batch
so that background load hits every side alike:

- ``artifacts.put_bytes``, one call per artifact;
- ``artifacts.put_many`` in batches of ``small_batch``;
- the baseline: per artifact SHA-256 + create + write + ``fsync`` of a 4 KiB file (one thread),
  then per batch one directory ``fsync`` and one SQLite transaction inserting a row per file
  (``executemany``, same pragmas as strongroom: WAL, synchronous=NORMAL).

"Durable" means what strongroom promises on return: the blob bytes and their directory entry
are fsynced; the SQLite commit is in the WAL (synchronous=NORMAL), on both sides.
Target: ≥ 2,000 puts/s.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

from benchmarks._common import (
    Context,
    Figure,
    Target,
    fsync_dir,
    median,
    raw_sqlite,
    write_file_durable,
)
from strongroom import Vault

NAME = "artifact_small"
TITLE = "Durable 4 KiB artifact puts"

PAYLOAD_SIZE = 4096
_TARGET = Target("at_least", 2000)


def raw_batch(directory: Path, conn: sqlite3.Connection, payloads: list[bytes]) -> None:
    rows = []
    for data in payloads:
        digest = hashlib.sha256(data).hexdigest()
        write_file_durable(directory / digest, data)
        rows.append((digest, len(data), "payload.bin"))
    fsync_dir(directory)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO blobs (sha256, size_bytes, name) VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")


def _payloads(count: int) -> list[bytes]:
    return [os.urandom(PAYLOAD_SIZE) for _ in range(count)]


async def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    batch = max(1, sizes.small_batch)
    batches = max(1, sizes.small_count // batch)
    count = batches * batch
    seconds = {"single": 0.0, "many": 0.0, "raw": 0.0}
    single_latencies: list[float] = []

    with ctx.fresh_dir(NAME) as root:
        raw_dir = root / "raw"
        raw_dir.mkdir()
        conn = raw_sqlite(raw_dir / "index.db")
        conn.execute(
            "CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, "
            "name TEXT NOT NULL)"
        )
        try:
            async with await Vault.open(root / "vault") as vault:
                run_id = (await vault.runs.create(project="bench", purpose="small puts")).run_id

                # Warm-up (not measured): one batch of each kind.
                for data in _payloads(min(batch, 20)):
                    await vault.artifacts.put_bytes(run_id, data, name="warmup.bin")
                await vault.artifacts.put_many(
                    run_id, [(data, {"name": "warmup.bin"}) for data in _payloads(batch)]
                )
                raw_batch(raw_dir, conn, _payloads(batch))

                order = ["raw", "single", "many"]
                for i in range(batches):
                    for side in order[i % 3 :] + order[: i % 3]:
                        payloads = _payloads(batch)
                        if side == "raw":
                            start = time.perf_counter()
                            raw_batch(raw_dir, conn, payloads)
                            seconds["raw"] += time.perf_counter() - start
                        elif side == "single":
                            for data in payloads:
                                start = time.perf_counter()
                                await vault.artifacts.put_bytes(run_id, data, name="payload.bin")
                                elapsed = time.perf_counter() - start
                                single_latencies.append(elapsed)
                                seconds["single"] += elapsed
                        else:
                            items = [(data, {"name": "payload.bin"}) for data in payloads]
                            start = time.perf_counter()
                            await vault.artifacts.put_many(run_id, items)
                            seconds["many"] += time.perf_counter() - start
        finally:
            conn.close()

    baseline = count / seconds["raw"]
    baseline_name = (
        f"per file SHA-256 + write + fsync; per {batch}: dir fsync + one SQLite "
        "executemany transaction"
    )
    return [
        Figure(
            benchmark=NAME,
            name="put_bytes, one call per artifact",
            unit="puts/s",
            value=count / seconds["single"],
            baseline=baseline,
            baseline_name=baseline_name,
            higher_is_better=True,
            target=_TARGET,
            samples=count,
            notes=f"{count:,} puts; median latency {median(single_latencies) * 1e3:.2f} ms",
            extra={"median_latency_ms": median(single_latencies) * 1e3},
        ),
        Figure(
            benchmark=NAME,
            name=f"put_many, batches of {batch}",
            unit="puts/s",
            value=count / seconds["many"],
            baseline=baseline,
            baseline_name=baseline_name,
            higher_is_better=True,
            target=_TARGET,
            samples=count,
            notes=f"{count:,} puts in {batches} batches",
        ),
    ]
