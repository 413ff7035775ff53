"""What an unsigned governed act is recorded as, which acts the default policy wants signed,
and verify's check of the signed acts only the audit chain records (a forced resume).
Part of the shipped `VaultTests`: run on every backend pair."""

from __future__ import annotations

import os
import pwd

import pytest

from strongroom.errors import SignatureRequired, ValidationError
from strongroom.integrity import SigningKey
from strongroom.models import ActorRole, AuditEvent, Channel, DefinitionKind, SandboxPolicy
from strongroom.models.registry import ResourceLimits
from strongroom.registry.canonical import canonical_bytes
from strongroom.services.identity import os_user, signed_audit_act
from strongroom.services.registry import RegistryPolicy
from strongroom.testing._base import VaultFixtureContract
from strongroom.testing._registry_service import manifest, playbook
from strongroom.testing.keys import register_people
from strongroom.vault import Vault

TM = DefinitionKind.TOOL_MANIFEST
A, P, R, OP = ActorRole.ADMIN, ActorRole.PUBLISHER, ActorRole.APPROVER, ActorRole.OPERATOR


class IdentityPolicyTests(VaultFixtureContract):
    async def _staff(self, vault: Vault) -> tuple[SigningKey, SigningKey, SigningKey]:
        """An admin, a publisher and approver (alice) and an operator (ops), registered."""
        admin, alice, ops = await register_people(vault, alice=[P, R], ops=[OP])
        return admin, alice, ops

    async def test_an_unsigned_act_is_recorded_as_the_system_account(
        self, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("USER", "somebody-else")  # not what identifies the process
        monkeypatch.setenv("LOGNAME", "somebody-else")
        role = await vault.registry.records.session_role()
        if role is None:
            expected = f"os:{pwd.getpwuid(os.geteuid()).pw_name}"
            assert os_user() == pwd.getpwuid(os.geteuid()).pw_name
        else:
            expected = f"pg:{role}"
        assert await vault.identity.principal() == expected
        published = await vault.registry.publish(manifest(), file_name="m.json")
        assert published.version.publisher == expected
        assert published.version.signature is None
        entry = [e for e in await vault.audit.entries(limit=100) if e.event == "registry.published"]
        assert entry[-1].actor == expected
        assert entry[-1].details["principal"] == expected
        assert entry[-1].details["signed_by"] is None
        moved = await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="try")
        assert moved.move.actor == expected

    async def test_nobody_acts_under_a_registered_name_or_another_account_unsigned(
        self, vault: Vault
    ) -> None:
        _, alice, _ = await self._staff(vault)
        await vault.registry.publish(manifest(), file_name="m.json", signer=alice)
        before = (await vault.audit.head()).seq  # type: ignore[union-attr]
        with pytest.raises(SignatureRequired) as named:
            await vault.registry.publish(
                manifest("2.0.0", tool_version="2.0.0"), file_name="m.json", actor="alice"
            )
        assert named.value.details["reason"] == "registered_name"
        assert "--key" in named.value.message
        with pytest.raises(SignatureRequired):
            await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="r", actor="alice")
        for account in ("pg:someone_else", "PG:someone_else", "Os:root"):  # any case
            with pytest.raises(SignatureRequired) as other:
                await vault.registry.promote(
                    TM, "m", "1.0.0", to="staging", reason="r", actor=account
                )
            assert other.value.details["reason"] == "not_this_principal"
        assert (await vault.audit.head()).seq == before  # type: ignore[union-attr]  # nothing written
        for name in ("os:root", "PG:postgres"):
            with pytest.raises(ValidationError) as reserved:
                await vault.identity.add(
                    name, SigningKey.generate().public_key_hex, [R], signer=alice
                )
            assert reserved.value.details["reason"] == "reserved_name"

    async def test_what_governs_a2_execution_is_published_signed(self, vault: Vault) -> None:
        """Four-eyes compares keys, so the publication of what needs an approval must carry
        one: unsigned, an A2+ manifest, a playbook that may run an A2+ tool and a sandbox
        policy are refused before anything is written; an A0 manifest is not."""
        _, alice, _ = await self._staff(vault)
        plain = await vault.registry.publish(manifest(), file_name="m.json")  # A0
        assert plain.version.signature is None
        head = (await vault.audit.head()).seq  # type: ignore[union-attr]
        blobs = len([d async for d in vault.blobs.iter_digests()])
        policy = canonical_bytes(
            SandboxPolicy(
                sandbox_id="box",
                name="box",
                version="1",
                owner="team",
                resources=ResourceLimits(cpu_cores=1, memory_mb=256, timeout_seconds=60),
            )
        )
        a2 = manifest(level="A2", manifest_id="g", tool_id="guarded")
        for data, name in ((a2, "g.json"), (policy, "box.json")):
            with pytest.raises(SignatureRequired) as refused:
                await vault.registry.publish(data, file_name=name)
            assert "--role publisher" in refused.value.message
        assert (await vault.audit.head()).seq == head  # type: ignore[union-attr]
        assert len([d async for d in vault.blobs.iter_digests()]) == blobs
        await vault.registry.publish(a2, file_name="g.json", signer=alice)
        with pytest.raises(SignatureRequired):
            await vault.registry.publish(playbook("guarded@1.0.0"), file_name="pb.yaml")
        signed = await vault.registry.publish(
            playbook("guarded@1.0.0"), file_name="pb.yaml", signer=alice
        )
        assert signed.version.signature is not None
        vault.registry.policy = RegistryPolicy(require_signed_publications=False)
        allowed = await vault.registry.publish(policy, file_name="box.json")
        assert allowed.version.signature is None

    async def test_a_run_approval_must_be_signed(self, vault: Vault) -> None:
        """A run approval lets the run's A2+ tools execute: the default policy wants it
        signed, and an unsigned one written around the service does not count."""
        _, alice, _ = await self._staff(vault)
        await vault.registry.publish(manifest(level="A2"), file_name="m.json", signer=alice)
        run = await self.new_run(vault)
        target = {"scope": "run", "run_id": run.run_id}
        with pytest.raises(SignatureRequired):
            await vault.registry.approve(target, reason="one run")
        assert await vault.registry.run_approval(run.run_id, tool_id="echo") is None
        vault.registry.policy = RegistryPolicy(require_signed_approvals=False)
        unsigned = await vault.registry.approve(target, reason="one run")
        assert await vault.registry.run_approval(run.run_id, tool_id="echo") == unsigned
        vault.registry.policy = RegistryPolicy()
        assert await vault.registry.run_approval(run.run_id, tool_id="echo") is None
        signed = await vault.registry.approve(target, reason="one run", signer=alice)
        assert await vault.registry.run_approval(run.run_id, tool_id="echo") == signed

    async def test_every_production_move_is_signed_by_an_operator(self, vault: Vault) -> None:
        _, alice, ops = await self._staff(vault)
        await vault.registry.publish(manifest(), file_name="m.json", signer=alice)  # A0
        await vault.registry.publish(
            manifest("2.0.0", tool_version="2.0.0"), file_name="m.json", signer=alice
        )
        await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="r")  # unsigned ok
        with pytest.raises(SignatureRequired) as refused:
            await vault.registry.promote(TM, "m", "1.0.0", to=Channel.PRODUCTION, reason="r")
        assert "--role operator" in refused.value.message
        assert Channel.PRODUCTION not in await vault.registry.records.get_channels(TM, "m")
        for version in ("1.0.0", "2.0.0"):
            await vault.registry.promote(
                TM, "m", version, to=Channel.PRODUCTION, reason="r", signer=ops
            )
        with pytest.raises(SignatureRequired):
            await vault.registry.rollback(TM, "m", channel=Channel.PRODUCTION, reason="b")
        vault.registry.policy = RegistryPolicy(require_signed_production_moves=False)
        back = await vault.registry.rollback(TM, "m", channel=Channel.PRODUCTION, reason="b")
        assert back.move.signature is None
        report = await vault.verify()
        assert report.ok, report.problems

    async def test_signed_acts_in_the_audit_chain_are_verified(self, vault: Vault) -> None:
        """A forced resume's signature lives in its audit entry: verify checks it against
        the actor registry, and reports a forged one, one copied onto another run, one by a
        key without the operator role and one that does not parse, naming the entry."""
        _, alice, ops = await self._staff(vault)
        run, other = await self.new_run(vault), await self.new_run(vault)
        drift = [{"what": "playbook", "was": "a" * 64, "now": "b" * 64}]

        async def forced(subject: str, signed: object) -> int:
            entry = await vault.audit.record(
                AuditEvent(
                    event="orchestrator.resume_forced",
                    actor="ops",
                    subject_type="run",
                    subject_id=subject,
                    details={"drift": drift, "signed_act": signed},
                )
            )
            return entry.seq

        content = {"run_id": run.run_id, "drift": drift}
        good = signed_audit_act("resume_force", content, ops)
        await forced(run.run_id, good)
        report = await vault.verify()
        assert report.ok, report.problems
        assert report.checked["signed_acts"] == 1

        bad: dict[int, str] = {}
        forged = {**good, "content": {**content, "drift": []}}  # what it decided, edited
        bad[await forced(run.run_id, forged)] = "does not match"
        bad[await forced(other.run_id, good)] = "copied from another entry"
        bad[await forced(run.run_id, signed_audit_act("resume_force", content, alice))] = "operator"
        bad[await forced(run.run_id, {"act": "resume_force", "content": content})] = "parse"
        bad[await forced(run.run_id, signed_audit_act("launch_rockets", content, ops))] = "parse"
        report = await vault.verify()
        assert not report.ok
        for seq, why in bad.items():
            named = [p for p in report.problems if p.subject == f"audit entry {seq}"]
            assert named, (seq, why, report.problems)
            assert any(why in p.message for p in named), (why, named)
