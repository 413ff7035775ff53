"""The tamper matrix: every kind of change an intruder can make behind strongroom's back (rows
edited, deleted, re-pointed, forged or reordered straight in the database; blob files flipped,
swapped or removed; the whole vault copied back from an earlier moment), each applied to a
fresh populated vault on SQLite and on PostgreSQL, and ``strongroom verify`` must exit 1 and
name the damaged record. docs/security.md has the same table in words.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from _tamper_vault import Populated, body_of, edit_body, populate
from strongroom.cli import app
from strongroom.integrity import SigningKey, tree_head_payload
from strongroom.models import VerifyReport


@dataclass(frozen=True)
class Found:
    """A problem verify must report: its kind, and text its subject must contain."""

    kind: str
    subject: str
    needs_anchor: bool = False


Tamper = Callable[[Populated], Coroutine[Any, Any, Found]]
TAMPERS: dict[str, Tamper] = {}


def tamper(fn: Tamper) -> Tamper:
    TAMPERS[fn.__name__] = fn
    return fn


def where_run(run_id: str) -> str:
    return f"run_id = '{run_id}'"


# -- blobs --------------------------------------------------------------------------------------


# artifact_blobs[0] is a file of the blob directory, [1] a row of the records store (inline).


def _flip(p: Populated, digest: str) -> Found:
    assert p.inline(digest) == (digest == p.artifact_blobs[1])
    data = bytearray(p.blob_bytes(digest))
    data[0] ^= 0x01
    p.write_blob(digest, bytes(data))
    return Found("blob", digest)


@tamper
async def blob_byte_flipped(p: Populated) -> Found:
    return _flip(p, p.artifact_blobs[0])


@tamper
async def inline_blob_byte_flipped(p: Populated) -> Found:
    return _flip(p, p.artifact_blobs[1])


@tamper
async def blob_deleted(p: Populated) -> Found:
    p.delete_blob(p.artifact_blobs[0])
    return Found("artifact", p.artifacts[0])


@tamper
async def inline_blob_deleted(p: Populated) -> Found:
    p.delete_blob(p.artifact_blobs[1])
    return Found("artifact", p.artifacts[1])


@tamper
async def blob_swapped(p: Populated) -> Found:
    first, second = p.artifact_blobs
    p.write_blob(first, p.blob_bytes(second))
    return Found("blob", first)


@tamper
async def inline_blob_swapped(p: Populated) -> Found:
    first, second = p.artifact_blobs
    p.write_blob(second, p.blob_bytes(first))
    return Found("blob", second)


# -- run logs -----------------------------------------------------------------------------------


@tamper
async def log_line_edited(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "log_entries", f"{where_run(p.completed_run)} AND seq = 2", message="x")
    return Found("log_chain", p.completed_run)


@tamper
async def log_line_removed_mid_chain(p: Populated) -> Found:
    with p.sql() as conn:
        conn.execute(sa.text(f"DELETE FROM log_entries WHERE {where_run(p.open_run)} AND seq = 7"))
    return Found("log_chain", p.open_run)


@tamper
async def sealed_log_truncated(p: Populated) -> Found:
    with p.sql() as conn:
        (last,) = conn.execute(
            sa.text(f"SELECT max(seq) FROM log_entries WHERE {where_run(p.completed_run)}")
        ).one()
        conn.execute(
            sa.text(f"DELETE FROM log_entries WHERE {where_run(p.completed_run)} AND seq = {last}")
        )
    return Found("log_chain", p.completed_run)


@tamper
async def open_log_tail_truncated(p: Populated) -> Found:
    """The open run's lines from its last carried head on: the chain stays valid."""
    with p.sql() as conn:
        conn.execute(
            sa.text(
                f"DELETE FROM log_entries WHERE {where_run(p.open_run)} "
                f"AND seq >= {p.open_log_carried}"
            )
        )
    return Found("log_chain", p.open_run)


@tamper
async def log_reference_unsealed(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "log_refs", where_run(p.completed_run), sealed=False)
    return Found("log_ref", p.completed_run)


# -- the audit chain ----------------------------------------------------------------------------


@tamper
async def audit_entry_edited(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "audit_entries", "seq = 3", actor="mallory")
    return Found("audit_chain", "audit#3")


@tamper
async def audit_entries_reordered(p: Populated) -> Found:
    with p.sql() as conn:
        four = body_of(conn, "audit_entries", "seq = 4")
        five = body_of(conn, "audit_entries", "seq = 5")
        for seq, body in ((4, five), (5, four)):
            conn.execute(
                sa.text("UPDATE audit_entries SET body = :b WHERE seq = :s"),
                {"b": json.dumps(body), "s": seq},
            )
    return Found("audit_chain", "audit#4")


