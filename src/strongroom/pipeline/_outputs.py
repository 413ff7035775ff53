"""Reading a pipeline run's phase outputs back (`PipelineRun.output`, `iter_output`,
`outputs`): typed, verified against their sha256, whole or streamed."""

from __future__ import annotations

import collections.abc
import json
import typing
from collections.abc import AsyncIterator
from typing import Any, overload

import pydantic

from strongroom.errors import NotFound, SerializationError
from strongroom.models import ArtifactFormat, ArtifactMetadata, Run, RunState
from strongroom.pipeline._common import OUTPUT_MARK, M
from strongroom.vault import Vault

__all__ = ["PhaseOutputs"]


class PhaseOutputs:
    """The output-reading half of `PipelineRun` (which sets these attributes)."""

    vault: Vault
    record: Run
    state: RunState

    @property
    def run_id(self) -> str:
        return self.record.run_id

    async def outputs(self, name: str) -> list[ArtifactMetadata]:
        """Every artifact of completed phase ``name``, in the order they were stored (the
        output is the one named ``output.json``). Read one with ``vault.artifacts.get_bytes(id)``,
        which verifies its sha256."""
        ids = self._completed_ids(name, "pipeline.outputs")
        return [await self.vault.artifacts.get(artifact_id) for artifact_id in ids]

    @overload
    async def output(self, name: str) -> Any: ...

    @overload
    async def output(self, name: str, model: type[list[M]]) -> list[M]: ...

    @overload
    async def output(self, name: str, model: type[M]) -> M: ...

    async def output(self, name: str, model: Any = None) -> Any:
        """The output of completed phase ``name``, read from its artifact (the bytes are
        verified against their sha256: a damaged blob raises `IntegrityError`): parsed as
        ``model`` when given (a model class, or ``list[Model]`` for a list or a streamed
        JSONL output), else as JSON (a JSONL output: a list of JSON values; bytes: bytes).
        `NotFound` if the phase has not completed or stored no output; `SerializationError`
        when it does not parse as ``model``."""
        meta = await self._output_meta(name)
        data = await self.vault.artifacts.get_bytes(meta.artifact_id)
        jsonl = meta.format is ArtifactFormat.JSONL
        if meta.format not in (ArtifactFormat.JSON, ArtifactFormat.JSONL) and model is None:
            return data
        try:
            if jsonl:
                lines = [line for line in data.split(b"\n") if line.strip()]
                if model is None:
                    return [json.loads(line) for line in lines]
                item = _list_item(model)
                if item is None:
                    raise SerializationError(
                        f"output of phase {name!r} is a sequence (JSONL): read it as "
                        f"list[{getattr(model, '__name__', model)}] or with iter_output",
                        operation="pipeline.output",
                        run_id=self.run_id,
                        artifact_id=meta.artifact_id,
                        reason="output_is_a_sequence",
                    )
                adapter = pydantic.TypeAdapter(item)
                return [adapter.validate_json(line) for line in lines]
            if model is None:
                return json.loads(data)
            return pydantic.TypeAdapter(model).validate_json(data)
        except pydantic.ValidationError as exc:
            shown = getattr(model, "__name__", str(model))
            raise SerializationError(
                f"output of phase {name!r} does not parse as {shown}: {exc}",
                operation="pipeline.output",
                run_id=self.run_id,
                artifact_id=meta.artifact_id,
            ) from exc

    async def iter_output(self, name: str, model: type[M]) -> AsyncIterator[M]:
        """The models of completed phase ``name``'s streamed (JSONL) output, one at a time,
        for outputs too big to hold. The digest is checked when the stream ends: a tampered
        blob raises `IntegrityError` after the models it yielded (collect first if you must
        not act on unverified data, e.g. with ``output(name, list[Model])``)."""
        meta = await self._output_meta(name)
        async for item in self.vault.artifacts.iter_models(meta.artifact_id, model):
            yield item

    async def _output_meta(self, name: str) -> ArtifactMetadata:
        for meta in await self.outputs(name):
            if meta.metadata.get(OUTPUT_MARK) is True:
                return meta
        raise NotFound(
            f"phase {name!r} completed without an output (see `outputs` for its artifacts)",
            operation="pipeline.output",
            run_id=self.run_id,
            phase=name,
        )

    def _completed_ids(self, name: str, operation: str) -> list[str]:
        ids = self.state.phase_artifacts.get(name)
        if ids is None:
            raise NotFound(
                f"phase {name!r} has not completed in run {self.run_id}",
                operation=operation,
                run_id=self.run_id,
                phase=name,
            )
        return ids


def _list_item(model: Any) -> Any:
    """``Model`` for ``list[Model]`` (or ``Sequence[Model]``...), None for anything else."""
    origin = typing.get_origin(model)
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        (item,) = typing.get_args(model) or (Any,)
        return item
    return None
