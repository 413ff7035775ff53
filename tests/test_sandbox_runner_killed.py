"""A runner SIGKILLed while its tool runs takes the tool and everything the tool started
with it: orphaned grandchildren (double fork), one that tried to leave the process group,
plain children. The runner is a real process here, killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from _lane import TOOLS_DIR, manifest, open_lane, policy, require_sandbox, tool

WORKER = """
import asyncio, sys
from pathlib import Path
from strongroom import Vault
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.ids import new_id

async def main(root: Path) -> None:
    async with await Vault.open(root / "vault") as vault:
        runner = ToolRunner(
            vault, RunnerOptions(workdir=root / "work", tool_paths=(Path(sys.argv[2]),))
        )
        request = {"request_id": new_id(), "tool_id": "orphans", "input": {"pid_file": "out/pids"}}
        await runner.run(request)

asyncio.run(main(Path(sys.argv[1])))
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _staged_text(runner_pid: int, path: Path) -> str:
    """``path`` as the runner's sandboxed processes see it: with the write quota, what a
    tool writes to a write path is staged in their mount namespace until the tool exits,
    so it is read through ``/proc/<pid>/root`` of one of them."""
    try:
        processes = psutil.Process(runner_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return ""
    for process in processes:
        try:
            return Path(f"/proc/{process.pid}/root{path}").read_text()
        except OSError:
            continue
    return ""


def _kill_the_runner(root: Path, pid_file: Path) -> tuple[list[int], list[int]]:
    """Start a runner process on the ``orphans`` tool, SIGKILL it once the tool has written
    its descendants' pids; return those pids and the ones still alive 5 s later."""
    log = root / "worker.stderr"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(TOOLS_DIR)], stderr=stderr
        )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(written := _staged_text(worker.pid, pid_file).split()) < 4:
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the tool never wrote its pids"
            time.sleep(0.05)
        pids = [int(p) for p in written]
        assert all(_alive(pid) for pid in pids), pids
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 5
        while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.05)
        return pids, [pid for pid in pids if _alive(pid)]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pid in pids:  # never leave strays behind, whatever happened
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_killing_the_runner_kills_the_tools_descendants(tmp_path: Path) -> None:
    require_sandbox()
    lane = await open_lane(tmp_path)
    await lane.publish(policy(), manifest([tool("orphans", "probe_tools:orphans", timeout=60)]))
    await lane.vault.close()
    pids, survivors = _kill_the_runner(tmp_path, lane.workdir / "out" / "pids")
    assert len(pids) == 4  # the tool, two orphaned grandchildren, a child
    assert not survivors, f"still running after the runner died: {survivors} of {pids}"