@tamper
async def audit_seq_lowered_in_last_body(p: Populated) -> Found:
    """Used to make verify re-read the same page forever."""
    with p.sql() as conn:
        edit_body(conn, "audit_entries", f"seq = {p.audit_head}", seq=1)
    return Found("audit_chain", f"audit#{p.audit_head}")


@tamper
async def audit_hash_column_edited(p: Populated) -> Found:
    with p.sql() as conn:
        conn.execute(sa.text(f"UPDATE audit_entries SET hash = '{'a' * 64}' WHERE seq = 6"))
    return Found("audit_chain", "audit#6")


@tamper
async def audit_query_column_edited(p: Populated) -> Found:
    """The run column `audit show --run` filters on, cleared: the entry would vanish from the
    run's history while its body and hash stay intact."""
    with p.sql() as conn:
        (seq,) = conn.execute(
            sa.text(f"SELECT min(seq) FROM audit_entries WHERE run_id = '{p.completed_run}'")
        ).one()
        conn.execute(sa.text(f"UPDATE audit_entries SET run_id = NULL WHERE seq = {seq}"))
    return Found("audit_chain", f"audit#{seq}")


@tamper
async def audit_tail_removed(p: Populated) -> Found:
    """The newest entries, which no checkpoint row covers once it is removed too."""
    cut = p.audit_head - 3
    with p.sql() as conn:
        conn.execute(sa.text(f"DELETE FROM audit_entries WHERE seq > {cut}"))
        conn.execute(sa.text(f"DELETE FROM audit_bindings WHERE seq > {cut}"))
        conn.execute(sa.text(f"DELETE FROM audit_checkpoints WHERE tree_size > {cut}"))
    return Found("audit_anchor", f"anchor@{p.audit_head}", needs_anchor=True)


@tamper
async def audit_checkpoint_root_edited(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "audit_checkpoints", "tree_size = 10", root_hash="b" * 64)
    return Found("audit_checkpoint", "checkpoint@10")


@tamper
async def audit_checkpoint_resigned(p: Populated) -> Found:
    """Forged consistently (root recomputed) but signed with the intruder's own key."""
    intruder = SigningKey.generate()
    with p.sql() as conn:
        body = body_of(conn, "audit_checkpoints", "tree_size = 10")
        from datetime import datetime

        at = datetime.fromisoformat(body["signed_at"])
        body.update(
            public_key=intruder.public_key_hex,
            key_id=intruder.key_id,
            signature=intruder.sign(tree_head_payload(10, body["root_hash"], at)),
        )
        conn.execute(
            sa.text("UPDATE audit_checkpoints SET body = :b WHERE tree_size = 10"),
            {"b": json.dumps(body)},
        )
    return Found("audit_checkpoint", "checkpoint@10")


@tamper
async def audit_checkpoint_removed(p: Populated) -> Found:
    """An older checkpoint row (not the newest): it is bound like any record."""
    with p.sql() as conn:
        conn.execute(sa.text("DELETE FROM audit_checkpoints WHERE tree_size = 10"))
    return Found("checkpoint", "checkpoint:10")


