"""Helpers for transfer (export / import) tests on any backend pair.

- `populate_vault`: realistic contents through the public Vault API: finished, failed,
  cancelled and still-running runs with snapshots, artifacts of every format (one of several
  MiB, streamed), log lines (one redacted), sealed logs, catalog providers / namespaces /
  objects (one deleted), an unreferenced blob, a run deleted under its tombstone, an active
  and a released hold, registry records (through `vault.registry`:
  two published versions of a sandbox policy, promotions and a rollback, an approved
  production promotion and a revoked run approval; actors: a root admin, a reviewer who signs
  the approval, a revoked key), and audit checkpoints when the vault's
  ``checkpoint_interval`` is small.
- `snapshot_vault`: every record of every kind (canonical JSON) and every blob's re-hashed
  digest and size, as one dict: two vaults hold the same data iff their snapshots are equal.

    before = await snapshot_vault(source)
    await transfer(source, target)
    assert await snapshot_vault(target) == before
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from strongroom.bundle import RECORD_KINDS
from strongroom.models import (
    ActorRole,
    Channel,
    DefinitionKind,
    PromotionTarget,
    RunState,
    RunTarget,
    SandboxPolicy,
)
from strongroom.models.registry import ResourceLimits
from strongroom.registry.canonical import canonical_bytes
from strongroom.testing.keys import ROOT, test_key
from strongroom.transfer import iter_vault_records
from strongroom.vault import Vault

__all__ = ["populate_vault", "snapshot_vault"]

MIB = 1024 * 1024


class _Segment(BaseModel):
    segment_id: str
    text: str


async def _pseudo_random(size: int, seed: int) -> AsyncIterator[bytes]:
    """``size`` deterministic, incompressible bytes, streamed in 256 KiB chunks."""
    rng = random.Random(seed)
    left = size
    while left:
        n = min(left, 256 * 1024)
        yield rng.randbytes(n)
        left -= n


async def populate_vault(
    vault: Vault, *, big_bytes: int = 3 * MIB + 17, seed: int = 7, tag: str = "a"
) -> dict[str, Any]:
    """Fill ``vault`` with a bit of everything; returns the ids it created. ``tag`` varies
    names so that populating twice gives distinct records."""
    ids: dict[str, Any] = {"runs": [], "artifacts": [], "objects": []}
    provider = await vault.catalog.put_provider(
        {
            "provider_id": f"archive-{tag}",
            "name": "Cold archive",
            "type": "object-store",
            "owner": "ops",
            "region": "eu-west-1",
            "base_uri": f"s3://archive-{tag}/strongroom/",
            "capabilities": {"supports_versioning": True, "max_retention_days": 3650},
        }
    )
    await vault.catalog.put_namespace(
        {
            "namespace_id": f"exports-{tag}",
            "provider_id": provider.provider_id,
            "name": "exports",
            "purpose": "Exported reports",
            "default_prefix": "exports/",
            "retention_days": 30,
            "encryption": "at-rest",
        }
    )

    # A finished run with everything.
    done = await vault.runs.create(
        project="docs", purpose=f"translate the manual ({tag})", actor="alice"
    )
    ids["runs"].append(done.run_id)
    await vault.runs.start(done.run_id)
    await vault.runs.update(done.run_id, current_phase="ingest")
    await vault.logs.append(
        done.run_id,
        {
            "event": "ingest.start",
            "phase": "ingest",
            "message": "calling https://mt.example.com with api_key=sk-demo-1234567890abcdef",
            "data": {"rows": 3, "nested": {"b": 1, "a": [1, 2.5, None]}},
        },
    )
    segments = [_Segment(segment_id=f"s{i}", text=f"segment {i} é ✓") for i in range(20)]
    art = await vault.artifacts.put_models(
        done.run_id, segments, role="phase_output", phase="ingest", name="segments.jsonl"
    )
    ids["artifacts"].append(art.artifact_id)
    state = RunState(data={"cursor": 20, "phase": "ingest"})
    await vault.snapshots.save(done.run_id, state, expected_revision=0)
    art = await vault.artifacts.put_model(
        done.run_id,
        segments[0],
        role="phase_output",
        phase="translate",
        label="fr",
        name="first.json",
        tags=["lang:fr", "sample"],
        metadata={"engine": "demo", "score": 0.93},
    )
    ids["artifacts"].append(art.artifact_id)
    art = await vault.artifacts.put_bytes(
        done.run_id, b"id,chars\ns0,12\ns1,13\n", role="report", phase="qa", name="qa.csv"
    )
    ids["artifacts"].append(art.artifact_id)
    big = await vault.artifacts.put_stream(
        done.run_id,
        _pseudo_random(big_bytes, seed),
        role="export",
        phase="export",
        name="bundle.bin",
        description="a multi-MiB binary export",
    )
    ids["artifacts"].append(big.artifact_id)
    ids["big_sha256"] = big.sha256
    many = await vault.artifacts.put_many(
        done.run_id,
        [
            (f"chunk {i}\n".encode(), {"role": "custom", "name": f"c{i}.txt", "step": "split"})
            for i in range(4)
        ],
    )
    ids["artifacts"].extend(a.artifact_id for a in many)
    for i in range(12):
        await vault.logs.append(
            done.run_id,
            {
                "event": "translate.segment",
                "phase": "translate",
                "level": "debug" if i % 3 else "warning",
                "message": f"segment {i}",
                "data": {"i": i},
            },
        )
    for rev in (1, 2):
        await vault.snapshots.save(
            done.run_id,
            RunState(data={"cursor": 20 + rev, "rev": rev}),
            expected_revision=rev,
        )
    await vault.runs.complete(done.run_id)

    # A failed run, a cancelled one, and one still running (unsealed log).
    failed = await vault.runs.create(project="docs", purpose="breaks", actor="bob")
    ids["runs"].append(failed.run_id)
    await vault.runs.start(failed.run_id)
    await vault.logs.append(failed.run_id, {"event": "boom", "level": "error", "message": "x"})
    await vault.snapshots.save(failed.run_id, RunState(data={"k": "v"}), expected_revision=0)
    await vault.runs.fail(
        failed.run_id, {"code": "timeout", "message": "upstream timed out", "details": {}}
    )
    cancelled = await vault.runs.create(project="other", actor="carol")
    ids["runs"].append(cancelled.run_id)
    await vault.runs.cancel(cancelled.run_id)
    running = await vault.runs.create(project="docs", purpose="still going", actor="alice")
    ids["runs"].append(running.run_id)
    await vault.runs.start(running.run_id)
    for i in range(5):
        await vault.logs.append(running.run_id, {"event": "tick", "data": {"i": i}})

    # Catalog objects, one deleted; and a blob nothing refers to.
    for version in (1, 2, 3):
        obj = await vault.catalog.put_object(
            f"exports-{tag}",
            f"reports/{tag}/v{version}.json",
            f'{{"version": {version}}}'.encode(),
            content_type="application/json",
            run_id=done.run_id,
            tags=["report"],
        )
        ids["objects"].append(obj.object_id)
    await vault.catalog.delete_object(ids["objects"].pop(0))
    orphan = await vault.blobs.put_bytes(f"unreferenced {tag}".encode())
    ids["orphan_sha256"] = orphan.sha256

    # Retention: a run deleted under its tombstone, a hold on the failed run, and a
    # released hold on the cancelled one.
    gone = await vault.runs.create(project="docs", purpose="deleted later", actor="dave")
    await vault.runs.start(gone.run_id)
    await vault.artifacts.put_bytes(gone.run_id, f"gone {tag}".encode(), name="gone.txt")
    await vault.logs.append(gone.run_id, {"event": "tick", "message": "soon gone"})
    await vault.runs.complete(gone.run_id)
    await vault.retention.delete_run(gone.run_id, reason="privacy request", actor="dpo")
    ids["deleted_run"] = gone.run_id
    hold = await vault.retention.add_hold(run_id=failed.run_id, reason="incident 7", actor="ops")
    ids["hold"] = hold.hold_id
    loose = await vault.retention.add_hold(run_id=cancelled.run_id, reason="review", actor="ops")
    await vault.retention.release_hold(loose.hold_id, reason="reviewed", actor="ops")

    await _populate_registry(vault, tag, done.run_id, ids)
    return ids


async def _populate_registry(vault: Vault, tag: str, run_id: str, ids: dict[str, Any]) -> None:
    """Registry records through the registry service (so each move is audited, as verify
    expects): two published versions (blobs, draft moves), promotions and a rollback on
    staging, an approved and signed production promotion, and a revoked run approval."""
    registry = vault.registry
    # People: the root admin (the same key in every vault these helpers fill), a reviewer
    # who signs the production approval and a key revoked since (both per tag).
    if not await vault.identity.actors():
        await vault.identity.add("root", ROOT.public_key_hex, [ActorRole.ADMIN])
    reviewer, gone = test_key(f"reviewer-{tag}"), test_key(f"gone-{tag}")
    await vault.identity.add(
        f"reviewer-{tag}",
        reviewer.public_key_hex,
        [ActorRole.APPROVER, ActorRole.OPERATOR],
        signer=ROOT,
    )
    await vault.identity.add(f"gone-{tag}", gone.public_key_hex, [ActorRole.APPROVER], signer=ROOT)
    await vault.identity.revoke(gone.key_id, reason="left", signer=ROOT)
    policy = f"policy-{tag}"
    published = []
    for version, memory_mb in (("1.0.0", 256), ("1.1.0", 512)):
        data = canonical_bytes(
            SandboxPolicy(
                sandbox_id=policy,
                name=f"policy {tag}",
                version=version,
                owner="alice",
                resources=ResourceLimits(cpu_cores=1, memory_mb=memory_mb, timeout_seconds=60),
            )
        )
        # A sandbox policy governs execution: published signed (by the root admin).
        result = await registry.publish(data, file_name=f"{policy}.json", signer=ROOT)
        published.append(result.version)
    v1, v2 = published
    ids["definition_digests"] = [v1.digest, v2.digest]
    kind = DefinitionKind.SANDBOX_POLICY
    await registry.promote(
        kind, policy, v1.version, to=Channel.STAGING, actor="alice", reason="try"
    )
    await registry.promote(
        kind, policy, v2.version, to=Channel.STAGING, actor="alice", reason="next"
    )
    await registry.rollback(kind, policy, channel=Channel.STAGING, actor="alice", reason="undo")
    approval = await registry.approve(
        PromotionTarget(
            scope="promotion",
            kind=kind,
            definition_id=policy,
            digest=v2.digest,
            channel=Channel.PRODUCTION,
        ),
        actor="reviewer",
        reason="looks good",
        signer=reviewer,
    )
    await registry.promote(
        kind,
        policy,
        v2.version,
        to=Channel.PRODUCTION,
        reason="release",
        approval_id=approval.approval_id,
        signer=reviewer,
    )
    run_approval = await registry.approve(
        RunTarget(scope="run", run_id=run_id), reason="one run", signer=reviewer
    )
    await registry.revoke(run_approval.approval_id, actor="admin", reason="not needed")
    ids["approvals"] = [approval.approval_id, run_approval.approval_id]


async def snapshot_vault(vault: Vault) -> dict[str, Any]:
    """Every record (canonical JSON dumps, per kind, in a stable order) and every blob
    (``digest -> {"sha256": re-hashed digest, "size_bytes": n}``) of a vault."""
    records: dict[str, list[Any]] = {}
    for kind in RECORD_KINDS:
        items: list[Any] = []
        async for batch in iter_vault_records(vault, kind):
            items.extend(record.model_dump(mode="json") for record in batch)
        records[kind.name] = items
    blobs: dict[str, dict[str, Any]] = {}
    async for digest in vault.blobs.iter_digests():
        hasher = hashlib.sha256()
        size = 0
        async for chunk in vault.blobs.get_stream(digest):
            hasher.update(chunk)
            size += len(chunk)
        blobs[digest] = {"sha256": hasher.hexdigest(), "size_bytes": size}
    return {"records": records, "blobs": dict(sorted(blobs.items()))}
