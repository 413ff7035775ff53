"""`verify_bundle` past the manifest: an intruder who edits a records file AND rewrites the
manifest's digest of it still gets caught by the record walk (log chains, the audit chain and
its checkpoints, blob references and sizes, sealed logs), each named."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.bundle import verify_bundle
from strongroom.bundle.format import MANIFEST, file_digest
from strongroom.testing.transfer import MIB, populate_vault
from strongroom.transfer import transfer
from strongroom.vault import Vault


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One verified bundle for the module (a vault populated and exported once)."""

    async def make(where: Path) -> None:
        vault = Vault(MemoryMetadataStore(), MemoryBlobStore(), checkpoint_interval=4)
        await populate_vault(vault, big_bytes=MIB + 3)
        await transfer(vault, where)
        await vault.close()
        assert (await verify_bundle(where)).ok

    where = tmp_path_factory.mktemp("made") / "bundle"
    asyncio.run(make(where))
    return where


@pytest.fixture
def bundle(made: Path, tmp_path: Path) -> Path:
    """A copy of it each test may damage."""
    return Path(shutil.copytree(made, tmp_path / "bundle"))


def _rewrite(bundle: Path, name: str, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    """Edit the records of ``records/<name>.jsonl`` and make the manifest agree with it."""
    path = bundle / "records" / f"{name}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    edit(records)
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    manifest_path = bundle / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    digest, size, lines = file_digest(path)
    entry = manifest["files"][f"records/{name}.jsonl"]
    entry.update(sha256=digest, size_bytes=size, records=lines)
    manifest_path.write_text(json.dumps(manifest))


def _first(field: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def edit(records: list[dict[str, Any]]) -> None:
        records[0][field] = value

    return edit


def _drop_middle(records: list[dict[str, Any]]) -> None:
    del records[len(records) // 2]


@pytest.mark.parametrize(
    ("name", "edit", "kind"),
    [
        ("log_entries", _first("message", "forged"), "log_chain"),
        ("log_entries", _drop_middle, "log_chain"),
        ("audit_entries", _first("actor", "mallory"), "audit_chain"),
        ("checkpoints", _first("root_hash", "0" * 64), "audit_checkpoint"),
        ("artifacts", _first("size_bytes", 1), "artifact"),
        ("artifacts", _first("sha256", "ab" * 32), "artifact"),
    ],
    ids=["log-line-edited", "log-line-dropped", "audit-edited", "checkpoint", "size", "blob"],
)
async def test_a_records_file_rewritten_with_its_manifest_is_still_caught(
    bundle: Path, name: str, edit: Callable[[list[dict[str, Any]]], None], kind: str
) -> None:
    _rewrite(bundle, name, edit)
    report = await verify_bundle(bundle)
    assert not report.ok
    assert kind in {p.kind for p in report.problems}, report.problems
    assert not [p for p in report.problems if p.kind == "bundle_file"], report.problems
