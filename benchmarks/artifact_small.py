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

On the postgres-s3 backend (blobs on moto's S3 server, records on PostgreSQL) there are two
baselines, both plain ``obstore`` + ``hashlib`` + one ``psycopg`` transaction per batch
(``executemany`` of a row per object, into a table of the vault's database): for
``put_bytes`` the batch's PutObjects one after the other; for ``put_many`` the batch's
PutObjects 32 at a time (the concurrency of strongroom's ``put_many`` on S3). moto (one
Python process on the same machine) is the bottleneck of every side.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks._backends import RawRecords
from benchmarks._common import Context, Figure, Target, fsync_dir, median, write_file_durable

if TYPE_CHECKING:
    from obstore.store import S3Store

NAME = "artifact_small"
TITLE = "Durable 4 KiB artifact puts"

PAYLOAD_SIZE = 4096
_TARGET = Target("at_least", 2000)
S3_PUT_CONCURRENCY = 32  # strongroom's S3 put_many (``_s3.DEFAULT_PUT_MANY_CONCURRENCY``)

_CREATE = (
    "CREATE TABLE raw_blobs (sha256 TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, "
    "name TEXT NOT NULL)"
)
_INSERT = "INSERT INTO raw_blobs (sha256, size_bytes, name) VALUES (?, ?, ?)"


def _insert_rows(records: RawRecords, rows: list[tuple[str, int, str]]) -> None:
    with records.transaction():
        records.executemany(_INSERT, rows)


def raw_batch(directory: Path, records: RawRecords, payloads: list[bytes]) -> None:
    """Local disk: per file SHA-256 + create + write + fsync; one dir fsync; one transaction."""
    rows = []
    for data in payloads:
        digest = hashlib.sha256(data).hexdigest()
        write_file_durable(directory / digest, data)
        rows.append((digest, len(data), "payload.bin"))
    fsync_dir(directory)
    _insert_rows(records, rows)


def s3_batch_sequential(store: S3Store, records: RawRecords, payloads: list[bytes]) -> None:
    """S3: per object SHA-256 + PutObject, one after the other; one transaction."""
    import obstore as obs

    rows = []
    for data in payloads:
        digest = hashlib.sha256(data).hexdigest()
        obs.put(store, digest, data)
        rows.append((digest, len(data), "payload.bin"))
    _insert_rows(records, rows)


async def s3_batch_concurrent(store: S3Store, records: RawRecords, payloads: list[bytes]) -> None:
    """S3: SHA-256 + PutObject per object, ``S3_PUT_CONCURRENCY`` at a time; one transaction."""
    import obstore as obs

    gate = asyncio.Semaphore(S3_PUT_CONCURRENCY)

    async def one(data: bytes) -> tuple[str, int, str]:
        digest = hashlib.sha256(data).hexdigest()
        async with gate:
            await obs.put_async(store, digest, data)
        return digest, len(data), "payload.bin"

    rows = await asyncio.gather(*(one(data) for data in payloads))
    _insert_rows(records, list(rows))


def _payloads(count: int) -> list[bytes]:
    return [os.urandom(PAYLOAD_SIZE) for _ in range(count)]


async def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    batch = max(1, sizes.small_batch)
    batches = max(1, sizes.small_count // batch)
    count = batches * batch
    on_s3 = ctx.backend.name == "postgres-s3"
    # Sides: strongroom one by one, strongroom put_many, and the baseline(s).
    order = ["raw", "single", "many"] + (["raw_many"] if on_s3 else [])
    seconds = dict.fromkeys(order, 0.0)
    single_latencies: list[float] = []

    with ctx.fresh_vault(NAME) as space:
        raw_dir = space.root / "raw"
        raw_dir.mkdir()
        store = space.s3.raw_store() if space.s3 is not None else None
        records = space.raw_records(sqlite_file=raw_dir / "index.db")
        try:
            with records.transaction():
                records.execute(_CREATE)

            async def baseline(side: str, payloads: list[bytes]) -> None:
                if store is None:
                    raw_batch(raw_dir, records, payloads)
                elif side == "raw":
                    s3_batch_sequential(store, records, payloads)
                else:
                    await s3_batch_concurrent(store, records, payloads)

            async with await space.open_vault() as vault:
                run_id = (await vault.runs.create(project="bench", purpose="small puts")).run_id

                # Warm-up (not measured): one batch of each kind.
                for data in _payloads(min(batch, 20)):
                    await vault.artifacts.put_bytes(run_id, data, name="warmup.bin")
                await vault.artifacts.put_many(
                    run_id, [(data, {"name": "warmup.bin"}) for data in _payloads(batch)]
                )
                for side in order:
                    if side.startswith("raw"):
                        await baseline(side, _payloads(batch))

                for i in range(batches):
                    k = i % len(order)
                    for side in order[k:] + order[:k]:
                        payloads = _payloads(batch)
                        if side.startswith("raw"):
                            start = time.perf_counter()
                            await baseline(side, payloads)
                            seconds[side] += time.perf_counter() - start
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
            records.close()

    if on_s3:
        baseline_single = (
            f"per object SHA-256 + PutObject, one after the other; per {batch}: one "
            "PostgreSQL executemany transaction"
        )
        baseline_many = (
            f"per object SHA-256 + PutObject, {S3_PUT_CONCURRENCY} at a time; per {batch}: "
            "one PostgreSQL executemany transaction"
        )
        note = "; moto on this machine bounds every side"
    else:
        baseline_single = baseline_many = (
            f"per file SHA-256 + write + fsync; per {batch}: dir fsync + one SQLite "
            "executemany transaction"
        )
        note = ""
    return [
        Figure(
            benchmark=NAME,
            name="put_bytes, one call per artifact",
            unit="puts/s",
            value=count / seconds["single"],
            baseline=count / seconds["raw"],
            baseline_name=baseline_single,
            higher_is_better=True,
            target=_TARGET,
            samples=count,
            notes=f"{count:,} puts; median latency {median(single_latencies) * 1e3:.2f} ms" + note,
            extra={"median_latency_ms": median(single_latencies) * 1e3},
        ),
        Figure(
            benchmark=NAME,
            name=f"put_many, batches of {batch}",
            unit="puts/s",
            value=count / seconds["many"],
            baseline=count / seconds["raw_many" if on_s3 else "raw"],
            baseline_name=baseline_many,
            higher_is_better=True,
            target=_TARGET,
            samples=count,
            notes=f"{count:,} puts in {batches} batches" + note,
        ),
    ]
