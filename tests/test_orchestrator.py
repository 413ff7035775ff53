"""The orchestrator on the embedded vault: a small DAG end to end, concurrency, approval
pause and resume, digest-drift refusal, cancel, failure and continuation. Each test asserts
the persisted state (snapshots, run record, audit), not just the result object."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from _lane import APPROVER, Lane, manifest, open_lane, policy, require_sandbox, tool
from strongroom.errors import Conflict, NotFound, SignatureRequired
from strongroom.models import RunStatus
from strongroom.orchestrator import DigestDrift, Orchestrator, PlanState, StepStatus
from strongroom.orchestrator import driver as driver_module
from strongroom.orchestrator.state import STATE_KEY
from strongroom.services.registry import RegistryPolicy
from strongroom.testing.keys import approver


def playbook(
    steps: list[dict[str, Any]], playbook_id: str = "sums", version: str = "1.0.0"
) -> dict[str, Any]:
    return {
        "kind": "playbook",
        "playbook_id": playbook_id,
        "name": "Sums",
        "version": version,
        "owner": "alice",
        "steps": steps,
    }


def add_step(
    step_id: str, x: Any, y: Any, *, tool_ref: str = "add@1.0.0", delay: float = 0
) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "tool": tool_ref,
        "inputs": {"x": x, "y": y, "delay": {"value": delay}},
    }


DIAMOND = [
    add_step("a", {"from_input": "x"}, {"value": 1}),
    add_step("b", {"from_step": "a", "pointer": "/sum"}, {"value": 10}),
    add_step("c", {"from_step": "a", "pointer": "/sum"}, {"value": 100}),
    add_step("d", {"from_step": "b", "pointer": "/sum"}, {"from_step": "c", "pointer": "/sum"}),
]


TOOLS = [
    tool("add", "lane_tools:add", level="A0"),
    tool("guarded_add", "lane_tools:add", level="A2"),
    tool("flaky", "lane_tools:flaky", level="A1"),
    tool("sleep", "lane_tools:sleep", level="A0", timeout=120),
]


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    lane = await open_lane(tmp_path)
    await lane.publish(policy(), manifest(TOOLS))
    try:
        yield lane
    finally:
        await lane.vault.close()


def orchestrator(lane: Lane, **kw: Any) -> Orchestrator:
    return Orchestrator(lane.vault, lane.runner.options, **kw)


async def plan_of(lane: Lane, run_id: str) -> PlanState:
    snapshot = await lane.vault.snapshots.load(run_id)
    return PlanState.model_validate(snapshot.state.data[STATE_KEY])


async def executions(lane: Lane, run_id: str) -> dict[str, int]:
    """Successful tool executions per step: each stores one output artifact for its step."""
    plan = await plan_of(lane, run_id)
    counts: dict[str, int] = dict.fromkeys(plan.steps, 0)
    for artifact in await lane.vault.artifacts.list(run_id=run_id, limit=10_000):
        if artifact.step is not None and artifact.role.value in ("phase_output", "export"):
            counts[artifact.step] += 1
    return counts


async def test_diamond_runs_end_to_end_and_persists_every_transition(lane: Lane) -> None:
    await check_diamond(lane)


async def check_diamond(lane: Lane) -> None:
    """The diamond a -> (b, c) -> d end to end, and what it persisted (shared with
    tests/test_orchestrator_backends.py, which runs it on every backend pair)."""
    await lane.publish(playbook(DIAMOND))
    result = await orchestrator(lane).start("sums@1.0.0", inputs={"x": 1})
    assert result.status is RunStatus.COMPLETED
    run_id = result.run.run_id
    plan = await plan_of(lane, run_id)
    assert {k: s.status for k, s in plan.steps.items()} == dict.fromkeys(
        "abcd", StepStatus.COMPLETED
    )
    outputs = {}
    for step_id, step in plan.steps.items():
        assert step.output_artifact_id is not None
        data = await lane.vault.artifacts.get(step.output_artifact_id)
        assert data.step == step_id
        outputs[step_id] = (await lane.vault.artifacts.get_bytes(step.output_artifact_id)).decode()
    assert outputs == {
        "a": '{"sum": 2}',
        "b": '{"sum": 12}',
        "c": '{"sum": 102}',
        "d": '{"sum": 114}',
    }
    assert await executions(lane, run_id) == dict.fromkeys("abcd", 1)
    # One snapshot per transition: the plan before the run starts, a's start, then every
    # settling step with the steps it made ready (a completed -> b and c start together).
    history = await lane.vault.snapshots.history(run_id)
    assert len(history) == 6
    seen = []
    for record in history:
        state = (await lane.vault.snapshots.load(run_id, revision=record.revision)).state
        steps = PlanState.model_validate(state.data[STATE_KEY]).steps
        seen.append("".join(s.status.value[0] for s in steps.values()))  # a b c d
    # p(ending) r(unning) c(ompleted); b and c settle in either order
    assert seen[:3] == ["pppp", "rppp", "crrp"]
    assert seen[3] in ("ccrp", "crcp")
    assert seen[4:] == ["cccr", "cccc"]
    log = [(e.event, e.phase) for e in await lane.vault.logs.read(run_id)]
    assert sorted(log) == sorted(
        (event, step) for step in "abcd" for event in ("step.started", "step.completed")
    )
    run = await lane.vault.runs.get(run_id)
    assert run.progress.steps_completed == 4
    assert run.progress.steps_total == 4
    events = [
        e.event for e in await lane.vault.audit.entries(limit=100_000) if e.subject_id == run_id
    ]
    assert "orchestrator.run_started" in events
    assert "orchestrator.run_completed" in events
    assert (await lane.vault.logs.reference(run_id)).sealed_artifact_id is not None
    report = await lane.vault.verify()
    assert report.ok, report.problems


async def test_independent_steps_run_concurrently_up_to_the_limit(lane: Lane) -> None:
    steps = [
        add_step("a", {"value": 1}, {"value": 1}),
        add_step("b", {"from_step": "a", "pointer": "/sum"}, {"value": 1}, delay=1.0),
        add_step("c", {"from_step": "a", "pointer": "/sum"}, {"value": 2}, delay=1.0),
    ]
    await lane.publish(playbook(steps))
    parallel = await orchestrator(lane, max_parallel=2).start("sums@1.0.0")
    plan = await plan_of(lane, parallel.run.run_id)
    b, c = plan.steps["b"], plan.steps["c"]
    assert b.started_at is not None
    assert c.started_at is not None
    assert b.finished_at is not None
    assert c.finished_at is not None
    assert c.started_at < b.finished_at  # overlapped
    assert b.started_at < c.finished_at

    serial = await orchestrator(lane, max_parallel=1).start("sums@1.0.0")
    plan = await plan_of(lane, serial.run.run_id)
    first, second = sorted([plan.steps["b"], plan.steps["c"]], key=lambda s: s.started_at or 0)
    assert first.finished_at is not None
    assert second.started_at is not None
    assert second.started_at >= first.finished_at


async def test_approval_pauses_and_resume_continues(lane: Lane) -> None:
    await check_approval_pause_and_resume(lane)


async def check_approval_pause_and_resume(
    lane: Lane, make: Callable[[Lane], Orchestrator] = orchestrator
) -> None:
    """A step needing an approval pauses the run while independent work goes on; after the
        approval, resume runs only what had not completed (shared with the backend tests and the
    worker tests, whose ``make`` builds an orchestrator sending steps to workers)."""
    steps = [
        add_step("a", {"value": 1}, {"value": 1}),
        add_step(
            "gate",
            {"from_step": "a", "pointer": "/sum"},
            {"value": 1},
            tool_ref="guarded_add@1.0.0",
        ),
        add_step("side", {"from_step": "a", "pointer": "/sum"}, {"value": 5}),
        add_step("after", {"from_step": "gate", "pointer": "/sum"}, {"value": 1}),
    ]
    await lane.publish(playbook(steps))
    paused = await make(lane).start("sums@1.0.0")
    run_id = paused.run.run_id
    run = await lane.vault.runs.get(run_id)
    assert run.status is RunStatus.PAUSED
    assert run.last_error is not None
    assert run.last_error.code == "approval_required"
    assert "strongroom registry approve --tool guarded_add@1.0.0" in run.last_error.message
    plan = await plan_of(lane, run_id)
    assert plan.steps["gate"].status is StepStatus.WAITING_APPROVAL
    assert plan.steps["side"].status is StepStatus.COMPLETED  # independent work went on
    assert plan.steps["after"].status is StepStatus.PENDING

    await lane.vault.registry.approve(
        {"scope": "tool_version", "tool_id": "guarded_add", "version": "1.0.0"},
        actor=APPROVER,
        signer=await approver(lane.vault, APPROVER),
        reason="ok",
    )
    resumed = await make(lane).resume(run_id)
    assert resumed.status is RunStatus.COMPLETED
    assert resumed.run.run_id == run_id
    plan = await plan_of(lane, run_id)
    assert all(step.done for step in plan.steps.values())
    assert plan.steps["a"].starts == 1
    assert plan.steps["side"].starts == 1
    assert plan.steps["gate"].starts == 2
    assert await executions(lane, run_id) == {"a": 1, "gate": 1, "side": 1, "after": 1}
    after = await lane.vault.artifacts.get_bytes(plan.steps["after"].output_artifact_id or "")
    assert json.loads(after) == {"sum": 4}


async def test_resume_refuses_digest_drift_unless_forced(lane: Lane) -> None:
    steps = [
        add_step("a", {"value": 1}, {"value": 1}, tool_ref="add"),
        add_step(
            "gate",
            {"from_step": "a", "pointer": "/sum"},
            {"value": 1},
            tool_ref="guarded_add@1.0.0",
        ),
    ]
    await lane.publish(playbook(steps))
    paused = await orchestrator(lane).start("sums@1.0.0")
    run_id = paused.run.run_id
    revision = (await lane.vault.snapshots.load(run_id)).record.revision
    newer = copy.deepcopy(manifest(TOOLS))
    newer["version"] = "1.1.0"
    newer["tools"][0]["version"] = "1.1.0"  # add 1.1.0: what the bare "add" resolves to now
    await lane.publish(newer)
    with pytest.raises(DigestDrift) as caught:
        await orchestrator(lane).resume(run_id)
    assert "tool add" in caught.value.message
    assert (await lane.vault.snapshots.load(run_id)).record.revision == revision  # untouched
    assert (await lane.vault.runs.get(run_id)).status is RunStatus.PAUSED

    key = await approver(lane.vault, APPROVER)  # approver, publisher and operator
    await lane.vault.registry.approve({"scope": "run", "run_id": run_id}, reason="run", signer=key)
    # A policy that wants forced resumes signed refuses an unsigned one, changing nothing.
    lane.vault.registry.policy = RegistryPolicy(require_signed_forced_resume=True)
    with pytest.raises(SignatureRequired):
        await orchestrator(lane).resume(run_id, force=True)
    assert (await lane.vault.snapshots.load(run_id)).record.revision == revision
    forced = await orchestrator(lane).resume(run_id, force=True, signer=key)
    assert forced.status is RunStatus.COMPLETED
    events = [e for e in await lane.vault.audit.entries(limit=100_000) if e.subject_id == run_id]
    [forced_entry] = [e for e in events if e.event == "orchestrator.resume_forced"]
    assert forced_entry.details["drift"][0]["what"].startswith("tool add")
    assert forced_entry.actor == APPROVER
    assert forced_entry.details["signed_by"] == key.key_id
    assert forced_entry.details["signed_act"]["content"]["run_id"] == run_id
    report = await lane.vault.verify()
    assert report.ok, report.problems
    assert report.checked["signed_acts"] >= 2  # the run approval and the forced resume


async def test_cancel_kills_the_running_step_and_keeps_what_was_persisted(lane: Lane) -> None:
    steps = [
        add_step("a", {"value": 1}, {"value": 1}),
        {
            "step_id": "wait",
            "tool": "sleep@1.0.0",
            "depends_on": ["a"],
            "inputs": {"seconds": {"value": 60}},
        },
        add_step("never", {"from_step": "a", "pointer": "/sum"}, {"value": 1}),
    ]
    steps[2]["depends_on"] = ["wait"]
    await lane.publish(playbook(steps))
    orch = orchestrator(lane)
    task = asyncio.create_task(orch.start("sums@1.0.0"))
    run_id = await _running_step(lane, "wait")
    began = time.monotonic()
    await orchestrator(lane).cancel(run_id, reason="test")
    result = await asyncio.wait_for(task, timeout=30)
    assert time.monotonic() - began < 10
    assert result.status is RunStatus.CANCELLED
    plan = await plan_of(lane, run_id)
    assert plan.steps["a"].status is StepStatus.COMPLETED
    assert plan.steps["wait"].status is StepStatus.CANCELLED
    assert plan.steps["never"].status is StepStatus.PENDING
    assert plan.steps["a"].output_artifact_id is not None
    await lane.vault.artifacts.get_bytes(plan.steps["a"].output_artifact_id)


async def test_a_cancel_that_lands_as_a_step_ends_starts_nothing_more(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is cancelled (its log sealed) by someone else while a step runs, and the
    step ends before the orchestrator's watcher notices: the step's transition is refused
    whole (sealed log), the steps it would have started are never launched and stay pending,
    and the step's own completion is kept by the last snapshot."""
    monkeypatch.setattr(driver_module, "CANCEL_POLL_SECONDS", 60.0)  # the watcher stays asleep
    steps = [
        add_step("slow", {"value": 1}, {"value": 1}, delay=2.0),
        add_step("next", {"from_step": "slow", "pointer": "/sum"}, {"value": 1}),
    ]
    await lane.publish(playbook(steps))
    task = asyncio.create_task(orchestrator(lane).start("sums@1.0.0"))
    run_id = await _running_step(lane, "slow")
    await lane.vault.runs.cancel(run_id)  # another process: no orchestrator involved
    result = await asyncio.wait_for(task, timeout=60)
    assert result.status is RunStatus.CANCELLED
    plan = await plan_of(lane, run_id)
    assert plan.steps["slow"].status is StepStatus.COMPLETED
    assert plan.steps["slow"].output_artifact_id is not None
    assert plan.steps["next"].status is StepStatus.PENDING
    assert plan.steps["next"].starts == 0
    assert (await executions(lane, run_id))["next"] == 0


