"""Steps run by other processes through step claims (`strongroom.orchestrator.remote`), with
real worker processes and real sandboxes: a chain completes with every step run by a worker;
each job delivered twice still runs each step once; a worker SIGKILLed mid-step (on
progress: its claim is running) is declared lost after the lease, the step runs again as a new
attempt (audited) and the run completes with the outputs of an uninterrupted one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from _lane import Lane, manifest, open_lane, policy, require_sandbox, tool
from strongroom.ids import new_id
from strongroom.models import RunStatus
from strongroom.orchestrator import Orchestrator, PlanState, StepJob
from strongroom.orchestrator.remote import ClaimExecutor, run_claimed_step
from strongroom.orchestrator.state import STATE_KEY

WORKER = Path(__file__).with_name("_step_worker.py")
DEADLINE = 300.0  # seconds: generous, a loaded CI machine is slow; nothing waits this long

TOOLS = [tool("add", "lane_tools:add", level="A0", timeout=120, retries=2)]


def _step(step_id: str, x: Any, y: Any, delay: float = 0) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "tool": "add@1.0.0",
        "inputs": {"x": x, "y": y, "delay": {"value": delay}},
    }


def _chain(delay_b: float = 0) -> dict[str, Any]:
    return {
        "kind": "playbook",
        "playbook_id": "remote-chain",
        "name": "Remote chain",
        "version": "1.0.0",
        "owner": "alice",
        "steps": [
            _step("a", {"from_input": "x"}, {"value": 1}),
            _step("b", {"from_step": "a", "pointer": "/sum"}, {"value": 10}, delay=delay_b),
            _step("c", {"from_step": "b", "pointer": "/sum"}, {"value": 100}),
        ],
    }


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    lane = await open_lane(tmp_path)
    await lane.publish(policy(), manifest(TOOLS))
    try:
        yield lane
    finally:
        await lane.vault.close()


class Processes:
    """``send``: one worker process per delivery (``copies`` deliveries per job)."""

    def __init__(self, lane: Lane, copies: int = 1) -> None:
        self.lane = lane
        self.copies = copies
        self.started: list[tuple[StepJob, subprocess.Popen[str]]] = []

    async def send(self, job: StepJob) -> None:
        for n in range(self.copies):
            process = await asyncio.to_thread(self._spawn, job, n)
            self.started.append((job, process))

    def _spawn(self, job: StepJob, n: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(self.lane.root / "vault"),
                str(self.lane.root / "work"),
                f"test-worker-{len(self.started)}-{n}",
                json.dumps(dataclasses.asdict(job)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def outcomes(self) -> list[tuple[str, int, str]]:
        """(step, attempt, what the worker printed), once every worker has exited."""
        found = []
        for job, process in self.started:
            out, err = process.communicate(timeout=DEADLINE)
            found.append((job.step_id, job.attempt, out.strip() or f"exit {process.returncode}"))
            if process.returncode not in (0, -signal.SIGKILL):
                raise AssertionError(f"worker failed: {err[-3000:]}")
        return found


async def _plan(lane: Lane, run_id: str) -> PlanState:
    snapshot = await lane.vault.snapshots.load(run_id)
    return PlanState.model_validate(snapshot.state.data[STATE_KEY])


async def _outputs(lane: Lane, plan: PlanState) -> dict[str, bytes]:
    found = {}
    for step_id, state in plan.steps.items():
        assert state.output_artifact_id is not None
        found[step_id] = await lane.vault.artifacts.get_bytes(state.output_artifact_id)
    return found


EXPECTED = {"a": b'{"sum": 2}', "b": b'{"sum": 12}', "c": b'{"sum": 112}'}


async def _completions(lane: Lane, run_id: str) -> list[str]:
    return [
        e.phase or "" for e in await lane.vault.logs.read(run_id) if e.event == "step.completed"
    ]


async def test_every_step_runs_in_a_worker_process(lane: Lane) -> None:
    await lane.publish(_chain())
    workers = Processes(lane)
    executor = ClaimExecutor(lane.vault, workers.send, poll=0.05)
    result = await Orchestrator(lane.vault, executor=executor).start(
        "remote-chain@1.0.0", inputs={"x": 1}
    )
    assert result.status is RunStatus.COMPLETED, result.run.last_error
    run_id = result.run.run_id
    assert await asyncio.to_thread(workers.outcomes) == [
        ("a", 1, "finished"),
        ("b", 1, "finished"),
        ("c", 1, "finished"),
    ]
    assert await _outputs(lane, await _plan(lane, run_id)) == EXPECTED
    claims = await lane.vault.metadata.list_step_claims(run_id)
    assert [(c.step_id, c.attempt, c.state) for c in claims] == [
        ("a", 1, "finished"),
        ("b", 1, "finished"),
        ("c", 1, "finished"),
    ]
    assert {c.worker for c in claims} == {"test-worker-0-0", "test-worker-1-0", "test-worker-2-0"}
    assert sorted(await _completions(lane, run_id)) == ["a", "b", "c"]
    assert (await lane.vault.verify()).ok


async def test_a_job_delivered_twice_runs_its_step_once(lane: Lane) -> None:
    await lane.publish(_chain())
    workers = Processes(lane, copies=2)
    executor = ClaimExecutor(lane.vault, workers.send, poll=0.05)
    result = await Orchestrator(lane.vault, executor=executor).start(
        "remote-chain@1.0.0", inputs={"x": 1}
    )
    assert result.status is RunStatus.COMPLETED, result.run.last_error
    outcomes = await asyncio.to_thread(workers.outcomes)
    for step_id in "abc":
        said = [what for step, _, what in outcomes if step == step_id]
        # One ran it; the other found it claimed (or, arriving after the coordinator moved
        # on, found it no longer the current attempt).
        assert said.count("finished") == 1, said
        assert len(said) == 2, said
        other = next(what for what in said if what != "finished")
        assert other in ("claimed", "not_this_attempt", "not_running"), said
    run_id = result.run.run_id
    outputs = [
        a
        for a in await lane.vault.artifacts.list(run_id=run_id, limit=1000)
        if a.role.value in ("phase_output", "export")
    ]
    assert sorted(a.step or "" for a in outputs) == ["a", "b", "c"]  # each tool ran once
    assert sorted(await _completions(lane, run_id)) == ["a", "b", "c"]
    assert (await lane.vault.verify()).ok


async def test_a_worker_killed_mid_step_costs_a_new_attempt_not_the_run(lane: Lane) -> None:
    await lane.publish(_chain(delay_b=4))
    workers = Processes(lane)
    # The lease is many heartbeats long (0.2 s here): a live worker slowed by a loaded machine
    # is never taken for dead, only the killed one is.
    executor = ClaimExecutor(lane.vault, workers.send, poll=0.05, lease=10.0)
    orchestrator = Orchestrator(lane.vault, executor=executor)
    task = asyncio.create_task(orchestrator.start("remote-chain@1.0.0", inputs={"x": 1}))
    # Kill b's first worker once its claim is running (the tool sleeps 4 s in its sandbox).
    deadline = time.monotonic() + DEADLINE
    victim: subprocess.Popen[str] | None = None
    while victim is None:
        assert time.monotonic() < deadline, "b's worker never claimed it"
        assert not task.done(), task
        for job, process in workers.started:
            if job.step_id == "b" and job.attempt == 1:
                claim = await lane.vault.metadata.get_step_claim(job.run_id, "b", 1)
                if claim is not None and claim.state == "running":
                    victim = process
        await asyncio.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    result = await asyncio.wait_for(task, DEADLINE)
    assert result.status is RunStatus.COMPLETED, result.run.last_error
    run_id = result.run.run_id
    outcomes = await asyncio.to_thread(workers.outcomes)
    assert ("b", 1, f"exit {-signal.SIGKILL}") in outcomes
    assert ("b", 2, "finished") in outcomes
    claims = {
        (c.step_id, c.attempt): c.state for c in await lane.vault.metadata.list_step_claims(run_id)
    }
    assert claims == {
        ("a", 1): "finished",
        ("b", 1): "lost",
        ("b", 2): "finished",
        ("c", 1): "finished",
    }
    plan = await _plan(lane, run_id)
    assert plan.steps["b"].starts == 2
    assert await _outputs(lane, plan) == EXPECTED
    assert sorted(await _completions(lane, run_id)) == ["a", "b", "c"]  # b's end recorded once
    retried = [
        e
        for e in await lane.vault.audit.entries(limit=100_000)
        if e.subject_id == run_id and e.event == "orchestrator.step_retried"
    ]
    assert len(retried) == 1
    assert retried[0].details["step"] == "b"
    assert retried[0].details["attempt"] == 2
    assert retried[0].details["worker"] == "test-worker-1-0"
    assert (await lane.vault.verify()).ok


async def test_resume_takes_a_step_over_from_a_worker_still_holding_it(lane: Lane) -> None:
    """The coordinator dies while a worker holds step a's claim; `resume` declares that claim
    lost (the worker's next heartbeat is refused and its answer can never be recorded) and
    runs a as a new attempt."""
    await lane.publish(_chain())
    sent: list[StepJob] = []

    async def nowhere(job: StepJob) -> None:
        sent.append(job)

    first = Orchestrator(lane.vault, executor=ClaimExecutor(lane.vault, nowhere, poll=0.05))
    task = asyncio.create_task(first.start("remote-chain@1.0.0", inputs={"x": 1}))
    deadline = time.monotonic() + DEADLINE
    while not sent:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    job = sent[0]
    taken, _ = await lane.vault.metadata.claim_step(
        job.run_id, job.step_id, job.attempt, request_id=job.request_id, worker="ghost"
    )
    assert taken
    task.cancel()  # the coordinator dies
    with contextlib.suppress(asyncio.CancelledError):
        await task
    workers = Processes(lane)
    second = Orchestrator(lane.vault, executor=ClaimExecutor(lane.vault, workers.send, poll=0.05))
    result = await asyncio.wait_for(second.resume(job.run_id), DEADLINE)
    assert result.status is RunStatus.COMPLETED, result.run.last_error
    ghost = await lane.vault.metadata.get_step_claim(job.run_id, "a", 1)
    assert ghost is not None
    assert (ghost.worker, ghost.state) == ("ghost", "lost")
    assert not await lane.vault.metadata.heartbeat_step_claim(job.run_id, "a", 1, worker="ghost")
    assert (await _plan(lane, job.run_id)).steps["a"].starts == 2
    assert await _outputs(lane, await _plan(lane, job.run_id)) == EXPECTED
    assert sorted(await _completions(lane, job.run_id)) == ["a", "b", "c"]
    await asyncio.to_thread(workers.outcomes)


async def _first_job(lane: Lane) -> tuple[StepJob, asyncio.Task[Any]]:
    """A run whose coordinator sends its jobs nowhere; its first job (step a, attempt 1)."""
    await lane.publish(_chain())
    sent: list[StepJob] = []

    async def nowhere(job: StepJob) -> None:
        sent.append(job)

    orchestrator = Orchestrator(
        lane.vault, actor="coordinator", executor=ClaimExecutor(lane.vault, nowhere, poll=0.05)
    )
    task = asyncio.create_task(orchestrator.start("remote-chain@1.0.0", inputs={"x": 1}))
    deadline = time.monotonic() + DEADLINE
    while not sent:
        assert time.monotonic() < deadline
        assert not task.done(), task
        await asyncio.sleep(0.01)
    return sent[0], task


async def test_a_worker_runs_only_the_current_attempt_under_the_runs_actor(lane: Lane) -> None:
    """docs/workers.md, "Security": a job that is not the step's current attempt, or whose
    tool or digest differs, is not run (and claims nothing); the actor of what runs is the
    run's, not the name a message gives."""
    job, coordinator = await _first_job(lane)
    try:
        forged = [
            (dataclasses.replace(job, attempt=2), "not_this_attempt"),
            (dataclasses.replace(job, request_id=new_id()), "not_this_attempt"),
            (dataclasses.replace(job, step_id="c"), "not_this_attempt"),
            (dataclasses.replace(job, manifest_digest="0" * 64), "digest_mismatch"),
            (dataclasses.replace(job, tool_id="other"), "digest_mismatch"),
        ]
        for message, refused in forged:
            assert await run_claimed_step(lane.vault, lane.runner, message, worker="w") == refused
        assert await lane.vault.metadata.list_step_claims(job.run_id) == []
        impostor = dataclasses.replace(job, caller="mallory")
        outcome = await run_claimed_step(lane.vault, lane.runner, impostor, worker="w")
        assert outcome == "finished"
        acts = [
            e
            for e in await lane.vault.audit.entries(limit=100_000)
            if e.subject_id == job.request_id and e.event.startswith("execution.")
        ]
        assert acts
        assert {e.actor for e in acts} == {"coordinator"}
    finally:
        coordinator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await coordinator


async def test_a_job_nobody_claimed_is_sent_again(lane: Lane) -> None:
    """docs/workers.md: a message lost on its way (here: every first delivery is dropped) is
    sent again once nobody claimed it for the resend interval; each step still runs once."""
    await lane.publish(_chain())
    workers = Processes(lane)
    deliveries: dict[str, int] = {}

    async def lossy(job: StepJob) -> None:
        deliveries[job.request_id] = deliveries.get(job.request_id, 0) + 1
        if deliveries[job.request_id] > 1:
            await workers.send(job)

    # Longer than a worker process takes to start on a loaded machine, so resends stay few.
    executor = ClaimExecutor(lane.vault, lossy, poll=0.05, resend=3.0)
    result = await asyncio.wait_for(
        Orchestrator(lane.vault, executor=executor).start("remote-chain@1.0.0", inputs={"x": 1}),
        DEADLINE,
    )
    assert result.status is RunStatus.COMPLETED, result.run.last_error
    assert len(deliveries) == 3
    assert all(count >= 2 for count in deliveries.values()), deliveries
    assert await _outputs(lane, await _plan(lane, result.run.run_id)) == EXPECTED
    assert sorted(await _completions(lane, result.run.run_id)) == ["a", "b", "c"]
    await asyncio.to_thread(workers.outcomes)


async def test_cancel_kills_a_step_running_in_a_worker(lane: Lane) -> None:
    """docs/workers.md, "Cancel": the worker sees the cancelled run at its next heartbeat and
    kills its step's process group; the step ends cancelled, never completed."""
    await lane.publish(_chain(delay_b=600))
    workers = Processes(lane)
    orchestrator = Orchestrator(
        lane.vault, executor=ClaimExecutor(lane.vault, workers.send, poll=0.05)
    )
    task = asyncio.create_task(orchestrator.start("remote-chain@1.0.0", inputs={"x": 1}))
    deadline = time.monotonic() + DEADLINE
    run_id = None
    while run_id is None:
        assert time.monotonic() < deadline
        assert not task.done(), task
        for job, _ in workers.started:
            claim = await lane.vault.metadata.get_step_claim(job.run_id, "b", 1)
            if claim is not None and claim.state == "running":
                run_id = job.run_id
        await asyncio.sleep(0.02)
    await orchestrator.cancel(run_id, reason="stop it")
    result = await asyncio.wait_for(task, DEADLINE)
    assert result.status is RunStatus.CANCELLED
    # Once b's worker has exited, its claim holds how b ended.
    assert ("b", 1, "finished") in await asyncio.to_thread(workers.outcomes)
    claim = await lane.vault.metadata.get_step_claim(run_id, "b", 1)
    assert claim is not None
    assert claim.state == "finished"
    assert claim.response is not None
    assert claim.response["error"]["code"] == "cancelled"
    assert "b" not in await _completions(lane, run_id)


async def test_the_tool_of_a_killed_worker_dies_with_it(lane: Lane) -> None:
    """docs/workers.md: a worker SIGKILLed mid-step takes its sandboxed tool with it (the
    tool's process group is tied to the worker's life). b's tool sleeps 25 s; once it runs
    under its worker (kill on progress), the worker is killed and the tool's processes must
    be gone long before their sleep would have ended; a new attempt completes the run."""
    await lane.publish(_chain(delay_b=25))
    workers = Processes(lane)
    executor = ClaimExecutor(lane.vault, workers.send, poll=0.05, lease=10.0)
    task = asyncio.create_task(
        Orchestrator(lane.vault, executor=executor).start("remote-chain@1.0.0", inputs={"x": 1})
    )
    deadline = time.monotonic() + DEADLINE
    tool_processes: list[psutil.Process] = []
    victim: subprocess.Popen[str] | None = None
    while not tool_processes:
        assert time.monotonic() < deadline, "b's tool never started"
        assert not task.done(), task.result().run.last_error
        for job, process in workers.started:
            if job.step_id == "b" and job.attempt == 1:
                victim = process
                with contextlib.suppress(psutil.NoSuchProcess):
                    tool_processes = [
                        child
                        for child in psutil.Process(process.pid).children(recursive=True)
                        if _is_tool(child)
                    ]
        await asyncio.sleep(0.02)
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 15  # generous for a kill, short of the 25 s sleep
    while any(_alive(p) for p in tool_processes):
        assert time.monotonic() < deadline, [p.pid for p in tool_processes if _alive(p)]
        await asyncio.sleep(0.05)
    result = await asyncio.wait_for(task, DEADLINE)
    assert result.status is RunStatus.COMPLETED, result.run.last_error
    assert await _outputs(lane, await _plan(lane, result.run.run_id)) == EXPECTED
    await asyncio.to_thread(workers.outcomes)


def _is_tool(process: psutil.Process) -> bool:
    """The sandbox's bootstrap running a tool (not its probe of the host's layers)."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return False
    return any(word.endswith("_bootstrap.py") for word in command) and "--probe" not in command


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
