"""Steps on Celery workers through a real RabbitMQ broker (the machine's, docs/orchestrator.md)
and real `strongroom worker` processes: a fan-out DAG spreads over three workers and completes
with every step recorded once; `strongroom run --executor celery` does the same from the
command line; a worker's pool process SIGKILLed mid-step costs a new attempt, not the run;
Redis works as the broker too. (tests/test_workers_acceptance.py: the acceptance matrix, on
the embedded vault and PostgreSQL + S3.)

Each test has its own queue, so the machine's broker may be shared. Without a broker the tests
skip (fail under CI=true) saying what to start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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
    redis_broker,
    step_sums,
)
from strongroom.cli import app
from strongroom.models import RunStatus
from strongroom.orchestrator import Orchestrator
from strongroom.workers import CeleryExecutor, celery_app

TOOLS = [tool("add", "lane_tools:add", level="A0", timeout=120, retries=2)]


def _add(step_id: str, x: Any, y: Any, delay: float = 0) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "tool": "add@1.0.0",
        "inputs": {"x": x, "y": y, "delay": {"value": delay}},
    }


def _fan(delay: float = 0.3, slow: float = 0.3) -> dict[str, Any]:
    """a -> b1..b6 -> c: the six middle steps run in parallel on whichever workers are free."""
    middle = [
        _add(
            f"b{n}",
            {"from_step": "a", "pointer": "/sum"},
            {"value": n},
            delay=slow if n == 1 else delay,
        )
        for n in range(1, 7)
    ]
    return {
        "kind": "playbook",
        "playbook_id": "fan",
        "name": "Fan",
        "version": "1.0.0",
        "owner": "alice",
        "steps": [
            _add("a", {"from_input": "x"}, {"value": 1}),
            *middle,
            _add(
                "c", {"from_step": "b1", "pointer": "/sum"}, {"from_step": "b6", "pointer": "/sum"}
            ),
        ],
    }


# a = x + 1 = 2; b_n = 2 + n; c = b1 + b6 = 3 + 8
EXPECTED = {"a": 2, **{f"b{n}": 2 + n for n in range(1, 7)}, "c": 11}


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    broker_or_skip()
    lane = await open_lane(tmp_path)
    await lane.publish(policy(), manifest(TOOLS), _fan())
    try:
        yield lane
    finally:
        await lane.vault.close()


@pytest.fixture
def queue() -> Iterator[str]:
    yield from fresh_queue()


@pytest.fixture
def workers(lane: Lane, queue: str) -> Iterator[Workers]:
    started = Workers(lane.root, queue, str(lane.root / "vault"))
    try:
        yield started
    finally:
        started.stop()


async def test_a_fan_out_spreads_over_three_workers(
    lane: Lane, queue: str, workers: Workers
) -> None:
    workers.start(3)
    executor = CeleryExecutor(lane.vault, celery_app(BROKER), queue=queue)
    orchestrator = Orchestrator(lane.vault, executor=executor, max_parallel=6)
    result = await asyncio.wait_for(orchestrator.start("fan@1.0.0", inputs={"x": 1}), DEADLINE)
    assert result.status is RunStatus.COMPLETED, (result.run.last_error, workers.log())
    run_id = result.run.run_id
    assert await step_sums(lane.vault, run_id) == EXPECTED
    assert await completed_steps(lane.vault, run_id) == sorted(EXPECTED)
    claims = await lane.vault.metadata.list_step_claims(run_id)
    assert {(c.step_id, c.attempt, c.state) for c in claims} == {
        (step, 1, "finished") for step in EXPECTED
    }
    ran_on = {c.worker.split(":")[0] for c in claims}
    assert ran_on <= {"w0", "w1", "w2"}
    assert len(ran_on) >= 2, ran_on  # six parallel steps, three workers of one slot each
    # `runs show` says which worker ran each step.
    shown = await asyncio.to_thread(
        CliRunner().invoke, app, ["--vault", str(lane.root / "vault"), "runs", "show", run_id]
    )
    assert shown.exit_code == 0, shown.output
    assert "worker" in shown.stdout
    assert any(f"w{n}:" in shown.stdout for n in range(3))
    as_json = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["--vault", str(lane.root / "vault"), "--json", "runs", "show", run_id],
    )
    listed = json.loads(as_json.stdout)["workers"]
    assert sorted((w["step_id"], w["attempt"], w["state"]) for w in listed) == sorted(
        (step, 1, "finished") for step in EXPECTED
    )
    assert {w["worker"].split(":")[0] for w in listed} == ran_on
    assert (await lane.vault.verify()).ok


async def test_strongroom_run_with_the_celery_executor(
    lane: Lane, queue: str, workers: Workers
) -> None:
    workers.start(2)
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "strongroom",
            "--vault",
            str(lane.root / "vault"),
            "--json",
            "run",
            "fan@1.0.0",
            "--input",
            "x=1",
            "--executor",
            "celery",
            "--broker",
            BROKER,
            "--queue",
            queue,
            "--tool-path",
            str(TOOLS_DIR),
            "--workdir",
            str(lane.root / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], workers.log())
    runs = await lane.vault.runs.list({"project": "playbooks", "limit": 10})
    [run] = [r for r in runs.items if r.playbook is not None and r.playbook.playbook_id == "fan"]
    assert run.status is RunStatus.COMPLETED
    assert await step_sums(lane.vault, run.run_id) == EXPECTED


async def test_a_pool_process_killed_mid_step_costs_a_new_attempt(
    lane: Lane, queue: str, workers: Workers
) -> None:
    await lane.publish({**_fan(slow=6), "version": "2.0.0"})
    workers.start(2)
    # Ten heartbeats: a live worker slowed by a loaded machine is never taken for dead.
    executor = CeleryExecutor(lane.vault, celery_app(BROKER), queue=queue, lease=10.0)
    orchestrator = Orchestrator(lane.vault, executor=executor, max_parallel=2)
    task = asyncio.create_task(orchestrator.start("fan@2.0.0", inputs={"x": 1}))
    # Kill the pool process that runs b1's first attempt, once its claim is running.
    deadline = time.monotonic() + DEADLINE
    victim = None
    while victim is None:
        assert time.monotonic() < deadline, workers.log()
        assert not task.done(), task
        runs = await lane.vault.runs.list({"project": "playbooks", "limit": 10})
        for run in runs.items:
            claim = await lane.vault.metadata.get_step_claim(run.run_id, "b1", 1)
            if claim is not None and claim.state == "running":
                victim = int(claim.worker.rsplit(":", 1)[1])
        await asyncio.sleep(0.02)
    os.kill(victim, signal.SIGKILL)
    result = await asyncio.wait_for(task, DEADLINE)
    assert result.status is RunStatus.COMPLETED, (result.run.last_error, workers.log())
    run_id = result.run.run_id
    claims = {
        (c.step_id, c.attempt): c.state for c in await lane.vault.metadata.list_step_claims(run_id)
    }
    assert claims[("b1", 1)] == "lost"
    assert claims[("b1", 2)] == "finished"
    assert await step_sums(lane.vault, run_id) == EXPECTED
    assert await completed_steps(lane.vault, run_id) == sorted(EXPECTED)  # each end recorded once
    retried = [
        e.details
        for e in await lane.vault.audit.entries(limit=100_000)
        if e.subject_id == run_id and e.event == "orchestrator.step_retried"
    ]
    assert [(d["step"], d["attempt"]) for d in retried] == [("b1", 2)]
    assert (await lane.vault.verify()).ok


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    yield from redis_broker(tmp_path)


async def test_steps_run_through_a_redis_broker(lane: Lane, queue: str, redis_url: str) -> None:
    """Redis works as the broker too (`redis://`, docs/workers.md): the fan-out on two
    workers, every end recorded once."""
    workers = Workers(lane.root, queue, str(lane.root / "vault"), broker=redis_url)
    workers.start(2)
    try:
        executor = CeleryExecutor(lane.vault, celery_app(redis_url), queue=queue)
        orchestrator = Orchestrator(lane.vault, executor=executor, max_parallel=6)
        result = await asyncio.wait_for(orchestrator.start("fan@1.0.0", inputs={"x": 1}), DEADLINE)
        assert result.status is RunStatus.COMPLETED, (result.run.last_error, workers.log())
        run_id = result.run.run_id
        assert await step_sums(lane.vault, run_id) == EXPECTED
        assert await completed_steps(lane.vault, run_id) == sorted(EXPECTED)
        claims = await lane.vault.metadata.list_step_claims(run_id)
        assert {(c.step_id, c.attempt, c.state) for c in claims} == {
            (step, 1, "finished") for step in EXPECTED
        }
    finally:
        workers.stop()


async def test_a_worker_takes_steps_from_each_of_its_queues(lane: Lane, queue: str) -> None:
    """`strongroom worker --queues A,B`: runs sent to either queue are run by it."""
    other = f"{queue}-b"
    workers = Workers(lane.root, f"{queue},{other}", str(lane.root / "vault"))
    workers.start(1)
    try:
        for name in (queue, other):
            executor = CeleryExecutor(lane.vault, celery_app(BROKER), queue=name)
            orchestrator = Orchestrator(lane.vault, executor=executor, max_parallel=6)
            result = await asyncio.wait_for(
                orchestrator.start("fan@1.0.0", inputs={"x": 1}), DEADLINE
            )
            assert result.status is RunStatus.COMPLETED, (result.run.last_error, workers.log())
            assert await step_sums(lane.vault, result.run.run_id) == EXPECTED
    finally:
        workers.stop()
        with celery_app(BROKER).connection_for_write() as connection:
            channel: Any = connection.default_channel
            channel.queue_delete(other)
