"""Steps that run in another process or on another machine, recorded once however often they
are delivered.

Two halves meet at the attempt's step claim (`strongroom.ports.step_claims`):

- the **worker** (`run_claimed_step`) is handed a `StepJob` (ids and digests only), checks
  it against the run's latest snapshot (the run is running, the step is at this attempt with
  this request id and this manifest digest), takes the claim, builds the step's input from
  the vault, runs the tool through its own execution lane while it beats the claim's
  heartbeat, and finishes the claim with the runner's response. A job that is not the
  current attempt, or whose claim someone else holds or held, is skipped: a redelivered
  message never runs a step twice;
- the **coordinator** (`ClaimExecutor`, the driver's executor) sends the job, then reads the
  claim until it is finished (the response is the step's answer) or lost: a claim whose
  heartbeat is older than the lease is declared lost (a compare-and-set, so the worker's late
  answer can no longer be recorded) and the step answers ``worker_lost``; the driver then
  starts a new attempt, audited, within the tool's ``max_retries``.

Cancel: the worker watches the run (every `WATCH_SECONDS`) and its claim (every heartbeat); a
cancelled run (or a claim declared lost) kills its step's process group. A job still waiting
in the queue is revoked by the coordinator (``revoke``) and skipped by the worker that gets
it, which finds the run no longer running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from strongroom.errors import OperationTimeout, StorageIOError, StrongroomError, ValidationError
from strongroom.models import (
    DefinitionKind,
    Playbook,
    RunnerResponse,
    RunStatus,
)
from strongroom.orchestrator.executor import (
    WORKER_LOST,
    LocalExecutor,
    StepJob,
    failure_response,
)
from strongroom.orchestrator.state import STATE_KEY, PlanState, StepStatus
from strongroom.orchestrator.wiring import UpstreamOutputs, step_request
from strongroom.services import parse

if TYPE_CHECKING:
    from strongroom.execution import ToolRunner
    from strongroom.models.registry import Step
    from strongroom.vault import Vault

__all__ = [
    "HEARTBEAT_SECONDS",
    "LEASE_SECONDS",
    "ClaimExecutor",
    "Outcome",
    "run_claimed_step",
]

HEARTBEAT_SECONDS: Final = 1.0
"""How often a worker beats its claim's heartbeat."""

WATCH_SECONDS: Final = 0.2
"""How often a worker looks whether its step's run was cancelled (one row read): with the
sandbox's own 0.2 s look at the cancel event, a cancelled step's process group is killed
about half a second after `strongroom cancel`."""

LEASE_SECONDS: Final = 15.0
"""A running claim whose heartbeat is older than this is the claim of a dead worker."""

FIRST_POLL_SECONDS: Final = 0.005
"""How soon the coordinator first reads a sent job's claim (then less and less often)."""

MAX_POLL_SECONDS: Final = 0.25
"""The longest the coordinator waits between two reads of a running job's claim."""

CLAIM_READS_PER_SECOND: Final = 200
"""About the most reads per second one coordinator makes of claims not taken yet, however many
jobs wait in the queue: with many waiting each is read less often (the workers are busy
anyway). A claimed job is read on its own schedule (at most every `MAX_POLL_SECONDS`)."""

RESEND_SECONDS: Final = 300.0
"""A job nobody claimed for this long is sent again (a message lost with a broker, a worker
that failed before claiming); a second delivery is harmless."""

Outcome = Literal[
    "finished", "lost", "not_running", "not_this_attempt", "digest_mismatch", "claimed"
]


# -- the worker's half ----------------------------------------------------------------------


