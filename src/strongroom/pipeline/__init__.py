"""Embedding API: persist a pipeline that your own code orchestrates (a script, Airflow, an
agent loop) and resume it after a crash.

    from strongroom import Vault
    from strongroom.pipeline import PipelineRun

    async with await Vault.open("./.strongroom") as vault:
        async with PipelineRun.open(vault, project="docs", run_id=previous_or_none) as run:
            if not run.completed("ingest"):
                async with run.phase("ingest") as phase:
                    await phase.output(load())                   # JSON -> phase_output artifact
                    await phase.artifact(b"a,b\\n", name="raw.csv")
                    phase.state["cursor"] = 120                  # saved in every snapshot
            segments = await run.output("ingest")                # read back, sha256 verified

A `PipelineRun` is a run record (pending -> running -> completed | failed | cancelled), a
chain of state snapshots (`RunState`, compare-and-set on the revision) and the run's log.
Each phase writes a snapshot when it starts and one when it completes or fails; the snapshot
written at completion lists the phase's artifacts and is the resume point. Everything goes
through the vault's services, so it works on every backend. The rules for opening, resuming
and finishing are in `PipelineRun.open` and ``docs/embedding.md``.
"""

from strongroom.pipeline._common import OUTPUT_NAME, error_info
from strongroom.pipeline._phase import Phase
from strongroom.pipeline._run import PipelineRun

__all__ = ["OUTPUT_NAME", "Phase", "PipelineRun", "error_info"]
