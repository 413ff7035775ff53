"""The executor seam (issue 20's groundwork): the driver hands each step attempt to an
executor as a `StepJob` of ids and digests, records what it answers, fails the step on an
executor's error, and records only the attempt the plan is running (an answer for another
attempt is audited as ignored and changes nothing)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from _lane import Lane, manifest, open_lane, policy, require_sandbox, tool
from strongroom.errors import StorageIOError
from strongroom.ids import new_id
from strongroom.models import RunnerResponse, RunStatus
from strongroom.models.registry import Step
from strongroom.orchestrator import LocalExecutor, Orchestrator, PlanState, StepJob, StepStatus
from strongroom.orchestrator.driver import Driver
from strongroom.orchestrator.state import STATE_KEY

TOOLS = [tool("add", "lane_tools:add", level="A0")]


def _step(step_id: str, x: Any, y: Any) -> dict[str, Any]:
    return {"step_id": step_id, "tool": "add@1.0.0", "inputs": {"x": x, "y": y}}


CHAIN = {
    "kind": "playbook",
    "playbook_id": "chain",
    "name": "Chain",
    "version": "1.0.0",
    "owner": "alice",
    "steps": [
        _step("a", {"from_input": "x"}, {"value": 1}),
        _step("b", {"from_step": "a", "pointer": "/sum"}, {"value": 10}),
        _step("c", {"from_step": "b", "pointer": "/sum"}, {"value": 100}),
    ],
}


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    lane = await open_lane(tmp_path)
    await lane.publish(policy(), manifest(TOOLS), CHAIN)
    try:
        yield lane
    finally:
        await lane.vault.close()


class Recording(LocalExecutor):
    """Runs steps here and keeps every job it was given."""

    def __init__(self, lane: Lane) -> None:
        super().__init__(lane.runner)
        self.jobs: list[StepJob] = []

    async def execute(
        self,
        job: StepJob,
        *,
        step: Step,
        wire: Callable[[], Awaitable[dict[str, Any]]],
        cancel: threading.Event,
    ) -> RunnerResponse:
        self.jobs.append(job)
        return await self.answer(job, step=step, wire=wire, cancel=cancel)

    async def answer(
        self,
        job: StepJob,
        *,
        step: Step,
        wire: Callable[[], Awaitable[dict[str, Any]]],
        cancel: threading.Event,
    ) -> RunnerResponse:
        return await super().execute(job, step=step, wire=wire, cancel=cancel)


async def _plan(lane: Lane, run_id: str) -> PlanState:
    snapshot = await lane.vault.snapshots.load(run_id)
    return PlanState.model_validate(snapshot.state.data[STATE_KEY])


async def _events(lane: Lane, run_id: str) -> list[Any]:
    return [e for e in await lane.vault.audit.entries(limit=100_000) if e.subject_id == run_id]


async def test_each_attempt_goes_to_the_executor_as_ids_and_digests(lane: Lane) -> None:
    executor = Recording(lane)
    result = await Orchestrator(lane.vault, lane.runner.options, executor=executor).start(
        "chain@1.0.0", inputs={"x": 1}
    )
    assert result.status is RunStatus.COMPLETED
    plan = await _plan(lane, result.run.run_id)
    assert [job.step_id for job in executor.jobs] == ["a", "b", "c"]
    for job in executor.jobs:
        state = plan.steps[job.step_id]
        assert job.run_id == result.run.run_id
        assert job.attempt == 1 == state.starts
        assert job.request_id == state.request_id
        assert (job.tool_id, job.manifest_digest) == (state.tool_id, state.manifest_digest)
        # Nothing but ids, digests, counts and names: what a broker message may carry.
        assert all(isinstance(v, str | int) for v in dataclasses.asdict(job).values())
    assert len({job.request_id for job in executor.jobs}) == 3
    assert result.plan.steps["c"].output is None  # stored as its artifact
    c = plan.steps["c"]
    assert c.output_artifact_id is not None
    assert await lane.vault.artifacts.get_bytes(c.output_artifact_id) == b'{"sum": 112}'


async def test_an_executor_error_fails_the_step_and_the_run_cleanly(lane: Lane) -> None:
    class Unreachable(Recording):
        async def answer(self, job: StepJob, **kw: Any) -> RunnerResponse:
            if job.step_id == "b":
                raise StorageIOError("cannot reach the broker", operation="dispatch")
            return await super().answer(job, **kw)

    result = await Orchestrator(lane.vault, lane.runner.options, executor=Unreachable(lane)).start(
        "chain@1.0.0", inputs={"x": 1}
    )
    assert result.status is RunStatus.FAILED
    plan = await _plan(lane, result.run.run_id)
    assert plan.steps["a"].status is StepStatus.COMPLETED
    assert plan.steps["b"].status is StepStatus.FAILED
    assert plan.steps["b"].error is not None
    assert plan.steps["b"].error.message == "cannot reach the broker"
    assert plan.steps["c"].status is StepStatus.PENDING
    assert (await lane.vault.verify()).ok


async def test_an_answer_for_another_attempt_is_ignored_and_audited(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While b runs, the plan moves on to a newer attempt of b (what a redelivery or a
    second dispatch would cause): the older attempt's answer must not be recorded."""
    drivers: list[Driver] = []
    original = Driver.job

    def spy(self: Driver, state: Any) -> StepJob:
        drivers.append(self)
        return original(self, state)

    monkeypatch.setattr(Driver, "job", spy)

    class Overtaken(Recording):
        async def answer(self, job: StepJob, **kw: Any) -> RunnerResponse:
            response = await super().answer(job, **kw)
            if job.step_id == "b":
                drivers[-1].plan.steps["b"].request_id = new_id()  # a newer attempt
            return response

    result = await Orchestrator(lane.vault, lane.runner.options, executor=Overtaken(lane)).start(
        "chain@1.0.0", inputs={"x": 1}
    )
    run_id = result.run.run_id
    ignored = [e for e in await _events(lane, run_id) if e.event == "orchestrator.result_ignored"]
    assert len(ignored) == 1
    assert ignored[0].details["step"] == "b"
    assert ignored[0].details["answer"] == "completed"
    assert ignored[0].details["current_request_id"] != ignored[0].details["request_id"]
    # b's completion was not recorded: no log line, still running in the plan, c never ran.
    lines = [(e.event, e.phase) for e in await lane.vault.logs.read(run_id)]
    assert ("step.completed", "b") not in lines
    assert ("step.completed", "a") in lines
    assert result.plan.steps["b"].status is StepStatus.RUNNING
    assert result.plan.steps["c"].status is StepStatus.PENDING