@tamper
async def audit_checkpoint_signature_stripped(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(
            conn,
            "audit_checkpoints",
            "tree_size = 20",
            signature=None,
            public_key=None,
            key_id=None,
            signed_at=None,
        )
    return Found("checkpoint", "checkpoint:20")


@tamper
async def binding_index_edited(p: Populated) -> Found:
    with p.sql() as conn:
        (seq,) = conn.execute(
            sa.text(
                "SELECT max(seq) FROM audit_bindings WHERE record_type = 'artifact' "
                f"AND record_id = '{p.artifacts[0]}'"
            )
        ).one()
        conn.execute(sa.text(f"UPDATE audit_bindings SET digest = '{'c' * 64}' WHERE seq = {seq}"))
    return Found("audit_chain", f"audit#{seq}")


@tamper
async def binding_index_row_removed(p: Populated) -> Found:
    with p.sql() as conn:
        (seq,) = conn.execute(
            sa.text(
                "SELECT max(seq) FROM audit_bindings WHERE record_type = 'run' "
                f"AND record_id = '{p.failed_run}'"
            )
        ).one()
        conn.execute(sa.text(f"DELETE FROM audit_bindings WHERE seq = {seq}"))
    return Found("audit_chain", f"audit#{seq}")


# -- records users read -------------------------------------------------------------------------


@tamper
async def snapshot_repointed_at_older_blob(p: Populated) -> Found:
    older = p.snapshot_blobs[0]
    with p.sql() as conn:
        where = f"{where_run(p.completed_run)} AND revision = 3"
        edit_body(conn, "snapshots", where, sha256=older)
        conn.execute(sa.text(f"UPDATE snapshots SET sha256 = '{older}' WHERE {where}"))
    return Found("snapshot", f"{p.completed_run}@3")


@tamper
async def newest_snapshot_removed(p: Populated) -> Found:
    with p.sql() as conn:
        conn.execute(
            sa.text(f"DELETE FROM snapshots WHERE {where_run(p.completed_run)} AND revision = 3")
        )
    return Found("snapshot", f"{p.completed_run}@3")


@tamper
async def artifact_renamed_in_body(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "artifacts", f"artifact_id = '{p.artifacts[0]}'", name="evil.txt")
    return Found("artifact", p.artifacts[0])


@tamper
async def artifact_repointed_at_another_blob(p: Populated) -> Found:
    other = p.artifact_blobs[1]
    with p.sql() as conn:
        where = f"artifact_id = '{p.artifacts[0]}'"
        size = body_of(conn, "artifacts", f"artifact_id = '{p.artifacts[1]}'")["size_bytes"]
        edit_body(conn, "artifacts", where, sha256=other, size_bytes=size)
        conn.execute(
            sa.text(f"UPDATE artifacts SET sha256 = '{other}', size_bytes = {size} WHERE {where}")
        )
    return Found("artifact", p.artifacts[0])


@tamper
async def artifact_forged(p: Populated) -> Found:
    """A whole new artifact row pointing at an existing blob, never written by strongroom."""
    forged = "01900000-0000-7000-8000-00000000beef"
    with p.sql() as conn:
        row = (
            conn.execute(sa.text(f"SELECT * FROM artifacts WHERE artifact_id = '{p.artifacts[0]}'"))
            .mappings()
            .one()
        )
        body = {**json.loads(row["body"]), "artifact_id": forged}
        values = {**row, "artifact_id": forged, "body": json.dumps(body)}
        columns = ", ".join(values)
        conn.execute(
            sa.text(
                f"INSERT INTO artifacts ({columns}) VALUES ({', '.join(':' + c for c in values)})"
            ),
            values,
        )
    return Found("artifact", forged)


@tamper
async def failed_run_rewritten_as_success(p: Populated) -> Found:
    with p.sql() as conn:
        where = where_run(p.failed_run)
        edit_body(conn, "runs", where, status="completed", outcome="success", last_error=None)
        conn.execute(sa.text(f"UPDATE runs SET status = 'completed' WHERE {where}"))
    return Found("run", p.failed_run)


@tamper
async def run_successor_column_repointed(p: Populated) -> Found:
    """The index column behind a run's successors, pointed at another run: the run would be
    listed as following a run it never named, while its body and binding stay intact."""
    with p.sql() as conn:
        where = where_run(p.failed_run)
        conn.execute(
            sa.text(f"UPDATE runs SET previous_run_id = '{p.completed_run}' WHERE {where}")
        )
    return Found("run", p.failed_run)


@tamper
async def completed_run_made_running_again(p: Populated) -> Found:
    with p.sql() as conn:
        where = where_run(p.completed_run)
        edit_body(conn, "runs", where, status="running", outcome=None, completed_at=None)
        conn.execute(sa.text(f"UPDATE runs SET status = 'running' WHERE {where}"))
    return Found("run", p.completed_run)


@tamper
async def run_forged(p: Populated) -> Found:
    forged = "01900000-0000-7000-8000-00000000f00d"
    with p.sql() as conn:
        row = (
            conn.execute(sa.text(f"SELECT * FROM runs WHERE {where_run(p.failed_run)}"))
            .mappings()
            .one()
        )
        body = {**json.loads(row["body"]), "run_id": forged}
        values = {**row, "run_id": forged, "body": json.dumps(body)}
        conn.execute(
            sa.text(
                f"INSERT INTO runs ({', '.join(values)}) "
                f"VALUES ({', '.join(':' + c for c in values)})"
            ),
            values,
        )
    return Found("run", forged)


@tamper
async def deleted_run_put_back(p: Populated) -> Found:
    """A run deleted under its tombstone, its row inserted again."""
    values = p.deleted_run_row
    with p.sql() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO runs ({', '.join(values)}) "
                f"VALUES ({', '.join(':' + c for c in values)})"
            ),
            values,
        )
    return Found("run", p.deleted_run)


