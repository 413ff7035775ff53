"""An orchestrator process for tests/test_orchestrator_kill.py (a script, not collected).

    python tests/_orchestrator_worker.py VAULT_URL [BLOBS_URL] WORKDIR start|resume RUN_ID

Opens the vault (a directory or ``postgresql://`` URL, with its blob store URL when given),
prints ``ready`` once everything is imported and the vault is open, then starts run RUN_ID of
`PLAYBOOK_REF` (with `INPUTS`) or resumes it, printing ``event KIND [STEP_ID]`` for each event
the orchestrator reports (``run_started``, ``step_started root``, ``step_completed root``...),
and prints the outcome as one JSON line (``{"status": ..., "run_id": ...}``). The test
SIGKILLs it at points of that progress; a worker that is not killed exits 0 whatever the run's
status (the test checks it), 1 on an unexpected error.

`playbook()` is the definition the test publishes: a DAG of `lane_tools:add` steps with
parallel branches and short delays, so that kills land while steps are in flight.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from strongroom.errors import Conflict
from strongroom.execution import RunnerOptions
from strongroom.orchestrator import Event, Orchestrator
from strongroom.vault import Vault

TOOLS_DIR = Path(__file__).with_name("sandbox_tools")
PLAYBOOK_ID = "killsums"
PLAYBOOK_REF = f"{PLAYBOOK_ID}@1.0.0"
INPUTS = {"x": 3}
MAX_PARALLEL = 2


def _add(step_id: str, x: Any, y: Any, delay: float) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "tool": "add@1.0.0",
        "inputs": {"x": x, "y": y, "delay": {"value": delay}},
    }


def report(event: Event) -> None:
    """One progress line per orchestrator event, flushed at once: the test kills on these."""
    print(f"event {event.kind} {event.step_id or ''}".rstrip(), flush=True)


def _from(step_id: str) -> dict[str, str]:
    return {"from_step": step_id, "pointer": "/sum"}


def playbook() -> dict[str, Any]:
    """Eight steps: a root, two parallel branches of two steps, their join, then two leaves
    (the branches and the leaves run side by side at max_parallel 2)."""
    steps = [
        _add("root", {"from_input": "x"}, {"value": 1}, 0.05),
        _add("left1", _from("root"), {"value": 10}, 0.2),
        _add("right1", _from("root"), {"value": 100}, 0.1),
        _add("left2", _from("left1"), {"value": 1000}, 0.05),
        _add("right2", _from("right1"), {"value": 10000}, 0.15),
        _add("join", _from("left2"), _from("right2"), 0.1),
        _add("fan_a", _from("join"), {"value": 7}, 0.2),
        _add("fan_b", _from("join"), _from("root"), 0.05),
    ]
    return {
        "kind": "playbook",
        "playbook_id": PLAYBOOK_ID,
        "name": "Kill test sums",
        "version": "1.0.0",
        "owner": "alice",
        "steps": steps,
    }


async def work(
    vault_url: str, blobs_url: str | None, workdir: Path, mode: str, run_id: str
) -> dict[str, Any]:
    vault = await Vault.open(vault_url, blobs_url=blobs_url)
    try:
        orchestrator = Orchestrator(
            vault,
            RunnerOptions(workdir=workdir, tool_paths=(TOOLS_DIR,), backoff_seconds=0.01),
            max_parallel=MAX_PARALLEL,
            actor="kill-worker",
            on_event=report,
        )
        print("ready", flush=True)
        if mode == "start":
            result = await orchestrator.start(PLAYBOOK_REF, inputs=INPUTS, run_id=run_id)
        elif mode == "resume":
            try:
                result = await orchestrator.resume(run_id)
            except Conflict as exc:
                if exc.details.get("reason") != "no_plan":
                    raise
                # Killed before its plan was saved: no step ran; start it again, same id.
                result = await orchestrator.start(PLAYBOOK_REF, inputs=INPUTS, run_id=run_id)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        return {"status": result.status.value, "run_id": result.run.run_id}
    finally:
        await vault.close()


def main(argv: list[str]) -> int:
    if len(argv) == 4:
        vault_url, workdir, mode, run_id = argv
        blobs_url: str | None = None
    elif len(argv) == 5:
        vault_url, blobs_url, workdir, mode, run_id = argv
    else:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        outcome = asyncio.run(work(vault_url, blobs_url, Path(workdir), mode, run_id))
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
