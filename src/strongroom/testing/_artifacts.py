"""Conformance: artifacts (payload helpers, dedup, immutability, manifests, bad input)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from strongroom.errors import (
    IntegrityError,
    NotFound,
    SerializationError,
    UnsupportedFormat,
    ValidationError,
)
from strongroom.models import ArtifactFormat, ArtifactRole
from strongroom.testing._base import BAD_NAMES, VaultFixtureContract
from strongroom.vault import Vault


class Segment(BaseModel):
    id: int
    source: str
    target: str | None = None


class Report(BaseModel):
    passed: int
    failed: int


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _blob_count(vault: Vault) -> int:
    return len([d async for d in vault.blobs.iter_digests()])


class ArtifactTests(VaultFixtureContract):
    async def test_put_bytes_round_trip_with_checksum(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        data = b"\x00\x01binary payload\xff" * 100
        art = await vault.artifacts.put_bytes(run.run_id, data, role="custom", phase="ingest")
        assert art.sha256 == hashlib.sha256(data).hexdigest()
        assert art.checksum == f"sha256:{art.sha256}"
        assert art.size_bytes == len(data)
        assert art.format is ArtifactFormat.BINARY
        assert await vault.artifacts.get_bytes(art.artifact_id) == data
        assert await vault.artifacts.get(art.artifact_id) == art

    async def test_identical_bytes_are_stored_once(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        before = await _blob_count(vault)
        a = await vault.artifacts.put_bytes(run.run_id, b"same bytes", name="a.txt")
        b = await vault.artifacts.put_bytes(run.run_id, b"same bytes", name="b.txt")
        assert a.artifact_id != b.artifact_id
        assert a.sha256 == b.sha256
        assert await _blob_count(vault) == before + 1

    async def test_stream_and_file_round_trip(self, vault: Vault, tmp_path: Path) -> None:
        run = await self.new_run(vault)
        parts = [bytes([i % 251]) * (i * 997 % 65536 + 1) for i in range(40)]
        art = await vault.artifacts.put_stream(run.run_id, _chunks(parts), role="export")
        whole = b"".join(parts)
        assert art.sha256 == hashlib.sha256(whole).hexdigest()
        src = tmp_path / "table.csv"
        src.write_bytes(b"id,lang\n1,de\n2,fr\n")
        csv = await vault.artifacts.put_file(run.run_id, src, role="report")
        assert csv.format is ArtifactFormat.CSV
        assert csv.name == "table.csv"
        dest = tmp_path / "out.bin"
        await vault.artifacts.get_file(art.artifact_id, dest)
        assert dest.read_bytes() == whole
        streamed = b"".join([c async for c in await vault.artifacts.stream(art.artifact_id)])
        assert streamed == whole

    async def test_models_round_trip_as_json_and_jsonl(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        report = Report(passed=9, failed=1)
        art = await vault.artifacts.put_model(run.run_id, report, role="report")
        assert art.format is ArtifactFormat.JSON
        assert art.media_type == "application/json"
        assert await vault.artifacts.get_model(art.artifact_id, Report) == report
        segments = [Segment(id=i, source=f"line {i}") for i in range(500)]
        lines = await vault.artifacts.put_models(run.run_id, iter(segments), phase="ingest")
        assert lines.format is ArtifactFormat.JSONL
        back = [s async for s in vault.artifacts.iter_models(lines.artifact_id, Segment)]
        assert back == segments

    async def test_reading_as_the_wrong_model_is_a_serialization_error(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        art = await vault.artifacts.put_model(run.run_id, Report(passed=1, failed=0))
        with pytest.raises(SerializationError):
            await vault.artifacts.get_model(art.artifact_id, Segment)

    async def test_reading_binary_as_a_model_is_unsupported(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        art = await vault.artifacts.put_bytes(run.run_id, b"\x00\x01")
        with pytest.raises(UnsupportedFormat):
            await vault.artifacts.get_model(art.artifact_id, Report)

    @pytest.mark.parametrize(
        ("fmt", "payload"),
        [("json", b'{"a": 1'), ("jsonl", b'{"a": 1}\n{"b": \n'), ("json", b"\xff\xfe")],
    )
    async def test_malformed_json_payload_is_refused_and_nothing_stored(
        self, vault: Vault, fmt: str, payload: bytes
    ) -> None:
        run = await self.new_run(vault)
        before = await _blob_count(vault)
        with pytest.raises(SerializationError):
            await vault.artifacts.put_bytes(run.run_id, payload, format=fmt)
        assert await _blob_count(vault) == before
        assert await vault.artifacts.list(run_id=run.run_id) == []

    async def test_artifact_for_unknown_run_is_not_found_and_nothing_stored(
        self, vault: Vault
    ) -> None:
        before = await _blob_count(vault)
        with pytest.raises(NotFound):
            await vault.artifacts.put_bytes(str(uuid.uuid4()), b"orphan?")
        assert await _blob_count(vault) == before

    @pytest.mark.parametrize("bad", [*(b for b in BAD_NAMES if len(b) < 100), "../../etc/passwd"])
    async def test_unsafe_names_are_refused(self, vault: Vault, bad: str) -> None:
        run = await self.new_run(vault)
        before = await _blob_count(vault)
        for field in ("name", "phase", "namespace"):
            with pytest.raises(ValidationError):
                await vault.artifacts.put_bytes(run.run_id, b"x", **{field: bad})
        assert await _blob_count(vault) == before

    async def test_unknown_or_malformed_artifact_id(self, vault: Vault) -> None:
        with pytest.raises(NotFound):
            await vault.artifacts.get(str(uuid.uuid4()))
        with pytest.raises(ValidationError):
            await vault.artifacts.get("../../etc/passwd")
        with pytest.raises(ValidationError):
            await vault.artifacts.put_bytes(str(uuid.uuid4()), b"x", role="not-a-role")

    async def test_list_by_run_role_phase_and_manifest(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        other = await self.new_run(vault)
        await vault.artifacts.put_bytes(run.run_id, b"1", role="phase_output", phase="ingest")
        await vault.artifacts.put_bytes(run.run_id, b"22", role="phase_output", phase="qa")
        await vault.artifacts.put_bytes(run.run_id, b"333", role="report", phase="qa")
        await vault.artifacts.put_bytes(other.run_id, b"4", role="report")
        assert len(await vault.artifacts.list(run_id=run.run_id)) == 3
        qa = await vault.artifacts.list(run_id=run.run_id, phase="qa")
        assert {a.size_bytes for a in qa} == {2, 3}
        reports = await vault.artifacts.list(role=ArtifactRole.REPORT)
        assert len(reports) == 2
        manifest = await vault.artifacts.manifest(run.run_id)
        assert manifest.run_id == run.run_id
        assert manifest.total_bytes == 6
        assert len(manifest.artifacts) == 3

    async def test_put_many_stores_each_artifact(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        items = [(f"item {i}".encode(), {"role": "custom", "tags": [f"n{i}"]}) for i in range(50)]
        stored = await vault.artifacts.put_many(run.run_id, items)
        assert len(stored) == 50
        for (data, _), art in zip(items, stored, strict=True):
            assert await vault.artifacts.get_bytes(art.artifact_id) == data
        assert len(await vault.artifacts.list(run_id=run.run_id, tag="n7")) == 1

    async def test_corrupted_artifact_is_an_integrity_error(
        self, vault: Vault, tmp_path: Path
    ) -> None:
        run = await self.new_run(vault)
        art = await vault.artifacts.put_bytes(run.run_id, json.dumps({"k": 1}).encode())
        await self.corrupt_blob(vault, art.sha256)
        with pytest.raises(IntegrityError):
            await vault.artifacts.get_bytes(art.artifact_id)
        dest = tmp_path / "never.json"
        with pytest.raises(IntegrityError):
            await vault.artifacts.get_file(art.artifact_id, dest)
        assert not dest.exists()