@tamper
async def run_deleted_without_a_tombstone(p: Populated) -> Found:
    """A run removed with everything of it, as retention would, but with no tombstone."""
    where = where_run(p.failed_run)
    with p.sql() as conn:
        conn.execute(sa.text(f"DELETE FROM holds WHERE {where}"))
        conn.execute(
            sa.text(
                "DELETE FROM artifact_tags WHERE artifact_id IN "
                f"(SELECT artifact_id FROM artifacts WHERE {where})"
            )
        )
        for table in ("artifacts", "snapshots", "log_entries", "log_refs", "run_labels", "runs"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE {where}"))
    return Found("run", p.failed_run)


@tamper
async def hold_removed(p: Populated) -> Found:
    with p.sql() as conn:
        conn.execute(sa.text(f"DELETE FROM holds WHERE hold_id = '{p.hold_id}'"))
    return Found("hold", p.hold_id)


@tamper
async def hold_released_in_its_column(p: Populated) -> Found:
    """The column every deletion reads to find holds, flipped to let a held run go."""
    with p.sql() as conn:
        conn.execute(sa.text(f"UPDATE holds SET active = false WHERE hold_id = '{p.hold_id}'"))
    return Found("hold", p.hold_id)


@tamper
async def hold_reason_edited(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "holds", f"hold_id = '{p.hold_id}'", reason="nothing to see")
    return Found("hold", p.hold_id)


@tamper
async def catalog_object_path_edited(p: Populated) -> Found:
    with p.sql() as conn:
        where = f"object_id = '{p.object_id}'"
        edit_body(conn, "catalog_objects", where, path="projects/matrix/evil.json")
        conn.execute(
            sa.text(f"UPDATE catalog_objects SET path = 'projects/matrix/evil.json' WHERE {where}")
        )
    return Found("object", p.object_id)


@tamper
async def deleted_object_put_back(p: Populated) -> Found:
    with p.sql() as conn:
        row = (
            conn.execute(
                sa.text(f"SELECT * FROM catalog_objects WHERE object_id = '{p.object_id}'")
            )
            .mappings()
            .one()
        )
        body = {
            **json.loads(row["body"]),
            "object_id": p.deleted_object_id,
            "path": "projects/matrix/2.json",
        }
        values = {
            **row,
            "object_id": p.deleted_object_id,
            "path": "projects/matrix/2.json",
            "body": json.dumps(body),
        }
        conn.execute(
            sa.text(
                f"INSERT INTO catalog_objects ({', '.join(values)}) "
                f"VALUES ({', '.join(':' + c for c in values)})"
            ),
            values,
        )
    return Found("object", p.deleted_object_id)


@tamper
async def provider_edited(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "providers", "provider_id = 'default'", owner="mallory")
    return Found("provider", "default")


@tamper
async def namespace_edited(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "namespaces", "namespace_id = 'projects'", retention_days=1)
    return Found("namespace", "projects")


@tamper
async def definition_version_edited(p: Populated) -> Found:
    kind, rest = p.definition.split("/", 1)
    ident, version = rest.rsplit("@", 1)
    with p.sql() as conn:
        edit_body(
            conn,
            "definition_versions",
            f"kind = '{kind}' AND definition_id = '{ident}' AND version = '{version}'",
            publisher="mallory",
        )
    return Found("definition", p.definition)


@tamper
async def channel_move_removed(p: Populated) -> Found:
    with p.sql() as conn:
        (move_id,) = conn.execute(
            sa.text("SELECT move_id FROM channel_moves WHERE channel = 'staging'")
        ).one()
        conn.execute(sa.text(f"DELETE FROM channel_moves WHERE move_id = '{move_id}'"))
        conn.execute(sa.text("DELETE FROM channel_pointers WHERE channel = 'staging'"))
    return Found("channel_move", move_id)


@tamper
async def approval_edited(p: Populated) -> Found:
    with p.sql() as conn:
        edit_body(conn, "approvals", f"approval_id = '{p.approval_id}'", approver="mallory")
    return Found("approval", p.approval_id)


@tamper
async def artifact_tag_index_edited(p: Populated) -> Found:
    """What "artifacts tagged X" reads: a tag slipped onto an artifact."""
    with p.sql() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO artifact_tags (artifact_id, tag) "
                f"VALUES ('{p.artifacts[1]}', 'approved')"
            )
        )
    return Found("artifact", p.artifacts[1])


