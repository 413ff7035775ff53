"""Crash safety of the orchestrator: its process is SIGKILLed at random moments during runs;
every run then resumes to completion with the outputs of an uninterrupted run, and no step
the run had recorded as completed is executed again.

The orchestrator runs in worker processes (``_orchestrator_worker.py``: one start or resume of
one run of an eight-step DAG of sandboxed ``lane_tools:add`` steps, max_parallel 2), which
print a line per orchestrator event. After one uninterrupted reference run, the test starts
run after run, SIGKILLs each worker at a seeded random point of its progress (after its K-th
event plus a random part of a typical gap between events, so spread over what is left of
the run however fast the machine is; sometimes the moment it is ready, sometimes before it
is even ready) and resumes the run with new workers, each possibly killed too, until it
completes. ``STRONGROOM_ORCHESTRATOR_KILLS`` overrides how many kills the test delivers at
least (default `DEFAULT_KILLS`).

"Executed twice" is decided from the artifacts: every successful tool execution stores one
output artifact tagged with its step. Right after each kill the test reads the run's latest
persisted snapshot (the dead worker's last write is final); a step may have more than one
execution only for kills after which that snapshot showed it RUNNING (it was in flight: its
output may have been stored but not yet recorded). A step recorded COMPLETED is never re-run.
"""

from __future__ import annotations

import json
import math
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import psutil
import pytest

from _lane import PUBLISHER, manifest, policy, require_sandbox, tool
from _orchestrator_worker import MAX_PARALLEL, playbook
from strongroom.errors import NotFound
from strongroom.ids import new_id
from strongroom.models import RunStatus
from strongroom.orchestrator import PlanState, StepStatus
from strongroom.orchestrator.state import STATE_KEY
from strongroom.testing.keys import approver
from strongroom.vault import Vault

WORKER = Path(__file__).with_name("_orchestrator_worker.py")
KILLS_ENV = "STRONGROOM_ORCHESTRATOR_KILLS"
DEFAULT_KILLS = 50
SEED = 20_251_203
MAX_KILLS_PER_RUN = 6  # then the next worker is left to finish, so every run ends
EARLY_KILL = 0.08  # share of workers killed before they said ready (in their imports)
ZERO_DELAY = 0.1  # share killed the moment they are ready
WORKER_TIMEOUT = 120.0  # longest wait for a worker's next progress, or for its end
LEFTOVER_GRACE = 30.0  # polled: only a machine too slow to reap them in time waits it out


def wanted_kills(default: int = DEFAULT_KILLS) -> int:
    raw = os.environ.get(KILLS_ENV)
    kills = default if raw is None else int(raw)
    if kills < 1:
        raise pytest.UsageError(f"{KILLS_ENV} must be at least 1")
    return kills


@dataclass(frozen=True)
class KillTarget:
    """The vault the workers drive: its URL, blob store URL (None: the URL's default) and the
    tools' working directory."""

    url: str
    blobs_url: str | None
    workdir: Path

    async def open(self) -> Vault:
        return await Vault.open(self.url, blobs_url=self.blobs_url)

    def argv(self, mode: str, run_id: str) -> list[str]:
        blobs = [] if self.blobs_url is None else [self.blobs_url]
        return [sys.executable, str(WORKER), self.url, *blobs, str(self.workdir), mode, run_id]


@dataclass
class RunRecord:
    run_id: str
    kills: int = 0
    workers: int = 0
    in_flight: Counter[str] = field(default_factory=Counter)  # kills with the step RUNNING


@dataclass
class Campaign:
    target: KillTarget
    vault: Vault
    rng: random.Random
    life: float  # seconds from a worker's "ready" to the end of an uninterrupted run
    stderr: Path
    startup: float = 0.0  # seconds from a worker's spawn to its "ready"
    events: int = 0  # events an uninterrupted run reports
    reference: dict[str, Any] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    descendants: list[tuple[psutil.Process, str]] = field(default_factory=list)
    early_kills: int = 0

    @property
    def kills(self) -> int:
        return sum(run.kills for run in self.runs)


