"""The public surface: re-exports and the blocking facade."""

from __future__ import annotations

from pathlib import Path

import pytest

import strongroom
from strongroom import NotFound, SyncVault


def test_every_public_name_is_importable() -> None:
    for name in strongroom.__all__:
        assert getattr(strongroom, name) is not None, name
    assert sorted(strongroom.__all__) == sorted(set(strongroom.__all__))


def test_sync_vault_mirrors_the_async_api(tmp_path: Path) -> None:
    with SyncVault.open(tmp_path / "v") as vault:
        run = vault.runs.create(project="notebook", purpose="explore")
        vault.runs.start(run.run_id)
        art = vault.artifacts.put_bytes(run.run_id, b"a\nb\n", name="x.txt")
        assert vault.artifacts.get_bytes(art.artifact_id) == b"a\nb\n"
        vault.logs.append_many(run.run_id, [{"event": "e"}] * 3)
        assert len(vault.logs.iter_entries(run.run_id)) == 3
        vault.snapshots.save(run.run_id, {"data": {"k": 1}}, expected_revision=0)
        assert vault.snapshots.load(run.run_id).state.data == {"k": 1}
        vault.runs.complete(run.run_id)
        assert vault.verify().ok
        with pytest.raises(NotFound):
            vault.runs.get("0193e3a0-0000-7000-8000-000000000000")
    # reopening sees the same data
    with SyncVault.open(tmp_path / "v") as again:
        assert again.runs.get(run.run_id).status.value == "completed"
