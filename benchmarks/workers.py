"""Steps on Celery workers (issue 20): how a run of independent sandboxed steps scales with the
number of workers, and what sending a step through the broker costs over running it here.

    python -m benchmarks.workers [--steps 200] [--sleep 0.2] [--workers 1,2,4] [--cancels 10]
        [--broker amqp://guest:guest@127.0.0.1:5672//]

The vault is embedded (SQLite + local blobs: the workers run on this machine, as the docs
allow). The playbook has ``--steps`` independent steps, each a sandboxed tool that sleeps
``--sleep`` seconds. Measured, in one script run:

- local, serial: `Orchestrator` with the local executor and ``max_parallel=1`` (the baseline);
- celery on N workers (``strongroom worker --concurrency 1`` processes, a fresh queue each
  time, timed once every worker answers a ping): the coordinator sends every step at once
  (``max_parallel`` = steps) and waits.

Reported: wall time of each, steps/s, the speed-up of N workers over one worker, and the
dispatch overhead per step: (one worker, serial) minus (local, serial), divided by the steps.
Then ``--cancels`` times a step sleeping 100 s on one worker is cancelled
(`Orchestrator.cancel`, what `strongroom cancel` does): the seconds until its tool's processes
are gone and until the coordinator's run returned, median and max.
Every step's tool starts a confined Python process, so on a machine with few cores the
workers compete for the CPU as well as for the broker: the figures say what this machine does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from strongroom.execution import RunnerOptions
from strongroom.ids import new_id
from strongroom.models import RunStatus
from strongroom.orchestrator import Orchestrator
from strongroom.testing.keys import approver
from strongroom.vault import Vault
from strongroom.workers import CeleryExecutor, celery_app

_MANIFEST = """
kind: tool_manifest
manifest_id: bench-worker-tools
name: Worker benchmark tools
version: 1.0.0
owner: bench
tools:
  - tool_id: nap
    name: Nap
    version: 1.0.0
    entrypoint: bench_worker_tools:nap
    contract:
      request_schema: {type: object}
      response_schema: {type: object}
    governance: {level: A0}
    constraints: {timeout_seconds: 120}
"""
_TOOL_SOURCE = (
    "import time\n\n\ndef nap(request):\n"
    '    time.sleep(float(request["seconds"]))\n    return {"slept": request["seconds"]}\n'
)


def _playbook(playbook_id: str, steps: int, seconds: float) -> dict[str, Any]:
    return {
        "kind": "playbook",
        "playbook_id": playbook_id,
        "name": playbook_id,
        "version": "1.0.0",
        "owner": "bench",
        "steps": [
            {"step_id": f"s{n}", "tool": "nap@1.0.0", "inputs": {"seconds": {"value": seconds}}}
            for n in range(steps)
        ],
    }


async def _publish(vault: Vault, definition: dict[str, Any] | str, name: str) -> None:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    key = await approver(vault, "bench")
    await vault.registry.publish(text.encode(), file_name=f"{name}.yaml", signer=key)


def _start_workers(
    root: Path, tools: Path, broker: str, queue: str, count: int
) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "strongroom", "--vault", str(root / "vault"), "worker"]
    command += ["--broker", broker, "--queue", queue, "--tool-path", str(tools)]
    command += ["--workdir", str(root)]
    return [
        subprocess.Popen(
            [*command, "--name", f"bench{n}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(count)
    ]


def _wait_ready(app: Any, count: int) -> None:
    """Until the ``count`` workers started answer a ping (a worker's start is not what is
    measured; only these workers are asked, the broker may serve others)."""
    names = [f"bench{n}@{socket.gethostname()}" for n in range(count)]
    deadline = time.monotonic() + 120
    while len(app.control.ping(destination=names, timeout=1.0) or []) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not start")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _timed(orchestrator: Orchestrator, ref: str) -> float:
    started = time.perf_counter()
    result = await orchestrator.start(ref)
    elapsed = time.perf_counter() - started
    if result.status is not RunStatus.COMPLETED:
        raise RuntimeError(f"{ref} ended {result.status.value}: {result.run.last_error}")
    return elapsed


def _hold_playbook() -> dict[str, Any]:
    step = {"step_id": "hold", "tool": "nap@1.0.0", "inputs": {"seconds": {"value": 100}}}
    return {**_playbook("hold", 0, 0), "steps": [step]}


async def _tools_of(vault: Vault, run_id: str) -> list[psutil.Process]:
    """The processes of the step's tool, once its worker runs it (its pool process's
    descendants)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        claim = await vault.metadata.get_step_claim(run_id, "hold", 1)
        if claim is not None and claim.state == "running":
            with contextlib.suppress(psutil.NoSuchProcess):
                found = psutil.Process(int(claim.worker.rsplit(":", 1)[1])).children(recursive=True)
                if found:
                    return found
        await asyncio.sleep(0.01)
    raise RuntimeError("the step did not start on the worker")