async def prepare(target: KillTarget) -> None:
    """The policy, the ``add`` tool and the kill playbook, published once."""
    for sub in ("in", "out"):
        (target.workdir / sub).mkdir(parents=True, exist_ok=True)
    vault = await target.open()
    try:
        definitions = [policy(), manifest([tool("add", "lane_tools:add", level="A0")]), playbook()]
        key = await approver(vault, PUBLISHER)  # a sandbox policy is published signed
        for n, definition in enumerate(definitions):
            await vault.registry.publish(
                json.dumps(definition).encode(), file_name=f"def{n}.yaml", signer=key
            )
    finally:
        await vault.close()


class Worker:
    """One worker process, its stdout followed line by line: ``ready``, then ``event ...``
    lines (`_orchestrator_worker.py`), then the outcome."""

    def __init__(self, campaign: Campaign, mode: str, run_id: str) -> None:
        self.began = time.monotonic()
        with campaign.stderr.open("ab") as stderr:
            self.process = subprocess.Popen(
                campaign.target.argv(mode, run_id),
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONWARNINGS": "error"},
            )
        self.stderr = campaign.stderr
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()  # read raw: no buffer hides lines from select
        os.set_blocking(self._fd, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self._partial = b""
        self._eof = False
        self.lines: list[str] = []  # after "ready" and the events: the outcome
        self.ready_at: float | None = None
        self.events = 0

    def _read(self, deadline: float) -> None:
        """Take in what the worker printed, waiting until ``deadline`` for something."""
        if self._eof or not self._selector.select(max(0.0, deadline - time.monotonic())):
            return
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self._eof = True
                return
            now = time.monotonic()
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in (raw.decode().strip() for raw in lines):
                if line == "ready" and self.ready_at is None:
                    self.ready_at = now
                elif line.startswith("event "):
                    self.events += 1
                else:
                    self.lines.append(line)

    def _wait(self, reached: Callable[[], bool], deadline: float) -> bool:
        """Follow the worker until ``reached`` holds (True) or it closed its output (False)."""
        while not reached():
            if self._eof:
                return False
            if time.monotonic() >= deadline:
                self.fail("made no progress in time")
            self._read(deadline)
        return True

    def wait_ready(self, deadline: float) -> bool:
        """True once it printed ``ready``; False when it ended first."""
        ready = self._wait(lambda: self.ready_at is not None, deadline)
        if not ready and self.lines:
            self.fail(f"said {self.lines[0]!r} instead of ready")
        return ready

    def wait_events(self, count: int, deadline: float) -> bool:
        """True once it reported ``count`` events; False when it ended first."""
        return self._wait(lambda: self.events >= count, deadline)

    def linger(self, seconds: float) -> None:
        """Let it go on for ``seconds``, following its output meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._eof and time.monotonic() < deadline:
            self._read(deadline)

    def wait(self, timeout: float) -> int | None:
        """Its exit code once it ended within ``timeout`` seconds (its output read), else None."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            self._read(deadline)
        try:
            return self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> list[tuple[psutil.Process, str]]:
        """SIGKILL it (and reap it); its descendants (and their command lines) as they were
        just before."""
        try:
            found = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        children = [(child, " ".join(_cmdline(child))) for child in found]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.close()
        return children

    def close(self) -> None:
        self._selector.close()
        assert self.process.stdout is not None
        self.process.stdout.close()

    def outcome(self) -> dict[str, Any]:
        """The outcome line of a worker that ended by itself."""
        self.wait(WORKER_TIMEOUT)  # the rest of its output
        self.close()
        if self.process.returncode != 0 or not self.lines:
            self.fail(f"ended with code {self.process.returncode}")
        result: dict[str, Any] = json.loads(self.lines[-1])
        return result

    def fail(self, what: str) -> NoReturn:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        tail = self.stderr.read_text(errors="replace")[-3000:]
        raise AssertionError(
            f"orchestrator worker {what} (ready: {self.ready_at is not None}, "
            f"{self.events} events); stderr tail:\n{tail}"
        )


async def plan_of(vault: Vault, run_id: str) -> PlanState | None:
    try:
        snapshot = await vault.snapshots.load(run_id)
    except NotFound:
        return None
    return PlanState.model_validate(snapshot.state.data[STATE_KEY])


async def outputs_of(vault: Vault, run_id: str) -> dict[str, Any]:
    plan = await plan_of(vault, run_id)
    assert plan is not None
    outputs: dict[str, Any] = {}
    for step_id, step in plan.steps.items():
        assert step.status is StepStatus.COMPLETED, step_id
        assert step.output_artifact_id is not None, step_id
        meta = await vault.artifacts.get(step.output_artifact_id)
        assert meta.step == step_id
        outputs[step_id] = json.loads(await vault.artifacts.get_bytes(step.output_artifact_id))
    return outputs


async def executions(vault: Vault, run_id: str) -> Counter[str]:
    """Successful tool executions per step: each stored one output artifact for its step."""
    counts: Counter[str] = Counter()
    for artifact in await vault.artifacts.list(run_id=run_id, limit=10_000):
        if artifact.step is not None and artifact.role.value in ("phase_output", "export"):
            counts[artifact.step] += 1
    return counts


async def reference_run(campaign: Campaign) -> None:
    """One uninterrupted run: the outputs every killed run must end with, its duration and
    the number of events it reports."""
    run_id = new_id()
    worker = Worker(campaign, "start", run_id)
    assert worker.wait_ready(time.monotonic() + WORKER_TIMEOUT)
    if worker.wait(WORKER_TIMEOUT) is None:
        worker.fail("did not finish the reference run")
    assert worker.ready_at is not None
    campaign.startup = worker.ready_at - worker.began
    campaign.life = time.monotonic() - worker.ready_at
    campaign.events = worker.events
    assert worker.outcome() == {"status": "completed", "run_id": run_id}
    campaign.reference = await outputs_of(campaign.vault, run_id)
    assert set((await executions(campaign.vault, run_id)).values()) == {1}


async def events_left(campaign: Campaign, run_id: str) -> int:
    """How many events a worker on this run would still report: a start or resume, then a
    start and an end for every step not completed yet, then the run's end."""
    plan = await plan_of(campaign.vault, run_id)
    if plan is None:
        return campaign.events
    left = sum(step.status is not StepStatus.COMPLETED for step in plan.steps.values())
    return 2 + 2 * left


async def drive_until_complete(campaign: Campaign) -> RunRecord:
    """Start one run and resume it until it completes, killing workers on the way.

    A kill waits for progress, not for time: for the worker's K-th event (K drawn up to a
    fifth past the events it has left, so that some workers finish) and then for a random
    part of a typical gap between two events, so that it lands inside the step work that
    follows; or it comes the moment the worker is ready; or (`EARLY_KILL`) before it is ready,
    at a random part of the time a worker took to get ready."""
    record = RunRecord(new_id())
    campaign.runs.append(record)
    rng = campaign.rng
    gap = campaign.life / max(1, campaign.events)
    while True:
        run = await _find_run(campaign.vault, record.run_id)
        if run is not None and run.status is RunStatus.COMPLETED:
            return record  # the last kill landed after the run completed
        # A run killed before its plan was saved has no snapshot and never ran a step: the
        # worker's resume gets `no_plan` and starts it again under the same id.
        mode = "start" if run is None else "resume"
        kill_it = record.kills < MAX_KILLS_PER_RUN
        left = await events_left(campaign, record.run_id)
        record.workers += 1
        worker = Worker(campaign, mode, record.run_id)
        deadline = time.monotonic() + WORKER_TIMEOUT
        killed = False
        if kill_it and rng.random() < EARLY_KILL:
            worker.linger(rng.uniform(0, 1) * campaign.startup)
            if worker.process.poll() is None:
                campaign.early_kills += worker.ready_at is None
                campaign.descendants += worker.kill()
                killed = True
        elif worker.wait_ready(deadline) and kill_it:
            reached = True  # the moment it is ready, or:
            if rng.random() >= ZERO_DELAY:
                reached = worker.wait_events(rng.randint(1, math.ceil(left * 1.2)), deadline)
                if reached:
                    worker.linger(rng.uniform(0, 1) * gap)
            if reached and worker.process.poll() is None:
                campaign.descendants += worker.kill()
                killed = True
        if killed:
            record.kills += 1
            plan = await plan_of(campaign.vault, record.run_id)
            if plan is not None:
                for step_id, step in plan.steps.items():
                    if step.status is StepStatus.RUNNING:
                        record.in_flight[step_id] += 1
            continue
        if worker.wait(max(0.0, deadline - time.monotonic())) is None:
            worker.fail("did not finish in time")
        outcome = worker.outcome()
        assert outcome == {"status": "completed", "run_id": record.run_id}, outcome
        return record


async def _find_run(vault: Vault, run_id: str) -> Any:
    try:
        return await vault.runs.get(run_id)
    except NotFound:
        return None


async def check_run(campaign: Campaign, record: RunRecord) -> int:
    """The run's final state against the reference; returns its extra executions."""
    vault = campaign.vault
    run = await vault.runs.get(record.run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.progress.steps_completed == len(campaign.reference)
    assert await outputs_of(vault, record.run_id) == campaign.reference
    counts = await executions(vault, record.run_id)
    assert set(counts) == set(campaign.reference), counts
    for step_id, count in counts.items():
        # more than one execution only for the kills that caught the step in flight
        assert count - 1 <= record.in_flight[step_id], (
            f"run {record.run_id}: step {step_id} executed {count} times, but only "
            f"{record.in_flight[step_id]} kill(s) caught it in flight (kills: {record.kills})"
        )
    extra = sum(count - 1 for count in counts.values())
    assert extra <= record.kills * MAX_PARALLEL
    return extra


def assert_no_leftovers(descendants: list[tuple[psutil.Process, str]]) -> None:
    """Every process a killed worker had (its sandboxed tools) is gone within the grace."""
    deadline = time.monotonic() + LEFTOVER_GRACE
    alive = descendants
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [(p, cmd) for p, cmd in alive if _alive(p)]
    described = [f"{p.pid}: {cmd}" for p, cmd in alive]
    assert not alive, f"processes outlived their killed orchestrator: {described}"


def _alive(process: psutil.Process) -> bool:
    try:  # is_running() compares the create time too: a reused pid is not our process
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return ["?"]


async def kill_campaign(target: KillTarget, kills: int, stderr: Path, seed: int = SEED) -> Campaign:
    """Publish, run the reference, then kill-and-resume runs until ``kills`` kills landed;
    check every run and the vault. Returns the campaign for the caller's report."""
    await prepare(target)
    vault = await target.open()
    try:
        campaign = Campaign(target, vault, random.Random(seed), life=0.0, stderr=stderr)
        await reference_run(campaign)
        extra = 0
        while campaign.kills < kills:
            record = await drive_until_complete(campaign)
            extra += await check_run(campaign, record)
        assert_no_leftovers(campaign.descendants)
        bootstraps = [p.pid for p, cmd in campaign.descendants if "_bootstrap.py" in cmd]
        report = await vault.verify()
        assert report.ok, report.problems
        in_flight = sum(sum(run.in_flight.values()) for run in campaign.runs)
        print(
            f"\n{campaign.kills} kills ({campaign.early_kills} before ready) over "
            f"{len(campaign.runs)} runs and {sum(r.workers for r in campaign.runs)} workers; "
            f"{in_flight} steps caught in flight, {extra} re-executions of them; "
            f"{len(campaign.descendants)} descendants of killed workers ({len(bootstraps)} "
            f"sandboxes), none left; reference run {campaign.life:.2f} s, "
            f"{campaign.events} events"
        )
        return campaign
    finally:
        await vault.close()


@pytest.mark.slow
async def test_killed_orchestrator_resumes_every_run_to_the_same_outputs(tmp_path: Path) -> None:
    require_sandbox()
    target = KillTarget(str(tmp_path / "vault"), None, tmp_path / "work")
    kills = wanted_kills()
    campaign = await kill_campaign(target, kills, tmp_path / "workers.stderr")
    assert campaign.kills >= kills
    assert len(campaign.runs) >= 2
    # Kills on progress: some caught a step in flight, however slow the machine is.
    assert any(run.in_flight for run in campaign.runs), "no kill caught a step in flight"
