"""strongroom's side of each workload, through its public API on an embedded vault (SQLite +
local blob directory) in the work directory, with its default durability (every blob and its
directory entry fsynced before a call returns; SQLite in WAL mode, ``synchronous=NORMAL``).

Opening the vault, warm-up and preparing the data are never timed; each figure times only the
calls the workload is about.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from benchmarks.peers._shared import PeerSizes, Result, chain_step, labels, payloads
from benchmarks.peers._shared import snapshot_state as state_of
from strongroom import Vault
from strongroom.pipeline import PipelineRun

__all__ = ["acceptance", "artifacts", "chain", "cli_setup", "index", "index_setup", "large", "runs"]

_PROJECT = "bench-peers"


async def _open(path: Path) -> Vault:
    return await Vault.open(str(path))


async def _one_run(vault: Vault, i: int) -> None:
    run = await vault.runs.create(project=_PROJECT, purpose="peer comparison", labels=labels(i))
    await vault.runs.start(run.run_id)
    await vault.snapshots.save(run.run_id, state_of(i), expected_revision=0)
    await vault.runs.complete(run.run_id)


async def runs(work: Path, sizes: PeerSizes) -> Result:
    """create (with 10 labels) + start + snapshots.save (~1 KB) + complete, per run."""
    async with await _open(work / "vault") as vault:
        for i in range(20):  # warm-up
            await _one_run(vault, -1 - i)
        start = time.perf_counter()
        for i in range(sizes.runs):
            await _one_run(vault, i)
        seconds = time.perf_counter() - start
    return {"rate": sizes.runs / seconds, "seconds": seconds, "count": sizes.runs}


async def artifacts(work: Path, sizes: PeerSizes) -> Result:
    """put_bytes one call each, then put_many in batches, of distinct 4 KiB payloads."""
    batch = max(1, sizes.small_batch)
    batches = max(1, sizes.small_count // batch)
    count = batches * batch
    single = payloads(count)
    many = [payloads(batch) for _ in range(batches)]
    async with await _open(work / "vault") as vault:
        run_id = (await vault.runs.create(project=_PROJECT, purpose="small artifacts")).run_id
        for data in payloads(20):  # warm-up
            await vault.artifacts.put_bytes(run_id, data, name="warmup.bin")
        await vault.artifacts.put_many(run_id, [(d, {"name": "warmup.bin"}) for d in payloads(10)])

        start = time.perf_counter()
        for n, data in enumerate(single):
            await vault.artifacts.put_bytes(run_id, data, name=f"single-{n:05}.bin")
        single_s = time.perf_counter() - start

        items = [
            [(data, {"name": f"batch-{b:03}-{n:03}.bin"}) for n, data in enumerate(chunk)]
            for b, chunk in enumerate(many)
        ]
        start = time.perf_counter()
        for chunk_items in items:
            await vault.artifacts.put_many(run_id, chunk_items)
        many_s = time.perf_counter() - start
    return {
        "single_rate": count / single_s,
        "batch_rate": count / many_s,
        "count": count,
        "batch": batch,
    }


async def _chain(vault: Vault, steps: int) -> None:
    async with PipelineRun.open(
        vault, project=_PROJECT, purpose="durable chain", steps_total=steps
    ) as run:
        value = {"value": 0}
        for i in range(steps):
            async with run.phase(f"step-{i:04}") as phase:
                value = chain_step(i, value)
                await phase.output(value)


async def chain(work: Path, sizes: PeerSizes) -> Result:
    """A PipelineRun of ``chain_steps`` phases, each storing its JSON output (phase.output):
    timed from PipelineRun.open to the run's completion when the block is left."""
    async with await _open(work / "vault") as vault:
        await _chain(vault, 5)  # warm-up
        start = time.perf_counter()
        await _chain(vault, sizes.chain_steps)
        seconds = time.perf_counter() - start
    return {"ms_per_step": seconds / sizes.chain_steps * 1e3, "steps": sizes.chain_steps}


async def large(work: Path, sizes: PeerSizes, files: list[Path]) -> Result:
    """artifacts.put_file of each large file (distinct random contents, a fresh vault)."""
    warm = work / "warmup.bin"
    warm.write_bytes(random.randbytes(1 << 20))
    async with await _open(work / "vault") as vault:
        run_id = (await vault.runs.create(project=_PROJECT, purpose="large files")).run_id
        await vault.artifacts.put_file(run_id, warm)
        total = 0
        start = time.perf_counter()
        for path in files:
            artifact = await vault.artifacts.put_file(run_id, path)
            total += artifact.size_bytes
        seconds = time.perf_counter() - start
    return {"mb_s": total / seconds / 1e6, "bytes": total, "seconds": seconds}


# -- the run index -------------------------------------------------------------------------------


async def index_setup(work: Path, sizes: PeerSizes) -> Result:
    """``index_runs`` runs of the run index benchmark's population (fixed seed), inserted one
    by one through the records store, as ``benchmarks.run_index`` does for its sample."""
    from benchmarks.run_index import _make_run

    rng = random.Random(2026)
    start = time.perf_counter()
    async with await _open(work / "vault") as vault:
        for i in range(sizes.index_runs):
            await vault.metadata.insert_run(_make_run(rng, i))
    return {"seconds": time.perf_counter() - start, "runs": sizes.index_runs}


async def index(work: Path, sizes: PeerSizes, queries: list[tuple[str, str]]) -> Result:
    """runs.list(status=[s], project=p, limit=50) per query, each timed."""
    async with await _open(work / "vault") as vault:
        for status, project in queries[:10]:  # warm-up
            await vault.runs.list(status=[status], project=project, limit=50)
        latencies: list[float] = []
        rows = 0
        for status, project in queries[10:]:
            start = time.perf_counter()
            page = await vault.runs.list(status=[status], project=project, limit=50)
            latencies.append(time.perf_counter() - start)
            rows += len(page.items)
    return {"latencies_ms": [s * 1e3 for s in latencies], "rows": rows}


# -- the CLI and the strongroom-only acceptance figures -------------------------------------------


async def cli_setup(work: Path, sizes: PeerSizes) -> Result:
    """A vault (``work/.strongroom``, found from ``work`` as git finds .git) with
    ``cli_runs`` completed runs, for ``strongroom runs list``."""
    async with await _open(work / ".strongroom") as vault:
        for i in range(sizes.cli_runs):
            run = await vault.runs.create(project=_PROJECT, purpose=f"listed run {i}")
            await vault.runs.start(run.run_id)
            await vault.runs.complete(run.run_id)
    return {"cwd": str(work), "runs": sizes.cli_runs}


async def acceptance(work: Path, sizes: PeerSizes) -> Result:
    """The issue's strongroom-only figures, from the suite's own benchmarks (each beside its
    standard-library baseline): chained log appends and run create + snapshot latency."""
    from benchmarks import log_append, run_latency
    from benchmarks._common import Context, Sizes

    ctx = Context(
        sizes=Sizes(log_lines=sizes.log_lines, latency_count=sizes.latency_count),
        workdir=work,
    )
    out: Result = {}
    for figure in await log_append.run(ctx) + await run_latency.run(ctx):
        out[f"{figure.benchmark}: {figure.name}"] = {
            "value": figure.value,
            "unit": figure.unit,
            "baseline": figure.baseline,
            "baseline_name": figure.baseline_name,
        }
    return out
