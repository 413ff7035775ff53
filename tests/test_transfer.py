"""Export / import between vaults and directory bundles (strongroom.transfer): verbatim
copies that still verify, idempotent re-runs, resuming after an interruption at any point,
conflicts that change nothing, and bundles that plain Python can check."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _sql_tamper import corrupt_stored_blob
from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.bundle import RECORD_KINDS, verify_bundle
from strongroom.errors import Conflict, IntegrityError, NotFound
from strongroom.models import DefinitionKind, Run, RunQuery, RunState
from strongroom.testing.transfer import MIB, populate_vault, snapshot_vault
from strongroom.transfer import (
    TransferReport,
    open_target_vault,
    parse_endpoint,
    transfer,
)
from strongroom.vault import Vault


def memory_vault() -> Vault:
    return Vault(MemoryMetadataStore(), MemoryBlobStore(), checkpoint_interval=4)


@pytest.fixture
async def memory_source() -> AsyncIterator[Vault]:
    vault = memory_vault()
    await populate_vault(vault, big_bytes=3 * MIB + 17)
    yield vault
    await vault.close()


@pytest.fixture
async def sqlite_source(tmp_path: Path) -> AsyncIterator[Vault]:
    vault = await Vault.open(tmp_path / "source", checkpoint_interval=4)
    await populate_vault(vault, big_bytes=2 * MIB + 5)
    yield vault
    await vault.close()


def counts_of(snapshot: dict[str, Any]) -> dict[str, int]:
    return {kind: len(items) for kind, items in snapshot["records"].items()}


def assert_complete(report: TransferReport, snapshot: dict[str, Any]) -> None:
    assert report.ok, (report.problems, report.verify)
    for kind, count in counts_of(snapshot).items():
        written = report.records[kind] + report.records_updated[kind]
        assert written + report.records_skipped[kind] == count, kind


def tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- straight copies --------------------------------------------------------------------------


async def test_memory_to_sqlite_local_copies_every_record_and_blob_verbatim(
    memory_source: Vault, tmp_path: Path
) -> None:
    before = await snapshot_vault(memory_source)
    assert all(before["records"][kind.name] for kind in RECORD_KINDS), counts_of(before)
    async with await open_target_vault(str(tmp_path / "target")) as target:
        report = await transfer(memory_source, target)
        assert_complete(report, before)
        assert report.records == counts_of(before)
        assert report.blobs.copied == len(before["blobs"])
        assert report.blobs.skipped == 0
        assert report.blobs.bytes == sum(b["size_bytes"] for b in before["blobs"].values())
        assert report.verify is not None
        assert report.verify.ok
        assert report.verify.checked["audit_checkpoints"] == len(before["records"]["checkpoints"])
        assert await snapshot_vault(target) == before
        # The copy is a working vault: chains continue, sealed logs stay sealed.
        run = await target.runs.create(project="after", actor="dave")
        await target.logs.append(run.run_id, {"event": "after.import"})
        assert (await target.verify()).ok
    # And it survives closing and reopening with the normal opener.
    async with await Vault.open(tmp_path / "target", create=False) as reopened:
        assert (await reopened.verify()).ok


async def test_running_again_copies_nothing(memory_source: Vault, tmp_path: Path) -> None:
    before = await snapshot_vault(memory_source)
    async with await open_target_vault(str(tmp_path / "target")) as target:
        await transfer(memory_source, target, verify=False)
        again = await transfer(memory_source, target)
        assert_complete(again, before)
        assert sum(again.records.values()) == 0
        assert again.records_skipped == counts_of(before)
        assert again.blobs.copied == 0
        assert again.blobs.skipped == len(before["blobs"])
        assert await snapshot_vault(target) == before


async def test_a_source_that_moved_on_syncs_incrementally(
    memory_source: Vault, tmp_path: Path
) -> None:
    async with await open_target_vault(str(tmp_path / "target")) as target:
        await transfer(memory_source, target, verify=False)
        # Growth: new runs, log lines, snapshots, artifacts, audit entries, blobs...
        ids = await populate_vault(memory_source, big_bytes=1000, seed=8, tag="b")
        # ...and records changed in place: a run finishing (status, version, sealed log
        # reference), a provider re-registered with new settings.
        running = (await snapshot_vault(target))["records"]["runs"][3]
        assert running["status"] == "running"
        await memory_source.logs.append(running["run_id"], {"event": "last.tick"})
        await memory_source.runs.complete(running["run_id"])
        await memory_source.catalog.put_provider(
            {**(await memory_source.catalog.provider("archive-a")).model_dump(), "region": "x"}
        )
        # The registry moved on too: a channel of an imported definition moved again (the
        # target's pointer must follow the re-applied move) and an approval was revoked.
        await memory_source.registry.promote(
            "sandbox_policy", "policy-a", "1.1.0", to="staging", actor="alice", reason="again"
        )
        (active,) = [
            a
            for a in await memory_source.registry.approvals()
            if a.revoked_at is None and a.approval_id not in ids["approvals"]
        ]
        await memory_source.registry.revoke(active.approval_id, actor="admin", reason="late")
        report = await transfer(memory_source, target)
        after = await snapshot_vault(memory_source)
        assert_complete(report, after)
        assert report.records["runs"] == len(ids["runs"])
        assert report.records_updated == {
            **dict.fromkeys(report.records_updated, 0),
            "runs": 1,
            "log_references": 1,
            "providers": 1,
            "approvals": 1,
        }
        kind = DefinitionKind.SANDBOX_POLICY
        assert await target.metadata.get_channels(
            kind, "policy-a"
        ) == await memory_source.metadata.get_channels(kind, "policy-a")
        assert await snapshot_vault(target) == after


async def test_deletions_and_holds_travel_with_an_incremental_sync(
    memory_source: Vault, tmp_path: Path
) -> None:
    ids = await populate_vault(memory_source, big_bytes=1000, seed=9, tag="c")
    async with await open_target_vault(str(tmp_path / "target")) as target:
        await transfer(memory_source, target, verify=False)
        # The source deletes a run and an object the target already holds.
        _, failed, cancelled, *_ = ids["runs"]
        await memory_source.retention.delete_run(cancelled, reason="retention", actor="dpo")
        await memory_source.catalog.delete_object(ids["objects"][0])
        report = await transfer(memory_source, target)
        assert report.verify is not None
        assert report.verify.ok, report.verify.problems
        assert await snapshot_vault(target) == await snapshot_vault(memory_source)
        with pytest.raises(NotFound):
            await target.runs.get(cancelled)
        # The hold came over and is enforced there too.
        assert ids["hold"] in {h.hold_id for h in await target.retention.list_holds()}
        with pytest.raises(Conflict) as caught:
            await target.retention.delete_run(failed, reason="try")
        assert caught.value.details["reason"] == "held"


async def test_a_foreign_record_under_the_same_id_is_a_conflict(
    memory_source: Vault, tmp_path: Path
) -> None:
    runs = (await snapshot_vault(memory_source))["records"]["runs"]
    async with await open_target_vault(str(tmp_path / "target")) as target:
        foreign = Run.model_validate({**runs[1], "purpose": "something else entirely"})
        await target.metadata.insert_run(foreign)
        before = await snapshot_vault(target)
        with pytest.raises(Conflict) as caught:
            await transfer(memory_source, target)
        assert caught.value.details["key"] == foreign.run_id
        assert caught.value.details["fields"] == ["purpose"]
        assert await snapshot_vault(target) == before


async def test_sqlite_to_bundle_to_sqlite_round_trip(sqlite_source: Vault, tmp_path: Path) -> None:
    before = await snapshot_vault(sqlite_source)
    bundle = tmp_path / "bundle"
    exported = await transfer(sqlite_source, bundle)
    assert_complete(exported, before)
    assert exported.verify is not None
    assert exported.verify.checked["blobs"] == len(before["blobs"])
    assert (await verify_bundle(bundle)).ok
    async with await open_target_vault(str(tmp_path / "copy")) as target:
        imported = await transfer(bundle, target)
        assert_complete(imported, before)
        assert imported.records == counts_of(before)
        assert await snapshot_vault(target) == before
    # Bundle -> bundle works too, and gives byte-identical records files.
    await transfer(bundle, tmp_path / "bundle2")
    assert {k: v for k, v in tree_digests(tmp_path / "bundle2").items() if "manifest" not in k} == {
        k: v for k, v in tree_digests(bundle).items() if "manifest" not in k
    }


async def test_exporting_an_unchanged_vault_to_its_finished_bundle_is_a_no_op(
    memory_source: Vault, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    await transfer(memory_source, bundle)
    files = tree_digests(bundle)
    again = await transfer(memory_source, bundle)
    assert again.ok
    assert sum(again.records.values()) == 0
    assert again.blobs.copied == 0
    assert tree_digests(bundle) == files


async def test_bundle_is_readable_without_strongroom(memory_source: Vault, tmp_path: Path) -> None:
    before = await snapshot_vault(memory_source)
    bundle = tmp_path / "bundle"
    await transfer(memory_source, bundle, verify=False)

    # From here on: json, hashlib and os only.
    manifest = json.loads((bundle / "manifest.json").read_text("utf-8"))
    assert manifest["format"] == "strongroom-bundle"
    assert manifest["format_version"] == 1
    assert manifest["source"] == {"metadata_backend": "memory", "blob_backend": "memory"}
    assert set(os.listdir(bundle)) == {"manifest.json", "records", "blobs"}
    referenced: dict[str, int] = {}
    for name in manifest["kinds"]:
        path = f"records/{name}.jsonl"
        raw = (bundle / path).read_bytes()
        info = manifest["files"][path]
        assert hashlib.sha256(raw).hexdigest() == info["sha256"]
        assert len(raw) == info["size_bytes"]
        lines = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        assert len(lines) == info["records"] == manifest["counts"][name]
        assert lines == before["records"][name]  # the models' JSON, verbatim
        for record in lines:
            if name in ("snapshots", "artifacts", "objects"):
                referenced[record["sha256"]] = record["size_bytes"]
            elif name == "definition_versions":
                referenced[record["digest"]] = record["size_bytes"]
    blob_files: dict[str, int] = {}
    for directory, _subdirs, names in os.walk(bundle / "blobs"):
        for name in names:
            data = (Path(directory) / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == name
            assert Path(directory).parts[-2:] == (name[:2], name[2:4])
            blob_files[name] = len(data)
    assert len(blob_files) == manifest["counts"]["blobs"] == len(before["blobs"])
    assert sum(blob_files.values()) == manifest["blob_bytes"]
    assert all(blob_files.get(d) == size for d, size in referenced.items())
    assert max(blob_files.values()) > 3 * MIB


async def test_channels_moved_differently_in_the_target_conflict_before_any_write(
    memory_source: Vault, tmp_path: Path
) -> None:
    async with await open_target_vault(str(tmp_path / "target")) as target:
        await transfer(memory_source, target, verify=False)
        for vault in (target, memory_source):  # the same promotion, made on each side
            await vault.registry.promote(
                "sandbox_policy", "policy-a", "1.1.0", to="staging", actor="alice", reason="x"
            )
        await memory_source.runs.create(project="later", actor="alice")
        before = await snapshot_vault(target)
        with pytest.raises(Conflict) as caught:
            await transfer(memory_source, target)
        assert caught.value.details["reason"] == "channel_diverged"
        assert await snapshot_vault(target) == before


async def test_a_bundle_from_before_the_registry_kinds_is_still_imported(
    tmp_path: Path,
) -> None:
    source = memory_vault()
    run = await source.runs.create(project="old", actor="alice")
    bundle = tmp_path / "bundle"
    await transfer(source, bundle, verify=False)
    # What an export written before the registry kinds looks like: no such files.
    manifest = json.loads((bundle / "manifest.json").read_text("utf-8"))
    for name in ("definition_versions", "channel_moves", "approvals"):
        (bundle / f"records/{name}.jsonl").unlink()
        del manifest["files"][f"records/{name}.jsonl"]
        del manifest["counts"][name]
        manifest["kinds"].remove(name)
    (bundle / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    assert (await verify_bundle(bundle)).ok
    async with await open_target_vault(str(tmp_path / "target")) as target:
        report = await transfer(bundle, target)
        assert report.ok, (report.problems, report.verify)
        assert report.records["definition_versions"] == 0
        assert (await target.metadata.get_run(run.run_id)).run_id == run.run_id


# -- interruptions ------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def interrupt_after(n: int) -> Any:
    calls = 0

    def progress(stage: str, done: int, total: int | None) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            raise Interrupted(f"{stage} {done}/{total}")

    return progress


async def count_progress_calls(source: Vault, tmp: Path) -> int:
    calls = 0

    def progress(stage: str, done: int, total: int | None) -> None:
        nonlocal calls
        calls += 1

    async with await open_target_vault(str(tmp)) as target:
        await transfer(source, target, progress=progress, verify=False)
    return calls


@pytest.mark.parametrize("target_kind", ["vault", "bundle"])
async def test_an_interrupted_transfer_completes_when_run_again(
    memory_source: Vault, tmp_path: Path, target_kind: str
) -> None:
    """Stop the copy after the n-th step for n spread over the whole copy (blob chunks,
    each blob, each batch of each kind), twice in a row, then let it finish."""
    before = await snapshot_vault(memory_source)
    total = await count_progress_calls(memory_source, tmp_path / "probe")
    points = sorted({1, 2, total // 5, total // 3, total // 2, 2 * total // 3, total - 1})
    for i, point in enumerate(points):
        where = tmp_path / f"{target_kind}-{i}"
        for stop in (point, max(1, point // 2)):
            if target_kind == "vault":
                async with await open_target_vault(str(where)) as target:
                    with pytest.raises(Interrupted):
                        await transfer(memory_source, target, progress=interrupt_after(stop))
            else:
                with pytest.raises(Interrupted):
                    await transfer(memory_source, where, progress=interrupt_after(stop))
                if stop < total:
                    assert not (where / "manifest.json").exists()
        if target_kind == "vault":
            async with await open_target_vault(str(where)) as target:
                report = await transfer(memory_source, target)
                assert_complete(report, before)
                assert await snapshot_vault(target) == before
        else:
            report = await transfer(memory_source, where)
            assert_complete(report, before)
            assert set(os.listdir(where)) == {"manifest.json", "records", "blobs"}
            async with await open_target_vault(str(where) + "-imported") as target:
                assert_complete(await transfer(where, target), before)
                assert await snapshot_vault(target) == before


async def test_an_unfinished_bundle_cannot_be_imported(
    memory_source: Vault, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    with pytest.raises(Interrupted):
        await transfer(memory_source, bundle, progress=interrupt_after(30))
    assert parse_endpoint(str(bundle)) == bundle  # still recognised as a bundle
    async with await open_target_vault(str(tmp_path / "target")) as target:
        with pytest.raises(NotFound) as caught:
            await transfer(bundle, target)
        assert caught.value.details["reason"] == "incomplete_bundle"
        assert (await target.metadata.query_runs(RunQuery(limit=1))).total == 0


# -- conflicts ----------------------------------------------------------------------------------


async def test_a_different_record_under_the_same_id_is_a_conflict_that_changes_nothing(
    memory_source: Vault, tmp_path: Path
) -> None:
    async with await open_target_vault(str(tmp_path / "target")) as target:
        await transfer(memory_source, target, verify=False)
        first = (await snapshot_vault(memory_source))["records"]["runs"][0]["run_id"]
        await target.runs.update(first, current_phase="edited")
        # The source grows meanwhile: none of that may reach the target.
        await populate_vault(memory_source, big_bytes=100, seed=9, tag="new")
        damaged = await snapshot_vault(target)
        with pytest.raises(Conflict) as caught:
            await transfer(memory_source, target)
        error = caught.value
        assert error.code == "conflict"
        assert error.details["kind"] == "runs"
        assert error.details["key"] == first
        assert {"current_phase", "version"} <= set(error.details["fields"])
        assert first in error.message
        assert await snapshot_vault(target) == damaged


async def test_diverged_audit_chains_conflict(memory_source: Vault, tmp_path: Path) -> None:
    async with await open_target_vault(str(tmp_path / "target")) as target:
        await transfer(memory_source, target, verify=False)
        await memory_source.runs.create(project="left", actor="a")
        await target.runs.create(project="right", actor="b")
        before = await snapshot_vault(target)
        with pytest.raises(Conflict) as caught:
            await transfer(memory_source, target)
        assert caught.value.details["kind"] == "audit_entries"
        assert await snapshot_vault(target) == before


async def test_a_vault_initialised_on_its_own_is_not_an_empty_target(
    memory_source: Vault, tmp_path: Path
) -> None:
    async with await Vault.open(tmp_path / "initialised") as target:
        before = await snapshot_vault(target)
        with pytest.raises(Conflict) as caught:
            await transfer(memory_source, target)
        assert "strongroom init" in caught.value.message
        assert await snapshot_vault(target) == before


async def test_a_finished_bundle_is_never_overwritten(memory_source: Vault, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    await transfer(memory_source, bundle)
    files = tree_digests(bundle)
    run = await memory_source.runs.create(project="later", actor="x")
    with pytest.raises(Conflict) as caught:
        await transfer(memory_source, bundle)
    assert caught.value.details["kind"] == "runs"
    assert caught.value.details["key"] == run.run_id
    assert tree_digests(bundle) == files
    assert not (bundle / ".partial").exists()


async def test_a_directory_that_is_not_a_bundle_is_refused(
    memory_source: Vault, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(Conflict) as caught:
        await transfer(memory_source, other)
    assert caught.value.details["reason"] == "not_a_bundle"
    assert os.listdir(other) == ["notes.txt"]


# -- damage -------------------------------------------------------------------------------------


async def test_an_edited_bundle_is_refused_before_anything_is_written(
    memory_source: Vault, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    await transfer(memory_source, bundle, verify=False)
    runs_file = bundle / "records" / "runs.jsonl"
    runs_file.write_bytes(
        runs_file.read_bytes().replace(b'"status":"completed"', b'"status":"failed"', 1)
    )
    report = await verify_bundle(bundle)
    assert not report.ok
    assert report.problems[0].subject == "records/runs.jsonl"
    async with await open_target_vault(str(tmp_path / "target")) as target:
        with pytest.raises(IntegrityError):
            await transfer(bundle, target)
        assert [d async for d in target.blobs.iter_digests()] == []


async def test_a_damaged_source_blob_is_reported_and_everything_else_copied(
    memory_source: Vault, tmp_path: Path
) -> None:
    before = await snapshot_vault(memory_source)
    big = max(before["blobs"], key=lambda d: before["blobs"][d]["size_bytes"])
    await corrupt_stored_blob(memory_source, big)
    async with await open_target_vault(str(tmp_path / "target")) as target:
        report = await transfer(memory_source, target)
        assert not report.ok
        assert [(p.code, p.subject) for p in report.problems] == [("integrity_error", big)]
        assert not await target.blobs.exists(big)
        assert report.records == counts_of(before)  # every record made it
        assert report.verify is not None
        assert {p.code for p in report.verify.problems} == {"not_found"}
        assert all(big in p.message for p in report.verify.problems)


async def test_a_damaged_bundle_blob_is_caught(memory_source: Vault, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    await transfer(memory_source, bundle, verify=False)
    victim = next(p for p in (bundle / "blobs").rglob("*") if p.is_file())
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes() + b"!")
    assert {p.subject for p in (await verify_bundle(bundle)).problems} == {victim.name}
    async with await open_target_vault(str(tmp_path / "target")) as target:
        report = await transfer(bundle, target)
        assert [(p.code, p.subject) for p in report.problems] == [("integrity_error", victim.name)]
        assert not await target.blobs.exists(victim.name)


# -- endpoints ----------------------------------------------------------------------------------


def test_parse_endpoint(tmp_path: Path) -> None:
    assert parse_endpoint("bundle:/x/y") == Path("/x/y")
    assert parse_endpoint("bundle:rel") == Path("rel")
    assert parse_endpoint(str(tmp_path)) == str(tmp_path)  # a plain directory is a vault URL
    assert parse_endpoint("postgresql://u@h/db") == "postgresql://u@h/db"
    assert parse_endpoint("memory://") == "memory://"
    with pytest.raises(Exception, match="bundle: needs a directory"):
        parse_endpoint("bundle:")


# -- property: any small vault survives memory -> bundle -> memory --------------------------------

_line = st.fixed_dictionaries(
    {
        "event": st.from_regex(r"[a-z][a-z0-9._]{0,12}", fullmatch=True),
        "level": st.sampled_from(["debug", "info", "warning", "error"]),
        "message": st.text(max_size=40),
        "data": st.dictionaries(
            st.text(min_size=1, max_size=5),
            st.one_of(
                st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=10), st.booleans(), st.none()
            ),
            max_size=3,
        ),
    }
)
_run = st.fixed_dictionaries(
    {
        "lines": st.lists(_line, max_size=6),
        "snapshots": st.integers(0, 3),
        "payloads": st.lists(st.binary(max_size=300), max_size=3),
        "end": st.sampled_from(["complete", "fail", "cancel", "running"]),
    }
)


async def _build(spec: list[dict[str, Any]]) -> Vault:
    vault = Vault(MemoryMetadataStore(), MemoryBlobStore(), checkpoint_interval=3)
    for i, run_spec in enumerate(spec):
        run = await vault.runs.create(project=f"p{i % 2}", actor="prop")
        await vault.runs.start(run.run_id)
        for line in run_spec["lines"]:
            await vault.logs.append(run.run_id, line)
        for rev in range(run_spec["snapshots"]):
            await vault.snapshots.save(
                run.run_id, RunState(data={"rev": rev}), expected_revision=rev
            )
        for j, payload in enumerate(run_spec["payloads"]):
            await vault.artifacts.put_bytes(run.run_id, payload, role="custom", name=f"f{j}.bin")
        if run_spec["end"] == "complete":
            await vault.runs.complete(run.run_id)
        elif run_spec["end"] == "fail":
            await vault.runs.fail(run.run_id, {"code": "timeout", "message": "t", "details": {}})
        elif run_spec["end"] == "cancel":
            await vault.runs.cancel(run.run_id)
    return vault


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(_run, max_size=4))
def test_any_vault_round_trips_through_a_bundle(spec: list[dict[str, Any]]) -> None:
    async def check() -> None:
        source = await _build(spec)
        before = await snapshot_vault(source)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            assert_complete(await transfer(source, bundle), before)
            target = memory_vault()
            assert_complete(await transfer(bundle, target), before)
            assert await snapshot_vault(target) == before

    asyncio.run(check())
