"""Conformance: people and their keys (actors), signed publications and approvals, four-eyes
by key identity, and verify over signatures as of the act's time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from strongroom.errors import (
    Conflict,
    PermissionDenied,
    SelfApproval,
    SignatureRequired,
    UnknownSigner,
    ValidationError,
)
from strongroom.ids import new_id
from strongroom.integrity import SigningKey
from strongroom.models import (
    Actor,
    ActorRole,
    ActSignature,
    Approval,
    AuditEvent,
    Channel,
    DefinitionKind,
    VerifyReport,
    act_payload,
)
from strongroom.services.identity import sign_act
from strongroom.services.registry import RegistryPolicy
from strongroom.testing._base import VaultFixtureContract
from strongroom.testing._registry_service import manifest
from strongroom.testing.keys import register_people
from strongroom.vault import Vault

TM = DefinitionKind.TOOL_MANIFEST
A, P, R = ActorRole.ADMIN, ActorRole.PUBLISHER, ActorRole.APPROVER


def _named(report: VerifyReport, subject: str) -> list[str]:
    return [p.details.get("reason", p.code) for p in report.problems if subject in p.subject]


class IdentityTests(VaultFixtureContract):
    async def _people(self, vault: Vault) -> tuple[SigningKey, SigningKey, SigningKey]:
        """An admin, a publisher (alice) and an approver (bob), registered."""
        admin, alice, bob = await register_people(vault, alice=[P, R], bob=[R])
        return admin, alice, bob

    async def _a2_tool(self, vault: Vault, signer: SigningKey, actor: str = "x") -> None:
        await vault.registry.publish(
            manifest(level="A2"), file_name="m.json", actor=actor, signer=signer
        )

    async def test_the_first_key_is_an_admin_and_later_ones_need_an_admin(
        self, vault: Vault
    ) -> None:
        first = SigningKey.generate()
        with pytest.raises(ValidationError) as not_admin:
            await vault.identity.add("root", first.public_key_hex, [R])
        assert not_admin.value.details["reason"] == "first_actor_not_admin"
        root = await vault.identity.add("root", first.public_key_hex, [A])
        assert root.added_by is None
        other = SigningKey.generate()
        with pytest.raises(PermissionDenied):
            await vault.identity.add("eve", other.public_key_hex, [A])  # unsigned
        with pytest.raises(UnknownSigner):
            await vault.identity.add("eve", other.public_key_hex, [A], signer=other)
        added = await vault.identity.add("carol", other.public_key_hex, [R], signer=first)
        assert added.added_by == first.key_id
        assert added.added_signature is not None
        with pytest.raises(Conflict):
            await vault.identity.add("carol2", other.public_key_hex, [R], signer=first)
        # a non-admin cannot register anyone
        with pytest.raises(UnknownSigner) as no_role:
            await vault.identity.add(
                "dave", SigningKey.generate().public_key_hex, [R], signer=other
            )
        assert no_role.value.details["reason"] == "missing_role"
        assert [a.name for a in await vault.identity.actors()] == ["root", "carol"]
        events = [e.event for e in await vault.audit.entries(limit=1000)]
        assert events.count("actors.added") == 2
        assert (await vault.verify()).ok

    async def test_one_key_under_two_names_cannot_approve_its_own_a2_tool(
        self, vault: Vault
    ) -> None:
        _, alice, bob = await self._people(vault)
        await self._a2_tool(vault, alice, actor="alice")
        target = {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"}
        with pytest.raises(SelfApproval):
            await vault.registry.approve(target, actor="reviewer", reason="ok", signer=alice)
        approval = await vault.registry.approve(target, actor="alice", reason="ok", signer=bob)
        assert approval.actor == "bob"  # the key's name, not the one passed
        assert approval.signature is not None
        assert approval.signature.key_id == bob.key_id
        report = await vault.verify()
        assert report.ok, report.problems
        assert report.checked["signed_acts"] == 2

    async def test_one_key_cannot_approve_its_own_production_promotion(self, vault: Vault) -> None:
        admin, alice, bob = await self._people(vault)
        await self._a2_tool(vault, alice)
        version = await vault.registry.version(TM, "m", "1.0.0")
        target = {
            "scope": "promotion",
            "kind": TM.value,
            "definition_id": "m",
            "digest": version.digest,
            "channel": "production",
        }
        with pytest.raises(SelfApproval):
            await vault.registry.approve(target, reason="ship", signer=alice)
        await vault.registry.approve(target, reason="ship", signer=bob)
        with pytest.raises(SignatureRequired):  # a production move is signed by an operator
            await vault.registry.promote(TM, "m", "1.0.0", to=Channel.PRODUCTION, reason="ship")
        moved = await vault.registry.promote(
            TM, "m", "1.0.0", to=Channel.PRODUCTION, reason="ship", signer=admin
        )
        assert moved.moved

    async def test_signed_promotions_and_rollbacks_verify_and_need_the_operator_role(
        self, vault: Vault
    ) -> None:
        admin, alice, bob = await self._people(vault)
        await vault.registry.publish(manifest(), file_name="m.json", signer=alice)
        await vault.registry.publish(
            manifest("2.0.0", tool_version="2.0.0"), file_name="m.json", signer=alice
        )
        with pytest.raises(UnknownSigner) as no_role:
            await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="r", signer=bob)
        assert no_role.value.details["reason"] == "missing_role"
        ops = SigningKey.generate()
        await vault.identity.add("ops", ops.public_key_hex, [ActorRole.OPERATOR], signer=admin)
        for version in ("1.0.0", "2.0.0"):
            moved = await vault.registry.promote(
                TM, "m", version, to="staging", reason="r", actor="x", signer=ops
            )
            assert moved.move.actor == "ops"
            assert moved.move.signature is not None
        back = await vault.registry.rollback(TM, "m", channel="staging", reason="b", signer=ops)
        assert back.move.signature is not None
        report = await vault.verify()
        assert report.ok, report.problems
        assert report.checked["signed_acts"] == 5  # two publications, two promotions, a rollback

    async def test_an_unregistered_or_revoked_key_is_refused(self, vault: Vault) -> None:
        admin, alice, bob = await self._people(vault)
        await self._a2_tool(vault, alice)
        target = {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"}
        stranger = SigningKey.generate()
        with pytest.raises(UnknownSigner) as unknown:
            await vault.registry.approve(target, reason="ok", signer=stranger)
        assert unknown.value.details["reason"] == "unregistered"
        assert "strongroom actors add" in unknown.value.message
        earlier = await vault.registry.approve(target, reason="ok", signer=bob)
        await vault.identity.revoke(bob.key_id, reason="left the team", signer=admin)
        with pytest.raises(UnknownSigner) as revoked:
            await vault.registry.approve(target, reason="again", signer=bob)
        assert revoked.value.details["reason"] == "revoked"
        report = await vault.verify()
        assert report.ok, report.problems  # the approval made before the revocation stands
        assert earlier.signature is not None
        assert await vault.registry.tool_approval("echo", "1.0.0") == earlier  # and counts
        events = [e.event for e in await vault.audit.entries(limit=1000)]
        assert "actors.revoked" in events

    async def test_a_signed_revocation_verifies_and_a_forged_one_does_not(
        self, vault: Vault
    ) -> None:
        _, alice, bob = await self._people(vault)
        await self._a2_tool(vault, alice)
        target = {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"}
        first = await vault.registry.approve(target, reason="ok", signer=bob)
        revoked = await vault.registry.revoke(first.approval_id, reason="no", signer=bob)
        assert revoked.revoked_by == "bob"
        assert revoked.revoke_signature is not None
        report = await vault.verify()
        assert report.ok, report.problems
        # The same revocation signature copied onto another approval's revocation.
        second = await vault.registry.approve(target, reason="again", signer=bob)
        await vault.registry.records.revoke_approval(
            second.approval_id,
            at=revoked.revoked_at or second.created_at,
            by="bob",
            reason="no",
            signature=revoked.revoke_signature,
            audit=AuditEvent(
                event="registry.revoked",
                actor="bob",
                subject_type="approval",
                subject_id=second.approval_id,
            ),
        )
        report = await vault.verify()
        assert "bad_signature" in _named(report, second.approval_id), report.problems

    async def test_the_last_admin_cannot_be_revoked(self, vault: Vault) -> None:
        admin, _, _ = await self._people(vault)
        with pytest.raises(PermissionDenied) as last:
            await vault.identity.revoke(admin.key_id, reason="oops", signer=admin)
        assert last.value.details["reason"] == "last_admin"

    async def test_a_forged_approval_fails_verify_naming_it(self, vault: Vault) -> None:
        """An intruder with the application's own write path (records port + audit chain, so
        the bindings agree) copies a real signature onto an approval it changed."""
        _, alice, bob = await self._people(vault)
        await self._a2_tool(vault, alice)
        other = manifest("2.0.0", level="A2", tool_version="2.0.0")
        await vault.registry.publish(other, file_name="m2.json", signer=alice)
        target = {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"}
        real = await vault.registry.approve(target, reason="ok", signer=bob)
        assert real.signature is not None
        forgeries: dict[str, dict[str, Any]] = {
            "reason": {"reason": "edited"},
            "target": {"target": {**real.target.model_dump(), "version": "2.0.0"}},
            "signer": {"signature": real.signature.model_copy(update={"key_id": alice.key_id})},
        }
        ids = []
        records = vault.registry.records
        for what, change in forgeries.items():
            data: dict[str, Any] = {**real.model_dump(), **change}
            data["approval_id"] = new_id()
            forged = Approval.model_validate(data)
            await records.insert_approval(
                forged,
                audit=AuditEvent(
                    event="registry.approved",
                    actor="bob",
                    subject_type="approval",
                    subject_id=forged.approval_id,
                    details={"forged": what},
                ),
            )
            ids.append(forged.approval_id)
        report = await vault.verify()
        assert not report.ok
        for approval_id in ids:
            assert "bad_signature" in _named(report, approval_id), (approval_id, report.problems)
        assert not _named(report, real.approval_id)

    async def test_a_forged_actor_fails_verify(self, vault: Vault) -> None:
        admin, _, _ = await self._people(vault)
        mallory = SigningKey.generate()
        registration = (
            await vault.identity.add(
                "temp", SigningKey.generate().public_key_hex, [R], signer=admin
            )
        ).model_copy(
            update={
                "key_id": mallory.key_id,
                "name": "mallory",
                "public_key": mallory.public_key_hex,
                "roles": [A],
            }
        )
        await vault.registry.records.insert_actor(
            registration,
            audit=AuditEvent(
                event="actors.added",
                actor="root",
                subject_type="actor",
                subject_id=mallory.key_id,
            ),
        )
        report = await vault.verify()
        assert "bad_signature" in _named(report, mallory.key_id), report.problems

    async def test_a_self_registered_admin_is_not_trusted(self, vault: Vault) -> None:
        """A key that signs its own registration (or two that register each other) does
        not trace back to the first admin: verify names them and every act they sign."""
        _, alice, _ = await self._people(vault)
        mallory, eve = SigningKey.generate(), SigningKey.generate()
        records = vault.registry.records
        for key, by in ((mallory, mallory), (eve, mallory)):
            actor = Actor(
                key_id=key.key_id,
                name=f"x{key.key_id[:4]}",
                public_key=key.public_key_hex,
                roles=[A],
                added_by=by.key_id,
            )
            actor = actor.model_copy(
                update={"added_signature": sign_act("register_actor", actor.registration(), by)}
            )
            await records.insert_actor(
                actor,
                audit=AuditEvent(
                    event="actors.added", actor="x", subject_type="actor", subject_id=key.key_id
                ),
            )
        await self._a2_tool(vault, alice)
        target = {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"}
        forged = await vault.registry.approve(target, reason="ok", signer=eve)
        report = await vault.verify()
        assert "bad_signature" in _named(report, mallory.key_id), report.problems
        assert "bad_signature" in _named(report, eve.key_id), report.problems
        assert "bad_signature" in _named(report, forged.approval_id), report.problems

    async def test_a_backdated_act_of_a_revoked_key_fails_verify(self, vault: Vault) -> None:
        """The chain's order decides, not the time a signature claims."""
        admin, alice, bob = await self._people(vault)
        await self._a2_tool(vault, alice)
        revoked = await vault.identity.revoke(bob.key_id, reason="gone", signer=admin)
        assert revoked.revoked_at is not None
        before = revoked.revoked_at - timedelta(microseconds=1)
        approval = Approval(
            approval_id=new_id(),
            target={"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"},
            actor="bob",
            reason="backdated",
            created_at=before,
        )
        content = approval.signed_content()
        signature = ActSignature(
            key_id=bob.key_id,
            signed_at=before,
            signature=bob.sign(act_payload("approve", content, bob.key_id, before)),
        )
        approval = approval.model_copy(update={"signature": signature})
        await vault.registry.records.insert_approval(
            approval,
            audit=AuditEvent(
                event="registry.approved",
                actor="bob",
                subject_type="approval",
                subject_id=approval.approval_id,
            ),
        )
        report = await vault.verify()
        assert "bad_signature" in _named(report, approval.approval_id), report.problems
        assert await vault.registry.tool_approval("echo", "1.0.0") is None  # nor relied on

    async def test_two_keys_of_one_name_cannot_approve_their_own_work(self, vault: Vault) -> None:
        admin, alice, _ = await self._people(vault)
        await self._a2_tool(vault, alice)
        rotated = SigningKey.generate()
        await vault.identity.add("alice", rotated.public_key_hex, [R], signer=admin)
        target = {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"}
        with pytest.raises(SelfApproval):
            await vault.registry.approve(target, reason="mine", signer=rotated)

    async def test_racing_first_admins_one_wins(self, vault: Vault) -> None:
        keys = [SigningKey.generate() for _ in range(4)]
        outcomes = await asyncio.gather(
            *(vault.identity.add(f"root{n}", k.public_key_hex, [A]) for n, k in enumerate(keys)),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if isinstance(o, Actor)]
        assert len(winners) == 1, outcomes
        assert all(
            isinstance(o, (Conflict, PermissionDenied)) for o in outcomes if o not in winners
        )
        assert len(await vault.identity.actors()) == 1
        assert (await vault.verify()).ok

    async def test_rows_written_around_the_service_do_not_count(self, vault: Vault) -> None:
        """An unsigned approval of an A2 tool, or one with a signature copied from another
        approval, is not relied on by the gates."""
        _, alice, bob = await self._people(vault)
        await self._a2_tool(vault, alice)
        records = vault.registry.records
        plain = Approval(
            approval_id=new_id(),
            target={"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"},
            actor="carol",
            reason="inserted",
        )
        await records.insert_approval(
            plain,
            audit=AuditEvent(
                event="registry.approved", actor="c", subject_type="approval", subject_id="x"
            ),
        )
        assert await vault.registry.tool_approval("echo", "1.0.0") is None
        run = await self.new_run(vault)
        real = await vault.registry.approve(
            {"scope": "run", "run_id": run.run_id}, reason="one run", signer=bob
        )
        copied = Approval.model_validate(
            {
                **real.model_dump(),
                "approval_id": new_id(),
                "target": {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"},
            }
        )
        await records.insert_approval(
            copied,
            audit=AuditEvent(
                event="registry.approved", actor="c", subject_type="approval", subject_id="y"
            ),
        )
        assert await vault.registry.tool_approval("echo", "1.0.0") is None

    async def test_unsigned_approvals_under_each_policy(self, vault: Vault) -> None:
        _, alice, _ = await self._people(vault)
        await self._a2_tool(vault, alice)
        target = {"scope": "tool_version", "tool_id": "echo", "version": "1.0.0"}
        strict = RegistryPolicy(require_signed_approvals=True)
        vault.registry.policy = strict
        with pytest.raises(SignatureRequired) as refused:
            await vault.registry.approve(target, actor="carol", reason="ok")
        assert "strongroom keys init" in refused.value.message
        vault.registry.policy = RegistryPolicy(require_signed_approvals=False)
        accepted = await vault.registry.approve(target, actor="carol", reason="ok")
        entries = [
            e for e in await vault.audit.entries(limit=1000) if e.event == "registry.approved"
        ]
        assert entries[-1].subject_id == accepted.approval_id
        assert entries[-1].details.get("unsigned_allowed_by_policy") is True
        assert accepted.signature is None
