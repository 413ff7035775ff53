"""Opening a pipeline run by an idempotency key (`PipelineRun.open` with ``key``): the run's
id is derived from the project and the key, so a restarted process finds its run again
without having stored an id. Attempts: a failed or cancelled run is replaced by the key's
next attempt (its id derived from the key and the attempt number), so the newest attempt is
always found by trying ids in order."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

from strongroom.errors import Conflict, NotFound, ValidationError
from strongroom.models import Run, RunState, RunStatus

if TYPE_CHECKING:
    from strongroom.pipeline._run import PipelineRun
    from strongroom.vault import Vault

__all__ = ["MAX_ATTEMPTS", "check_key", "key_run_id", "open_keyed"]

_NAMESPACE: Final = uuid.UUID("6f1d3c2a-3b7e-5c4d-9a8b-2e1f0d9c8b7a")
MAX_ATTEMPTS: Final = 10_000
"""Replacements one key may go through (each failed or cancelled attempt adds one)."""
MAX_KEY_CHARS: Final = 200


def check_key(key: str) -> str:
    """An idempotency key: 1-200 printable characters."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise ValidationError(
            f"an idempotency key is 1-{MAX_KEY_CHARS} characters",
            operation="pipeline.open",
            reason="bad_key",
        )
    if not key.isprintable():
        raise ValidationError(
            "an idempotency key holds only printable characters",
            operation="pipeline.open",
            reason="bad_key",
        )
    return key


def key_run_id(project: str, key: str, attempt: int = 0) -> str:
    """The run id of attempt ``attempt`` of ``key`` in ``project`` (a name-based UUID, v5):
    the same inputs give the same id in every process and on every machine."""
    return str(uuid.uuid5(_NAMESPACE, f"{project}\0{key}\0{attempt}"))


async def _latest(vault: Vault, project: str, key: str) -> tuple[int, Run | None]:
    """The newest attempt of ``key`` and its number (-1, None: none yet)."""
    latest: Run | None = None
    attempt = 0
    while attempt < MAX_ATTEMPTS:
        try:
            latest = await vault.runs.get(key_run_id(project, key, attempt))
        except NotFound:
            return attempt - 1, latest
        attempt += 1
    raise Conflict(
        f"idempotency key {key!r} has been attempted {MAX_ATTEMPTS} times",
        operation="pipeline.open",
        reason="too_many_attempts",
    )


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

    check_key(key)
    for _ in range(3):  # a racing opener may create the attempt between our read and write
        attempt, latest = await _latest(vault, project, key)
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
            except Conflict as exc:
                if exc.details.get("reason") != "unique_violation" and "exists" not in exc.message:
                    raise
                continue
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
