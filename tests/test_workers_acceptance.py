"""What docs/workers.md promises of steps on Celery workers, on the embedded vault and on
PostgreSQL + S3, with a real broker (tests/_workers.py) and real `strongroom worker` processes:

- a 30-step DAG runs to completion on three workers;
- 20 SIGKILLs of workers mid-step, across concurrent runs (pool processes, and whole workers
  as a machine's death), cost new attempts, not runs: every run completes with the outputs of
  an uninterrupted run, each step's end is recorded once by exactly one finished claim, each
  lost claim is one audited retry, and the vault verifies;
- `strongroom cancel` kills a step running on a worker (the worker sees the cancel in the vault
  and kills the tool's process group; the claim records ``cancelled``);
- a cancelled run's job still waiting in the queue is revoked and never runs;
- an approval pauses a run on workers as it does locally, and resume finishes it;
- `strongroom run --executor celery` SIGKILLed mid-run is taken over by `strongroom resume
  --executor celery` with every step's end recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from _lane import TOOLS_DIR, Lane, manifest, open_lane, policy, require_sandbox, tool
from _workers import (
    BROKER,
    DEADLINE,
    Workers,
    broker_or_skip,
    completed_steps,
    fresh_queue,
    queued,
    step_sums,
)
from strongroom.cli import app
from strongroom.errors import Conflict
from strongroom.ids import new_id
from strongroom.models import RunStatus
from strongroom.orchestrator import Orchestrator, PlanState, RunResult
from strongroom.orchestrator.state import STATE_KEY
from strongroom.workers import CeleryExecutor, celery_app
from test_orchestrator import check_approval_pause_and_resume

STEPS = 30
KILLS = 20
LEASE = 6.0  # six heartbeats; a live worker taken for dead only costs an attempt
TOOLS = [
    tool("add", "lane_tools:add", level="A0", timeout=120, retries=8),
    tool("guarded_add", "lane_tools:add", level="A2"),
]

PAIRS = [
    pytest.param(False, id="sqlite-local"),
    pytest.param(True, id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
]


def _parents(i: int) -> tuple[int, int]:
    return (i - 1) // 2, i // 3


def _dag(version: str, delay: float) -> dict[str, Any]:
    """s0 = x + 1; s_i = s_((i-1)//2) + (s_(i//3), or i when that is the same step): a DAG of
    30 steps, fanning out to a dozen steps that may run at once."""

    def step(i: int, x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any]:
        inputs = {"x": x, "y": y, "delay": {"value": delay}}
        return {"step_id": f"s{i}", "tool": "add@1.0.0", "inputs": inputs}

    steps = [step(0, {"from_input": "x"}, {"value": 1})]
    for i in range(1, STEPS):
        left, right = _parents(i)
        y = {"value": i} if left == right else {"from_step": f"s{right}", "pointer": "/sum"}
        steps.append(step(i, {"from_step": f"s{left}", "pointer": "/sum"}, y))
    return {
        "kind": "playbook",
        "playbook_id": "dag",
        "name": "Thirty steps",
        "version": version,
        "owner": "alice",
        "steps": steps,
    }


def _expected(x: int) -> dict[str, int]:
    """What an uninterrupted run of `_dag` computes (the DAG's sums, by hand)."""
    sums = [x + 1]
    for i in range(1, STEPS):
        left, right = _parents(i)
        sums.append(sums[left] + (i if left == right else sums[right]))
    return {f"s{i}": value for i, value in enumerate(sums)}


def _one_step(playbook_id: str, delay: float) -> dict[str, Any]:
    step = {"x": {"value": 1}, "y": {"value": 2}, "delay": {"value": delay}}
    return {
        "kind": "playbook",
        "playbook_id": playbook_id,
        "name": playbook_id,
        "version": "1.0.0",
        "owner": "alice",
        "steps": [{"step_id": "s", "tool": "add@1.0.0", "inputs": step}],
    }


@pytest.fixture(params=PAIRS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if not request.param:
        return str(tmp_path / "lane" / "vault"), None
    records, blobs = request.getfixturevalue("pg_url"), request.getfixturevalue("s3_blob_url")
    assert isinstance(records, str)
    assert isinstance(blobs, str)
    return records, blobs


@pytest.fixture
async def lane(urls: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    broker_or_skip()
    url, blobs_url = urls
    lane = await open_lane(tmp_path / "lane", url=url, blobs_url=blobs_url)
    resources = {"cpu_cores": 1, "memory_mb": 256, "timeout_seconds": 300}
    await lane.publish(
        policy(resources=resources),
        manifest(TOOLS),
        _dag("1.0.0", 0.2),
        _one_step("slow", 100),
        _one_step("quick", 0),
    )
    try:
        yield lane
    finally:
        await lane.vault.close()


@pytest.fixture
def queue() -> Iterator[str]:
    yield from fresh_queue()


@pytest.fixture
def workers(lane: Lane, queue: str, urls: tuple[str, str | None]) -> Iterator[Workers]:
    started = Workers(lane.root, queue, *urls)
    try:
        yield started
    finally:
        started.stop()


def _orchestrator(lane: Lane, queue: str, *, max_parallel: int = 6) -> Orchestrator:
    executor = CeleryExecutor(lane.vault, celery_app(BROKER), queue=queue, lease=LEASE)
    return Orchestrator(lane.vault, executor=executor, max_parallel=max_parallel)


def _cli(urls: tuple[str, str | None], *words: str) -> list[str]:
    records, blobs = urls
    return ["--vault", records, *(["--blobs", blobs] if blobs else []), *words]


async def _check_recorded_once(lane: Lane, run_id: str, x: int) -> tuple[int, int]:
    """The run completed with an uninterrupted run's outputs; each step's end is recorded
    once (one ``step.completed``, one finished claim: the attempt the plan kept); each lost
    claim was retried once, audited. Returns (lost claims, attempts)."""
    run = await lane.vault.runs.get(run_id)
    assert run.status is RunStatus.COMPLETED, run.last_error
    plan = PlanState.model_validate((await lane.vault.snapshots.load(run_id)).state.data[STATE_KEY])
    assert await step_sums(lane.vault, run_id) == _expected(x)
    assert await completed_steps(lane.vault, run_id) == sorted(plan.steps)
    claims = await lane.vault.metadata.list_step_claims(run_id)
    finished = {(c.step_id, c.attempt) for c in claims if c.state == "finished"}
    assert finished == {(step_id, state.starts) for step_id, state in plan.steps.items()}
    assert not [c for c in claims if c.state == "running"]
    lost = sorted((c.step_id, c.attempt + 1) for c in claims if c.state == "lost")
    retried = sorted(
        (e.details["step"], e.details["attempt"])
        for e in await lane.vault.audit.entries(limit=1_000_000)
        if e.subject_id == run_id and e.event == "orchestrator.step_retried"
    )
    assert retried == lost
    return len(lost), len(claims)


async def test_thirty_steps_run_on_three_workers(lane: Lane, queue: str, workers: Workers) -> None:
    workers.start(3)
    result = await asyncio.wait_for(
        _orchestrator(lane, queue).start("dag@1.0.0", inputs={"x": 1}), DEADLINE
    )
    assert result.status is RunStatus.COMPLETED, (result.run.last_error, workers.log())
    run_id = result.run.run_id
    lost, attempts = await _check_recorded_once(lane, run_id, 1)
    assert (lost, attempts) == (0, STEPS)
    ran_on = {c.worker.split(":")[0] for c in await lane.vault.metadata.list_step_claims(run_id)}
    assert ran_on <= {"w0", "w1", "w2"}
    assert len(ran_on) >= 2, ran_on
    report = await lane.vault.verify()
    assert report.ok, report.problems


async def _running_claims(
    lane: Lane, run_ids: list[str], killed: set[tuple[str, str, int]]
) -> list[tuple[tuple[str, str, int], str]]:
    """Running claims not yet killed, of attempts a kill may still cost (up to the 4th: the
    tool allows 8 retries, room for a live worker or two taken for dead on a loaded machine)."""
    found = []
    for run_id in run_ids:
        for claim in await lane.vault.metadata.list_step_claims(run_id):
            key = (run_id, claim.step_id, claim.attempt)
            if claim.state == "running" and claim.attempt <= 4 and key not in killed:
                found.append((key, claim.worker))
    return found


async def test_twenty_worker_kills_across_runs_cost_attempts_not_runs(
    lane: Lane, queue: str, workers: Workers
) -> None:
    await lane.publish(_dag("2.0.0", 1.0))
    workers.start(3)
    orchestrator = _orchestrator(lane, queue, max_parallel=3)
    runs: dict[str, tuple[int, asyncio.Task[RunResult]]] = {}
    killed: set[tuple[str, str, int]] = set()
    whole = 0
    deadline = time.monotonic() + 2 * DEADLINE
    while len(killed) < KILLS:
        assert time.monotonic() < deadline, (len(killed), workers.log())
        for _, task in runs.values():
            if task.done():
                task.result()  # an exception ends the test here, with its traceback
        if sum(not task.done() for _, task in runs.values()) < 2:
            run_id, x = new_id(), len(runs) + 1
            start = orchestrator.start("dag@2.0.0", inputs={"x": x}, run_id=run_id)
            runs[run_id] = (x, asyncio.create_task(start))
        candidates = await _running_claims(lane, list(runs), killed)
        if not candidates:
            await asyncio.sleep(0.05)
            continue
        key, holder = candidates[0]
        name, pid = holder.rsplit(":", 1)
        killed.add(key)
        if len(killed) % 4 == 0:  # a whole worker, as when its machine dies; another comes up
            slot = int(name.removeprefix("w"))
            workers.kill_worker(slot)
            workers.start_one(slot)
            whole += 1
        else:  # the pool process running the step (Celery starts a new one)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    results = await asyncio.wait_for(
        asyncio.gather(*(task for _, task in runs.values())), 2 * DEADLINE
    )
    assert all(r.status is RunStatus.COMPLETED for r in results), workers.log()
    assert whole == KILLS // 4
    total_lost = 0
    for run_id, (x, _) in runs.items():
        lost, _ = await _check_recorded_once(lane, run_id, x)
        total_lost += lost
    # A killed claim is declared lost, unless the step had ended just before the kill.
    states = {
        (run_id, c.step_id, c.attempt): c.state
        for run_id in runs
        for c in await lane.vault.metadata.list_step_claims(run_id)
    }
    assert all(states[key] in ("lost", "finished") for key in killed)
    assert sum(states[key] == "lost" for key in killed) >= KILLS // 2, states
    report = await lane.vault.verify()
    assert report.ok, report.problems


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


async def test_cancel_kills_a_step_running_on_a_worker(
    lane: Lane, queue: str, workers: Workers, urls: tuple[str, str | None]
) -> None:
    workers.start(1)
    run_id = new_id()
    task = asyncio.create_task(_orchestrator(lane, queue).start("slow@1.0.0", run_id=run_id))
    deadline = time.monotonic() + DEADLINE
    tools: list[psutil.Process] = []
    while not tools:  # the step runs: its claim is held and its tool has started
        assert time.monotonic() < deadline, workers.log()
        assert not task.done()
        claim = await lane.vault.metadata.get_step_claim(run_id, "s", 1)
        if claim is not None and claim.state == "running":
            tools = _descendants(int(claim.worker.rsplit(":", 1)[1]))
        await asyncio.sleep(0.05)
    asked = time.monotonic()
    cancelled = await asyncio.to_thread(CliRunner().invoke, app, _cli(urls, "cancel", run_id))
    assert cancelled.exit_code == 0, cancelled.output
    _gone, alive = await asyncio.to_thread(psutil.wait_procs, tools, timeout=DEADLINE)
    took = time.monotonic() - asked
    assert not alive
    # The step sleeps 100 s and the lease is 6 s: its end this soon is the worker's kill.
    assert took < 30, took
    result = await asyncio.wait_for(task, DEADLINE)
    assert result.status is RunStatus.CANCELLED
    claim = await lane.vault.metadata.get_step_claim(run_id, "s", 1)
    assert claim is not None
    assert claim.state == "finished"
    assert claim.response is not None
    assert claim.response["error"]["code"] == "cancelled"
    report = await lane.vault.verify()
    assert report.ok, report.problems


async def test_a_cancelled_runs_queued_job_never_runs(
    lane: Lane, queue: str, workers: Workers, urls: tuple[str, str | None]
) -> None:
    run_id = new_id()
    task = asyncio.create_task(_orchestrator(lane, queue).start("slow@1.0.0", run_id=run_id))
    deadline = time.monotonic() + DEADLINE
    while await asyncio.to_thread(queued, queue) == 0:  # no worker yet: the job waits
        assert time.monotonic() < deadline
        assert not task.done()
        await asyncio.sleep(0.05)
    cancelled = await asyncio.to_thread(CliRunner().invoke, app, _cli(urls, "cancel", run_id))
    assert cancelled.exit_code == 0, cancelled.output
    result = await asyncio.wait_for(task, DEADLINE)
    assert result.status is RunStatus.CANCELLED
    # A worker comes up; its queue holds the revoked job, then a quick run's. One worker
    # with one process takes them in order, so once the quick run completed the revoked job
    # was dealt with: it never claimed its step.
    workers.start(1)
    quick = await asyncio.wait_for(_orchestrator(lane, queue).start("quick@1.0.0"), DEADLINE)
    assert quick.status is RunStatus.COMPLETED, (quick.run.last_error, workers.log())
    assert await lane.vault.metadata.list_step_claims(run_id) == []
    assert (await lane.vault.runs.get(run_id)).status is RunStatus.CANCELLED


async def test_an_approval_pauses_a_run_on_workers_and_resume_finishes_it(
    lane: Lane, queue: str, workers: Workers
) -> None:
    workers.start(2)
    await check_approval_pause_and_resume(lane, lambda lane: _orchestrator(lane, queue))
    [run] = [
        r
        for r in (await lane.vault.runs.list({"project": "playbooks", "limit": 10})).items
        if r.playbook is not None and r.playbook.playbook_id == "sums"
    ]
    claims = await lane.vault.metadata.list_step_claims(run.run_id)
    # Every step ran on a worker: the gate's first attempt answered approval_required there.
    assert {(c.step_id, c.attempt) for c in claims} == {
        ("a", 1),
        ("side", 1),
        ("gate", 1),
        ("gate", 2),
        ("after", 1),
    }
    [first_gate] = [c for c in claims if (c.step_id, c.attempt) == ("gate", 1)]
    assert first_gate.response is not None
    assert first_gate.response["error"]["code"] == "approval_required"
    report = await lane.vault.verify()
    assert report.ok, report.problems


async def test_a_killed_coordinator_is_resumed_with_every_end_recorded_once(
    lane: Lane, queue: str, workers: Workers, urls: tuple[str, str | None]
) -> None:
    """`strongroom run --executor celery` SIGKILLed once its first step's job waits in the
    queue (no worker yet); workers start; `strongroom resume --executor celery` finishes the
    run. The dead coordinator's queued job is either run first and then declared lost by the
    resume, or found to be no longer the current attempt: either way each step's end is
    recorded once and the outputs are an uninterrupted run's."""
    run_id = new_id()
    common = ["--executor", "celery", "--broker", BROKER, "--queue", queue]
    common += ["--tool-path", str(TOOLS_DIR), "--workdir", str(lane.workdir)]
    base = [sys.executable, "-m", "strongroom", *_cli(urls)]
    command = [*base, "run", "dag@1.0.0", "--input", "x=1", "--run-id", run_id, *common]
    coordinator = await asyncio.to_thread(
        subprocess.Popen, command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + DEADLINE
    while await asyncio.to_thread(queued, queue) == 0:  # kill it on progress
        assert time.monotonic() < deadline
        assert coordinator.poll() is None
        await asyncio.sleep(0.02)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    workers.start(3)
    done = await asyncio.to_thread(
        subprocess.run,
        [*base, "--json", "resume", run_id, *common],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], workers.log())
    run = await lane.vault.runs.get(run_id)
    assert run.status is RunStatus.COMPLETED
    plan = PlanState.model_validate((await lane.vault.snapshots.load(run_id)).state.data[STATE_KEY])
    assert plan.steps["s0"].starts == 2  # the resume ran the step in flight again
    assert await step_sums(lane.vault, run_id) == _expected(1)
    assert await completed_steps(lane.vault, run_id) == sorted(plan.steps)
    claims = await lane.vault.metadata.list_step_claims(run_id)
    kept = {(c.step_id, c.attempt) for c in claims if c.state == "finished"}
    assert kept - {("s0", 1)} == {(step_id, state.starts) for step_id, state in plan.steps.items()}
    assert not [c for c in claims if c.state == "running"]
    report = await lane.vault.verify()
    assert report.ok, report.problems


async def test_two_coordinators_of_one_run_never_dispatch_a_step_twice(
    lane: Lane, queue: str, workers: Workers
) -> None:
    """A resume while the run's coordinator still drives it (docs/workers.md, "The
    coordinator dies"): a transition is a compare-and-set on the run's snapshot revision and a
    step is started only once its start is stored, so of the two coordinators exactly one goes
    on and the other stops with a conflict; every step's end is recorded once, the outputs are
    an uninterrupted run's."""
    await lane.publish(_dag("3.0.0", 0.5))
    workers.start(3)
    run_id = new_id()
    first = asyncio.create_task(
        _orchestrator(lane, queue, max_parallel=3).start(
            "dag@3.0.0", inputs={"x": 1}, run_id=run_id
        )
    )
    deadline = time.monotonic() + DEADLINE
    while True:  # on progress: some steps done, some running on workers
        assert time.monotonic() < deadline, workers.log()
        assert not first.done(), first
        claims = await lane.vault.metadata.list_step_claims(run_id, responses=False)
        states = [c.state for c in claims]
        if states.count("finished") >= 3 and "running" in states:
            break
        await asyncio.sleep(0.05)
    second = asyncio.create_task(_orchestrator(lane, queue, max_parallel=3).resume(run_id))
    outcomes = await asyncio.wait_for(
        asyncio.gather(first, second, return_exceptions=True), 2 * DEADLINE
    )
    completed = [o for o in outcomes if isinstance(o, RunResult)]
    stopped = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(completed) == 1, outcomes
    assert completed[0].status is RunStatus.COMPLETED, completed[0].run.last_error
    assert len(stopped) == 1
    assert isinstance(stopped[0], Conflict), repr(stopped[0])
    plan = PlanState.model_validate((await lane.vault.snapshots.load(run_id)).state.data[STATE_KEY])
    assert await step_sums(lane.vault, run_id) == _expected(1)
    assert await completed_steps(lane.vault, run_id) == sorted(plan.steps)
    claims = await lane.vault.metadata.list_step_claims(run_id, responses=False)
    assert not [c for c in claims if c.state == "running"]
    for step_id, state in plan.steps.items():  # the attempt kept is the one finished
        finished = [c.attempt for c in claims if c.step_id == step_id and c.state == "finished"]
        assert state.starts in finished
    report = await lane.vault.verify()
    assert report.ok, report.problems