@tamper
async def channel_pointer_moved_back(p: Populated) -> Found:
    """The staging pointer set to the draft's move: readers would see another version."""
    with p.sql() as conn:
        (draft,) = conn.execute(
            sa.text("SELECT move_id FROM channel_pointers WHERE channel = 'draft'")
        ).one()
        conn.execute(
            sa.text(f"UPDATE channel_pointers SET move_id = '{draft}' WHERE channel = 'staging'")
        )
    return Found("registry", "#staging")


TAMPER_NAMES = sorted(TAMPERS)


def names_it(report: VerifyReport, expected: Found) -> bool:
    return any(
        problem.kind == expected.kind and expected.subject in problem.subject
        for problem in report.problems
    )


async def _check(p: Populated, name: str, runner: CliRunner) -> None:
    expected = await TAMPERS[name](p)
    report = await asyncio.wait_for(p.verify(with_anchor=True), timeout=300)
    assert not report.ok
    assert names_it(report, expected), (name, expected, report.problems)
    if expected.needs_anchor:
        bare = await asyncio.wait_for(p.verify(with_anchor=False), timeout=300)
        assert not names_it(bare, expected)  # what only the anchor can tell


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.mark.parametrize("name", TAMPER_NAMES)
async def test_verify_names_each_tamper_on_sqlite(
    name: str, tmp_path: Path, key: SigningKey
) -> None:
    p = await populate(
        str(tmp_path / "vault"), tmp_path / "vault" / "blobs", key, tmp_path / "a.jsonl"
    )
    await _check(p, name, CliRunner())


@pytest.mark.postgres
@pytest.mark.parametrize("name", TAMPER_NAMES)
async def test_verify_names_each_tamper_on_postgresql(
    name: str, pg_url: str, tmp_path: Path, key: SigningKey
) -> None:
    p = await populate(pg_url, tmp_path / "blobs", key, tmp_path / "a.jsonl")
    await _check(p, name, CliRunner())


def test_there_are_at_least_25_kinds() -> None:
    assert len(TAMPERS) >= 25


def test_the_cli_exits_1_and_names_the_record(tmp_path: Path, key: SigningKey) -> None:
    vault_dir = tmp_path / "vault"
    p = asyncio.run(populate(str(vault_dir), vault_dir / "blobs", key, tmp_path / "a.jsonl"))
    expected = asyncio.run(artifact_repointed_at_another_blob(p))
    key_file = tmp_path / "key.pub"
    key_file.write_text(key.public_key_hex + "\n")
    result = CliRunner().invoke(
        app,
        [
            "--vault",
            str(vault_dir),
            "verify",
            "--anchor",
            str(p.anchors),
            "--trusted-key",
            str(key_file),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    problems = [x for x in report["problems"] if x["kind"] == expected.kind]
    assert any(expected.subject in x["subject"] for x in problems), problems
    mismatch = next(x for x in problems if x["details"].get("reason") == "digest_mismatch")
    assert mismatch["details"]["expected"] != mismatch["details"]["found"]


def test_artifacts_get_refuses_a_repointed_record(tmp_path: Path, key: SigningKey) -> None:
    vault_dir = tmp_path / "vault"
    p = asyncio.run(populate(str(vault_dir), vault_dir / "blobs", key, tmp_path / "a.jsonl"))
    asyncio.run(artifact_repointed_at_another_blob(p))
    result = CliRunner().invoke(
        app, ["--vault", str(vault_dir), "artifacts", "get", p.artifacts[0], "--json"]
    )
    assert result.exit_code != 0
    assert "integrity_error" in result.output
    assert "second.txt bytes" not in result.stdout


async def test_a_whole_vault_copied_back_is_caught_by_the_anchor(
    tmp_path: Path, key: SigningKey
) -> None:
    vault_dir = tmp_path / "vault"
    p = await populate(str(vault_dir), vault_dir / "blobs", key, tmp_path / "a.jsonl")
    earlier = tmp_path / "earlier"
    shutil.copytree(vault_dir, earlier)
    async with await p.open() as vault:  # a later run, a log line and an artifact
        run = await vault.runs.create(project="matrix")
        await vault.runs.start(run.run_id)
        await vault.logs.append(run.run_id, {"event": "later"})
        await vault.artifacts.put_bytes(run.run_id, b"later", name="later.txt")
        await vault.runs.complete(run.run_id)
        await vault.audit.checkpoint()  # anchored
    shutil.rmtree(vault_dir)
    shutil.copytree(earlier, vault_dir)
    assert (await p.verify(with_anchor=False)).ok  # the copy is consistent in itself
    report = await p.verify(with_anchor=True)
    (problem,) = [x for x in report.problems if x.kind == "audit_anchor"]
    assert "rolled back" in problem.message
    assert problem.details["expected"] > problem.details["found"]