async def run_claimed_step(
    vault: Vault,
    runner: ToolRunner,
    job: StepJob,
    *,
    worker: str,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> Outcome:
    """Run ``job`` here if it is the step's current attempt and nobody claimed it; record the
    answer on its claim. Returns what happened (only ``finished`` ran the tool)."""
    run = await vault.runs.get(job.run_id)
    if run.status is not RunStatus.RUNNING:
        return "not_running"
    # The run's own actor acts, not whoever the message names: a message is untrusted input.
    job = dataclasses.replace(job, caller=run.actor)
    snapshot = await vault.snapshots.load(job.run_id)
    plan = PlanState.model_validate(snapshot.state.data[STATE_KEY])
    state = plan.steps.get(job.step_id)
    if (
        state is None
        or state.status is not StepStatus.RUNNING
        or state.starts != job.attempt
        or state.request_id != job.request_id
    ):
        return "not_this_attempt"
    if state.manifest_digest != job.manifest_digest or state.tool_id != job.tool_id:
        return "digest_mismatch"
    taken, _ = await vault.metadata.claim_step(
        job.run_id, job.step_id, job.attempt, request_id=job.request_id, worker=worker
    )
    if not taken:
        return "claimed"
    cancel = threading.Event()
    watcher = asyncio.create_task(_keep_claim(vault, job, worker, heartbeat, cancel))
    try:
        response = await _run_here(vault, runner, job, plan, cancel)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    answer = response.model_dump(mode="json")
    try:
        recorded = await vault.metadata.finish_step_claim(
            job.run_id, job.step_id, job.attempt, worker=worker, response=answer
        )
    except ValidationError as exc:  # an inline output the claim cannot keep: say so instead
        failed = failure_response(job, "response_too_large", exc.message)
        recorded = await vault.metadata.finish_step_claim(
            job.run_id,
            job.step_id,
            job.attempt,
            worker=worker,
            response=failed.model_dump(mode="json"),
        )
    return "finished" if recorded else "lost"


async def _run_here(
    vault: Vault, runner: ToolRunner, job: StepJob, plan: PlanState, cancel: threading.Event
) -> RunnerResponse:
    try:
        step = await _step_definition(vault, plan, job.step_id)
        upstream = UpstreamOutputs(vault, plan)

        async def wire() -> dict[str, Any]:
            return await step_request(step, plan, upstream.load, upstream.check_artifact)

        return await LocalExecutor(runner).execute(job, step=step, wire=wire, cancel=cancel)
    except StrongroomError as exc:  # the input could not be wired, the playbook not found
        info = exc.to_info()
        return failure_response(job, info.code, info.message).model_copy(update={"error": info})


async def _step_definition(vault: Vault, plan: PlanState, step_id: str) -> Step:
    """The step as the run's pinned playbook (by digest) defines it (the registry keeps the
    parse of a digest, so a worker running many steps of one playbook parses it once)."""
    _, definition = await vault.registry.get(
        DefinitionKind.PLAYBOOK, plan.playbook_id, f"sha256:{plan.playbook_digest}"
    )
    assert isinstance(definition, Playbook)
    return next(step for step in definition.steps if step.step_id == step_id)


async def _keep_claim(
    vault: Vault,
    job: StepJob,
    worker: str,
    every: float,
    cancel: threading.Event,
    watch: float = WATCH_SECONDS,
) -> None:
    """Beat the claim's heartbeat every ``every`` seconds and look at the run every ``watch``
    seconds; kill the step (``cancel``) when the run is cancelled, the claim is no longer this
    worker's (declared lost, or a resume took the step over), or no beat got through for half
    a lease (the coordinator will soon think this worker dead)."""
    last_beat = tried = time.monotonic()
    while not cancel.is_set():
        await asyncio.sleep(min(watch, every))
        try:
            run = await vault.runs.get(job.run_id)
            if run.status is RunStatus.CANCELLED:
                cancel.set()
                return
            if time.monotonic() - tried < every:
                continue
            tried = time.monotonic()
            mine = await vault.metadata.heartbeat_step_claim(
                job.run_id, job.step_id, job.attempt, worker=worker
            )
        except StrongroomError:  # a database hiccup: beat again, up to half a lease
            tried = time.monotonic()
            if tried - last_beat > LEASE_SECONDS / 2:
                cancel.set()
            continue
        last_beat = time.monotonic()
        if not mine:
            cancel.set()


# -- the coordinator's half -------------------------------------------------------------------


class ClaimExecutor:
    """Hands each attempt to ``send`` (a broker message, a process) and answers with what its
    step claim records: the worker's response once finished, ``worker_lost`` once the claim
    is lost. A claim is declared lost here when its heartbeat has not moved for ``lease``
    seconds of *this* process's clock (machines' clocks may disagree; a heartbeat's change
    does not), by a compare-and-set on the heartbeat last seen, so a beat that lands
    meanwhile keeps it. A job nobody claimed for ``resend`` seconds is sent again."""

    def __init__(
        self,
        vault: Vault,
        send: Callable[[StepJob], Awaitable[None]],
        *,
        revoke: Callable[[StepJob], Awaitable[None]] | None = None,
        poll: float = FIRST_POLL_SECONDS,
        max_poll: float = MAX_POLL_SECONDS,
        lease: float = LEASE_SECONDS,
        resend: float = RESEND_SECONDS,
    ) -> None:
        """``revoke`` (best effort) withdraws a sent job of a cancelled run. The claim is read
        every ``poll`` seconds at first, then every twentieth of the time the job has been
        out, at most every ``max_poll`` seconds: a short step's end is seen within a few
        milliseconds, a long one costs the database a read every quarter second. With many
        jobs waiting in the queue (no claim yet), each of those is read less often, so that
        their reads stay near `CLAIM_READS_PER_SECOND`."""
        self._vault = vault
        self._send = send
        self._revoke = revoke
        self._poll = poll
        self._max_poll = max(poll, max_poll)
        self._lease = lease
        self._resend = resend
        self._unclaimed = 0  # jobs sent whose claim this executor has not seen yet

    def _interval(self, elapsed: float, *, claimed: bool) -> float:
        alone = min(max(elapsed / 20, self._poll), self._max_poll)
        return alone if claimed else max(alone, self._unclaimed / CLAIM_READS_PER_SECOND)

    async def execute(
        self,
        job: StepJob,
        *,
        step: Step,
        wire: Callable[[], Awaitable[dict[str, Any]]],
        cancel: threading.Event,
    ) -> RunnerResponse:
        await self._send(job)
        self._unclaimed += 1
        claimed: list[float] = []  # when this executor first saw the claim
        try:
            return await self._wait(job, cancel, sent=time.monotonic(), claimed=claimed)
        finally:
            if not claimed:
                self._unclaimed -= 1

    async def _wait(
        self, job: StepJob, cancel: threading.Event, *, sent: float, claimed: list[float]
    ) -> RunnerResponse:
        """Read the claim until the attempt ends; ``claimed`` gets the time its claim was
        first seen (until then the job counts as waiting in the queue)."""
        seen: tuple[datetime, float] | None = None  # (heartbeat, when it was first seen)
        cancelled_at: float | None = None
        claims = self._vault.metadata
        while True:
            since = claimed[0] if claimed else sent
            await asyncio.sleep(self._interval(time.monotonic() - since, claimed=bool(claimed)))
            now = time.monotonic()
            if cancel.is_set() and cancelled_at is None:
                cancelled_at = now
                if self._revoke is not None:
                    await self._revoke(job)
            try:
                claim = await claims.get_step_claim(job.run_id, job.step_id, job.attempt)
            except (StorageIOError, OperationTimeout):
                continue  # a database hiccup: the claim is still there to read
            if claim is not None and not claimed:
                claimed.append(now)
                self._unclaimed -= 1
            if claim is None:
                if cancelled_at is not None:  # never started anywhere: nothing to kill
                    return failure_response(job, "cancelled", "the run was cancelled")
                if now - sent > self._resend:
                    await self._send(job)
                    sent = now
                continue
            if claim.state == "finished":
                assert claim.response is not None
                return parse(RunnerResponse, claim.response, operation="orchestrator.remote")
            if claim.state == "running":
                if seen is None or seen[0] != claim.heartbeat_at:
                    seen = (claim.heartbeat_at, now)
                # A cancelled run's worker kills its step and finishes the claim within a
                # heartbeat or two; one that does not is answered for.
                if cancelled_at is not None and now - cancelled_at > 4 * HEARTBEAT_SECONDS:
                    return failure_response(job, "cancelled", "the run was cancelled")
                if now - seen[1] < self._lease or not await claims.lose_step_claim(
                    job.run_id,
                    job.step_id,
                    job.attempt,
                    stale_before=claim.heartbeat_at + timedelta(microseconds=1),
                ):
                    continue
            return failure_response(
                job,
                WORKER_LOST,
                f"the worker running step {job.step_id} (attempt {job.attempt}) stopped "
                f"answering: {claim.worker}",
                worker=claim.worker,
                attempt=job.attempt,
            )
