"""A phase of a `PipelineRun`: the async context manager that records it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from strongroom.errors import (
    Conflict,
)
from strongroom.models import (
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactRole,
    LogLevel,
)
from strongroom.pipeline._common import OUTPUT_MARK, OUTPUT_NAME, encode_json

if TYPE_CHECKING:
    from strongroom.pipeline._run import PipelineRun

__all__ = ["Phase"]


class Phase:
    """One execution of a phase; an async context manager made by `PipelineRun.phase`.

    Inside it, `output` and `artifact` store artifacts at once (durable when the call
    returns); they become the phase's outputs when the block exits cleanly, which records
    a ``completed`` event and saves the snapshot that a resume starts from. An exception
    records ``failed`` (with its `ErrorInfo`), saves a snapshot and propagates.
    """

    def __init__(self, run: PipelineRun, name: str) -> None:
        self.run = run
        self.name = name
        #: Artifacts stored by this execution of the phase, in order.
        self.artifacts: list[ArtifactMetadata] = []
        self._output: ArtifactMetadata | None = None
        self._entered = False

    @property
    def state(self) -> dict[str, Any]:
        """The run's free-form state (`PipelineRun.data`, `RunState.data`): saved in every
        snapshot and loaded back on resume. Must be JSON-serializable."""
        return self.run.data

    async def output(self, value: Any, *, description: str | None = None) -> ArtifactMetadata:
        """Store the phase's JSON output (a pydantic model or any JSON-serializable value) as
        a ``phase_output`` artifact named ``output.json``; read it back with
        `PipelineRun.output`. One output per phase."""
        self._require_open("pipeline.output")
        if self._output is not None:
            raise Conflict(
                f"phase {self.name!r} already has an output",
                operation="pipeline.output",
                run_id=self.run.run_id,
                phase=self.name,
                reason="output_already_set",
            )
        meta = await self.run.vault.artifacts.put_bytes(
            self.run.run_id,
            encode_json(value, self.name),
            role=ArtifactRole.PHASE_OUTPUT,
            format=ArtifactFormat.JSON,
            phase=self.name,
            name=OUTPUT_NAME,
            description=description,
            metadata={OUTPUT_MARK: True},
        )
        self._output = meta
        self.artifacts.append(meta)
        return meta

    async def artifact(
        self,
        data: bytes | Path,
        *,
        name: str,
        role: ArtifactRole | str = ArtifactRole.PHASE_OUTPUT,
        **spec: Any,
    ) -> ArtifactMetadata:
        """Store an extra artifact of the phase: ``bytes``, or a `Path` whose file is
        streamed (any size). ``spec`` takes the other `ArtifactInput` fields (``format``,
        ``label``, ``description``, ``metadata``, ``tags``...); the format follows the name's
        extension unless given."""
        self._require_open("pipeline.artifact")
        vault, run_id = self.run.vault, self.run.run_id
        if isinstance(data, Path):
            meta = await vault.artifacts.put_file(
                run_id, data, name=name, role=role, phase=self.name, **spec
            )
        else:
            meta = await vault.artifacts.put_bytes(
                run_id, data, name=name, role=role, phase=self.name, **spec
            )
        self.artifacts.append(meta)
        return meta

    async def log(
        self, event: str, message: str = "", *, level: LogLevel | str = LogLevel.INFO, **data: Any
    ) -> None:
        """Append a line to the run's log, tagged with this phase."""
        await self.run.log(event, message, level=level, phase=self.name, **data)

    def _require_open(self, operation: str) -> None:
        if not self._entered or self.run._open_phase is not self:
            raise Conflict(
                f"phase {self.name!r} is not open: use it inside `async with run.phase(...)`",
                operation=operation,
                run_id=self.run.run_id,
                phase=self.name,
                reason="phase_not_open",
            )

    async def __aenter__(self) -> Phase:
        await self.run._begin_phase(self)
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.run._complete_phase(self)
        else:
            await self.run._fail_phase(self, exc)
