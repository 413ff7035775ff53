"""The embedding API (`strongroom.pipeline`): phases, outputs, snapshots, resume after a real
SIGKILL, failure and cancellation, the resume rules, and tamper detection on read."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from _blob_tamper import flip_stored_byte
from strongroom.errors import Conflict, IntegrityError, NotFound, ValidationError
from strongroom.models import RunOutcome, RunStatus
from strongroom.pipeline import OUTPUT_NAME, PipelineRun
from strongroom.vault import Vault

PHASES = ["ingest", "transform", "report"]

# The pipeline under test, written to a file so that a child process can run it (and be
# killed inside it) and the test process can import the very same code to resume it.
PIPELINE_SCRIPT = '''
import asyncio
import json
import sys
from pathlib import Path

from strongroom.pipeline import PipelineRun
from strongroom.vault import Vault


async def pipeline(url, *, run_id=None, block_in=None, marker=None):
    """Three phases; returns (run_id, phases executed here, every phase's output)."""
    executed = []
    async with await Vault.open(url) as vault:
        async with PipelineRun.open(
            vault, project="embed", purpose="three phases", run_id=run_id, steps_total=3
        ) as run:
            if not run.completed("ingest"):
                async with run.phase("ingest") as phase:
                    executed.append("ingest")
                    rows = [{"id": i, "text": f"segment {i}"} for i in range(5)]
                    await phase.output(rows)
                    await phase.artifact(b"id,text\\n0,segment 0\\n", name="raw.csv")
                    phase.state["cursor"] = len(rows)
            rows = await run.output("ingest")
            if not run.completed("transform"):
                async with run.phase("transform") as phase:
                    executed.append("transform")
                    if block_in == "transform":
                        Path(marker).write_text(json.dumps({"run_id": run.run_id}))
                        await asyncio.sleep(3600)  # the test SIGKILLs us here
                    await phase.output([{**r, "text": r["text"].upper()} for r in rows])
            upper = await run.output("transform")
            if not run.completed("report"):
                async with run.phase("report") as phase:
                    executed.append("report")
                    await phase.output({"count": len(upper), "first": upper[0]["text"]})
                    await phase.artifact(b"all good\\n", name="report.txt")
            outputs = {name: await run.output(name) for name in ("ingest", "transform", "report")}
            return run.run_id, executed, outputs


if __name__ == "__main__":
    asyncio.run(pipeline(sys.argv[1], block_in="transform", marker=sys.argv[2]))
'''


class Report(BaseModel):
    count: int
    first: str


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "embedded_pipeline.py"
    path.write_text(PIPELINE_SCRIPT)
    return path


@pytest.fixture
def module(script: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("embedded_pipeline", script)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    async with await Vault.open(tmp_path / "v") as opened:
        yield opened


async def statuses(vault: Vault, run_id: str) -> list[tuple[str, str]]:
    state = (await vault.snapshots.load(run_id)).state
    return [(event.phase, event.status) for event in state.phase_history]


async def test_happy_path(vault: Vault, tmp_path: Path, module: ModuleType) -> None:
    run_id, executed, outputs = await module.pipeline(str(tmp_path / "v"))
    assert executed == PHASES
    assert outputs["ingest"][4] == {"id": 4, "text": "segment 4"}
    assert outputs["report"] == {"count": 5, "first": "SEGMENT 0"}

    record = await vault.runs.get(run_id)
    assert record.status is RunStatus.COMPLETED
    assert record.outcome is RunOutcome.SUCCESS
    assert record.progress.steps_completed == 3
    assert record.progress.steps_total == 3
    assert (await vault.logs.reference(run_id)).sealed

    # a snapshot when each phase starts and when it completes; the last one is the full state
    assert len(await vault.snapshots.history(run_id)) == 6
    snap = await vault.snapshots.load(run_id)
    assert snap.record.revision == 6
    assert await statuses(vault, run_id) == [
        (name, status) for name in PHASES for status in ("started", "completed")
    ]
    assert snap.state.phase_revisions == {"ingest": 2, "transform": 4, "report": 6}
    assert snap.state.data == {"cursor": 5}
    assert sorted(snap.state.phase_artifacts) == sorted(PHASES)

    events = [entry.event for entry in await vault.logs.read(run_id)]
    assert events[0] == "pipeline.opened"
    assert events[-1] == "pipeline.completed"
    assert events.count("phase.completed") == 3

    arts = await vault.artifacts.list(run_id=run_id, phase="ingest")
    assert sorted(a.name or "" for a in arts) == ["output.json", "raw.csv"]
    assert all(a.role.value == "phase_output" for a in arts)
    assert (await vault.verify()).ok


async def test_outputs_and_models(vault: Vault) -> None:
    async with PipelineRun.open(vault, project="embed", purpose="models") as run:
        async with run.phase("report") as phase:
            await phase.output(Report(count=2, first="A"))
            await phase.artifact(b"x\n", name="notes.txt", role="export", tags=["final"])
            with pytest.raises(Conflict, match="already has an output"):
                await phase.output({"again": True})
        report = await run.output("report", Report)
        assert report == Report(count=2, first="A")
        metas = await run.outputs("report")
        assert [m.name for m in metas] == [OUTPUT_NAME, "notes.txt"]
        assert metas[1].role.value == "export"
        assert await vault.artifacts.get_bytes(metas[1].artifact_id) == b"x\n"
        with pytest.raises(NotFound):
            await run.output("never-ran")
        async with run.phase("quiet"):
            pass  # a phase may store nothing
        assert run.completed("quiet")
        with pytest.raises(NotFound, match="without an output"):
            await run.output("quiet")
        with pytest.raises(ValidationError):
            run.phase("../escape")
    assert (await vault.runs.get(run.run_id)).progress.steps_completed == 2


def kill_in_phase_2(script: Path, url: str, tmp_path: Path) -> str:
    """Run the pipeline in a child process, SIGKILL it while it is inside phase 2, and
    return the run id it reported."""
    marker = tmp_path / "blocked.json"
    with (tmp_path / "child.log").open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, str(script), url, str(marker)], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, (tmp_path / "child.log").read_text()
            assert time.monotonic() < deadline, "the child never reached phase 2"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return str(json.loads(marker.read_text())["run_id"])


async def test_resume_after_sigkill_mid_phase(
    vault: Vault, tmp_path: Path, script: Path, module: ModuleType
) -> None:
    url = str(tmp_path / "v")
    run_id = await asyncio.to_thread(kill_in_phase_2, script, url, tmp_path)

    # what the kill left: a running run whose latest snapshot shows phase 2 started
    assert (await vault.runs.get(run_id)).status is RunStatus.RUNNING
    assert await statuses(vault, run_id) == [
        ("ingest", "started"),
        ("ingest", "completed"),
        ("transform", "started"),
    ]
    ingest_ids = (await vault.snapshots.load(run_id)).state.phase_artifacts["ingest"]

    resumed_id, executed, outputs = await module.pipeline(url, run_id=run_id)
    assert resumed_id == run_id
    assert executed == ["transform", "report"]  # ingest skipped, its output read back

    _, fresh_executed, fresh_outputs = await module.pipeline(url)  # an uninterrupted run
    assert fresh_executed == PHASES
    assert outputs == fresh_outputs

    record = await vault.runs.get(run_id)
    assert record.status is RunStatus.COMPLETED
    assert record.progress.steps_completed == 3
    assert await statuses(vault, run_id) == [
        ("ingest", "started"),
        ("ingest", "completed"),
        ("transform", "started"),
        ("transform", "failed"),  # interrupted: recorded on resume
        ("transform", "started"),
        ("transform", "completed"),
        ("report", "started"),
        ("report", "completed"),
    ]
    events = [entry.event for entry in await vault.logs.read(run_id)]
    assert "pipeline.resumed" in events
    assert "phase.interrupted" in events
    final = (await vault.snapshots.load(run_id)).state
    assert final.phase_artifacts["ingest"] == ingest_ids  # the first process's artifacts
    assert final.data == {"cursor": 5}
    interrupted = final.phase_history[3]
    assert interrupted.error is not None
    assert interrupted.error.code == "interrupted"
    assert (await vault.verify()).ok


async def two_phases_then(run: PipelineRun, error: BaseException, *, in_phase: bool) -> None:
    """Complete phase ``ingest``, then raise ``error`` inside phase ``translate`` (or between
    phases when ``in_phase`` is false)."""
    async with run.phase("ingest") as phase:
        await phase.output("done")
    if not in_phase:
        raise error
    async with run.phase("translate") as phase:
        await phase.artifact(b"partial", name="partial.txt")
        raise error


async def test_exception_in_phase_fails_the_run(vault: Vault) -> None:
    with pytest.raises(RuntimeError, match="model unavailable"):
        async with PipelineRun.open(vault, project="embed") as run:
            await two_phases_then(run, RuntimeError("model unavailable"), in_phase=True)
    record = await vault.runs.get(run.run_id)
    assert record.status is RunStatus.FAILED
    assert record.outcome is RunOutcome.FAILURE
    assert record.last_error is not None
    assert record.last_error.code == "exception"
    assert record.last_error.message == "RuntimeError: model unavailable"
    assert record.last_error.details == {"type": "RuntimeError"}
    assert (await vault.logs.reference(run.run_id)).sealed

    state = (await vault.snapshots.load(run.run_id)).state
    failed = state.phase_history[-1]
    assert (failed.phase, failed.status) == ("translate", "failed")
    assert failed.error == record.last_error
    assert len(failed.artifact_ids) == 1  # kept for inspection, not part of the outputs
    assert state.last_error == record.last_error
    assert list(state.phase_artifacts) == ["ingest"]


async def test_strongroom_error_keeps_its_code(vault: Vault) -> None:
    with pytest.raises(NotFound):
        async with PipelineRun.open(vault, project="embed") as run, run.phase("lookup"):
            raise NotFound("no such glossary", operation="glossary.get", path="g.csv")
    record = await vault.runs.get(run.run_id)
    assert record.last_error is not None
    assert record.last_error.code == "not_found"
    assert record.last_error.details == {"operation": "glossary.get", "path": "g.csv"}


async def test_the_vaults_redact_patterns_apply_to_error_records(tmp_path: Path) -> None:
    """``Vault(redact_patterns=...)`` is the one redactor of a pipeline's error records: the
    failed phase's event, the state's ``last_error``, the run's error and its log line."""
    async with await Vault.open(tmp_path / "v", redact_patterns=[r"ticket-\d+"]) as vault:
        failure = RuntimeError("lookup of ticket-4711 failed")
        with pytest.raises(RuntimeError):
            async with PipelineRun.open(vault, project="embed") as run:
                await two_phases_then(run, failure, in_phase=True)
        record = await vault.runs.get(run.run_id)
        assert record.last_error is not None
        assert record.last_error.message == "RuntimeError: lookup of [REDACTED] failed"
        state = (await vault.snapshots.load(run.run_id)).state
        assert state.phase_history[-1].error == record.last_error == state.last_error

        with pytest.raises(NotFound):
            async with PipelineRun.open(vault, project="embed") as run, run.phase("lookup"):
                raise NotFound("no ticket-12", operation="tickets.get", path="ticket-12.csv")
        record = await vault.runs.get(run.run_id)
        assert record.last_error is not None
        assert record.last_error.message == "no [REDACTED]"
        assert record.last_error.details == {"operation": "tickets.get", "path": "[REDACTED].csv"}
        entries = await vault.logs.read(run.run_id)
        assert any(entry.event == "pipeline.failed" for entry in entries)
        assert "ticket-12" not in json.dumps([entry.model_dump(mode="json") for entry in entries])


async def test_resume_failed_run_creates_a_new_run(vault: Vault) -> None:
    calls: list[str] = []

    async def work(run: PipelineRun, fail: bool) -> None:
        for name in ("ingest", "translate", "export"):
            if run.completed(name):
                continue
            async with run.phase(name) as phase:
                calls.append(name)
                if fail and name == "translate":
                    raise ValueError("boom")
                await phase.output({"phase": name})
                phase.state[name] = True

    with pytest.raises(ValueError, match="boom"):
        async with PipelineRun.open(vault, project="embed", purpose="first try") as first:
            await work(first, fail=True)
    assert (await vault.runs.get(first.run_id)).status is RunStatus.FAILED

    async with PipelineRun.open(vault, project="embed", run_id=first.run_id) as second:
        assert second.run_id != first.run_id
        assert second.previous_run_id == first.run_id
        assert second.resumed
        assert second.completed_phases == ["ingest"]
        assert second.data == {"ingest": True}
        assert await second.output("ingest") == {"phase": "ingest"}
        await work(second, fail=False)
    assert calls == ["ingest", "translate", "translate", "export"]

    record = await vault.runs.get(second.run_id)
    assert record.status is RunStatus.COMPLETED
    assert record.previous_run_id == first.run_id
    assert record.purpose == "first try"
    assert record.progress.steps_completed == 3
    state = (await vault.snapshots.load(second.run_id)).state
    assert next((e.phase, e.status) for e in state.phase_history) == ("ingest", "skipped")
    first_state = (await vault.snapshots.load(first.run_id)).state
    assert state.phase_artifacts["ingest"] == first_state.phase_artifacts["ingest"]


async def test_resume_cancelled_run_and_interrupt_cancels(vault: Vault) -> None:
    with pytest.raises(KeyboardInterrupt):
        async with PipelineRun.open(vault, project="embed") as run:
            await two_phases_then(run, KeyboardInterrupt(), in_phase=False)
    record = await vault.runs.get(run.run_id)
    assert record.status is RunStatus.CANCELLED
    assert record.last_error is not None
    assert record.last_error.code == "cancelled"
    async with PipelineRun.open(vault, project="embed", run_id=run.run_id) as again:
        assert again.previous_run_id == run.run_id
        assert await again.output("ingest") == "done"


async def test_task_cancellation_cancels_the_run(vault: Vault) -> None:
    started = asyncio.Event()
    holder: list[PipelineRun] = []

    async def body() -> None:
        async with PipelineRun.open(vault, project="embed") as run:
            holder.append(run)
            async with run.phase("wait"):
                started.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run_id = holder[0].run_id
    assert (await vault.runs.get(run_id)).status is RunStatus.CANCELLED
    assert (await statuses(vault, run_id))[-1] == ("wait", "failed")


async def test_resume_completed_run_is_refused(vault: Vault) -> None:
    async with PipelineRun.open(vault, project="embed") as run, run.phase("only") as phase:
        await phase.output(1)
    with pytest.raises(Conflict, match="completed and cannot be resumed") as caught:
        async with PipelineRun.open(vault, project="embed", run_id=run.run_id):
            pass
    assert caught.value.details["reason"] == "run_completed"
    with pytest.raises(Conflict) as other:
        async with PipelineRun.open(vault, project="elsewhere", run_id=run.run_id):
            pass
    assert other.value.details["reason"] == "project_mismatch"
    with pytest.raises(NotFound):
        async with PipelineRun.open(
            vault, project="embed", run_id="0193e3a0-0000-7000-8000-000000000000"
        ):
            pass
    playbook_run = await vault.runs.create(project="embed", playbook={"playbook_id": "nightly"})
    with pytest.raises(Conflict) as orchestrated:
        async with PipelineRun.open(vault, project="embed", run_id=playbook_run.run_id):
            pass
    assert orchestrated.value.details["reason"] == "playbook_run"


async def test_reentering_a_completed_phase_is_refused(vault: Vault) -> None:
    async with PipelineRun.open(vault, project="embed") as run:
        async with run.phase("ingest") as phase:
            await phase.output([1])
        with pytest.raises(Conflict, match="already completed") as caught:
            async with run.phase("ingest"):
                pytest.fail("the body must not run")
        assert caught.value.details["reason"] == "phase_completed"
        async with run.phase("outer"):
            with pytest.raises(Conflict, match="still open"):
                async with run.phase("inner"):
                    pass
        late = run.phase("late")
        with pytest.raises(Conflict, match="not open"):
            await late.output(1)
    # the refusals changed nothing: two phases, each started and completed
    assert await statuses(vault, run.run_id) == [
        ("ingest", "started"),
        ("ingest", "completed"),
        ("outer", "started"),
        ("outer", "completed"),
    ]
    assert (await vault.runs.get(run.run_id)).status is RunStatus.COMPLETED


async def test_detached_run_is_resumed_in_place(vault: Vault) -> None:
    async with (
        PipelineRun.open(vault, project="embed", complete_on_exit=False) as run,
        run.phase("ingest") as phase,
    ):
        await phase.output({"rows": 3})
    assert (await vault.runs.get(run.run_id)).status is RunStatus.RUNNING
    async with PipelineRun.open(vault, project="embed", run_id=run.run_id) as again:
        assert again.run_id == run.run_id
        assert await again.output("ingest") == {"rows": 3}
    assert (await vault.runs.get(run.run_id)).status is RunStatus.COMPLETED


async def test_pending_run_is_started_and_continued(vault: Vault) -> None:
    created = await vault.runs.create(project="embed", purpose="made elsewhere")
    async with PipelineRun.open(vault, project="embed", run_id=created.run_id) as run:
        assert run.run_id == created.run_id
        assert run.record.status is RunStatus.RUNNING
        assert run.revision == 0
        async with run.phase("only") as phase:
            await phase.output({"ok": True})
    record = await vault.runs.get(created.run_id)
    assert record.status is RunStatus.COMPLETED
    assert record.purpose == "made elsewhere"


async def test_tampered_output_raises_integrity_error(vault: Vault, tmp_path: Path) -> None:
    async with PipelineRun.open(vault, project="embed") as run:
        async with run.phase("ingest") as phase:
            meta = await phase.output({"secret sauce": list(range(50))})
        assert await run.output("ingest") == {"secret sauce": list(range(50))}
    flip_stored_byte(tmp_path / "v", meta.sha256)
    with pytest.raises(IntegrityError):
        await run.output("ingest")
