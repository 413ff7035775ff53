"""A worker process for tests/test_orchestrator_remote.py (a script, not collected by pytest):
runs one step job through `run_claimed_step` and prints its outcome.

    python tests/_step_worker.py VAULT WORKDIR WORKER JOB_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.orchestrator import StepJob
from strongroom.orchestrator.remote import run_claimed_step
from strongroom.vault import Vault

TOOLS_DIR = Path(__file__).with_name("sandbox_tools")


async def main(vault_url: str, workdir: str, worker: str, job_json: str) -> None:
    job = StepJob(**json.loads(job_json))
    async with await Vault.open(vault_url, create=False) as vault:
        runner = ToolRunner(vault, RunnerOptions(workdir=Path(workdir), tool_paths=(TOOLS_DIR,)))
        outcome = await run_claimed_step(vault, runner, job, worker=worker, heartbeat=0.2)
    print(outcome, flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
