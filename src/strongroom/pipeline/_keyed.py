"""Opening a pipeline run by an idempotency key (`PipelineRun.open` with ``key``): the run's
id is derived from the project and the key (`strongroom.ids.key_run_id`), so a restarted
process finds its run again without having stored an id (`RunService.by_key`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.errors import Conflict
from strongroom.ids import key_run_id
from strongroom.models import RunState, RunStatus

if TYPE_CHECKING:
    from strongroom.pipeline._run import PipelineRun
    from strongroom.vault import Vault

__all__ = ["open_keyed"]


async def open_keyed(
    cls: type[PipelineRun],
    vault: Vault,
    *,
    key: str,
    project: str,
    purpose: str,
    actor: str,
    steps_total: int | None,
) -> PipelineRun:
    """The run of ``key``: a new one (the first open), the unfinished one continued, a
    failed or cancelled one replaced by the next attempt, or the completed one returned as
    it is (`PipelineRun.finished`: nothing runs again, leaving the block changes nothing)."""
    from strongroom.pipeline._resume import reopen

    for _ in range(3):  # a racing opener may create the attempt between our read and write
        attempt, latest = await vault.runs.by_key(project, key)
        if latest is None:
            try:
                return await cls._create(
                    vault,
                    project=project,
                    purpose=purpose,
                    actor=actor,
                    steps_total=steps_total,
                    run_id=key_run_id(project, key, 0),
                    key=key,
                )
            except Conflict:
                continue  # created meanwhile by another process: open that one
        if latest.status is RunStatus.COMPLETED:
            revision = await vault.snapshots.latest_revision(latest.run_id)
            state = (await vault.snapshots.load(latest.run_id)).state if revision else RunState()
            run = cls(vault, latest, state, revision, actor=actor, resumed=True)
            run.key = key
            run.finished = True
            return run
        run = await reopen(
            cls,
            vault,
            run_id=latest.run_id,
            project=project,
            purpose=purpose,
            actor=actor,
            steps_total=steps_total,
            new_run_id=key_run_id(project, key, attempt + 1),
        )
        run.key = key
        return run
    raise Conflict(
        f"idempotency key {key!r}: other processes keep opening it; try again",
        operation="pipeline.open",
        reason="contended_key",
    )
