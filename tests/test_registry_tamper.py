"""Registry tamper detection on the embedded vault: a definition blob changed on disk and a
channel-history row changed in the database (through the stdlib ``sqlite3`` module, as an
intruder would) are both named by ``verify`` (problems of kind ``registry``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from _blob_tamper import flip_stored_byte
from strongroom.models import DefinitionKind
from strongroom.testing._registry_service import manifest
from strongroom.vault import Vault

TM = DefinitionKind.TOOL_MANIFEST


async def _build(vault_dir: Path) -> str:
    async with await Vault.open(vault_dir) as vault:
        result = await vault.registry.publish(manifest(), file_name="m.json", actor="alice")
        await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="honest", actor="al")
        assert (await vault.verify()).ok
        return result.version.digest


async def _registry_problems(vault_dir: Path) -> list[str]:
    async with await Vault.open(vault_dir, create=False) as vault:
        report = await vault.verify()
    return [p.message for p in report.problems if p.kind == "registry"]


async def test_verify_names_a_tampered_definition_blob(tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    digest = await _build(vault_dir)
    flip_stored_byte(vault_dir, digest)
    problems = await _registry_problems(vault_dir)
    assert len(problems) == 1
    assert problems[0].startswith("tool_manifest/m@1.0.0: its definition blob")


async def test_verify_names_a_tampered_channel_move(tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    await _build(vault_dir)
    with sqlite3.connect(vault_dir / "vault.db") as db:
        (move_id, body) = db.execute(
            "SELECT move_id, body FROM channel_moves WHERE channel = 'staging'"
        ).fetchone()
        record = json.loads(body)
        record["reason"] = "forged"
        db.execute(
            "UPDATE channel_moves SET body = ? WHERE move_id = ?", (json.dumps(record), move_id)
        )
    problems = await _registry_problems(vault_dir)
    assert any("no longer matches its audit entry" in p for p in problems), problems


async def test_verify_names_a_deleted_channel_move(tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    await _build(vault_dir)
    with sqlite3.connect(vault_dir / "vault.db") as db:
        db.execute("DELETE FROM channel_pointers WHERE channel = 'staging'")
        db.execute("DELETE FROM channel_moves WHERE channel = 'staging'")
    problems = await _registry_problems(vault_dir)
    assert any("missing from the channel history" in p for p in problems), problems
