"""Benchmark 3: latency of creating a run and saving its first state snapshot.

One iteration = ``runs.create`` (insert the run, append ``run.created`` to the audit chain)
then ``snapshots.save(..., expected_revision=0)`` (check the run and the latest revision,
store the canonical JSON state as a blob: write + fsync + link + directory fsync, insert the
snapshot record). Baseline, alternating with it iteration by iteration: one sqlite3
transaction inserting a run row (WAL, synchronous=NORMAL, as strongroom) + create, write and
``fsync`` a file holding the same JSON state, and ``fsync`` its directory.

Target: median ≤ 2 ms.

On the postgres-s3 backend the baseline is one ``psycopg`` transaction inserting the run row
(into a table of the vault's own database) + one plain ``obstore`` PutObject of the same JSON
state to the same bucket (moto on this machine).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._backends import RawRecords
from benchmarks._common import (
    Context,
    Figure,
    Target,
    fsync_dir,
    median,
    percentile,
    write_file_durable,
)
from strongroom.ids import new_id
from strongroom.models import canonical_json, utcnow

NAME = "run_latency"
TITLE = "Create run + first snapshot latency"

_WARMUP = 20

if TYPE_CHECKING:
    from obstore.store import S3Store

_CREATE = (
    "CREATE TABLE raw_runs (run_id TEXT PRIMARY KEY, project TEXT NOT NULL, status TEXT "
    "NOT NULL, created_at TEXT NOT NULL, body TEXT NOT NULL)"
)
_INSERT = "INSERT INTO raw_runs (run_id, project, status, created_at, body) VALUES (?, ?, ?, ?, ?)"


def _state(i: int) -> dict[str, Any]:
    """A small but realistic resumable state (about 600 bytes of JSON)."""
    return {
        "phase_history": [{"phase": "ingest", "status": "completed"}],
        "phase_revisions": {"ingest": 1},
        "progress": {"steps_total": 4, "steps_completed": 1, "message": "ingest done"},
        "data": {
            "cursor": i,
            "source": f"s3://bucket/input/batch-{i:06}.jsonl",
            "segments": [{"id": f"seg-{k}", "chars": 100 + k, "done": k < 3} for k in range(6)],
        },
    }


def raw_create(
    records: RawRecords, directory: Path, store: S3Store | None, i: int
) -> tuple[float, float]:
    """Insert a run row, then store the state durably (a file + fsync + dir fsync, or one
    PutObject); returns the two durations."""
    run_id = new_id()
    now = utcnow().isoformat(timespec="microseconds")
    body = json.dumps({"run_id": run_id, "project": "bench", "status": "pending"})
    start = time.perf_counter()
    with records.transaction():
        records.execute(_INSERT, (run_id, f"project-{i % 20:02}", "pending", now, body))
    middle = time.perf_counter()
    state = canonical_json(_state(i))
    if store is None:
        write_file_durable(directory / f"{run_id}.json", state)
        fsync_dir(directory)
    else:
        import obstore as obs

        obs.put(store, f"{run_id}.json", state)
    return middle - start, time.perf_counter() - middle


async def run(ctx: Context) -> list[Figure]:
    count = ctx.sizes.latency_count
    totals: dict[str, list[float]] = {"sr": [], "raw": []}
    parts: dict[str, list[float]] = {"create": [], "save": [], "insert": [], "file": []}

    with ctx.fresh_vault(NAME) as space:
        raw_dir = space.root / "raw"
        raw_dir.mkdir()
        store = space.s3.raw_store() if space.s3 is not None else None
        records = space.raw_records(sqlite_file=raw_dir / "index.db")
        try:
            with records.transaction():
                records.execute(_CREATE)
            async with await space.open_vault() as vault:
                for i in range(_WARMUP + count):
                    measured = i >= _WARMUP
                    for side in ("raw", "sr") if i % 2 == 0 else ("sr", "raw"):
                        if side == "raw":
                            insert, file = raw_create(records, raw_dir, store, i)
                            if measured:
                                totals["raw"].append(insert + file)
                                parts["insert"].append(insert)
                                parts["file"].append(file)
                            continue
                        state = _state(i)
                        start = time.perf_counter()
                        created = await vault.runs.create(
                            project=f"project-{i % 20:02}", purpose="latency probe"
                        )
                        middle = time.perf_counter()
                        await vault.snapshots.save(created.run_id, state, expected_revision=0)
                        end = time.perf_counter()
                        if measured:
                            totals["sr"].append(end - start)
                            parts["create"].append(middle - start)
                            parts["save"].append(end - middle)
        finally:
            records.close()

    def ms(samples: list[float], q: float | None = None) -> float:
        return (median(samples) if q is None else percentile(samples, q)) * 1e3

    if ctx.backend.name == "postgres-s3":
        baseline_name = "psycopg INSERT transaction + obstore PutObject of the state"
        insert_name = "the baseline's psycopg INSERT transaction alone"
        file_name = "the baseline's PutObject alone"
    else:
        baseline_name = "sqlite3 INSERT transaction + state file write + fsync + dir fsync"
        insert_name = "the baseline's sqlite3 INSERT transaction alone"
        file_name = "the baseline's file write + fsync + dir fsync alone"
    return [
        Figure(
            benchmark=NAME,
            name="runs.create + snapshots.save, median",
            unit="ms",
            value=ms(totals["sr"]),
            baseline=ms(totals["raw"]),
            baseline_name=baseline_name,
            higher_is_better=False,
            target=Target("at_most", 2.0),
            samples=count,
            notes=f"{count} iterations after {_WARMUP} warm-up",
        ),
        Figure(
            benchmark=NAME,
            name="runs.create + snapshots.save, p95",
            unit="ms",
            value=ms(totals["sr"], 95),
            baseline=ms(totals["raw"], 95),
            baseline_name=baseline_name,
            higher_is_better=False,
            samples=count,
        ),
        Figure(
            benchmark=NAME,
            name="runs.create alone, median",
            unit="ms",
            value=ms(parts["create"]),
            baseline=ms(parts["insert"]),
            baseline_name=insert_name,
            higher_is_better=False,
            samples=count,
            notes=f"p95 {ms(parts['create'], 95):.2f} ms (baseline {ms(parts['insert'], 95):.2f})",
        ),
        Figure(
            benchmark=NAME,
            name="snapshots.save alone, median",
            unit="ms",
            value=ms(parts["save"]),
            baseline=ms(parts["file"]),
            baseline_name=file_name,
            higher_is_better=False,
            samples=count,
            notes=f"p95 {ms(parts['save'], 95):.2f} ms (baseline {ms(parts['file'], 95):.2f})",
        ),
    ]
