"""Benchmark 7: what the orchestrator itself costs per step, how long resuming a large run
takes, and what a real sandboxed step costs end to end.

- Overhead per step: a linear playbook of ``orchestrator_steps`` steps (each wired to the
  previous one's output) driven with a stub `ToolRunner` whose ``run()`` returns a successful
  `RunnerResponse` at once, after storing the output artifact exactly as the real runner does
  (``artifacts.put_bytes`` with the step's role and id). What is left is the orchestrator's
  own work per step: wiring, one transaction (the compare-and-set snapshot that records the
  step's end and the next step's start, the run record update, two log lines) and the output
  artifact. Median of ``orchestrator_repeats``
  runs, in ms per step. Baseline (same vault, interleaved with the runs): the irreducible
  durable work of a resumable step, one ``snapshots.save`` of a one-step state plus one
  ``artifacts.put_bytes`` of the same output, per step. The difference is the price of the
  orchestrator's bookkeeping (its snapshot carries the whole plan, so it grows with the
  playbook). Target (issue): ≤ 10 ms/step on the embedded backend.
- Resume of a large run: a wide playbook of ``orchestrator_resume_steps`` steps (a playbook
  holds at most 10,000): all but one independent, the last depending on the one before it.
  The run's state is synthesized (the run is created and started, ONE snapshot whose plan
  marks every independent step completed with an inline output), then
  ``Orchestrator.resume`` is timed (stub runner) until it returns the run completed: loading
  and validating the plan, checking the definitions for drift, running the pending step and
  finishing. Median of ``orchestrator_repeats`` fresh runs. Target (issue): ≤ 1000 ms.
  Baseline: loading that snapshot alone (``snapshots.load``).
- Real steps: the same linear playbook shape with ``orchestrator_real_steps`` steps of a no-op
  tool through the real sandboxed `ToolRunner` (max_parallel 1), ms per step, no target;
  beside the stub figure so readers see the total cost of a step.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Context, Figure, Target, median
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.execution.payloads import encode_payload
from strongroom.ids import new_id
from strongroom.models import (
    ArtifactRole,
    DefinitionKind,
    RunnerRequest,
    RunnerResponse,
    RunnerStatus,
    RunState,
    RunStatus,
    utcnow,
)
from strongroom.orchestrator import Orchestrator, PlanState, StepState, StepStatus
from strongroom.orchestrator.state import STATE_KEY
from strongroom.testing.keys import approver
from strongroom.vault import Vault

NAME = "orchestrator"
TITLE = "Orchestrator overhead per step and resume of a large run"

_REAL_STEPS = 20
_MANIFEST = """
kind: tool_manifest
manifest_id: bench-orchestrator-tools
name: Orchestrator benchmark tools
version: 1.0.0
owner: bench
tools:
  - tool_id: step
    name: Step
    version: 1.0.0
    entrypoint: bench_tools:step
    contract:
      request_schema: {type: object}
      response_schema: {type: object}
    governance: {level: A0}
    constraints: {timeout_seconds: 60}
