"""verify's one-pass record checks on SQL (adapters/_sql/record_check.py) and the bounds that
keep legitimate large writes verifiable: bodies stored canonical (checked by their hash), the
slow path for bodies stored in another form, nested-field columns, oversized bodies, and
writes binding more records than one audit entry holds."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from _sql_tamper import drop_append_only_guards
from strongroom.adapters._sql import record_check
from strongroom.ids import new_id
from strongroom.models import (
    MAX_BINDINGS_PER_ENTRY,
    ArtifactMetadata,
    AuditEvent,
    Run,
    VerifyReport,
)
from strongroom.vault import Vault


def _artifact(vault: Vault, run_id: str, sha256: str, size: int, n: int) -> ArtifactMetadata:
    return ArtifactMetadata.model_validate(
        {
            "artifact_id": new_id(),
            "run_id": run_id,
            "role": "phase_output",
            "phase": "p",
            "name": f"a-{n}.json",
            "format": "json",
            "media_type": "application/json",
            "location": vault.blobs.locate(sha256),
            "size_bytes": size,
            "sha256": sha256,
            "namespace": "artifacts",
        }
    )


def _edit(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        drop_append_only_guards(conn)
        assert conn.execute(sql, params).rowcount >= 1
    conn.close()


async def _verify(path: Path) -> VerifyReport:
    async with await Vault.open(path) as vault:
        return await vault.verify()


async def test_a_write_binding_more_records_than_an_entry_holds_verifies(tmp_path: Path) -> None:
    count = MAX_BINDINGS_PER_ENTRY + 7
    async with await Vault.open(tmp_path / "v") as vault:
        run = await vault.runs.create(project="p", purpose="big batch")
        blob = await vault.blobs.put_bytes(b"x")
        batch = [
            _artifact(vault, run.run_id, blob.sha256, blob.size_bytes, n) for n in range(count)
        ]
        before = await vault.audit.head()
        await vault.metadata.insert_artifacts(
            batch, audit=AuditEvent(event="artifact.stored", subject_type="run", subject_id="r")
        )
        after = await vault.audit.head()
        assert before is not None
        assert after is not None
        parts = await vault.metadata.read_audit_entries(after_seq=before.seq)
        assert [p.details["binding_part"] for p in parts] == ["1/2", "2/2"]
        assert sum(len(p.records) for p in parts) == count
        report = await vault.verify()
    assert report.ok, report.problems[:3]


async def test_a_body_in_the_older_stored_form_still_verifies_and_its_edit_is_caught(
    tmp_path: Path,
) -> None:
    async with await Vault.open(tmp_path / "v") as vault:
        run = await vault.runs.create(project="p", purpose="older form")
    db = tmp_path / "v" / "vault.db"
    conn = sqlite3.connect(db)
    (body,) = conn.execute("SELECT body FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
    conn.close()
    older = Run.model_validate_json(body).model_dump_json()  # what earlier versions stored
    assert older != body
    _edit(db, "UPDATE runs SET body = ? WHERE run_id = ?", older, run.run_id)
    assert (await _verify(tmp_path / "v")).ok

    edited = json.loads(older)
    edited["purpose"] = "rewritten"
    _edit(db, "UPDATE runs SET body = ? WHERE run_id = ?", json.dumps(edited), run.run_id)
    report = await _verify(tmp_path / "v")
    found = {(p.details.get("reason"), str(p.details.get("fields"))) for p in report.problems}
    # the body no longer matches its binding, nor its purpose column
    assert found == {("digest_mismatch", "None"), (None, "['purpose']")}


async def test_a_column_copying_a_nested_field_is_compared(tmp_path: Path) -> None:
    async with await Vault.open(tmp_path / "v") as vault:
        run = await vault.runs.create(project="p", purpose="nested")
    _edit(
        tmp_path / "v" / "vault.db",
        "UPDATE runs SET playbook_id = 'forged' WHERE run_id = ?",
        run.run_id,
    )
    report = await _verify(tmp_path / "v")
    assert [(p.kind, p.details.get("fields")) for p in report.problems] == [
        ("run", ["playbook_id"])
    ]


async def test_an_edited_timestamp_column_is_caught_on_the_fast_path(tmp_path: Path) -> None:
    async with await Vault.open(tmp_path / "v") as vault:
        run = await vault.runs.create(project="p", purpose="time")
    _edit(
        tmp_path / "v" / "vault.db",
        "UPDATE runs SET created_at = '2001-01-01T00:00:00.000000+00:00' WHERE run_id = ?",
        run.run_id,
    )
    report = await _verify(tmp_path / "v")
    assert [(p.kind, p.details.get("fields")) for p in report.problems] == [("run", ["created_at"])]


async def test_bodies_over_the_limit_are_reported_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Vault.open(tmp_path / "v") as vault:
        run = await vault.runs.create(project="p", purpose="oversized")
        monkeypatch.setattr(record_check, "MAX_RECORD_CHARS", 10)
        problems = [p async for p in vault.metadata.iter_all_record_problems()]
    found = [p for p in problems if p.details.get("reason") == "oversized_record"]
    assert run.run_id in {p.subject for p in found}


async def test_pages_cut_by_characters_still_check_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("strongroom.adapters._sql.base.PAGE_CHARS", 1)  # one row a page
    async with await Vault.open(tmp_path / "v") as vault:
        runs = [await vault.runs.create(project="p", purpose=f"r{i}") for i in range(5)]
    victim = runs[3].run_id
    _edit(tmp_path / "v" / "vault.db", "UPDATE runs SET project = 'x' WHERE run_id = ?", victim)
    report = await _verify(tmp_path / "v")
    assert {p.subject for p in report.problems if p.kind == "run"} == {victim}


async def test_a_writer_put_into_an_approval_on_sqlite_is_reported(tmp_path: Path) -> None:
    """SQLite has no roles: `approvals.written_by` stays empty there, so a value in it can only
    be a hand edit, and verify names the approval."""
    from strongroom.services.registry import RegistryPolicy

    async with await Vault.open(tmp_path / "v") as vault:
        vault.registry.policy = RegistryPolicy(require_signed_approvals=False)
        run = await vault.runs.create(project="p", actor="a")
        approval = await vault.registry.approve({"scope": "run", "run_id": run.run_id}, reason="r")
        assert (await vault.verify()).ok
    with sqlite3.connect(tmp_path / "v" / "vault.db") as conn:
        conn.execute("UPDATE approvals SET written_by = 'postgres'")
    async with await Vault.open(tmp_path / "v", bootstrap=False) as vault:
        report = await vault.verify()
    found = [p for p in report.problems if p.details.get("column") == "written_by"]
    assert [p.subject for p in found] == [approval.approval_id], report.problems
