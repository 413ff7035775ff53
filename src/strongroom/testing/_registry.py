"""Conformance: the registry's records (`RegistryRecords`) through ``vault.metadata``:
published versions and their two unique keys, channel compare-and-set with its history, and
approvals. Also `publish_example`, which stores a small real definition (its canonical bytes
as a blob, then its version record) for other suites (transfer) to reuse."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from strongroom.errors import Conflict, LabelConflict, NotFound, StaleChannel, ValidationError
from strongroom.ids import new_id
from strongroom.models import (
    Approval,
    ApprovalScope,
    AuditEvent,
    Channel,
    ChannelAction,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    PromotionTarget,
    RunTarget,
    SandboxPolicy,
)
from strongroom.models.registry import ResourceLimits
from strongroom.registry.canonical import canonical_bytes
from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault

__all__ = ["RegistryStoreTests", "example_move", "publish_example"]

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
_KIND = DefinitionKind.SANDBOX_POLICY


async def publish_example(
    vault: Vault,
    definition_id: str = "net-policy",
    version: str = "1.0.0",
    *,
    at: datetime = T0,
    memory_mb: int = 512,
) -> DefinitionVersion:
    """Put the canonical bytes of a small sandbox policy in the blob store and insert its
    version record (``memory_mb`` varies the content, hence the digest)."""
    policy = SandboxPolicy(
        sandbox_id=definition_id,
        name=f"policy {definition_id}",
        version=version,
        owner="tester",
        resources=ResourceLimits(cpu_cores=1, memory_mb=memory_mb, timeout_seconds=60),
    )
    data = canonical_bytes(policy)
    blob = await vault.blobs.put_bytes(data)
    record = DefinitionVersion(
        kind=_KIND,
        definition_id=definition_id,
        version=version,
        digest=blob.sha256,
        size_bytes=blob.size_bytes,
        published_at=at,
        publisher="tester",
    )
    await vault.metadata.insert_definition_version(record, audit=_STORED)
    return record


# What the conformance tests' own store writes are audited as (a write through the port with
# an event is bound into the audit chain like a service's).
_STORED = AuditEvent(event="test.stored", subject_type="test", subject_id="registry")


def example_move(
    version: DefinitionVersion,
    channel: Channel,
    from_digest: str | None,
    *,
    at: datetime = T0,
    action: ChannelAction = ChannelAction.PROMOTE,
) -> ChannelMove:
    return ChannelMove(
        move_id=new_id(),
        kind=version.kind,
        definition_id=version.definition_id,
        channel=channel,
        action=action,
        from_digest=from_digest,
        to_digest=version.digest,
        actor="tester",
        reason="conformance",
        at=at,
    )


def _approval(target: PromotionTarget | RunTarget, at: datetime) -> Approval:
    return Approval(
        approval_id=new_id(), target=target, actor="reviewer", reason="ok", created_at=at
    )


class RegistryStoreTests(VaultFixtureContract):
    # -- versions -----------------------------------------------------------------------------

    async def test_versions_are_found_by_label_and_by_digest(self, vault: Vault) -> None:
        v1 = await publish_example(vault, version="1.0.0")
        store = vault.metadata
        assert await store.get_definition_version(_KIND, "net-policy", version="1.0.0") == v1
        assert await store.get_definition_version(_KIND, "net-policy", digest=v1.digest) == v1
        with pytest.raises(NotFound):
            await store.get_definition_version(_KIND, "net-policy", version="9.9.9")
        with pytest.raises(NotFound):
            await store.get_definition_version(_KIND, "net-policy", digest="0" * 64)
        with pytest.raises(NotFound):
            await store.get_definition_version(
                DefinitionKind.PLAYBOOK, "net-policy", version="1.0.0"
            )
        with pytest.raises(ValidationError):
            await store.get_definition_version(_KIND, "net-policy")
        with pytest.raises(ValidationError):
            await store.get_definition_version(
                _KIND, "net-policy", version="1.0.0", digest=v1.digest
            )

    async def test_versions_list_oldest_first_and_definitions_list_the_latest(
        self, vault: Vault
    ) -> None:
        v1 = await publish_example(vault, "b-policy", "1.0.0", at=T0, memory_mb=256)
        v2 = await publish_example(
            vault, "b-policy", "1.1.0", at=T0 + timedelta(minutes=1), memory_mb=512
        )
        a1 = await publish_example(vault, "a-policy", "2.0.0", at=T0 + timedelta(minutes=2))
        store = vault.metadata
        assert await store.list_definition_versions(_KIND, "b-policy") == [v1, v2]
        assert await store.list_definition_versions(_KIND, "missing") == []
        assert await store.list_definitions() == [a1, v2]
        assert await store.list_definitions(_KIND) == [a1, v2]
        assert await store.list_definitions(DefinitionKind.PLAYBOOK) == []

    async def test_a_taken_label_and_known_content_are_different_conflicts(
        self, vault: Vault
    ) -> None:
        v1 = await publish_example(vault, version="1.0.0", memory_mb=256)
        with pytest.raises(LabelConflict) as label:
            await publish_example(vault, version="1.0.0", memory_mb=1024)
        assert label.value.details["existing_digest"] == v1.digest
        with pytest.raises(Conflict) as same:
            await vault.metadata.insert_definition_version(
                v1.model_copy(update={"version": "1.0.1"})
            )
        assert not isinstance(same.value, LabelConflict)
        assert same.value.details["reason"] == "digest_exists"
        assert same.value.details["version"] == "1.0.0"
        assert await vault.metadata.list_definition_versions(_KIND, "net-policy") == [v1]

    async def test_racing_publishers_of_one_label_one_wins(self, vault: Vault) -> None:
        blobs = [
            DefinitionVersion(
                kind=_KIND,
                definition_id="raced",
                version="1.0.0",
                digest=f"{i:064x}",
                size_bytes=1,
                published_at=T0,
                publisher="tester",
            )
            for i in range(1, 5)
        ]
        results = await asyncio.gather(
            *(vault.metadata.insert_definition_version(v) for v in blobs), return_exceptions=True
        )
        assert sum(r is None for r in results) == 1, results
        assert all(isinstance(r, LabelConflict) for r in results if r is not None), results

    # -- channels -----------------------------------------------------------------------------

    async def test_channels_move_by_compare_and_set_and_keep_their_history(
        self, vault: Vault
    ) -> None:
        v1 = await publish_example(vault, version="1.0.0", memory_mb=256)
        v2 = await publish_example(vault, version="1.1.0", memory_mb=512, at=T0 + timedelta(1))
        store = vault.metadata
        assert await store.get_channels(_KIND, "net-policy") == {}
        first = example_move(v1, Channel.STAGING, None, at=T0 + timedelta(minutes=1))
        await store.move_channel(first)
        prod = example_move(v1, Channel.PRODUCTION, None, at=T0 + timedelta(minutes=2))
        await store.move_channel(prod)
        second = example_move(v2, Channel.STAGING, v1.digest, at=T0 + timedelta(minutes=3))
        await store.move_channel(second)
        channels = await store.get_channels(_KIND, "net-policy")
        assert channels == {Channel.STAGING: second, Channel.PRODUCTION: prod}
        assert channels[Channel.STAGING].to_digest == v2.digest
        assert await store.list_channel_moves(_KIND, "net-policy") == [first, prod, second]
        assert await store.list_channel_moves(_KIND, "other") == []

        # Setting a channel that is already set, expecting it unset: stale.
        with pytest.raises(StaleChannel) as stale:
            await store.move_channel(example_move(v2, Channel.PRODUCTION, None))
        assert stale.value.details["current_digest"] == v1.digest
        # Moving back (a rollback) is a move like any other.
        back = example_move(
            v1,
            Channel.STAGING,
            v2.digest,
            at=T0 + timedelta(minutes=4),
            action=ChannelAction.ROLLBACK,
        )
        await store.move_channel(back)
        assert (await store.get_channels(_KIND, "net-policy"))[Channel.STAGING] == back

    async def test_two_readers_of_a_channel_one_move_wins_the_other_is_stale(
        self, vault: Vault
    ) -> None:
        v1 = await publish_example(vault, version="1.0.0", memory_mb=256)
        v2 = await publish_example(vault, version="2.0.0", memory_mb=512, at=T0 + timedelta(1))
        v3 = await publish_example(vault, version="3.0.0", memory_mb=768, at=T0 + timedelta(2))
        store = vault.metadata
        await store.move_channel(example_move(v1, Channel.PRODUCTION, None))
        # Both read the channel at v1...
        seen = (await store.get_channels(_KIND, "net-policy"))[Channel.PRODUCTION].to_digest
        winner = example_move(v2, Channel.PRODUCTION, seen, at=T0 + timedelta(minutes=1))
        loser = example_move(v3, Channel.PRODUCTION, seen, at=T0 + timedelta(minutes=2))
        await store.move_channel(winner)
        with pytest.raises(StaleChannel) as stale:
            await store.move_channel(loser)
        assert stale.value.code == "stale_channel"
        assert stale.value.details["expected_digest"] == v1.digest
        assert stale.value.details["current_digest"] == v2.digest
        history = await store.list_channel_moves(_KIND, "net-policy")
        assert [m.to_digest for m in history] == [v1.digest, v2.digest]

    async def test_concurrent_moves_from_one_digest_exactly_one_wins(self, vault: Vault) -> None:
        base = await publish_example(vault, version="1.0.0", memory_mb=128)
        store = vault.metadata
        await store.move_channel(example_move(base, Channel.STAGING, None))
        targets = [
            await publish_example(
                vault, version=f"2.0.{i}", memory_mb=256 + i, at=T0 + timedelta(i)
            )
            for i in range(1, 5)
        ]
        moves = [example_move(t, Channel.STAGING, base.digest) for t in targets]
        results = await asyncio.gather(
            *(store.move_channel(m) for m in moves), return_exceptions=True
        )
        winners = [m for m, r in zip(moves, results, strict=True) if r is None]
        assert len(winners) == 1
        assert all(isinstance(r, StaleChannel) for r in results if r is not None)
        channels = await store.get_channels(_KIND, "net-policy")
        assert channels[Channel.STAGING] == winners[0]
        assert len(await store.list_channel_moves(_KIND, "net-policy")) == 2

    async def test_moving_to_an_unpublished_digest_is_not_found(self, vault: Vault) -> None:
        v1 = await publish_example(vault)
        store = vault.metadata
        ghost = example_move(v1, Channel.DRAFT, None).model_copy(update={"to_digest": "a" * 64})
        with pytest.raises(NotFound):
            await store.move_channel(ghost)
        # Another definition's version does not count either.
        other = await publish_example(vault, "other-policy", memory_mb=2048)
        with pytest.raises(NotFound):
            await store.move_channel(
                example_move(v1, Channel.DRAFT, None).model_copy(update={"to_digest": other.digest})
            )
        assert await store.get_channels(_KIND, "net-policy") == {}
        assert await store.list_channel_moves(_KIND, "net-policy") == []

    # -- approvals ----------------------------------------------------------------------------

    async def test_approvals_are_listed_by_scope_and_revoked_once(self, vault: Vault) -> None:
        store = vault.metadata
        promo = _approval(
            PromotionTarget(
                scope="promotion",
                kind=_KIND,
                definition_id="net-policy",
                digest="b" * 64,
                channel=Channel.PRODUCTION,
            ),
            T0,
        )
        run = _approval(RunTarget(scope="run", run_id=new_id()), T0 + timedelta(minutes=1))
        await store.insert_approval(promo)
        await store.insert_approval(run)
        assert await store.get_approval(promo.approval_id) == promo
        assert await store.list_approvals() == [promo, run]
        assert await store.list_approvals(ApprovalScope.RUN) == [run]
        assert await store.list_approvals(ApprovalScope.TOOL_VERSION) == []
        with pytest.raises(Conflict):
            await store.insert_approval(promo)
        with pytest.raises(NotFound):
            await store.get_approval(new_id())

        at = T0 + timedelta(hours=1)
        revoked = await store.revoke_approval(run.approval_id, at=at, by="admin", reason="oops")
        assert (revoked.revoked_at, revoked.revoked_by, revoked.revoke_reason) == (
            at,
            "admin",
            "oops",
        )
        assert not revoked.is_active(at)
        assert await store.get_approval(run.approval_id) == revoked
        assert await store.list_approvals() == [promo, revoked]
        with pytest.raises(Conflict) as twice:
            await store.revoke_approval(run.approval_id, at=at, by="admin", reason="again")
        assert twice.value.details["reason"] == "already_revoked"
        with pytest.raises(NotFound):
            await store.revoke_approval(new_id(), at=at, by="admin", reason="none")

    # -- verify -------------------------------------------------------------------------------

    async def test_verify_checks_the_blob_of_every_published_version(self, vault: Vault) -> None:
        version = await publish_example(vault)
        report = await vault.verify()
        assert report.ok, report.problems
        missing = version.model_copy(update={"version": "2.0.0", "digest": "c" * 64})
        await vault.metadata.insert_definition_version(missing, audit=_STORED)
        report = await vault.verify()
        (problem,) = [p for p in report.problems if p.kind == "definition"]
        assert (problem.kind, problem.code) == ("definition", "not_found")
        assert problem.subject == "sandbox_policy/net-policy@2.0.0"
