"""Blocking twins of `PipelineRun` and `ToolRunner`, for code without an event loop:

    from strongroom import SyncVault
    from strongroom.sync_pipeline import SyncPipelineRun

    with SyncVault.open("./.strongroom") as vault:
        with SyncPipelineRun.open(vault, project="docs", key="nightly-2026-12-05") as run:
            if not run.completed("ingest"):
                with run.phase("ingest") as phase:
                    phase.output(rows)
            rows = run.output("ingest", list[Row])

Each call runs the async one on the `SyncVault`'s own event loop (`SyncVault.run_sync`), so
the rules are those of `strongroom.pipeline` and `strongroom.execution`, and every method is
typed here for the caller's type checker.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from pydantic import BaseModel

from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.models import (
    ArtifactMetadata,
    ArtifactRole,
    LogLevel,
    RunnerRequest,
    RunnerResponse,
)
from strongroom.pipeline import Phase, PipelineRun
from strongroom.sync import SyncVault

__all__ = ["SyncPhase", "SyncPipelineRun", "SyncToolRunner"]

M = TypeVar("M", bound=BaseModel)


class SyncPhase:
    """Blocking twin of `strongroom.pipeline.Phase` (``with run.phase(name) as phase``)."""

    def __init__(self, vault: SyncVault, phase: Phase) -> None:
        self._vault = vault
        self._phase = phase
        self.name = phase.name

    @property
    def state(self) -> dict[str, Any]:
        """The run's free-form state, saved in every snapshot (`Phase.state`)."""
        return self._phase.state

    @property
    def artifacts(self) -> list[ArtifactMetadata]:
        """The artifacts this execution of the phase stored, in order."""
        return self._phase.artifacts

    def output(self, value: Any, *, description: str | None = None) -> ArtifactMetadata:
        """`Phase.output`: a model or JSON value, models (a list or iterator, as JSONL),
        bytes or a file."""
        return self._vault.run_sync(self._phase.output(value, description=description))

    def artifact(
        self,
        data: Any,
        *,
        name: str,
        role: ArtifactRole | str = ArtifactRole.PHASE_OUTPUT,
        **spec: Any,
    ) -> ArtifactMetadata:
        """`Phase.artifact`: bytes, a file, models or a JSON value."""
        return self._vault.run_sync(self._phase.artifact(data, name=name, role=role, **spec))

    def log(
        self, event: str, message: str = "", *, level: LogLevel | str = LogLevel.INFO, **data: Any
    ) -> None:
        """A line in the run's log, tagged with this phase."""
        self._vault.run_sync(self._phase.log(event, message, level=level, **data))

    def __enter__(self) -> Self:
        self._vault.run_sync(self._phase.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._vault.run_sync(self._phase.__aexit__(exc_type, exc, tb))


class SyncPipelineRun:
    """Blocking twin of `strongroom.pipeline.PipelineRun`; open it with `open`."""

    def __init__(self, vault: SyncVault, run: PipelineRun) -> None:
        self._vault = vault
        self._run = run

    @classmethod
    def open(
        cls,
        vault: SyncVault,
        *,
        project: str,
        purpose: str = "",
        run_id: str | None = None,
        key: str | None = None,
        actor: str = "local",
        steps_total: int | None = None,
        complete_on_exit: bool = True,
    ) -> _SyncPipelineContext:
        """`PipelineRun.open` (same arguments and rules), as a ``with`` block."""
        context = PipelineRun.open(
            vault.vault,
            project=project,
            purpose=purpose,
            run_id=run_id,
            key=key,
            actor=actor,
            steps_total=steps_total,
            complete_on_exit=complete_on_exit,
        )
        return _SyncPipelineContext(vault, context, lambda run: cls(vault, run))

    @property
    def run(self) -> PipelineRun:
        """The async `PipelineRun` underneath (its record, state, revision...)."""
        return self._run

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def finished(self) -> bool:
        """Opened by a key whose run had already completed (nothing runs again)."""
        return self._run.finished

    @property
    def resumed(self) -> bool:
        return self._run.resumed

    @property
    def data(self) -> dict[str, Any]:
        return self._run.data

    @property
    def completed_phases(self) -> list[str]:
        return self._run.completed_phases

    def completed(self, name: str) -> bool:
        return self._run.completed(name)

    def phase(self, name: str) -> SyncPhase:
        """A ``with`` block recording phase ``name`` (`PipelineRun.phase`)."""
        return SyncPhase(self._vault, self._run.phase(name))

    @overload
    def output(self, name: str) -> Any: ...

    @overload
    def output(self, name: str, model: type[list[M]]) -> list[M]: ...

    @overload
    def output(self, name: str, model: type[M]) -> M: ...

    def output(self, name: str, model: Any = None) -> Any:
        """`PipelineRun.output`: the phase's output, verified, optionally typed."""
        return self._vault.run_sync(self._run.output(name, model))

    def outputs(self, name: str) -> list[ArtifactMetadata]:
        return self._vault.run_sync(self._run.outputs(name))

    def log(
        self,
        event: str,
        message: str = "",
        *,
        level: LogLevel | str = LogLevel.INFO,
        phase: str | None = None,
        **data: Any,
    ) -> None:
        self._vault.run_sync(self._run.log(event, message, level=level, phase=phase, **data))


class _SyncPipelineContext:
    def __init__(
        self,
        vault: SyncVault,
        context: Any,
        wrap: Callable[[PipelineRun], SyncPipelineRun],
    ) -> None:
        self._vault = vault
        self._context = context
        self._wrap = wrap

    def __enter__(self) -> SyncPipelineRun:
        return self._wrap(self._vault.run_sync(self._context.__aenter__()))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._vault.run_sync(self._context.__aexit__(exc_type, exc, tb))


class SyncToolRunner:
    """Blocking twin of `strongroom.execution.ToolRunner`: one tool, once, through the
    sandboxed lane (`ToolRunner.run`)."""

    def __init__(self, vault: SyncVault, options: RunnerOptions | None = None) -> None:
        self._vault = vault
        self._runner = ToolRunner(vault.vault, options)

    @property
    def options(self) -> RunnerOptions:
        return self._runner.options

    def run(
        self, request: RunnerRequest | dict[str, Any], *, allow_degraded: bool | None = None
    ) -> RunnerResponse:
        """Run the request's tool once (plus retries); see `ToolRunner.run`."""
        return self._vault.run_sync(self._runner.run(request, allow_degraded=allow_degraded))
