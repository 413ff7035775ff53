"""verify's faster paths give the same answers: blobs re-hashed a few at a time (problems
still in digest order, progress still monotonic), references checked in batches through a
bounded cache, and the registry's channel moves gathered on the main audit walk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import strongroom.ports.verify as verify_port
import strongroom.services.rehash as rehash_module
import strongroom.services.verify as verify_module
from _sql_tamper import corrupt_stored_blob
from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.models import BlobInfo, DefinitionKind, VerifyReport
from strongroom.services.registry import collect_move, verify_registry
from strongroom.testing._registry_service import manifest
from strongroom.vault import Vault

TM = DefinitionKind.TOOL_MANIFEST


@pytest.fixture
async def vault() -> AsyncIterator[Vault]:
    vault = Vault(MemoryMetadataStore(), MemoryBlobStore(), checkpoint_interval=4)
    yield vault
    await vault.close()


async def _fill(vault: Vault, blobs: int, refs_each: int) -> list[str]:
    """``blobs`` distinct blobs, each referenced by ``refs_each`` artifacts; their digests."""
    run_id = (await vault.runs.create(project="p", purpose="verify paths")).run_id
    digests: list[str] = []
    for n in range(blobs):
        for k in range(refs_each):
            meta = await vault.artifacts.put_bytes(run_id, b"blob %d" % n, name=f"a{n}-{k}.bin")
        digests.append(meta.sha256)
    return digests


def _summary(report: VerifyReport) -> list[tuple[str, str, str, str]]:
    return [(p.kind, p.code, p.subject, p.message) for p in report.problems]


async def test_damaged_and_missing_blobs_are_reported_as_before(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = await _fill(vault, blobs=40, refs_each=3)
    damaged = sorted(digests[::7])
    for digest in damaged:
        await corrupt_stored_blob(vault, digest)
    missing = digests[3]
    await vault.blobs.delete(missing)

    seen: list[tuple[str, int, int | None]] = []
    report = await vault.verify(on_progress=lambda s, d, t: seen.append((s, d, t)))

    blob_problems = [p for p in report.problems if p.kind == "blob"]
    assert [p.subject for p in blob_problems] == damaged  # once each, in digest order
    for problem in blob_problems:
        assert len(problem.details["referenced_by"]) == 3
        assert "(used by artifact:" in problem.message
    gone = [p for p in report.problems if p.code == "not_found"]
    assert len(gone) == 3
    assert all(p.details["sha256"] == missing for p in gone)
    assert report.checked["blobs"] == 39
    assert report.checked["references"] == 120

    blob_progress = [(d, t) for s, d, t in seen if s == "blobs"]
    assert [d for d, _ in blob_progress] == list(range(1, 40))
    assert {t for _, t in blob_progress} == {39}

    # A tiny cache and tiny reference batches (evictions, repeats across batches) agree.
    monkeypatch.setattr(verify_module, "_SIZE_CACHE", 2)
    monkeypatch.setattr(verify_port, "REFERENCE_BATCH", 5)
    monkeypatch.setattr(verify_module, "_LOOKUP_PARAMS", 2)
    small = await vault.verify()
    assert _summary(small) == _summary(report)
    assert small.checked == report.checked

    monkeypatch.setattr(rehash_module, "_VERIFY_CONCURRENCY", 1)
    assert _summary(await vault.verify()) == _summary(report)


async def test_size_mismatch_and_unreferenced_counts(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = await _fill(vault, blobs=5, refs_each=2)
    extra = await vault.blobs.put_bytes(b"nobody refers to me")
    real_verify = vault.blobs.verify

    async def short(sha256: str) -> BlobInfo:
        info = await real_verify(sha256)
        return info.model_copy(update={"size_bytes": 1}) if sha256 == digests[2] else info

    monkeypatch.setattr(vault.blobs, "verify", short)
    monkeypatch.setattr(verify_module, "_SIZE_CACHE", 1)
    monkeypatch.setattr(verify_port, "REFERENCE_BATCH", 3)
    report = await vault.verify()
    wrong = [p for p in report.problems if p.code == "integrity_error"]
    assert len(wrong) == 2
    assert all(p.details == {"sha256": digests[2], "expected": 6, "found": 1} for p in wrong)
    assert report.checked["unreferenced_blobs"] == 1
    assert extra.sha256 not in {p.details.get("sha256") for p in report.problems}


async def test_an_unexpected_error_stops_the_page_unwrapped(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = await _fill(vault, blobs=10, refs_each=1)
    real_verify = vault.blobs.verify

    async def broken(sha256: str) -> BlobInfo:
        if sha256 == digests[4]:
            raise RuntimeError("boom")
        return await real_verify(sha256)

    monkeypatch.setattr(vault.blobs, "verify", broken)
    with pytest.raises(RuntimeError, match="boom"):
        await vault.verify()


async def _moves(
    vault: Vault, through: int | None = None
) -> tuple[dict[str, tuple[str, int]], int]:
    audited: dict[str, tuple[str, int]] = {}
    last = 0
    async for row in vault.audit.rows():
        if through is not None and row.key > through:
            break
        collect_move(audited, row)
        last = row.key
    return audited, last


async def test_registry_uses_the_moves_gathered_by_the_caller(vault: Vault) -> None:
    await vault.registry.publish(manifest(), file_name="m.json", actor="alice")
    await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="ok", actor="al")
    assert (await vault.verify()).ok
    store, blobs, audit = vault.metadata, vault.blobs, vault.audit
    assert isinstance(store, MemoryMetadataStore)

    alone = await verify_registry(store, blobs, audit)
    assert alone[1] == []
    assert alone[0]["channel_moves"] == 2

    audited, last = await _moves(vault)
    assert len(audited) == 2
    assert await verify_registry(store, blobs, audit, audited=audited, audited_through=last) == (
        alone
    )

    # Moves audited after the caller's walk are picked up from the rows after it.
    first_seq = min(seq for _, seq in audited.values())
    partial, through = await _moves(vault, through=first_seq)
    assert len(partial) == 1
    got = await verify_registry(store, blobs, audit, audited=partial, audited_through=through)
    assert got == alone

    # What the caller hands over is what counts: a move it did not see has no audit entry.
    _, problems = await verify_registry(store, blobs, audit, audited=partial, audited_through=last)
    assert [p.message for p in problems if "has no audit entry" in p.message]


async def test_pages_rehashed_while_listing_goes_on(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = await _fill(vault, blobs=23, refs_each=1)
    damaged = sorted(digests[1::5])
    for digest in damaged:
        await corrupt_stored_blob(vault, digest)
    listed = list(reversed(digests))  # not in digest order
    real_verify = vault.blobs.verify
    calls: list[str] = []

    async def twice() -> AsyncIterator[str]:
        for digest in listed + listed[:9]:  # a store may list a blob twice: re-hashed once
            yield digest

    async def counted(sha256: str) -> BlobInfo:
        calls.append(sha256)
        return await real_verify(sha256)

    monkeypatch.setattr(vault.blobs, "iter_digests", twice)
    monkeypatch.setattr(vault.blobs, "verify", counted)
    monkeypatch.setattr(verify_module, "_PAGE", 4)
    seen: list[tuple[str, int, int | None]] = []
    report = await vault.verify(on_progress=lambda s, d, t: seen.append((s, d, t)))

    assert sorted(calls) == sorted(digests)
    assert [p.subject for p in report.problems if p.kind == "blob"] == damaged
    assert report.checked["blobs"] == 23
    assert report.checked["unreferenced_blobs"] == 0
    blob_progress = [(d, t) for s, d, t in seen if s == "blobs"]
    counts = [d for d, _ in blob_progress]
    assert counts == sorted(counts)
    assert set(counts) == set(range(1, 24))
    assert blob_progress[0][1] is None  # the total is not known while listing
    assert blob_progress[-1] == (23, 23)


async def test_a_listing_error_stops_the_page_being_rehashed(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = await _fill(vault, blobs=10, refs_each=1)
    real_verify = vault.blobs.verify
    finished: list[str] = []

    async def broken() -> AsyncIterator[str]:
        for digest in digests[:6]:
            yield digest
        raise RuntimeError("listing failed")

    async def slow(sha256: str) -> BlobInfo:
        info = await real_verify(sha256)
        for _ in range(5):
            await asyncio.sleep(0)
        finished.append(sha256)
        return info

    monkeypatch.setattr(vault.blobs, "iter_digests", broken)
    monkeypatch.setattr(vault.blobs, "verify", slow)
    monkeypatch.setattr(verify_module, "_PAGE", 4)
    with pytest.raises(RuntimeError, match="listing failed"):
        await vault.verify()
    count = len(finished)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(finished) == count  # nothing left running behind the error
