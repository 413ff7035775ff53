"""Phase outputs of any shape: a model, a list or stream of models (JSONL, streamed), bytes or
a file; read back typed (``run.output(name, list[Model])``) or streamed (``iter_output``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from strongroom.errors import SerializationError
from strongroom.models import ArtifactFormat
from strongroom.pipeline import PipelineRun
from strongroom.vault import Vault


class Segment(BaseModel):
    id: int
    text: str


SEGMENTS = [Segment(id=i, text=f"segment {i}") for i in range(5)]


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    async with await Vault.open(tmp_path / "v") as opened:
        yield opened


async def test_a_list_of_models_is_stored_as_jsonl_and_read_back_typed(vault: Vault) -> None:
    async with PipelineRun.open(vault, project="shapes") as run:
        async with run.phase("ingest") as phase:
            meta = await phase.output(SEGMENTS)
        assert meta.format is ArtifactFormat.JSONL
        assert meta.name == "output.jsonl"
        back: list[Segment] = await run.output("ingest", list[Segment])
        assert back == SEGMENTS
        assert [s async for s in run.iter_output("ingest", Segment)] == SEGMENTS
        assert await run.output("ingest") == [s.model_dump() for s in SEGMENTS]
        with pytest.raises(SerializationError) as caught:
            await run.output("ingest", Segment)
        assert caught.value.details["reason"] == "output_is_a_sequence"


async def test_generators_and_async_iterables_are_streamed(vault: Vault) -> None:
    def generated() -> Iterator[Segment]:
        yield from SEGMENTS

    async def streamed() -> AsyncIterator[Segment]:
        for segment in SEGMENTS:
            yield segment

    async with PipelineRun.open(vault, project="shapes") as run:
        async with run.phase("sync") as phase:
            await phase.output(generated())
        async with run.phase("async") as phase:
            await phase.output(streamed())
            extra = await phase.artifact(SEGMENTS[:2], name="first.jsonl")  # was AttributeError
        assert await run.output("sync", list[Segment]) == SEGMENTS
        assert await run.output("async", list[Segment]) == SEGMENTS
        assert extra.format is ArtifactFormat.JSONL
        models = vault.artifacts.iter_models(extra.artifact_id, Segment)
        assert [s async for s in models] == SEGMENTS[:2]


async def test_a_stream_holding_something_else_is_refused(vault: Vault) -> None:
    def mixed() -> Iterator[object]:
        yield SEGMENTS[0]
        yield {"id": 1}

    async def store() -> PipelineRun:
        async with (
            PipelineRun.open(vault, project="shapes", complete_on_exit=False) as run,
            run.phase("bad") as phase,
        ):
            await phase.output(mixed())
        return run

    with pytest.raises(SerializationError, match="models only"):
        await store()
    (failed,) = (await vault.runs.list(project="shapes")).items
    assert failed.status.value == "failed"


async def test_json_lists_bytes_and_files_keep_their_shape(vault: Vault, tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    report.write_text("id,text\n1,a\n")
    async with PipelineRun.open(vault, project="shapes") as run:
        async with run.phase("rows") as phase:
            await phase.output([{"id": 1, "text": "a"}])  # plain JSON values stay JSON
        async with run.phase("blob") as phase:
            await phase.output(b"\x00\x01binary")
        async with run.phase("file") as phase:
            await phase.output(report)
        assert await run.output("rows") == [{"id": 1, "text": "a"}]
        assert await run.output("rows", list[Segment]) == [Segment(id=1, text="a")]
        assert await run.output("blob") == b"\x00\x01binary"
        assert await run.output("file") == report.read_bytes()
        one = await run.outputs("file")
        assert one[0].name == "report.csv"
