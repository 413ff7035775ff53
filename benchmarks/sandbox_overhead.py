"""Benchmark 6: what the sandbox costs per invocation of a no-op tool.

Three timings, interleaved iteration by iteration so machine noise hits all alike:

- baseline: a bare ``python -c pass`` subprocess of the same interpreter (spawn + interpreter
  start + exit + wait);
- sandboxed: `strongroom.sandbox.launch.launch` of a no-op tool with every layer this host
  enforces (new session, scrubbed environment, rlimits, uid drop when root, network
  namespace, Landlock, seccomp), including the control-channel round trip, ``wait4`` and the
  process-group sweep;
- runner: `ToolRunner.run` end to end (registry resolution, governance, schema checks, audit
  start/end, log lines, output artifact) on the embedded vault.

Target (issue 5): sandboxed median ≤ baseline median + 30 ms.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import Context, Figure, Target, median, percentile
from strongroom.execution import BUILTIN_POLICY, RunnerOptions, ToolRunner
from strongroom.ids import new_id
from strongroom.models import GovernanceLevel
from strongroom.sandbox.host import probe_host
from strongroom.sandbox.launch import launch
from strongroom.sandbox.plan import plan_sandbox

NAME = "sandbox_overhead"
TITLE = "Sandbox overhead per no-op tool invocation"

_WARMUP = 5
_MANIFEST = """
kind: tool_manifest
manifest_id: bench-tools
name: Benchmark tools
version: 1.0.0
owner: bench
tools:
  - tool_id: noop
    name: No-op
    version: 1.0.0
    entrypoint: bench_tools:noop
    contract:
      request_schema: {type: object}
      response_schema: {type: object}
    governance: {level: A0}
    constraints: {timeout_seconds: 60}
"""


def _bare() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def _sandboxed(tools: Path, scratch: Path) -> tuple[float, list[str]]:
    plan = plan_sandbox(
        BUILTIN_POLICY,
        probe_host(),
        level=GovernanceLevel.A0,
        workdir=scratch,
        scratch=scratch,
        tool_paths=(tools,),
        timeout_seconds=60,
    )
    start = time.perf_counter()
    result = launch(
        {
            "entrypoint": "bench_tools:noop",
            "input": {},
            "cwd": str(scratch),
            "sys_path": [str(tools)],
            "layers": plan.layers,
        },
        python=sys.executable,
        env=plan.env,
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    if result.message is None or result.message.get("type") != "result":
        raise RuntimeError(f"the no-op tool failed: {result.message} {result.stderr!r}")
    return elapsed, plan.enforced


async def run(ctx: Context) -> list[Figure]:
    count = ctx.sizes.sandbox_runs
    samples: dict[str, list[float]] = {"bare": [], "sandboxed": [], "runner": []}
    probe_host()  # once per process, not per invocation: keep it out of the figures
    with ctx.fresh_dir(NAME) as root, ctx.fresh_vault(NAME) as space:
        tools = root / "tools"
        tools.mkdir()
        (tools / "bench_tools.py").write_text("def noop(request):\n    return {}\n")
        scratch = Path(tempfile.mkdtemp(dir=root))
        layers: list[str] = []
        async with await space.open_vault() as vault:
            await vault.registry.publish(_MANIFEST.encode(), file_name="bench.yaml", actor="bench")
            runner = ToolRunner(vault, RunnerOptions(workdir=root, tool_paths=(tools,)))
            for i in range(_WARMUP + count):
                measured = i >= _WARMUP
                order = ("bare", "sandboxed", "runner")
                if i % 2:
                    order = order[::-1]
                for side in order:
                    if side == "bare":
                        elapsed = _bare()
                    elif side == "sandboxed":
                        elapsed, layers = _sandboxed(tools, scratch)
                    else:
                        start = time.perf_counter()
                        response = await runner.run(
                            {"request_id": new_id(), "tool_id": "noop", "input": {}}
                        )
                        elapsed = time.perf_counter() - start
                        if not response.ok:
                            raise RuntimeError(f"runner failed: {response.error}")
                    if measured:
                        samples[side].append(elapsed)

    def ms(side: str, q: float | None = None) -> float:
        values = samples[side]
        return (median(values) if q is None else percentile(values, q)) * 1e3

    bare, sandboxed, full = ms("bare"), ms("sandboxed"), ms("runner")
    layer_note = "layers: " + ", ".join(layers)
    return [
        Figure(
            benchmark=NAME,
            name="sandboxed no-op tool (launch → confine → run → collect), median",
            unit="ms",
            value=sandboxed,
            higher_is_better=False,
            baseline=bare,
            baseline_name="bare `python -c pass` subprocess",
            samples=count,
            notes=layer_note,
            extra={"p95_ms": ms("sandboxed", 95), "baseline_p95_ms": ms("bare", 95)},
        ),
        Figure(
            benchmark=NAME,
            name="sandbox overhead over the bare subprocess (difference of medians)",
            unit="ms",
            value=sandboxed - bare,
            higher_is_better=False,
            target=Target("at_most", 30),
            samples=count,
            notes=layer_note,
        ),
        Figure(
            benchmark=NAME,
            name="ToolRunner.run of a no-op tool end to end (registry, governance, audit, "
            "logs, output artifact), median",
            unit="ms",
            value=full,
            higher_is_better=False,
            baseline=bare,
            baseline_name="bare `python -c pass` subprocess",
            samples=count,
            extra={"p95_ms": ms("runner", 95)},
        ),
    ]