async def _running_step(lane: Lane, step_id: str) -> str:
    for _ in range(300):
        runs = await lane.vault.runs.list(project="playbooks")
        for run in runs.items:
            try:
                plan = await plan_of(lane, run.run_id)
            except NotFound:  # no snapshot yet
                continue
            if plan.steps[step_id].status is StepStatus.RUNNING:
                await asyncio.sleep(0.5)  # let the process start
                return run.run_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"step {step_id} never started")


async def test_failure_stops_the_run_and_resume_continues_as_a_new_run(lane: Lane) -> None:
    marker = lane.workdir / "out"
    steps = [
        add_step("a", {"value": 1}, {"value": 1}),
        {
            "step_id": "shaky",
            "tool": "flaky@1.0.0",
            "depends_on": ["a"],
            "inputs": {"dir": {"value": "out"}, "times": {"value": 1}},
        },
        add_step("z", {"from_step": "a", "pointer": "/sum"}, {"value": 1}),
    ]
    steps[2]["depends_on"] = ["shaky"]
    await lane.publish(playbook(steps))
    failed = await orchestrator(lane).start("sums@1.0.0")
    assert failed.status is RunStatus.FAILED
    run = await lane.vault.runs.get(failed.run.run_id)
    assert run.last_error is not None
    assert run.last_error.code == "handler_exception"
    plan = await plan_of(lane, run.run_id)
    assert plan.steps["z"].status is StepStatus.PENDING
    assert (marker / "attempts").read_text() == "1"

    again = await orchestrator(lane).resume(run.run_id)
    assert again.status is RunStatus.COMPLETED
    assert again.run.previous_run_id == run.run_id
    plan = await plan_of(lane, again.run.run_id)
    assert plan.steps["a"].starts == 1  # carried over, not re-run
    assert plan.steps["shaky"].starts == 2
    with pytest.raises(Conflict):
        await orchestrator(lane).resume(again.run.run_id)


async def test_a_step_without_its_own_snapshot_rides_in_the_next(lane: Lane) -> None:
    steps = [
        add_step("a", {"value": 1}, {"value": 1}),
        add_step("b", {"from_step": "a", "pointer": "/sum"}, {"value": 1}),
    ]
    steps[0]["persistence"] = {"snapshot": False}
    await lane.publish(playbook(steps))
    result = await orchestrator(lane).start("sums@1.0.0")
    assert result.status is RunStatus.COMPLETED
    # run start, a start, (no a end), b start (carrying a's completion), b end = final state
    history = await lane.vault.snapshots.history(result.run.run_id)
    assert len(history) == 4
    second = await lane.vault.snapshots.load(result.run.run_id, revision=3)
    plan = PlanState.model_validate(second.state.data[STATE_KEY])
    assert plan.steps["a"].status is StepStatus.COMPLETED
    assert plan.steps["b"].status is StepStatus.RUNNING
