"""Benchmark 8: ``verify`` at scale, and verify's blob re-hash rate.

- Chains: a vault (embedded backend) with ``verify_records`` artifact records and
  ``verify_audit`` audit entries, built through the real records port so that every record is
  genuinely bound: one run, a handful of small blobs (``vault.blobs.put_bytes``), then
  artifacts in batches of 1,000 through ``vault.metadata.insert_artifacts(batch,
  audit=AuditEvent(...))`` (one transaction, one audit entry binding its 1,000 artifacts;
  the `ArtifactMetadata` built as ``ArtifactService._describe`` builds them, every one pointing
  at one of the small blobs), then audit events in batches of 1,000 through
  ``vault.audit.record_many`` until the chain holds ``verify_audit`` entries (a Merkle
  checkpoint every 1,000, taken by the service as it does in production).
  ``vault.verify()`` then runs in a **separate process** (``python -m
  benchmarks.verify_large verify DIR``) on the closed vault, so that its peak RSS (VmHWM) is
  verify's alone; that process reports its wall time, the time of each stage (from the
  ``on_progress`` callback), the report's counts and whether it is ok (it must be). The same
  is measured on a vault 10x smaller in the same run, to show that memory does not grow with
  the vault. Rate (target >= 50,000/s): (audit entries replayed + records checked against
  their latest binding) / verify's wall time, where the records are the rows of every table
  verify checks against bindings (here nearly all artifacts).
- Blobs: ``verify_blobs`` blobs of 256 KiB of random bytes stored with
  ``vault.artifacts.put_bytes``. After a warm-up read of every blob file (the page cache is
  warm on both sides: it cannot be dropped here), alternating twice, best of two each: the
  baseline (each blob file read with plain ``open().read()`` in 1 MiB chunks + ``hashlib``
  SHA-256, compared with its name), ``vault.blobs.verify(digest)`` over every digest one after
  the other (as verify calls it), and a full ``vault.verify()`` of that vault, whose blob stage
  (listing, the temporary working set, re-hashing; until its last ``blobs`` progress call) is
  the figure. Target: >= 0.8x the baseline.

Stand-alone (e.g. to profile verify on a kept vault)::

    python -m benchmarks.verify_large build DIR --records 1000000 --audit 1000000
    python -m benchmarks.verify_large verify DIR [--profile FILE.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from benchmarks._common import MIB, Context, Figure, Target
from strongroom import Vault
from strongroom.ids import new_id
from strongroom.models import (
    DEFAULT_MEDIA_TYPES,
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactRole,
    AuditEvent,
    BlobInfo,
)

NAME = "verify_large"
TITLE = "verify over 1,000,000 records and audit entries; blob re-hash rate"

BATCH = 1000  # artifacts per insert_artifacts transaction, events per record_many
SMALL_BLOBS = 8  # distinct small blobs the artifact records point at
BLOB_SIZE = 256 * 1024
_RATE_TARGET = Target("at_least", 50_000)
_BLOB_TARGET = Target("relative", 0.8)
_ROOT = Path(__file__).resolve().parent.parent


def _log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


# -- building the vault ------------------------------------------------------------------------


def _artifact(vault: Vault, run_id: str, blob: BlobInfo, n: int) -> ArtifactMetadata:
    """What ``ArtifactService._describe`` builds for ``put_bytes(run_id, data, name=...)``."""
    fmt = ArtifactFormat.JSON
    return ArtifactMetadata.model_validate(
        {
            "artifact_id": new_id(),
            "run_id": run_id,
            "role": ArtifactRole.PHASE_OUTPUT,
            "phase": "translate",
            "step": f"s{n % 100}",
            "label": None,
            "name": f"segment-{n:07}.json",
            "format": fmt,
            "media_type": DEFAULT_MEDIA_TYPES[fmt],
            "location": vault.blobs.locate(blob.sha256),
            "description": None,
            "size_bytes": blob.size_bytes,
            "sha256": blob.sha256,
            "metadata": {"segment": n},
            "namespace": "artifacts",
            "tags": [],
        }
    )


async def build(vault: Vault, records: int, entries: int) -> dict[str, float]:
    """Fill ``vault`` with ``records`` bound artifact records and an audit chain of (at
    least) ``entries`` entries; returns the build's own rates."""
    run_id = (await vault.runs.create(project="bench", purpose="verify at scale")).run_id
    blobs = [
        await vault.blobs.put_bytes(json.dumps({"blob": k, "text": "x" * 40 * k}).encode())
        for k in range(SMALL_BLOBS)
    ]
    start = time.perf_counter()
    done = 0
    while done < records:
        count = min(BATCH, records - done)
        batch = [
            _artifact(vault, run_id, blobs[(done + i) % SMALL_BLOBS], done + i)
            for i in range(count)
        ]
        event = AuditEvent(
            event="artifact.stored",
            subject_type="run",
            subject_id=run_id,
            details={"count": count},
        )
        await vault.metadata.insert_artifacts(batch, audit=event)
        done += count
        if done % 100_000 == 0:
            _log(f"build: {done:,} artifacts ({time.perf_counter() - start:.0f} s)")
    artifacts_s = time.perf_counter() - start

    head = await vault.audit.head()
    seq = head.seq if head is not None else 0
    start = time.perf_counter()
    added = 0
    while seq < entries:
        count = min(BATCH, entries - seq)
        await vault.audit.record_many(
            [
                AuditEvent(
                    event="tool.executed",
                    actor="bench",
                    subject_type="run",
                    subject_id=run_id,
                    details={"n": seq + i, "tool": "noop@1.0.0", "exit_code": 0},
                )
                for i in range(1, count + 1)
            ]
        )
        seq += count
        added += count
        if seq % 100_000 == 0:
            _log(f"build: {seq:,} audit entries ({time.perf_counter() - start:.0f} s)")
    events_s = time.perf_counter() - start
    return {
        "artifacts_per_s": records / artifacts_s if artifacts_s > 0 else 0.0,
        "events_per_s": added / events_s if events_s > 0 else 0.0,
        "build_s": artifacts_s + events_s,
        "audit_entries": float(seq),
    }


