"""Tamper detection on the embedded vault: whatever is changed behind the vault's back (a blob
file, a log or audit row in the database), ``verify`` names it.

Each test builds a small vault, closes it, tampers with the files directly (blobs on disk,
rows through the stdlib ``sqlite3`` module, as an intruder would), reopens it and verifies.
Table and column names are those of ``strongroom.adapters._sql.tables``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.ids import new_id
from strongroom.models import (
    Approval,
    Channel,
    LogEntry,
    RunTarget,
    VerifyProblem,
    VerifyReport,
    canonical_json,
)
from strongroom.testing._registry import example_move, publish_example
from strongroom.vault import Vault

CHECKPOINT_INTERVAL = 4


@dataclass(frozen=True)
class Blob:
    """A stored blob and the record that refers to it, as verify names them."""

    sha256: str
    kind: str
    subject: str


@dataclass(frozen=True)
class Sample:
    vault_dir: Path
    sealed_run: str  # completed: its log is sealed into an artifact
    open_run: str  # running: its log lives only in the database
    blobs: dict[str, Blob]
    audit_head: int

    @property
    def database(self) -> Path:
        return self.vault_dir / "vault.db"

    def blob_path(self, name: str) -> Path:
        digest = self.blobs[name].sha256
        return self.vault_dir / "blobs" / "sha256" / digest[:2] / digest[2:4] / digest


@pytest.fixture
async def sample(tmp_path: Path) -> Sample:
    vault_dir = tmp_path / "vault"
    async with await Vault.open(vault_dir, checkpoint_interval=CHECKPOINT_INTERVAL) as vault:
        sealed = await vault.runs.create(project="tamper", actor="alice")
        await vault.runs.start(sealed.run_id)
        snapshot = await vault.snapshots.save(
            sealed.run_id, {"data": {"step": 1}}, expected_revision=0
        )
        artifact = await vault.artifacts.put_bytes(sealed.run_id, b"artifact bytes", name="a.txt")
        # Over the inline threshold: a file of the blob directory (the others are rows).
        large = await vault.artifacts.put_bytes(sealed.run_id, b"L" * 100_000, name="large")
        await vault.logs.append_many(
            sealed.run_id, [{"event": "step", "message": f"line {n}"} for n in range(5)]
        )
        await vault.runs.complete(sealed.run_id)
        log_ref = await vault.logs.reference(sealed.run_id)
        assert log_ref.sealed
        assert log_ref.sealed_artifact_id is not None
        log_artifact = await vault.artifacts.get(log_ref.sealed_artifact_id)

        running = await vault.runs.create(project="tamper", actor="alice")
        await vault.runs.start(running.run_id)
        await vault.logs.append_many(
            running.run_id, [{"event": "step", "message": f"line {n}"} for n in range(5)]
        )
        obj = await vault.catalog.put_object("projects", "projects/demo/1.json", b'{"v": 1}')

        # End the audit log on a checkpoint, so that removing its newest entry is detectable.
        head = await vault.audit.head()
        assert head is not None
        while head.seq % CHECKPOINT_INTERVAL:
            head = await vault.audit.record(
                {"event": "test.pad", "subject_type": "test", "subject_id": "pad"}
            )
        assert (await vault.audit.checkpoints())[-1].tree_size == head.seq

        report = await vault.verify()
        assert report.ok, report.problems

    blobs = {
        "snapshot": Blob(snapshot.sha256, "snapshot", f"{sealed.run_id}@1"),
        "artifact": Blob(artifact.sha256, "artifact", artifact.artifact_id),
        "large_artifact": Blob(large.sha256, "artifact", large.artifact_id),
        "sealed_log": Blob(log_artifact.sha256, "artifact", log_artifact.artifact_id),
        "catalog_object": Blob(obj.sha256, "object", obj.object_id),
    }
    assert len({blob.sha256 for blob in blobs.values()}) == len(blobs)
    return Sample(vault_dir, sealed.run_id, running.run_id, blobs, head.seq)


async def verify(sample: Sample) -> VerifyReport:
    async with await Vault.open(sample.vault_dir, checkpoint_interval=CHECKPOINT_INTERVAL) as v:
        return await v.verify()


@contextmanager
def database(sample: Sample) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the vault's database (its append-only triggers dropped),
    committed and closed on exit."""
    conn = sqlite3.connect(sample.database)
    try:
        with conn:
            # An intruder who owns the file drops the append-only guards first.
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).fetchall():
                conn.execute(f'DROP TRIGGER "{name}"')
            yield conn
    finally:
        conn.close()


