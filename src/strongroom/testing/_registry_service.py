"""Conformance: the registry service (publish, resolve, channels, approvals, audit, verify)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from strongroom.demo.examples import examples_dir
from strongroom.errors import (
    ApprovalRequired,
    Conflict,
    DependencyCycle,
    InvalidContract,
    LabelConflict,
    NotFound,
    SelfApproval,
    SerializationError,
    StaleChannel,
    UnknownReference,
    ValidationError,
)
from strongroom.models import (
    Channel,
    ChannelAction,
    DefinitionKind,
    Playbook,
    PromotionTarget,
    ToolManifest,
    ToolVersionTarget,
    utcnow,
)
from strongroom.testing._base import VaultFixtureContract
from strongroom.testing.keys import approver
from strongroom.vault import Vault

EXAMPLE_ORDER = (
    "sandbox-readonly.yaml",
    "data-quality-tools.yaml",
    "data-quality-playbook.yaml",
    "data-quality-project.yaml",
)

TM = DefinitionKind.TOOL_MANIFEST
PB = DefinitionKind.PLAYBOOK


def manifest(
    version: str = "1.0.0",
    *,
    level: str = "A0",
    tool_version: str = "1.0.0",
    manifest_id: str = "m",
    tool_id: str = "echo",
    description: str = "",
) -> bytes:
    return json.dumps(
        {
            "kind": "tool_manifest",
            "manifest_id": manifest_id,
            "name": "Tools",
            "version": version,
            "owner": "team",
            "description": description,
            "tools": [
                {
                    "tool_id": tool_id,
                    "name": "Echo",
                    "version": tool_version,
                    "entrypoint": "pkg.mod:echo",
                    "contract": {
                        "request_schema": {"type": "object"},
                        "response_schema": {"type": "object"},
                    },
                    "governance": {"level": level},
                    "constraints": {"timeout_seconds": 10},
                }
            ],
        }
    ).encode()


def playbook(tool_ref: str = "echo@1.0.0", version: str = "1.0.0") -> bytes:
    return (
        "kind: playbook\n"
        "playbook_id: pb\n"
        "name: Playbook\n"
        f"version: '{version}'\n"
        "steps:\n"
        "  - step_id: one\n"
        f"    tool: '{tool_ref}'\n"
    ).encode()


class RegistryServiceTests(VaultFixtureContract):
    async def tamper_channel_move(self, vault: Vault, kind: DefinitionKind, ident: str) -> None:
        """Change the reason of the definition's last channel move behind the vault's back
        (a backend suite overrides this; the default skips the test)."""
        pytest.skip("this backend suite cannot tamper with a channel move")

    async def _counts(self, vault: Vault) -> tuple[int, int, int]:
        versions = sum(s.version_count for s in await vault.registry.list())
        blobs = len([d async for d in vault.blobs.iter_digests()])
        head = await vault.audit.head()
        return versions, blobs, head.seq if head else 0

    async def test_publishes_the_examples_in_dependency_order(self, vault: Vault) -> None:
        registry = examples_dir() / "registry"
        alice = await approver(vault, "alice")  # the examples hold an A3 tool: signed
        for name in EXAMPLE_ORDER:
            result = await vault.registry.publish(
                (registry / name).read_bytes(), file_name=name, signer=alice
            )
            assert result.created
            assert result.version.source_file == name
            assert result.version.publisher == "alice"
        summaries = {(s.kind, s.definition_id): s for s in await vault.registry.list()}
        assert len(summaries) == 4
        assert all(s.channels == {Channel.DRAFT: s.latest.version} for s in summaries.values())
        version, defn = await vault.registry.get(PB, "data-quality-nightly")
        assert isinstance(defn, Playbook)
        assert version.version == "2026-01-15.1"
        paths = {o.path for o in await vault.catalog.objects()}
        assert "playbooks/data-quality-nightly/2026-01-15.1.json" in paths
        assert "tools/data-quality-tools/1.0.0.json" in paths
        report = await vault.verify()
        assert report.ok, report.problems
        assert report.checked["definition_versions"] == 4
        assert report.checked["channel_moves"] == 4

    async def test_republishing_identical_content_is_a_no_op(self, vault: Vault) -> None:
        first = await vault.registry.publish(manifest(), file_name="m.json", actor="alice")
        before = await self._counts(vault)
        # Same content, other spelling (YAML, other key order, explicit defaults).
        again = await vault.registry.publish(
            json.dumps(json.loads(manifest()), indent=4).encode(), file_name="m.json", actor="bob"
        )
        assert not again.created
        assert again.version == first.version
        assert await self._counts(vault) == before

    async def test_same_label_other_content_is_refused(self, vault: Vault) -> None:
        await vault.registry.publish(manifest(), file_name="m.json", actor="alice")
        before = await self._counts(vault)
        with pytest.raises(LabelConflict) as info:
            await vault.registry.publish(
                manifest(description="changed"), file_name="m.json", actor="alice"
            )
        assert info.value.code == "version_label_taken"
        assert await self._counts(vault) == before

    async def test_bad_input_stores_nothing(self, vault: Vault) -> None:
        before = await self._counts(vault)
        with pytest.raises(SerializationError) as bad_yaml:
            await vault.registry.publish(b"kind: [unclosed\n", file_name="x.yaml", actor="a")
        assert bad_yaml.value.details["line"] >= 1
        bad_field = json.loads(manifest())
        bad_field["tools"][0]["governance"]["level"] = "A9"
        with pytest.raises(ValidationError) as schema:
            await vault.registry.publish(json.dumps(bad_field).encode(), file_name="m.json")
        assert schema.value.code == "validation_error"
        assert [e["path"] for e in schema.value.details["errors"]] == ["tools[0].governance.level"]
        bad_contract = json.loads(manifest())
        bad_contract["tools"][0]["contract"]["request_schema"] = {"type": "objekt"}
        with pytest.raises(InvalidContract) as contract:
            await vault.registry.publish(json.dumps(bad_contract).encode(), file_name="m.json")
        assert contract.value.details["errors"][0]["path"].startswith(
            "tools[0].contract.request_schema"
        )
        with pytest.raises(UnknownReference) as unknown:
            await vault.registry.publish(playbook("nope@1.0.0"), file_name="pb.yaml")
        assert unknown.value.details["references"] == ["nope@1.0.0"]
        cycle = (
            b"kind: playbook\nplaybook_id: pb\nname: P\nversion: '1'\nsteps:\n"
            b"  - {step_id: a, tool: echo, depends_on: [b]}\n"
            b"  - {step_id: b, tool: echo, depends_on: [a]}\n"
        )
        with pytest.raises(DependencyCycle):
            await vault.registry.publish(cycle, file_name="pb.yaml")
        assert await self._counts(vault) == before

    async def test_playbook_references_resolve_against_published_tools(self, vault: Vault) -> None:
        await vault.registry.publish(manifest(), file_name="m.json", actor="alice")
        with pytest.raises(UnknownReference):
            await vault.registry.publish(playbook("echo@2.0.0"), file_name="pb.yaml")
        for ref in ("echo", "echo@1.0.0", "echo@production"):
            version = "1." + str(len(ref))
            result = await vault.registry.publish(playbook(ref, version), file_name="pb.yaml")
            assert result.created
        (tm,) = await vault.registry.list(TM)
        result = await vault.registry.publish(
            playbook(f"echo@sha256:{tm.latest.digest}", "9"), file_name="pb.yaml"
        )
        assert result.created
        manifest_version, tool = await vault.registry.resolve_tool("echo@draft")
        assert tool.version == "1.0.0"
        assert manifest_version.digest == tm.latest.digest
        with pytest.raises(UnknownReference):
            await vault.registry.resolve_tool("echo@staging")

    async def test_a_tool_belongs_to_one_manifest(self, vault: Vault) -> None:
        await vault.registry.publish(manifest(), file_name="m.json", actor="alice")
        with pytest.raises(Conflict) as info:
            await vault.registry.publish(manifest(manifest_id="other"), file_name="o.json")
        assert info.value.details["reason"] == "tool_owned_elsewhere"

    async def test_get_by_selector(self, vault: Vault) -> None:
        one = await vault.registry.publish(manifest("1.0.0"), file_name="m.json", actor="alice")
        two = await vault.registry.publish(
            manifest("2.0.0", tool_version="2.0.0"), file_name="m.json", actor="alice"
        )
        assert (await vault.registry.version(TM, "m")).version == "2.0.0"  # latest
        await vault.registry.promote(
            TM, "m", "1.0.0", to="production", reason="go", signer=await approver(vault)
        )
        assert (await vault.registry.version(TM, "m")).version == "1.0.0"  # production
        assert (await vault.registry.version(TM, "m", "draft")).version == "2.0.0"
        by_digest = await vault.registry.version(TM, "m", f"sha256:{one.version.digest}")
        assert by_digest == one.version
        _, defn = await vault.registry.get(TM, "m", "2.0.0")
        assert isinstance(defn, ToolManifest)
        assert defn.tools[0].version == "2.0.0"
        assert two.version.digest != one.version.digest
        with pytest.raises(NotFound):
            await vault.registry.version(TM, "m", "staging")
        with pytest.raises(NotFound):
            await vault.registry.version(TM, "m", "3.0.0")

    async def test_production_of_an_a2_manifest_needs_another_actors_approval(
        self, vault: Vault
    ) -> None:
        alice = await approver(vault, "alice")
        published = await vault.registry.publish(
            manifest(level="A2"), file_name="m.json", signer=alice
        )
        digest = published.version.digest
        bob = await approver(vault)
        await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="test", actor="al")
        with pytest.raises(ApprovalRequired) as info:
            await vault.registry.promote(TM, "m", "1.0.0", to="production", reason="go", signer=bob)
        assert info.value.code == "approval_required"
        target = PromotionTarget(
            scope="promotion", kind=TM, definition_id="m", digest=digest, channel=Channel.PRODUCTION
        )
        with pytest.raises(SelfApproval) as selfie:
            await vault.registry.approve(target, reason="mine", signer=alice)
        assert selfie.value.code == "self_approval"
        approval = await vault.registry.approve(target, reason="reviewed", signer=bob)
        result = await vault.registry.promote(
            TM, "m", "1.0.0", to="production", reason="go", signer=bob
        )
        assert result.moved
        assert result.move.approval_id == approval.approval_id
        channels = (await vault.registry.history(TM, "m")).channels
        assert channels[Channel.PRODUCTION] == "1.0.0"
        # An A0 manifest needs none.
        await vault.registry.publish(
            manifest(manifest_id="low", tool_id="low"), file_name="l.json", signer=alice
        )
        await vault.registry.promote(TM, "low", "1.0.0", to="production", reason="go", signer=bob)

    async def test_stale_channel_move_is_refused(self, vault: Vault) -> None:
        await vault.registry.publish(manifest("1.0.0"), file_name="m.json", actor="alice")
        await vault.registry.publish(
            manifest("2.0.0", tool_version="2.0.0"), file_name="m.json", actor="alice"
        )
        await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="r")
        with pytest.raises(StaleChannel) as info:
            await vault.registry.promote(TM, "m", "2.0.0", to="staging", reason="r", expected=None)
        assert info.value.code == "stale_channel"
        assert (await vault.registry.version(TM, "m", "staging")).version == "1.0.0"

    async def test_rollback_walks_back_promotions(self, vault: Vault) -> None:
        for n in (1, 2, 3):
            await vault.registry.publish(
                manifest(f"{n}.0.0", tool_version=f"{n}.0.0"), file_name="m.json", actor="a"
            )
            await vault.registry.promote(TM, "m", f"{n}.0.0", to="staging", reason="r")
        back = await vault.registry.rollback(TM, "m", channel="staging", reason="bad", actor="b")
        assert back.version == "2.0.0"
        assert back.move.action is ChannelAction.ROLLBACK
        back = await vault.registry.rollback(TM, "m", channel="staging", reason="bad", actor="b")
        assert back.version == "1.0.0"
        with pytest.raises(Conflict) as info:
            await vault.registry.rollback(TM, "m", channel="staging", reason="bad")
        assert info.value.details["reason"] == "nothing_to_roll_back"
        history = await vault.registry.history(TM, "m")
        staging = [m for m in history.moves if m.channel is Channel.STAGING]
        assert [m.action for m in staging] == [ChannelAction.PROMOTE] * 3 + [
            ChannelAction.ROLLBACK
        ] * 2
        assert len(history.versions) == 3
        events = [e.event for e in await vault.audit.entries()]
        assert events.count("registry.rolled_back") == 2
        assert events.count("registry.promoted") == 3
        assert events.count("registry.published") == 3

    async def test_approvals_expire_and_can_be_revoked(self, vault: Vault) -> None:
        alice = await approver(vault, "alice")
        await vault.registry.publish(manifest(level="A2"), file_name="m.json", signer=alice)
        soon = utcnow() + timedelta(hours=1)
        target = ToolVersionTarget(scope="tool_version", tool_id="echo", version="1.0.0")
        bob = await approver(vault)
        approval = await vault.registry.approve(target, reason="ok", expires_at=soon, signer=bob)
        assert (await vault.registry.tool_approval("echo", "1.0.0")) == approval
        later = soon + timedelta(minutes=1)
        assert await vault.registry.active_approval(target, at=later) is None
        with pytest.raises(SelfApproval):
            await vault.registry.approve(target, reason="mine", signer=alice)
        with pytest.raises(NotFound):
            await vault.registry.approve(
                {"scope": "tool_version", "tool_id": "echo", "version": "9.9.9"},
                actor="dave",
                reason="ok",
            )
        with pytest.raises(ValidationError):
            await vault.registry.approve(
                target, actor="dave", reason="ok", expires_at=utcnow() - timedelta(seconds=1)
            )
        revoked = await vault.registry.revoke(approval.approval_id, actor="carol", reason="no")
        assert revoked.revoked_by == "carol"
        assert await vault.registry.tool_approval("echo", "1.0.0") is None
        with pytest.raises(Conflict):
            await vault.registry.revoke(approval.approval_id, actor="carol", reason="again")
        run = await self.new_run(vault)
        run_approval = await vault.registry.approve(
            {"scope": "run", "run_id": run.run_id}, reason="one-off", signer=bob
        )
        assert await vault.registry.run_approval(run.run_id, tool_id="echo") == run_approval
        events = [e.event for e in await vault.audit.entries()]
        assert events.count("registry.approved") == 2
        assert events.count("registry.revoked") == 1

    async def test_a_revoked_promotion_approval_no_longer_counts(self, vault: Vault) -> None:
        published = await vault.registry.publish(
            manifest(level="A3"), file_name="m.json", signer=await approver(vault, "alice")
        )
        approval = await vault.registry.approve(
            {
                "scope": "promotion",
                "kind": "tool_manifest",
                "definition_id": "m",
                "digest": published.version.digest,
                "channel": "production",
            },
            reason="ok",
            signer=(bob := await approver(vault)),
        )
        await vault.registry.revoke(approval.approval_id, reason="changed my mind", signer=bob)
        with pytest.raises(ApprovalRequired):
            await vault.registry.promote(
                TM,
                "m",
                "1.0.0",
                to="production",
                reason="go",
                approval_id=approval.approval_id,
                signer=bob,
            )

    async def test_diff_is_a_unified_diff_of_canonical_json(self, vault: Vault) -> None:
        await vault.registry.publish(manifest("1.0.0"), file_name="m.json", actor="a")
        await vault.registry.publish(
            manifest("1.1.0", description="new"), file_name="m.json", actor="a"
        )
        text = await vault.registry.diff((TM, "m", "1.0.0"), (TM, "m", "1.1.0"))
        assert "--- tool_manifest/m@1.0.0" in text
        assert "+++ tool_manifest/m@1.1.0" in text
        assert '+  "version": "1.1.0"' in text
        assert '+  "description": "new",' in text
        assert await vault.registry.diff((TM, "m", "1.0.0"), (TM, "m", "1.0.0")) == ""

    async def test_verify_reports_a_tampered_definition_blob(self, vault: Vault) -> None:
        result = await vault.registry.publish(manifest(), file_name="m.json", actor="a")
        await self.corrupt_blob(vault, result.version.digest)
        report = await vault.verify()
        registry = [p for p in report.problems if p.kind == "registry"]
        assert [p.subject for p in registry] == ["tool_manifest/m@1.0.0"]
        assert registry[0].code == "integrity_error"

    async def test_verify_reports_a_tampered_channel_move(self, vault: Vault) -> None:
        await vault.registry.publish(manifest(), file_name="m.json", actor="a")
        await vault.registry.promote(TM, "m", "1.0.0", to="staging", reason="honest")
        await self.tamper_channel_move(vault, TM, "m")
        report = await vault.verify()
        registry = [p for p in report.problems if p.kind == "registry"]
        assert len(registry) == 1, registry
        assert "no longer matches its audit entry" in registry[0].message