"""
_TOOL_SOURCE = 'def step(request):\n    return {"sum": request["x"] + request["y"]}\n'


class StubRunner(ToolRunner):
    """Returns success at once (``{"sum": x + y}``), storing the output artifact the way the
    real runner does (`store_payloads`: same encoding, role, step and name) and answering
    with its id and sha256, so the orchestrator takes the path it takes for a real tool
    (the output recorded by reference, read back from the artifact on resume) and its
    persistence cost is all there is."""

    async def run(
        self,
        request: RunnerRequest | dict[str, Any],
        *,
        allow_degraded: bool | None = None,
        cancel: threading.Event | None = None,
        step: str | None = None,
        output_role: ArtifactRole = ArtifactRole.PHASE_OUTPUT,
        store_output: bool = True,
    ) -> RunnerResponse:
        req = RunnerRequest.model_validate(request)
        started = utcnow()
        data = req.input if isinstance(req.input, dict) else {}
        output = {"sum": data.get("x", 0) + data.get("y", 0)}
        artifact_ids: list[str] = []
        sha256 = None
        if store_output and req.run_id is not None:
            stored = await self._vault.artifacts.put_bytes(
                req.run_id,
                encode_payload(output),
                role=ArtifactRole(output_role),
                step=step,
                name=f"{req.tool_id}.output.json",
                format="json",
                metadata={"tool_id": req.tool_id, "request_id": req.request_id},
            )
            artifact_ids.append(stored.artifact_id)
            sha256 = stored.sha256
        return RunnerResponse.model_validate(
            {
                "request_id": req.request_id,
                "run_id": req.run_id,
                "tool_id": req.tool_id,
                "tool_version": "1.0.0",
                "status": RunnerStatus.SUCCESS,
                "started_at": started,
                "finished_at": utcnow(),
                "output": output,
                "artifact_ids": artifact_ids,
                "output_sha256": sha256,
            }
        )


def _chain(playbook_id: str, count: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"step_id": "s0", "tool": "step@1.0.0", "inputs": {"x": {"value": 0}, "y": {"value": 1}}}
    ]
    for n in range(1, count):
        steps.append(
            {
                "step_id": f"s{n}",
                "tool": "step@1.0.0",
                "inputs": {
                    "x": {"from_step": f"s{n - 1}", "pointer": "/sum"},
                    "y": {"value": 1},
                },
            }
        )
    return _playbook(playbook_id, steps)


def _wide(playbook_id: str, count: int) -> dict[str, Any]:
    """``count`` independent steps and one more wired to the last of them."""
    steps: list[dict[str, Any]] = [
        {
            "step_id": f"w{n}",
            "tool": "step@1.0.0",
            "inputs": {"x": {"value": n}, "y": {"value": 1}},
        }
        for n in range(count)
    ]
    steps.append(
        {
            "step_id": "last",
            "tool": "step@1.0.0",
            "inputs": {"x": {"from_step": f"w{count - 1}", "pointer": "/sum"}, "y": {"value": 1}},
        }
    )
    return _playbook(playbook_id, steps)


def _playbook(playbook_id: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "playbook",
        "playbook_id": playbook_id,
        "name": playbook_id,
        "version": "1.0.0",
        "owner": "bench",
        "steps": steps,
    }


async def _publish(vault: Vault, definition: dict[str, Any] | str, name: str) -> None:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    # A sandbox policy (and what may run an A2+ tool) is published signed.
    key = await approver(vault, "bench")
    await vault.registry.publish(text.encode(), file_name=f"{name}.yaml", signer=key)


async def _baseline_step(vault: Vault, run_id: str, revision: int, n: int) -> int:
    """One durable step the bare way: its output artifact plus one small snapshot."""
    output = json.dumps({"sum": n + 1}).encode()
    await vault.artifacts.put_bytes(
        run_id, output, role=ArtifactRole.PHASE_OUTPUT, step=f"s{n}", format="json"
    )
    state = RunState(data={"step": f"s{n}", "status": "completed", "sum": n + 1})
    record = await vault.snapshots.save(run_id, state, expected_revision=revision)
    return record.revision


async def _overhead(vault: Vault, steps: int, repeats: int) -> tuple[list[float], list[float]]:
    await _publish(vault, _chain("bench-chain", steps), "chain")
    orchestrator = Orchestrator(vault, runner=StubRunner(vault), max_parallel=4, actor="bench")
    ours: list[float] = []
    bare: list[float] = []
    for i in range(repeats + 1):  # the first round warms up both
        start = time.perf_counter()
        result = await orchestrator.start("bench-chain@1.0.0")
        elapsed = time.perf_counter() - start
        if result.status is not RunStatus.COMPLETED:
            raise RuntimeError(f"the stub run ended {result.status.value}")
        if any(s.output_artifact_id is None for s in result.plan.steps.values()):
            raise RuntimeError("the stub run kept outputs inline: not the real runner's path")
        run = await vault.runs.create(project="bench-baseline", actor="bench")
        start = time.perf_counter()
        revision = 0
        for n in range(steps):
            revision = await _baseline_step(vault, run.run_id, revision, n)
        bare_elapsed = time.perf_counter() - start
        if i:
            ours.append(elapsed / steps)
            bare.append(bare_elapsed / steps)
    return ours, bare


async def _synthesize(vault: Vault, playbook_id: str, count: int) -> str:
    """A started run of the wide playbook whose only snapshot says all but ``last`` done."""
    version, _ = await vault.registry.get(DefinitionKind.PLAYBOOK, playbook_id, "1.0.0")
    manifest, tool = await vault.registry.resolve_tool("step@1.0.0")
    now = utcnow()

    def step(step_id: str, upstream: list[str], done: bool, n: int) -> StepState:
        return StepState(
            step_id=step_id,
            status=StepStatus.COMPLETED if done else StepStatus.PENDING,
            tool_id=tool.tool_id,
            tool_version=tool.version,
            manifest_digest=manifest.digest,
            tool_ref="step@1.0.0",
            upstream=upstream,
            starts=1 if done else 0,
            request_id=new_id() if done else None,
            started_at=now if done else None,
            finished_at=now if done else None,
            output={"sum": n + 1} if done else None,
        )

    steps = {f"w{n}": step(f"w{n}", [], True, n) for n in range(count)}
    steps["last"] = step("last", [f"w{count - 1}"], False, count)
    plan = PlanState(
        playbook_ref=f"{playbook_id}@1.0.0",
        playbook_id=playbook_id,
        playbook_version=version.version,
        playbook_digest=version.digest,
        max_parallel=4,
        steps=steps,
        order=list(steps),  # as Orchestrator._plan writes it (execution order)
    )
    run = await vault.runs.create(
        project="playbooks",
        actor="bench",
        purpose=playbook_id,
        playbook={"playbook_id": playbook_id, "version_digest": version.digest},
        progress={"steps_total": count + 1, "steps_completed": count},
    )
    await vault.runs.start(run.run_id)
    state = RunState(progress=run.progress, data={STATE_KEY: plan.model_dump(mode="json")})
    await vault.snapshots.save(run.run_id, state, expected_revision=0)
    return run.run_id


async def _resume(vault: Vault, count: int, repeats: int) -> tuple[list[float], list[float]]:
    await _publish(vault, _wide("bench-wide", count), "wide")
    resumes: list[float] = []
    loads: list[float] = []
    for i in range(repeats + 1):
        run_id = await _synthesize(vault, "bench-wide", count)
        start = time.perf_counter()
        await vault.snapshots.load(run_id)
        load_elapsed = time.perf_counter() - start
        orchestrator = Orchestrator(vault, runner=StubRunner(vault), actor="bench")
        start = time.perf_counter()
        result = await orchestrator.resume(run_id)
        elapsed = time.perf_counter() - start
        if result.status is not RunStatus.COMPLETED:
            raise RuntimeError(f"the resumed run ended {result.status.value}")
        if result.plan.steps["last"].starts != 1 or result.plan.completed() != count + 1:
            raise RuntimeError("the resume did not run exactly the pending step")
        if i:
            resumes.append(elapsed)
            loads.append(load_elapsed)
    return resumes, loads


async def _real(vault: Vault, root: Path, steps: int) -> float:
    tools = root / "tools"
    tools.mkdir()
    (tools / "bench_tools.py").write_text(_TOOL_SOURCE)
    await _publish(vault, _chain("bench-real", steps), "real")
    orchestrator = Orchestrator(
        vault, RunnerOptions(workdir=root, tool_paths=(tools,)), max_parallel=1, actor="bench"
    )
    start = time.perf_counter()
    result = await orchestrator.start("bench-real@1.0.0")
    elapsed = time.perf_counter() - start
    if result.status is not RunStatus.COMPLETED:
        raise RuntimeError(f"the sandboxed run ended {result.status.value}: {result.run}")
    return elapsed / steps


async def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    steps, repeats = sizes.orchestrator_steps, sizes.orchestrator_repeats
    with ctx.fresh_dir(NAME) as root, ctx.fresh_vault(NAME) as space:
        async with await space.open_vault() as vault:
            await _publish(vault, _MANIFEST, "tools")
            ours, bare = await _overhead(vault, steps, repeats)
            resumes, loads = await _resume(vault, sizes.orchestrator_resume_steps - 1, repeats)
            real = await _real(vault, root, _REAL_STEPS)

    ms_ours, ms_bare = median(ours) * 1e3, median(bare) * 1e3
    stdev = statistics.pstdev(ours) * 1e3 if len(ours) > 1 else 0.0
    resume_ms, load_ms = median(resumes) * 1e3, median(loads) * 1e3
    return [
        Figure(
            benchmark=NAME,
            name=f"orchestrator overhead per step, {steps}-step chain, stub runner "
            "(wiring, 1 transaction: snapshot + run update + log lines; output artifact), "
            "median",
            unit="ms/step",
            value=ms_ours,
            higher_is_better=False,
            baseline=ms_bare,
            baseline_name="bare durable step: 1 artifacts.put_bytes + 1 small snapshots.save",
            target=Target("at_most", 10),
            samples=len(ours),
            extra={"stdev_ms": stdev, "run_ms": ms_ours * steps},
        ),
        Figure(
            benchmark=NAME,
            name=f"resume of a run with {sizes.orchestrator_resume_steps - 1:,} completed steps "
            "and 1 pending, to completed (stub runner), median",
            unit="ms",
            value=resume_ms,
            higher_is_better=False,
            baseline=load_ms,
            baseline_name="snapshots.load of that run's snapshot alone",
            target=Target("at_most", 1000),
            samples=len(resumes),
            extra={"max_ms": max(resumes) * 1e3},
        ),
        Figure(
            benchmark=NAME,
            name=f"real sandboxed step, {_REAL_STEPS}-step chain of a no-op tool "
            "(ToolRunner, max_parallel 1), per step",
            unit="ms/step",
            value=real * 1e3,
            higher_is_better=False,
            baseline=ms_ours,
            baseline_name="the stub-runner step above (orchestrator alone)",
            samples=1,
        ),
    ]