def problems_of(report: VerifyReport, kind: str) -> list[VerifyProblem]:
    return [problem for problem in report.problems if problem.kind == kind]


def edit_body(
    conn: sqlite3.Connection, table: str, where: str, *args: object, **changes: object
) -> None:
    (body,) = conn.execute(f"SELECT body FROM {table} WHERE {where}", args).fetchone()
    edited = {**json.loads(body), **changes}
    count = conn.execute(
        f"UPDATE {table} SET body = ? WHERE {where}", (json.dumps(edited), *args)
    ).rowcount
    assert count == 1


BLOB_NAMES = ["snapshot", "artifact", "large_artifact", "sealed_log", "catalog_object"]


def stored_row(sample: Sample, name: str) -> bytes | None:
    """The blob's row when the vault keeps it inline (small blobs), else None (a file)."""
    conn = sqlite3.connect(sample.database)
    try:
        row = conn.execute(
            "SELECT data FROM inline_blobs WHERE sha256 = ?", (sample.blobs[name].sha256,)
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else bytes(row[0])


# -- blobs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BLOB_NAMES)
async def test_a_flipped_byte_in_any_blob_is_reported(sample: Sample, name: str) -> None:
    row = stored_row(sample, name)
    assert (row is None) == (name == "large_artifact")
    if row is not None:
        data = bytearray(row)
        data[len(data) // 2] ^= 0x01
        with database(sample) as conn:
            conn.execute(
                "UPDATE inline_blobs SET data = ? WHERE sha256 = ?",
                (bytes(data), sample.blobs[name].sha256),
            )
    else:
        path = sample.blob_path(name)
        os.chmod(path, 0o644)  # blobs are stored read-only
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    report = await verify(sample)

    digest = sample.blobs[name].sha256
    assert [(p.kind, p.code, p.subject) for p in report.problems] == [
        ("blob", "integrity_error", digest)
    ]


@pytest.mark.parametrize("name", BLOB_NAMES)
async def test_a_deleted_blob_is_reported_on_the_record_that_needs_it(
    sample: Sample, name: str
) -> None:
    if stored_row(sample, name) is not None:
        with database(sample) as conn:
            conn.execute("DELETE FROM inline_blobs WHERE sha256 = ?", (sample.blobs[name].sha256,))
    else:
        sample.blob_path(name).unlink()

    report = await verify(sample)

    blob = sample.blobs[name]
    assert [(p.kind, p.code, p.subject) for p in report.problems] == [
        (blob.kind, "not_found", blob.subject)
    ]


async def test_a_record_whose_size_was_edited_is_reported(sample: Sample) -> None:
    with database(sample) as conn:
        conn.execute(
            "UPDATE snapshots SET size_bytes = size_bytes + 1 WHERE run_id = ?",
            (sample.sealed_run,),
        )

    report = await verify(sample)

    blob = sample.blobs["snapshot"]
    assert [(p.kind, p.code, p.subject) for p in report.problems] == [
        ("snapshot", "integrity_error", blob.subject)
    ]


async def test_an_artifact_record_pointed_at_another_blob_is_reported(sample: Sample) -> None:
    artifact_id = sample.blobs["artifact"].subject
    other = sample.blobs["catalog_object"].sha256
    with database(sample) as conn:
        edit_body(conn, "artifacts", "artifact_id = ?", artifact_id, sha256=other, size_bytes=8)

    report = await verify(sample)

    # The record/column check and the audit binding both name it; nothing else is reported.
    assert {p.kind for p in report.problems} == {"artifact"}
    assert all(artifact_id in p.subject for p in report.problems)
    assert any(p.details.get("reason") == "digest_mismatch" for p in report.problems)


# -- log chains ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sealed", "open"])
async def test_an_edited_log_line_breaks_its_chain(sample: Sample, which: str) -> None:
    run_id = sample.sealed_run if which == "sealed" else sample.open_run
    with database(sample) as conn:
        edit_body(conn, "log_entries", "run_id = ? AND seq = 3", run_id, message="all is well")

    report = await verify(sample)

    assert [(p.kind, p.code, p.subject) for p in report.problems] == [
        ("log_chain", "integrity_error", f"log:{run_id}#3")
    ]


def forge_entry(conn: sqlite3.Connection, run_id: str, seq: int, message: str) -> None:
    """Rewrite a log line and recompute its own hash, as an intruder who knows the scheme."""
    (body,) = conn.execute(
        "SELECT body FROM log_entries WHERE run_id = ? AND seq = ?", (run_id, seq)
    ).fetchone()
    entry = LogEntry.model_validate_json(body).model_copy(update={"message": message})
    forged_hash = hashlib.sha256(
        canonical_json(entry.model_dump(mode="json", exclude={"hash"}))
    ).hexdigest()
    forged = entry.model_copy(update={"hash": forged_hash})
    conn.execute(
        "UPDATE log_entries SET body = ?, hash = ? WHERE run_id = ? AND seq = ?",
        (forged.model_dump_json(), forged.hash, run_id, seq),
    )


async def test_a_rehashed_log_line_breaks_the_link_to_the_next_line(sample: Sample) -> None:
    with database(sample) as conn:
        forge_entry(conn, sample.open_run, 3, "all is well")

    report = await verify(sample)

    assert [(p.kind, p.subject) for p in report.problems] == [
        ("log_chain", f"log:{sample.open_run}#4")
    ]


async def test_a_rehashed_last_line_of_a_sealed_log_no_longer_matches_the_seal(
    sample: Sample,
) -> None:
    with database(sample) as conn:
        forge_entry(conn, sample.sealed_run, 5, "all is well")

    report = await verify(sample)

    # The seal's head and the head the audit chain carried at the run's end both disagree.
    assert {(p.kind, p.subject) for p in report.problems} == {
        ("log_chain", f"log:{sample.sealed_run}")
    }


async def test_a_line_deleted_from_a_sealed_log_is_reported(sample: Sample) -> None:
    with database(sample) as conn:
        conn.execute("DELETE FROM log_entries WHERE run_id = ? AND seq = 5", (sample.sealed_run,))

    report = await verify(sample)

    assert problems_of(report, "log_chain")
    assert {p.subject for p in report.problems} == {f"log:{sample.sealed_run}"}


# -- the audit chain -----------------------------------------------------------------------------


async def test_an_edited_audit_entry_breaks_the_audit_chain(sample: Sample) -> None:
    with database(sample) as conn:
        edit_body(conn, "audit_entries", "seq = ?", 2, actor="mallory")

    report = await verify(sample)

    assert [(p.kind, p.code, p.subject) for p in report.problems] == [
        ("audit_chain", "integrity_error", "audit#2")
    ]


async def test_a_deleted_audit_entry_is_reported(sample: Sample) -> None:
    with database(sample) as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = ?", (2,))

    report = await verify(sample)

    chain = problems_of(report, "audit_chain")
    gaps = [p for p in chain if "sequence gap" in p.message]
    assert [p.subject for p in gaps] == ["audit#3"]
    # The binding index still names the entry that is gone.
    assert any(p.subject == "audit#2" and "does not exist" in p.message for p in chain)


async def test_removing_the_newest_audit_entry_contradicts_its_checkpoint(
    sample: Sample,
) -> None:
    with database(sample) as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = ?", (sample.audit_head,))

    report = await verify(sample)

    assert ("audit_checkpoint", f"checkpoint@{sample.audit_head}") in [
        (p.kind, p.subject) for p in report.problems
    ]


async def test_edited_index_columns_of_registry_rows_are_reported(tmp_path: Path) -> None:
    vault_dir = tmp_path / "registry"
    async with await Vault.open(vault_dir) as vault:
        version = await publish_example(vault)
        await vault.metadata.move_channel(example_move(version, Channel.DRAFT, None))
        approval = Approval(
            approval_id=new_id(),
            target=RunTarget(scope="run", run_id=new_id()),
            actor="reviewer",
            reason="ok",
        )
        await vault.metadata.insert_approval(approval)
        assert [p async for p in vault.metadata.iter_record_problems()] == []
    conn = sqlite3.connect(vault_dir / "vault.db")
    with conn:
        conn.execute("UPDATE definition_versions SET version = '9.9.9'")
        conn.execute("UPDATE channel_moves SET channel = 'production'")
        conn.execute("UPDATE approvals SET scope = 'promotion'")
    conn.close()
    async with await Vault.open(vault_dir) as vault:
        found = {
            (p.kind, tuple(p.details["fields"]))
            async for p in vault.metadata.iter_record_problems()
        }
    assert found == {
        ("definition", ("version",)),
        ("channel_move", ("channel",)),
        ("approval", ("scope",)),
    }
