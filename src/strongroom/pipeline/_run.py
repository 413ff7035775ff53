"""`PipelineRun`: open or resume a run, record its phases, finish it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from strongroom.errors import (
    Conflict,
    ValidationError,
)
from strongroom.models import (
    LogLevel,
    PhaseEvent,
    Progress,
    Run,
    RunState,
)
from strongroom.pipeline._common import completed_in_order, error_info, phase_name
from strongroom.pipeline._keyed import open_keyed
from strongroom.pipeline._outputs import PhaseOutputs
from strongroom.pipeline._phase import Phase
from strongroom.pipeline._resume import reopen
from strongroom.vault import Vault

__all__ = ["PipelineRun"]


class PipelineRun(PhaseOutputs):
    """A pipeline run persisted in a vault. Made by `PipelineRun.open` (an async context
    manager); see there for the open/resume rules."""

    def __init__(
        self,
        vault: Vault,
        record: Run,
        state: RunState,
        revision: int,
        *,
        actor: str,
        resumed: bool,
    ) -> None:
        self.vault = vault
        #: The run record as last written by this object (``version`` is its CAS token).
        self.record = record
        #: The resumable state; the latest snapshot holds it as of revision `revision`.
        self.state = state
        #: The latest snapshot revision of this run (0 = none yet).
        self.revision = revision
        self.actor = actor
        #: True when `open` continued or replaced an existing run.
        self.resumed = resumed
        #: The idempotency key it was opened with (`open` with ``key``), else None.
        self.key: str | None = None
        #: True when opened by ``key`` and that key's run had already completed: nothing runs
        #: again and leaving the block changes nothing.
        self.finished = False
        self._open_phase: Phase | None = None
        self._closed = False

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        vault: Vault,
        *,
        project: str,
        purpose: str = "",
        run_id: str | None = None,
        key: str | None = None,
        actor: str = "local",
        steps_total: int | None = None,
        complete_on_exit: bool = True,
    ) -> _PipelineContext:
        """Open a pipeline run, as an async context manager yielding the `PipelineRun`.

        Without ``run_id`` or ``key``: create a run of ``project`` and start it
        (pending -> running).

        With ``key`` (an idempotency key, e.g. ``"nightly-2026-12-05"``, 1-200 printable
        characters): the first open creates the key's run; a later open of the same key in
        the same project, from any process, finds it without a stored id: an unfinished run
        is continued (as with ``run_id``), a failed or cancelled one is replaced by the key's
        next attempt, and a completed one is returned as it is, with `finished` set: its
        phases are all `completed`, nothing runs again, leaving the block changes nothing.

        With ``run_id`` (resume), by the run's status:

        - ``running`` (the process that ran it died), or ``pending`` (or any other status
          the state machine lets go back to ``running``): continue it in place from its
          latest snapshot. A phase that had started but neither completed nor
          failed gets a ``failed`` event with code ``interrupted``; it will run again.
        - ``failed`` or ``cancelled``: the state machine forbids restarting it, so a NEW run
          is created with ``previous_run_id`` = ``run_id``, carrying over the old run's
          completed phases (their artifact ids, recorded as ``skipped`` events), its
          free-form ``data`` and progress. Use the new ``run.run_id`` from then on.
        - ``completed``: refused with `Conflict` (reason ``run_completed``).

        A run of another project is refused with `Conflict` (``project_mismatch``), and so is
        a playbook run of strongroom's orchestrator (``playbook_run``).

        Leaving the block normally completes the run (sealing its log) unless
        ``complete_on_exit=False``, which leaves it running for a later process to resume
        (one process per phase, as in Airflow). An exception fails the run with
        ``last_error`` set and propagates; `KeyboardInterrupt`, `asyncio.CancelledError`
        and other non-`Exception` exits cancel it (best effort) and propagate.

        ``steps_total`` is the number of phases, for the run's progress display.
        """
        if key is not None and run_id is not None:
            raise ValidationError(
                "give run_id or key, not both",
                operation="pipeline.open",
                reason="conflicting_arguments",
            )
        if key is not None:
            return _PipelineContext(
                lambda: open_keyed(
                    cls,
                    vault,
                    key=key,
                    project=project,
                    purpose=purpose,
                    actor=actor,
                    steps_total=steps_total,
                ),
                complete_on_exit=complete_on_exit,
            )
        return _PipelineContext(
            lambda: cls._start(
                vault,
                project=project,
                purpose=purpose,
                run_id=run_id,
                actor=actor,
                steps_total=steps_total,
            ),
            complete_on_exit=complete_on_exit,
        )

    @classmethod
    async def _start(
        cls,
        vault: Vault,
        *,
        project: str,
        purpose: str,
        run_id: str | None,
        actor: str,
        steps_total: int | None,
    ) -> PipelineRun:
        if run_id is None:
            return await cls._create(
                vault, project=project, purpose=purpose, actor=actor, steps_total=steps_total
            )

        return await reopen(
            cls,
            vault,
            run_id=run_id,
            project=project,
            purpose=purpose,
            actor=actor,
            steps_total=steps_total,
        )

    @classmethod
    async def _create(
        cls,
        vault: Vault,
        *,
        project: str,
        purpose: str,
        actor: str,
        steps_total: int | None,
        run_id: str | None = None,
        key: str | None = None,
    ) -> PipelineRun:
        """A new run of ``project``, started (``run_id``: its id, e.g. a key's)."""
        progress = Progress(steps_total=steps_total)
        record = await vault.runs.create(
            project=project,
            actor=actor,
            purpose=purpose,
            progress=progress,
            **({"run_id": run_id} if run_id is not None else {}),
        )
        record = await vault.runs.start(record.run_id, expected_version=record.version, actor=actor)
        run = cls(vault, record, RunState(progress=progress), 0, actor=actor, resumed=False)
        run.key = key
        extra = {"key": key} if key is not None else {}
        await run.log(
            "pipeline.opened", f"pipeline run opened: {purpose}" if purpose else "", **extra
        )
        return run

    # -- reading ---------------------------------------------------------------------------------

    @property
    def previous_run_id(self) -> str | None:
        """The failed/cancelled run this one replaced, if any."""
        return self.record.previous_run_id

    @property
    def data(self) -> dict[str, Any]:
        """Free-form, JSON-serializable pipeline state (`RunState.data`): saved in every
        snapshot, loaded back on resume, carried over to a replacement run."""
        return self.state.data

    @property
    def completed_phases(self) -> list[str]:
        """Phases whose outputs are recorded (completed here or carried over), in the order
        they completed (snapshots store dicts with sorted keys, so the order comes from the
        phase history)."""
        return completed_in_order(self.state)

    def completed(self, name: str) -> bool:
        """Whether phase ``name`` has completed (in this run or a run it replaced): skip it
        and read its results with `output` / `outputs`."""
        return name in self.state.phase_artifacts

    def _interrupted_phases(self) -> list[str]:
        last: dict[str, str] = {}
        for event in self.state.phase_history:
            last[event.phase] = event.status
        return [name for name, status in last.items() if status == "started"]

    # -- writing ---------------------------------------------------------------------------------

    def phase(self, name: str) -> Phase:
        """A new execution of phase ``name``, to use as ``async with run.phase(name) as p``.
        `Conflict` on entering if the phase has completed (check `completed` first) or if
        another phase is open."""
        return Phase(self, phase_name(name, "pipeline.phase"))

    async def log(
        self,
        event: str,
        message: str = "",
        *,
        level: LogLevel | str = LogLevel.INFO,
        phase: str | None = None,
        **data: Any,
    ) -> None:
        """Append a line to the run's hash-chained log (redacted before storage)."""
        await self.vault.logs.append(self.run_id, _line(event, message, level, phase, data))

    async def log_metric(self, key: str, value: float, *, step: int | None = None) -> None:
        """Record a metric value (`RunService.log_metric`): a ``metric`` line in the log and
        the run's latest ``metrics[key]``, indexed for ``runs list --sort metrics.KEY``."""
        self.record = await self.vault.runs.log_metric(
            self.run_id, key, value, step=step, expected_version=self.record.version
        )

    async def set_labels(self, labels: Mapping[str, str | None]) -> None:
        """Set labels on the run (None removes one; `RunService.set_labels`)."""
        self.record = await self.vault.runs.set_labels(
            self.run_id, labels, expected_version=self.record.version
        )

    async def _save(self) -> None:
        """Append the next snapshot, compare-and-set on the revision this object last saw:
        another process writing the same run makes this raise `Conflict`."""
        record = await self.vault.snapshots.save(
            self.run_id, self.state, expected_revision=self.revision
        )
        self.revision = record.revision

    async def _transition(
        self, line: dict[str, Any], run_changes: dict[str, Any] | None = None
    ) -> None:
        """Like `_save`, with the run record's changes and a log line in the same
        transaction: a phase's start, end or failure is all stored or not at all."""
        done = await self.vault.transitions.record(
            self.run_id,
            state=self.state,
            expected_revision=self.revision,
            current=self.record,
            run_changes=run_changes,
            log_lines=[line],
        )
        assert done.snapshot is not None
        self.revision = done.snapshot.revision
        if done.run is not None:
            self.record = done.run

    async def _update(self, **changes: Any) -> None:
        self.record = await self.vault.runs.update(
            self.run_id, expected_version=self.record.version, **changes
        )

    def _require_running(self, operation: str) -> None:
        if self._closed:
            raise Conflict(
                f"pipeline run {self.run_id} is closed",
                operation=operation,
                run_id=self.run_id,
                reason="run_closed",
            )

    async def _begin_phase(self, phase: Phase) -> None:
        self._require_running("pipeline.phase")
        if self.completed(phase.name):
            raise Conflict(
                f"phase {phase.name!r} already completed in run {self.run_id}; "
                "check run.completed(name) and read run.output(name) instead",
                operation="pipeline.phase",
                run_id=self.run_id,
                phase=phase.name,
                reason="phase_completed",
            )
        if self._open_phase is not None:
            raise Conflict(
                f"phase {self._open_phase.name!r} is still open; phases run one at a time",
                operation="pipeline.phase",
                run_id=self.run_id,
                phase=phase.name,
                reason="phase_open",
            )
        self._open_phase = phase
        try:
            self.state.phase_history.append(PhaseEvent(phase=phase.name, status="started"))
            self.state.progress = self.state.progress.model_copy(
                update={"message": f"{phase.name} running"}
            )
            await self._transition(
                _line("phase.started", f"{phase.name}: started", LogLevel.INFO, phase.name, {}),
                {"current_phase": phase.name, "progress": self.state.progress},
            )
        except BaseException:
            self._open_phase = None
            raise

    async def _complete_phase(self, phase: Phase) -> None:
        try:
            ids = [meta.artifact_id for meta in phase.artifacts]
            revision = self.revision + 1
            self.state.phase_history.append(
                PhaseEvent(
                    phase=phase.name, status="completed", revision=revision, artifact_ids=ids
                )
            )
            self.state.phase_artifacts[phase.name] = ids
            self.state.phase_revisions[phase.name] = revision
            self.state.progress = self.state.progress.model_copy(
                update={
                    "steps_completed": len(self.state.phase_artifacts),
                    "message": f"{phase.name} done",
                }
            )
            await self._transition(
                _line(
                    "phase.completed",
                    f"{phase.name}: completed",
                    LogLevel.INFO,
                    phase.name,
                    {"revision": revision, "artifact_ids": ids},
                ),
                {"progress": self.state.progress},
            )
        finally:
            self._open_phase = None

    async def _fail_phase(self, phase: Phase, exc: BaseException) -> None:
        error = error_info(exc, self.vault.redactor)
        try:
            self.state.phase_history.append(
                PhaseEvent(
                    phase=phase.name,
                    status="failed",
                    artifact_ids=[meta.artifact_id for meta in phase.artifacts],
                    error=error,
                )
            )
            self.state.last_error = error
            self.state.progress = self.state.progress.model_copy(
                update={"message": f"{phase.name} failed"}
            )
            await self._transition(
                _line(
                    "phase.failed",
                    f"{phase.name}: {error.message}",
                    LogLevel.ERROR,
                    phase.name,
                    {"error": error.model_dump(mode="json")},
                )
            )
        except Exception as bookkeeping:  # never hide the phase's own exception
            exc.add_note(f"strongroom could not record the failed phase: {bookkeeping!r}")
        finally:
            self._open_phase = None

    async def _finish(self, exc: BaseException | None, *, complete: bool) -> None:
        """End the run as the context exits (see `open`)."""
        if self._closed:
            return
        self._closed = True
        if self.finished:  # a key's completed run, returned as it is: nothing to record
            return
        if exc is None:
            if not complete:
                await self.log("pipeline.detached", "left running for a later process")
                return
            await self.log("pipeline.completed", "pipeline completed")
            await self._update(progress=self.state.progress, current_phase=None)
            self.record = await self.vault.runs.complete(
                self.run_id, expected_version=self.record.version, actor=self.actor
            )
            return
        error = error_info(exc, self.vault.redactor)
        try:
            if isinstance(exc, Exception):
                await self.log(
                    "pipeline.failed",
                    error.message,
                    level=LogLevel.ERROR,
                    error=error.model_dump(mode="json"),
                )
                self.record = await self.vault.runs.fail(self.run_id, error, actor=self.actor)
            else:
                await self.log("pipeline.cancelled", error.message, level=LogLevel.WARNING)
                self.record = await self.vault.runs.cancel(
                    self.run_id, error=error, actor=self.actor
                )
        except Exception as bookkeeping:  # never hide the run's own exception
            exc.add_note(f"strongroom could not record the run's end: {bookkeeping!r}")


class _PipelineContext:
    """What `PipelineRun.open` returns: ``async with`` it to get the `PipelineRun`."""

    def __init__(
        self, start: Callable[[], Awaitable[PipelineRun]], *, complete_on_exit: bool
    ) -> None:
        self._start = start
        self._complete = complete_on_exit
        self._run: PipelineRun | None = None

    async def __aenter__(self) -> PipelineRun:
        self._run = await self._start()
        return self._run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._run is not None:
            await self._run._finish(exc, complete=self._complete)


def _line(
    event: str, message: str, level: LogLevel | str, phase: str | None, data: dict[str, Any]
) -> dict[str, Any]:
    return {"level": level, "event": event, "phase": phase, "message": message, "data": data}
