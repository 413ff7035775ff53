"""Conformance: `verify` on an intact vault and after blob tampering."""

from __future__ import annotations

from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault


class VerifyTests(VaultFixtureContract):
    async def _sample(self, vault: Vault) -> str:
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        await vault.snapshots.save(run.run_id, {"data": {"a": 1}}, expected_revision=0)
        art = await vault.artifacts.put_bytes(run.run_id, b"payload", name="p.bin")
        await vault.logs.append_many(run.run_id, [{"event": "e"}] * 3)
        await vault.runs.complete(run.run_id)
        return art.sha256

    async def test_intact_vault_verifies_clean(self, vault: Vault) -> None:
        await self._sample(vault)
        report = await vault.verify()
        assert report.ok, report.problems
        assert report.checked["blobs"] >= 3
        assert report.checked["log_entries"] == 3
        assert report.checked["audit_entries"] >= 3

    async def test_verify_reports_a_flipped_blob_byte(self, vault: Vault) -> None:
        digest = await self._sample(vault)
        await self.corrupt_blob(vault, digest)
        report = await vault.verify()
        assert not report.ok
        (problem,) = [p for p in report.problems if p.kind == "blob"]
        assert problem.subject == digest
        # The user learns which record is damaged, not just which blob.
        assert [r.split(":")[0] for r in problem.details["referenced_by"]] == ["artifact"]

    async def test_verify_reports_progress(self, vault: Vault) -> None:
        await self._sample(vault)
        stages: set[str] = set()
        await vault.verify(on_progress=lambda stage, done, total: stages.add(stage))
        assert {"blobs", "references", "logs", "audit"} <= stages
