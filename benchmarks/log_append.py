"""Benchmark 5: chained log appends in batches (lines per second).

For each batch size (100 and 1,000) a fresh vault gets ``log_lines`` lines through
``logs.append_many``: each line is validated (`LogLine`), redacted (six regexes over the message
and every string in ``data``), chained (canonical JSON + SHA-256 over the entry including the
previous hash), validated again as a `LogEntry`, serialised and inserted in one transaction per
batch that first checks the chain head.

Baseline: the very rows strongroom stored (read back from ``log_entries``; a first, unmeasured
pass produces them) inserted under another run id with plain ``sqlite3`` ``executemany``, one
``BEGIN IMMEDIATE`` ... ``COMMIT`` per batch, on the same database file with the same pragmas:
no validation, redaction or hashing. The measured strongroom pass (a third run) and the
baseline alternate batch by batch.

Target: ≥ 50,000 lines/s.

On the postgres-s3 backend the baseline is the same, through ``psycopg`` on the vault's
PostgreSQL database: ``executemany`` of the stored rows (sent in pipeline mode: one round trip
per batch, not per row), one transaction per batch.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._backends import RawRecords
from benchmarks._common import Context, Figure, Target

NAME = "log_append"
TITLE = "Chained log appends"

BATCH_SIZES = (100, 1000)
_TARGET = Target("at_least", 50_000)

_INSERT = (
    "INSERT INTO log_entries (run_id, seq, level, event, phase, timestamp, hash, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def make_lines(count: int) -> list[dict[str, Any]]:
    """Typical pipeline progress lines (about 150 bytes of message and data each)."""
    return [
        {
            "level": "info" if i % 50 else "warning",
            "event": "segment.translated",
            "phase": "translate",
            "message": f"translated segment {i} of {count} (412 tokens, model reply ok)",
            "data": {"segment": i, "tokens": 412, "ms": 12.5 + i % 7, "ok": True},
        }
        for i in range(count)
    ]


def stored_rows(records: RawRecords, run_id: str, new_run_id: str) -> list[tuple[Any, ...]]:
    """The rows strongroom stored (timestamps as the driver returns them: text on SQLite,
    datetimes on PostgreSQL), under another run id."""
    with records.transaction(write=False):
        rows = records.execute(
            "SELECT seq, level, event, phase, timestamp, hash, body FROM log_entries "
            "WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
    return [(new_run_id, *row) for row in rows]


def raw_append(records: RawRecords, rows: list[tuple[Any, ...]]) -> None:
    with records.transaction():
        records.executemany(_INSERT, rows)


async def _one_size(ctx: Context, batch: int) -> Figure:
    lines = make_lines(max(batch, ctx.sizes.log_lines // batch * batch))
    batches = [lines[i : i + batch] for i in range(0, len(lines), batch)]
    seconds = {"sr": 0.0, "raw": 0.0}
    with ctx.fresh_vault(f"{NAME}-{batch}") as space:
        async with await space.open_vault() as vault:
            source = (await vault.runs.create(project="bench", purpose="rows")).run_id
            for chunk in batches:  # unmeasured: produces the rows for the baseline
                await vault.logs.append_many(source, chunk)
            measured = (await vault.runs.create(project="bench", purpose="measured")).run_id
            raw_run = (await vault.runs.create(project="bench", purpose="baseline")).run_id
            records = space.raw_records()
            try:
                rows = stored_rows(records, source, raw_run)
                for i, chunk in enumerate(batches):
                    for side in ("raw", "sr") if i % 2 == 0 else ("sr", "raw"):
                        start = time.perf_counter()
                        if side == "raw":
                            raw_append(records, rows[i * batch : (i + 1) * batch])
                        else:
                            await vault.logs.append_many(measured, chunk)
                        seconds[side] += time.perf_counter() - start
            finally:
                records.close()
    driver = "psycopg" if records.dialect == "postgresql" else "sqlite3"
    return Figure(
        benchmark=NAME,
        name=f"append_many, batches of {batch:,}",
        unit="lines/s",
        value=len(lines) / seconds["sr"],
        baseline=len(lines) / seconds["raw"],
        baseline_name=f"{driver} executemany of the same stored rows, one transaction per batch",
        higher_is_better=True,
        target=_TARGET,
        samples=len(lines),
        notes=f"{len(lines):,} lines in {len(batches)} batches",
    )


async def run(ctx: Context) -> list[Figure]:
    return [await _one_size(ctx, batch) for batch in BATCH_SIZES]
