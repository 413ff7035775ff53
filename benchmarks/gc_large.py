"""Garbage collection at scale (issue 19): `gc plan` over 1,000,000 artifacts and blobs on the
embedded vault (SQLite + local blobs; target <= 60 s), and `gc apply`'s throughput.

    python -m benchmarks.gc_large [--artifacts 1000000] [--orphans 100000] [--runs 1000]

The vault: ``--runs`` ended runs of one project, each with ``--artifacts / --runs`` artifact
records (written through the records port, ``insert_artifacts`` in batches of 1,000, without
audit entries: `gc plan` never reads the chain) and a sealed log reference; half the runs ended
60 days ago, half today. Every artifact points at its own blob, and ``--orphans`` more blobs
are used by nothing; the blob files (64 bytes each, named by their SHA-256, in the store's
shard layout) are written straight to disk without fsync, because how they got there does
not change how `gc plan` lists them. Measured: one `plan` with the rule "completed runs: keep
30 days" and grace 0 (what it lists: the old half of the runs, each with the blobs only it
uses, and every orphan), then `apply` of a slice of that plan (``--apply-runs`` runs and
``--apply-blobs`` orphans): runs/s, records/s and blobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from strongroom import Vault
from strongroom.ids import new_id
from strongroom.models import (
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactRole,
    BlobLocation,
    GcPlan,
    LogReference,
    RetentionPolicy,
    Run,
    RunStatus,
)

NOW = datetime.now(UTC)
POLICY = RetentionPolicy.model_validate(
    {"rules": [{"project": "bench", "statuses": ["completed"], "keep_days": 30}]}
)


def _log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _write_blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    folder = root / "sha256" / digest[:2] / digest[2:4]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / digest).write_bytes(data)
    return digest


async def build(vault: Vault, root: Path, runs: int, artifacts: int, orphans: int) -> None:
    per_run = artifacts // runs
    started = time.perf_counter()
    for n in range(runs):
        when = NOW - timedelta(days=60 if n % 2 == 0 else 0)
        run = Run(
            run_id=new_id(),
            project="bench",
            actor="bench",
            status=RunStatus.COMPLETED,
            created_at=when,
            updated_at=when,
            started_at=when,
            completed_at=when,
        )
        await vault.metadata.insert_run(run)
        batch: list[ArtifactMetadata] = []
        for k in range(per_run):
            data = f"{run.run_id} {k} ".encode().ljust(64, b".")
            digest = await asyncio.to_thread(_write_blob, root, data)
            batch.append(
                ArtifactMetadata.model_construct(
                    artifact_id=new_id(),
                    run_id=run.run_id,
                    role=ArtifactRole.CUSTOM,
                    phase=None,
                    step=None,
                    label=None,
                    name=f"{k}.bin",
                    format=ArtifactFormat.BINARY,
                    media_type="application/octet-stream",
                    created_at=when,
                    location=vault.blobs.locate(digest),
                    description=None,
                    size_bytes=len(data),
                    sha256=digest,
                    metadata={},
                    namespace="artifacts",
                    tags=[],
                )
            )
            if len(batch) == 1000:
                await vault.metadata.insert_artifacts(batch)
                batch = []
        if batch:
            await vault.metadata.insert_artifacts(batch)
        seal = new_id()
        await vault.metadata.put_log_reference(
            LogReference(
                run_id=run.run_id,
                created_at=when,
                updated_at=when,
                location=BlobLocation(backend="local", path="x", uri="file:///x").uri,
                entry_count=0,
                sealed=True,
                sealed_artifact_id=seal,
            )
        )
        if (n + 1) % 100 == 0:
            elapsed = time.perf_counter() - started
            _log(f"{n + 1:,} runs, {(n + 1) * per_run:,} artifacts ({elapsed:.0f} s)")
    for n in range(orphans):
        await asyncio.to_thread(_write_blob, root, f"orphan {n} ".encode().ljust(64, b"."))
    _log(f"built in {time.perf_counter() - started:.0f} s")


async def measure(vault: Vault, apply_runs: int, apply_blobs: int) -> None:
    started = time.perf_counter()
    plan = await vault.retention.plan(POLICY, grace_seconds=0)
    plan_s = time.perf_counter() - started
    blobs = len([b async for b in vault.blobs.iter_inventory()])
    print(
        f"gc plan: {plan_s:.1f} s over {blobs:,} blobs; planned {plan.totals} "
        f"({plan.bytes:,} bytes)"
    )
    runs = [i for i in plan.items if i.kind == "run"][:apply_runs]
    orphans = [i for i in plan.items if i.kind == "blob"][:apply_blobs]
    records = 0
    for item in runs:
        records += (await vault.metadata.run_usage(item.id)).records
    part = GcPlan.model_validate(
        {**plan.model_dump(), "items": [i.model_dump() for i in [*runs, *orphans]]}
    )
    started = time.perf_counter()
    result = await vault.retention.apply(part)
    apply_s = time.perf_counter() - started
    deleted_blobs = result.deleted.get("blob", 0)
    print(
        f"gc apply: {apply_s:.1f} s for {len(runs)} runs ({records:,} records) and "
        f"{deleted_blobs:,} blobs: {len(runs) / apply_s:.1f} runs/s, "
        f"{records / apply_s:,.0f} records/s, {deleted_blobs / apply_s:,.0f} blobs/s; "
        f"refused {len(result.refused)}"
    )


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        path = Path(scratch) / "vault"
        async with await Vault.open(path) as vault:
            await build(vault, path / "blobs", args.runs, args.artifacts, args.orphans)
        async with await Vault.open(path) as vault:
            await measure(vault, args.apply_runs, args.apply_blobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=1_000_000)
    parser.add_argument("--orphans", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--apply-runs", type=int, default=20)
    parser.add_argument("--apply-blobs", type=int, default=5_000)
    parser.add_argument("--workdir", default=os.environ.get("TMPDIR"))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