def bound_records(sqlite_path: Path) -> int:
    """Rows of every table verify checks against audit bindings."""
    from strongroom.adapters._sql.binding_check import BOUND

    conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        return sum(
            int(conn.execute(f'SELECT count(*) FROM "{spec.table.name}"').fetchone()[0])
            for spec in BOUND
        )
    finally:
        conn.close()


# -- verify, in a process of its own -----------------------------------------------------------


def _status_mib(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) / 1024
    return 0.0


async def _verify(vault_dir: str) -> dict[str, Any]:
    vault = await Vault.open(vault_dir, create=False)
    try:
        rss_open = _status_mib("VmRSS")
        last: dict[str, float] = {}  # stage -> time of its last progress call

        def progress(stage: str, done: int, total: int | None) -> None:
            last[stage] = time.perf_counter()

        start = time.perf_counter()
        report = await vault.verify(on_progress=progress)
        wall = time.perf_counter() - start
    finally:
        await vault.close()
    stages: dict[str, float] = {}
    previous = start
    for stage, at in last.items():  # dicts keep the order in which stages first reported
        stages[stage] = at - previous
        previous = at
    return {
        "ok": report.ok,
        "wall_s": wall,
        "stages_s": stages,
        "checked": dict(report.checked),
        "problems": [p.message for p in report.problems[:10]],
        "rss_open_mib": rss_open,
        "peak_rss_mib": _status_mib("VmHWM"),
        # verify's audit worker (`strongroom._audit_worker`), its only child: 0 when the
        # chain was walked in this process.
        "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def verify_main(vault_dir: str, profile: str | None) -> dict[str, Any]:
    if profile is None:
        return asyncio.run(_verify(vault_dir))
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return asyncio.run(_verify(vault_dir))
    finally:
        profiler.disable()
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        print(text.getvalue(), file=sys.stderr)


def verify_in_child(vault_dir: Path) -> dict[str, Any]:
    """Run ``vault.verify()`` on the closed vault in a fresh interpreter; its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.verify_large", "verify", str(vault_dir)],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"verify child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        raise RuntimeError(f"verify found problems in the benchmark vault: {result['problems']}")
    return result


# -- the blob rate -----------------------------------------------------------------------------


def raw_read_hash(files: Sequence[tuple[Path, str]]) -> int:
    """The baseline: read every file in 1 MiB chunks, SHA-256 it, compare; bytes read."""
    total = 0
    for path, digest in files:
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(MIB):
                hasher.update(chunk)
                total += len(chunk)
        if hasher.hexdigest() != digest:
            raise RuntimeError(f"{path} does not hash to its name")
    return total


async def _blob_rates(ctx: Context, count: int) -> dict[str, float]:
    with ctx.fresh_vault(f"{NAME}-blobs") as space:
        async with await space.open_vault() as vault:
            run_id = (await vault.runs.create(project="bench", purpose="blob rate")).run_id
            digests: list[str] = []
            for n in range(count):
                meta = await vault.artifacts.put_bytes(
                    run_id, os.urandom(BLOB_SIZE), name=f"blob-{n:05}.bin"
                )
                digests.append(meta.sha256)
            files = [(Path(unquote(urlparse(vault.blobs.locate(d).uri).path)), d) for d in digests]
            total_bytes = raw_read_hash(files)  # warm-up: every blob file in the page cache
            raw: list[float] = []
            port: list[float] = []
            stage: list[float] = []
            for _ in range(2):
                start = time.perf_counter()
                raw_read_hash(files)
                raw.append(time.perf_counter() - start)

                start = time.perf_counter()
                for digest in digests:
                    await vault.blobs.verify(digest)
                port.append(time.perf_counter() - start)

                last = 0.0

                def progress(name: str, done: int, total: int | None) -> None:
                    nonlocal last
                    if name == "blobs":
                        last = time.perf_counter()

                start = time.perf_counter()
                report = await vault.verify(on_progress=progress)
                if not report.ok:
                    raise RuntimeError(f"verify found problems: {report.problems[:5]}")
                stage.append(last - start)
    mib = total_bytes / MIB
    return {
        "mib": mib,
        "raw_mib_s": mib / min(raw),
        "port_mib_s": mib / min(port),
        "stage_mib_s": mib / min(stage),
    }


# -- the benchmark -----------------------------------------------------------------------------


async def _measure(ctx: Context, records: int, entries: int) -> dict[str, Any]:
    with ctx.fresh_vault(f"{NAME}-{records}") as space:
        async with await space.open_vault() as vault:
            built = await build(vault, records, entries)
        if space.sqlite_path is None:
            raise RuntimeError("verify_large runs on the embedded backend only")
        bound = bound_records(space.sqlite_path)
        db_mib = sum(p.stat().st_size for p in space.sqlite_path.parent.glob("vault.db*")) / MIB
        _log(
            f"built {records:,} records / {int(built['audit_entries']):,} entries in "
            f"{built['build_s']:.0f} s (database {db_mib:,.0f} MiB); verifying in a child"
        )
        result = verify_in_child(Path(space.url))
    checked = result["checked"]
    wall = result["wall_s"]
    audit = int(checked["audit_entries"])
    result.update(
        built=built,
        bound_records=bound,
        db_mib=db_mib,
        entries_per_s=audit / wall,
        records_per_s=bound / wall,
        chain_rate=(audit + bound) / wall,
    )
    _log(
        f"verify: {wall:.1f} s, {audit:,} entries + {bound:,} records, peak RSS "
        f"{result['peak_rss_mib']:.0f} MiB (audit worker {result['worker_peak_rss_mib']:.0f} "
        "MiB); stages " + ", ".join(f"{k} {v:.1f} s" for k, v in result["stages_s"].items())
    )
    return result


def _stages(result: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in result["stages_s"].items())


async def run(ctx: Context) -> list[Figure]:
    if ctx.backend.name != "embedded":
        raise RuntimeError("verify_large measures the embedded backend (SQLite + local blobs)")
    sizes = ctx.sizes
    records, entries = sizes.verify_records, sizes.verify_audit
    small = await _measure(ctx, max(1, records // 10), max(1, entries // 10))
    large = await _measure(ctx, records, entries)
    blobs = await _blob_rates(ctx, sizes.verify_blobs)

    def label(result: dict[str, Any]) -> str:
        return (
            f"{int(result['checked']['audit_entries']):,} entries + "
            f"{result['bound_records']:,} records"
        )

    figures: list[Figure] = []
    for result, other in ((large, small), (small, large)):
        figures.append(
            Figure(
                benchmark=NAME,
                name=f"verify, {label(result)}: (entries + records) per second",
                unit="records/s",
                value=result["chain_rate"],
                higher_is_better=True,
                target=_RATE_TARGET,
                samples=1,
                notes=f"wall {result['wall_s']:.1f} s; audit entries "
                f"{result['entries_per_s']:,.0f}/s, records {result['records_per_s']:,.0f}/s "
                f"(each over the whole wall time); stages: {_stages(result)}",
                extra={
                    "wall_s": result["wall_s"],
                    "entries_per_s": result["entries_per_s"],
                    "records_per_s": result["records_per_s"],
                    "peak_rss_mib": result["peak_rss_mib"],
                    "rss_open_mib": result["rss_open_mib"],
                    "db_mib": result["db_mib"],
                    **{f"stage_{k}_s": v for k, v in result["stages_s"].items()},
                    **{f"checked_{k}": float(v) for k, v in result["checked"].items()},
                },
            )
        )
        figures.append(
            Figure(
                benchmark=NAME,
                name=f"verify, {label(result)}: peak RSS of the verify process",
                unit="MiB",
                value=result["peak_rss_mib"],
                higher_is_better=False,
                baseline=other["peak_rss_mib"],
                baseline_name=f"the same verify on the other vault ({label(other)})",
                samples=1,
                notes=f"VmHWM; {result['rss_open_mib']:.0f} MiB after imports + Vault.open; "
                f"database {result['db_mib']:,.0f} MiB",
            )
        )
        figures.append(
            Figure(
                benchmark=NAME,
                name=f"verify, {label(result)}: peak RSS of the audit worker process",
                unit="MiB",
                value=result["worker_peak_rss_mib"],
                higher_is_better=False,
                baseline=other["worker_peak_rss_mib"],
                baseline_name=f"the same verify on the other vault ({label(other)})",
                samples=1,
                notes="ru_maxrss of verify's children (the audit walk's process; 0: the "
                "chain was walked in verify's own process, below its threshold)",
            )
        )
    for result in (large, small):
        built = result["built"]
        figures.append(
            Figure(
                benchmark=NAME,
                name=f"build ({label(result)}): insert_artifacts, batches of {BATCH}",
                unit="records/s",
                value=built["artifacts_per_s"],
                higher_is_better=True,
                samples=result["bound_records"],
                notes=f"setup; then audit.record_many {built['events_per_s']:,.0f} entries/s; "
                f"build {built['build_s']:.0f} s",
                extra=built,
            )
        )
    figures.append(
        Figure(
            benchmark=NAME,
            name=f"verify's blob stage, {sizes.verify_blobs:,} blobs of 256 KiB",
            unit="MiB/s",
            value=blobs["stage_mib_s"],
            higher_is_better=True,
            baseline=blobs["raw_mib_s"],
            baseline_name="open().read() in 1 MiB chunks + hashlib SHA-256 of every blob file",
            target=_BLOB_TARGET,
            samples=2,
            notes=f"{blobs['mib']:,.0f} MiB, warm page cache, best of 2; "
            f"blobs.verify() one after the other: {blobs['port_mib_s']:,.0f} MiB/s",
            extra=blobs,
        )
    )
    return figures


# -- stand-alone -------------------------------------------------------------------------------


async def _build_main(vault_dir: str, records: int, entries: int) -> dict[str, float]:
    async with await Vault.open(vault_dir) as vault:
        return await build(vault, records, entries)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verify_large")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="build a benchmark vault in DIR")
    make.add_argument("dir")
    make.add_argument("--records", type=int, default=1_000_000)
    make.add_argument("--audit", type=int, default=1_000_000)
    check = commands.add_parser("verify", help="verify the vault in DIR; JSON figures on stdout")
    check.add_argument("dir")
    check.add_argument("--profile", metavar="FILE", help="cProfile it; top functions to stderr")
    args = parser.parse_args(argv)
    if args.command == "build":
        result: dict[str, Any] = dict(asyncio.run(_build_main(args.dir, args.records, args.audit)))
    else:
        result = verify_main(args.dir, args.profile)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
