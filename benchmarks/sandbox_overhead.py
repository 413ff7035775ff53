"""Benchmark 6: what the sandbox costs per invocation of a no-op tool.

Three timings, interleaved iteration by iteration so machine noise hits all alike:

- baseline: a bare ``python -c pass`` subprocess of the same interpreter (spawn + interpreter
  start + exit + wait);
- sandboxed: `strongroom.sandbox.launch.launch` of a no-op tool with every layer this host
  enforces (new session, scrubbed environment, rlimits, uid drop when root, network and IPC
  namespaces, control group, write quota, Landlock, seccomp), including the staging folder,
  the control-channel round trip, ``wait4`` and the process-group sweep;
- allowlisted: the same under a network allowlist: the runner's egress proxy started and
  closed, the namespace's loopback brought up and the relay started;
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
from strongroom._fs import remove_tree
from strongroom.execution import BUILTIN_POLICY, RunnerOptions, ToolRunner
from strongroom.ids import new_id
from strongroom.models import GovernanceLevel, SandboxPolicy
from strongroom.models.registry import NetworkMode
from strongroom.sandbox.host import probe_host
from strongroom.sandbox.launch import launch
from strongroom.sandbox.plan import plan_sandbox
from strongroom.sandbox.proxy import EgressProxy
from strongroom.testing.keys import approver

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


_ALLOWLIST_POLICY = SandboxPolicy.model_validate(
    {
        "sandbox_id": "bench-allowlist",
        "name": "Benchmark: allowlisted network",
        "version": "1",
        "owner": "bench",
        "filesystem": {"mode": "deny-all"},
        "network": {"mode": "allowlist", "allow_hosts": ["example.com"]},
        "resources": {"cpu_cores": 1, "memory_mb": 512, "timeout_seconds": 3600},
    }
)


def _sandboxed(
    tools: Path, root: Path, policy: SandboxPolicy, disabled: frozenset[str] = frozenset()
) -> tuple[float, list[str]]:
    """One launch as the runner does it: a fresh staging folder (the write quota's tmpfs
    goes on it), the egress proxy for an allowlist, both cleaned up in the timing."""
    start = time.perf_counter()
    staging = Path(tempfile.mkdtemp(dir=root))
    scratch = staging / "scratch"
    scratch.mkdir()
    proxy = EgressProxy(policy.network.allow_hosts, policy.network.allow_ports)
    allowlist = policy.network.mode is NetworkMode.ALLOWLIST
    try:
        plan = plan_sandbox(
            policy,
            probe_host(),
            level=GovernanceLevel.A0,
            workdir=root,
            scratch=scratch,
            staging=staging,
            tool_paths=(tools,),
            timeout_seconds=60,
            proxy_port=proxy.start() if allowlist else None,
            disabled=disabled,
        )
        result = launch(
            {
                "entrypoint": "bench_tools:noop",
                "input": {},
                "cwd": str(root),
                "sys_path": [str(tools)],
                "layers": plan.layers,
            },
            python=sys.executable,
            env=plan.env,
            timeout=60,
            connections=proxy.adopt if allowlist else None,
        )
    finally:
        proxy.close()
        remove_tree(staging)
    elapsed = time.perf_counter() - start
    if result.message is None or result.message.get("type") != "result":
        raise RuntimeError(f"the no-op tool failed: {result.message} {result.stderr!r}")
    return elapsed, plan.enforced


async def run(ctx: Context) -> list[Figure]:
    count = ctx.sizes.sandbox_runs
    samples: dict[str, list[float]] = {
        "bare": [],
        "sandboxed": [],
        "allowlisted": [],
        "no_quota": [],
        "runner": [],
    }
    probe_host()  # once per process, not per invocation: keep it out of the figures
    with ctx.fresh_dir(NAME) as root, ctx.fresh_vault(NAME) as space:
        tools = root / "tools"
        tools.mkdir()
        (tools / "bench_tools.py").write_text("def noop(request):\n    return {}\n")
        layers: list[str] = []
        allowlist_layers: list[str] = []
        async with await space.open_vault() as vault:
            key = await approver(vault, "bench")  # its sandbox policy is published signed
            await vault.registry.publish(_MANIFEST.encode(), file_name="bench.yaml", signer=key)
            runner = ToolRunner(vault, RunnerOptions(workdir=root, tool_paths=(tools,)))
            for i in range(_WARMUP + count):
                measured = i >= _WARMUP
                order = ("bare", "sandboxed", "no_quota", "allowlisted", "runner")
                if i % 2:
                    order = order[::-1]
                for side in order:
                    if side == "bare":
                        elapsed = _bare()
                    elif side == "sandboxed":
                        elapsed, layers = _sandboxed(tools, root, BUILTIN_POLICY)
                    elif side == "no_quota":
                        elapsed, _ = _sandboxed(
                            tools, root, BUILTIN_POLICY, frozenset({"write_quota"})
                        )
                    elif side == "allowlisted":
                        elapsed, allowlist_layers = _sandboxed(tools, root, _ALLOWLIST_POLICY)
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
    allowlisted = ms("allowlisted")
    layer_note = "layers: " + ", ".join(layers)
    allowlist_note = "layers: " + ", ".join(allowlist_layers)
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
            name="what the write quota costs: sandboxed no-op with it minus without it "
            "(difference of medians)",
            unit="ms",
            value=sandboxed - ms("no_quota"),
            higher_is_better=False,
            samples=count,
            extra={"without_quota_median_ms": ms("no_quota")},
        ),
        Figure(
            benchmark=NAME,
            name="allowlisted no-op tool (egress proxy started, relay in the namespace), "
            "overhead over the bare subprocess (difference of medians)",
            unit="ms",
            value=allowlisted - bare,
            higher_is_better=False,
            target=Target("at_most", 30),
            samples=count,
            notes=allowlist_note,
            extra={"median_ms": allowlisted, "p95_ms": ms("allowlisted", 95)},
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
