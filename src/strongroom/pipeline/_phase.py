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
from strongroom.pipeline._common import (
    OUTPUT_JSONL_NAME,
    OUTPUT_MARK,
    OUTPUT_NAME,
    encode_json,
    model_stream,
)

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
        """Store the phase's output, read back with `PipelineRun.output`; one per phase.

        - a pydantic model or any JSON value: a ``phase_output`` artifact ``output.json``;
        - a list of models, an iterator or generator of models, or an async iterable of
          them: ``output.jsonl``, one model per line, streamed (one model in memory at a
          time), read back as a list (``run.output(name, list[Model])``) or streamed
          (``run.iter_output(name, Model)``);
        - ``bytes`` or a `Path` (a file, streamed): stored as they are (``output.bin`` or
          the file's name)."""
        self._require_open("pipeline.output")
        if self._output is not None:
            raise Conflict(
                f"phase {self.name!r} already has an output",
                operation="pipeline.output",
                run_id=self.run.run_id,
                phase=self.name,
                reason="output_already_set",
            )
        artifacts, run_id = self.run.vault.artifacts, self.run.run_id
        spec: dict[str, Any] = {
            "role": ArtifactRole.PHASE_OUTPUT,
            "phase": self.name,
            "description": description,
            "metadata": {OUTPUT_MARK: True},
        }
        stream = model_stream(value)
        if stream is not None:
            meta = await artifacts.put_models(
                run_id, stream, name=OUTPUT_JSONL_NAME, format=ArtifactFormat.JSONL, **spec
            )
        elif isinstance(value, Path):
            meta = await artifacts.put_file(run_id, value, name=value.name, **spec)
        elif isinstance(value, bytes | bytearray | memoryview):
            meta = await artifacts.put_bytes(run_id, bytes(value), name="output.bin", **spec)
        else:
            meta = await artifacts.put_bytes(
                run_id,
                encode_json(value, self.name),
                format=ArtifactFormat.JSON,
                name=OUTPUT_NAME,
                **spec,
            )
        self._output = meta
        self.artifacts.append(meta)
        return meta

    async def artifact(
        self,
        data: Any,
        *,
        name: str,
        role: ArtifactRole | str = ArtifactRole.PHASE_OUTPUT,
        **spec: Any,
    ) -> ArtifactMetadata:
        """Store an extra artifact of the phase: ``bytes``; a `Path` whose file is streamed
        (any size); models (a list, iterator or async iterable of pydantic models) as JSONL,
        streamed; or one model or JSON value as JSON. ``spec`` takes the other
        `ArtifactInput` fields (``format``, ``label``, ``description``, ``metadata``,
        ``tags``...); the format follows the name's extension unless given."""
        self._require_open("pipeline.artifact")
        vault, run_id = self.run.vault, self.run.run_id
        common: dict[str, Any] = {"name": name, "role": role, "phase": self.name, **spec}
        stream = model_stream(data)
        if stream is not None:
            common.setdefault("format", ArtifactFormat.JSONL)
            meta = await vault.artifacts.put_models(run_id, stream, **common)
        elif isinstance(data, Path):
            meta = await vault.artifacts.put_file(run_id, data, **common)
        elif isinstance(data, bytes | bytearray | memoryview):
            meta = await vault.artifacts.put_bytes(run_id, bytes(data), **common)
        else:
            common.setdefault("format", ArtifactFormat.JSON)
            meta = await vault.artifacts.put_bytes(run_id, encode_json(data, self.name), **common)
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
