"""The orchestrator on every backend pair besides the embedded one (tests/test_orchestrator.py):
PostgreSQL + local blobs, SQLite + S3 (moto), PostgreSQL + S3. Each runs the diamond playbook
end to end and the approval pause/resume scenario, and a smaller kill test
(tests/test_orchestrator_kill.py's campaign with BACKEND_KILLS SIGKILLs per pair)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from _lane import APPROVER, Lane, manifest, policy, require_sandbox
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.models import RunStatus
from strongroom.orchestrator import Orchestrator, StepStatus
from strongroom.vault import Vault
from test_orchestrator import DIAMOND, TOOLS, add_step, executions, plan_of, playbook
from test_orchestrator_kill import KillTarget, kill_campaign

BACKEND_KILLS = 10


def _blobs(request: pytest.FixtureRequest, tmp_path: Path, s3: bool) -> str:
    if s3:
        url = request.getfixturevalue("s3_blob_url")
        assert isinstance(url, str)
        return url
    return str(tmp_path / "blobs")


def _records(request: pytest.FixtureRequest, tmp_path: Path, postgres: bool) -> str:
    if postgres:
        url = request.getfixturevalue("pg_url")
        assert isinstance(url, str)
        return url
    return str(tmp_path / "vault")


PAIRS = [
    pytest.param((True, False), id="postgres-local", marks=pytest.mark.postgres),
    pytest.param((False, True), id="sqlite-s3", marks=pytest.mark.s3),
    pytest.param((True, True), id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
]


@pytest.fixture(params=PAIRS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    postgres, s3 = request.param
    return _records(request, tmp_path, postgres), _blobs(request, tmp_path, s3)


@pytest.fixture
async def lane(urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    url, blobs_url = urls
    root = tmp_path / "lane"
    (root / "work" / "in").mkdir(parents=True)
    (root / "work" / "out").mkdir()
    vault = await Vault.open(url, blobs_url=blobs_url)
    runner = ToolRunner(
        vault,
        RunnerOptions(
            workdir=root / "work",
            tool_paths=(Path(__file__).with_name("sandbox_tools"),),
            backoff_seconds=0.01,
        ),
    )
    lane = Lane(vault=vault, runner=runner, root=root)
    await lane.publish(policy(), manifest(TOOLS))
    try:
        yield lane
    finally:
        await vault.close()


def orchestrator(lane: Lane) -> Orchestrator:
    return Orchestrator(lane.vault, lane.runner.options)


async def test_diamond_runs_end_to_end(lane: Lane) -> None:
    await lane.publish(playbook(DIAMOND))
    result = await orchestrator(lane).start("sums@1.0.0", inputs={"x": 1})
    assert result.status is RunStatus.COMPLETED
    run_id = result.run.run_id
    plan = await plan_of(lane, run_id)
    outputs = {}
    for step_id, step in plan.steps.items():
        assert step.status is StepStatus.COMPLETED
        assert step.output_artifact_id is not None
        assert (await lane.vault.artifacts.get(step.output_artifact_id)).step == step_id
        data = await lane.vault.artifacts.get_bytes(step.output_artifact_id)
        outputs[step_id] = json.loads(data)
    assert outputs == {"a": {"sum": 2}, "b": {"sum": 12}, "c": {"sum": 102}, "d": {"sum": 114}}
    # the plan, a's start, then one per settling step (with the steps it made ready)
    assert len(await lane.vault.snapshots.history(run_id)) == 6
    log = [(e.event, e.phase) for e in await lane.vault.logs.read(run_id)]
    assert sorted(log) == sorted(
        (event, step) for step in "abcd" for event in ("step.started", "step.completed")
    )
    assert await executions(lane, run_id) == dict.fromkeys("abcd", 1)
    run = await lane.vault.runs.get(run_id)
    assert run.progress.steps_completed == 4
    events = {
        e.event for e in await lane.vault.audit.entries(limit=100_000) if e.subject_id == run_id
    }
    assert {"orchestrator.run_started", "orchestrator.run_completed"} <= events
    assert (await lane.vault.logs.reference(run_id)).sealed_artifact_id is not None
    report = await lane.vault.verify()
    assert report.ok, report.problems


async def test_approval_pauses_and_resume_continues(lane: Lane) -> None:
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
    paused = await orchestrator(lane).start("sums@1.0.0")
    run_id = paused.run.run_id
    run = await lane.vault.runs.get(run_id)
    assert run.status is RunStatus.PAUSED
    assert run.last_error is not None
    assert run.last_error.code == "approval_required"
    plan = await plan_of(lane, run_id)
    assert plan.steps["gate"].status is StepStatus.WAITING_APPROVAL
    assert plan.steps["side"].status is StepStatus.COMPLETED
    assert plan.steps["after"].status is StepStatus.PENDING

    await lane.vault.registry.approve(
        {"scope": "tool_version", "tool_id": "guarded_add", "version": "1.0.0"},
        actor=APPROVER,
        reason="ok",
    )
    resumed = await orchestrator(lane).resume(run_id)
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


@pytest.mark.slow
async def test_killed_orchestrator_resumes(urls: tuple[str, str], tmp_path: Path) -> None:
    require_sandbox()
    url, blobs_url = urls
    target = KillTarget(url, blobs_url, tmp_path / "work")
    campaign = await kill_campaign(target, BACKEND_KILLS, tmp_path / "workers.stderr")
    assert campaign.kills >= BACKEND_KILLS