async def _cancel_latencies(
    vault: Vault, app: Any, root: Path, tools: Path, broker: str, cancels: int
) -> tuple[list[float], list[float]]:
    """``cancels`` times: a step sleeping 100 s runs on a worker; `Orchestrator.cancel` (what
    `strongroom cancel` calls); the seconds until the tool's processes are gone, and until
    the coordinator's run returned cancelled."""
    await _publish(vault, _hold_playbook(), "hold")
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    workers = await asyncio.to_thread(_start_workers, root, tools, broker, queue, 1)
    killed, settled = [], []
    try:
        await asyncio.to_thread(_wait_ready, app, 1)
        coordinator = Orchestrator(vault, executor=CeleryExecutor(vault, app, queue=queue))
        for _ in range(cancels):
            run_id = new_id()
            task = asyncio.create_task(coordinator.start("hold@1.0.0", run_id=run_id))
            found = await _tools_of(vault, run_id)
            started = time.perf_counter()
            await Orchestrator(vault, actor="bench").cancel(run_id)
            _, alive = await asyncio.to_thread(psutil.wait_procs, found, timeout=120)
            killed.append(time.perf_counter() - started)
            result = await task
            settled.append(time.perf_counter() - started)
            if alive or result.status is not RunStatus.CANCELLED:
                raise RuntimeError(f"cancel did not stop the step: {result.status.value}")
    finally:
        await asyncio.to_thread(_stop, workers)
    return killed, settled


async def main(
    steps: int, seconds: float, counts: list[int], broker: str, cancels: int = 10
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        tools = root / "tools"
        tools.mkdir()
        (tools / "bench_worker_tools.py").write_text(_TOOL_SOURCE)
        figures: dict[str, Any] = {"steps": steps, "sleep_seconds": seconds}
        async with await Vault.open(root / "vault") as vault:
            await _publish(vault, _MANIFEST, "tools")
            await _publish(vault, _playbook("local", steps, seconds), "local")
            options = RunnerOptions(workdir=root, tool_paths=(tools,))
            local = Orchestrator(vault, options, max_parallel=1, actor="bench")
            figures["local_serial_s"] = await _timed(local, "local@1.0.0")
            app = celery_app(broker)
            for count in counts:
                name = f"celery{count}"
                await _publish(vault, _playbook(name, steps, seconds), name)
                queue = f"bench-{uuid.uuid4().hex[:8]}"
                workers = await asyncio.to_thread(_start_workers, root, tools, broker, queue, count)
                try:
                    await asyncio.to_thread(_wait_ready, app, count)
                    executor = CeleryExecutor(vault, app, queue=queue)
                    remote = Orchestrator(
                        vault, options, max_parallel=min(steps, 256), executor=executor
                    )
                    figures[f"celery_{count}_s"] = await _timed(remote, f"{name}@1.0.0")
                finally:
                    await asyncio.to_thread(_stop, workers)
            if cancels:
                killed, settled = await _cancel_latencies(vault, app, root, tools, broker, cancels)
                figures["cancel_tool_killed_s"] = {
                    "median": statistics.median(killed),
                    "max": max(killed),
                }
                figures["cancel_run_settled_s"] = {
                    "median": statistics.median(settled),
                    "max": max(settled),
                }
        one = figures.get("celery_1_s")
        if one is not None:
            figures["dispatch_overhead_ms_per_step"] = (
                (one - figures["local_serial_s"]) / steps * 1e3
            )
            for count in counts:
                figures[f"speedup_{count}"] = one / figures[f"celery_{count}_s"]
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _report(figures: dict[str, Any], counts: list[int]) -> str:
    steps = figures["steps"]
    lines = [
        f"{steps} independent steps, each a sandboxed tool sleeping {figures['sleep_seconds']} s",
        "",
        "| executor | wall time | steps/s | speed-up over 1 worker |",
        "|---|---|---|---|",
        f"| local, serial | {figures['local_serial_s']:.1f} s | "
        f"{steps / figures['local_serial_s']:.2f} | |",
    ]
    for count in counts:
        wall = figures[f"celery_{count}_s"]
        speedup = figures.get(f"speedup_{count}")
        shown = f"{speedup:.2f}x" if speedup is not None else ""
        lines.append(f"| celery, {count} worker(s) | {wall:.1f} s | {steps / wall:.2f} | {shown} |")
    if "dispatch_overhead_ms_per_step" in figures:
        lines.append("")
        lines.append(
            "dispatch overhead (1 worker, serial, minus local, serial): "
            f"{figures['dispatch_overhead_ms_per_step']:.1f} ms per step"
        )
    if "cancel_tool_killed_s" in figures:
        killed, settled = figures["cancel_tool_killed_s"], figures["cancel_run_settled_s"]
        lines.append(
            f"cancel of a step running on a worker: its tool killed {killed['median']:.2f} s "
            f"(max {killed['max']:.2f} s), the run settled {settled['median']:.2f} s "
            f"(max {settled['max']:.2f} s) after `cancel`"
        )
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--cancels", type=int, default=10, help="cancel latencies to measure")
    parser.add_argument(
        "--broker",
        default=os.environ.get("STRONGROOM_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",") if c]
    figures = asyncio.run(main(args.steps, args.sleep, counts, args.broker, args.cancels))
    print(_report(figures, counts))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    cli()
