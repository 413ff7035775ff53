"""Conformance: retention (`vault.retention`, the port's `RetentionRecords`): holds, deleting a
run under its tombstone, plans by age, count and status, shared and orphan blobs, the blob
claims that keep GC from racing writers, and a GC resumed after a kill.

Every test names its own project, so a backend whose store other tests share still plans only
this test's runs; blob expectations are about this test's blobs only.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["RetentionTests"]

import pytest

from strongroom.errors import Conflict, NotFound, ValidationError
from strongroom.ids import new_id
from strongroom.models import (
    RUN_DELETED_EVENT,
    AuditEvent,
    AuditQuery,
    GcPlan,
    RetentionPolicy,
    Run,
    RunStatus,
    canonical_json,
    record_digest,
)
from strongroom.services.artifacts import stored_event
from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault

NOW = datetime.now(UTC)


def _project() -> str:
    return f"ret-{os.urandom(4).hex()}"


def _policy(project: str, **rule: Any) -> RetentionPolicy:
    return RetentionPolicy.model_validate({"rules": [{"project": project, **rule}]})


class RetentionTests(VaultFixtureContract):
    async def _ended(
        self,
        vault: Vault,
        project: str,
        *,
        status: RunStatus = RunStatus.COMPLETED,
        age_days: float = 0,
        playbook: str | None = None,
        data: bytes | None = None,
    ) -> Run:
        """A run of ``project`` with an artifact, a snapshot and a log line, ended
        ``age_days`` ago (its updated_at is moved back through the store)."""
        run = await vault.runs.create(
            project=project,
            actor="tester",
            playbook=None if playbook is None else {"playbook_id": playbook},
        )
        await vault.runs.start(run.run_id)
        payload = data if data is not None else os.urandom(64)
        await vault.artifacts.put_bytes(run.run_id, payload, name="out.bin")
        await vault.snapshots.save(run.run_id, {"data": {"n": 1}}, expected_revision=0)
        await vault.logs.append(run.run_id, {"message": "working", "event": "step"})
        if status is RunStatus.COMPLETED:
            ended = await vault.runs.complete(run.run_id)
        elif status is RunStatus.FAILED:
            ended = await vault.runs.transition(
                run.run_id, RunStatus.FAILED, error={"code": "boom", "message": "failed"}
            )
        else:
            ended = await vault.runs.transition(run.run_id, RunStatus.CANCELLED)
        if age_days:
            when = NOW - timedelta(days=age_days)
            back = ended.model_copy(update={"updated_at": when, "created_at": when})
            moved = AuditEvent(event="test.moved", subject_type="run", subject_id=run.run_id)
            await vault.metadata.update_run(back, expected_version=ended.version, audit=moved)
            ended = await vault.runs.get(run.run_id)
        return ended

    async def _require_blob_times(self, vault: Vault, sha256: str) -> None:
        async for blob in vault.blobs.iter_inventory():
            if blob.sha256 == sha256 and blob.modified is None:
                pytest.skip(
                    "this blob backend does not say when a blob was written (`_inventory`): "
                    "garbage collection never plans its unused blobs"
                )

    async def _gone(self, vault: Vault, run_id: str) -> bool:
        try:
            await vault.runs.get(run_id)
        except NotFound:
            return True
        return False

    # -- deleting a run ----------------------------------------------------------------------

    async def test_a_deleted_run_leaves_a_tombstone_and_verify_is_clean(self, vault: Vault) -> None:
        run = await self._ended(vault, _project())
        artifacts = await vault.artifacts.list(run_id=run.run_id)
        done = await vault.retention.delete_run(run.run_id, reason="privacy request", actor="ann")
        assert await self._gone(vault, run.run_id)
        for art in artifacts:
            with pytest.raises(NotFound):
                await vault.artifacts.get(art.artifact_id)
        assert done.records["run"] == 1
        assert done.records["snapshot"] == 1
        assert done.records["artifact"] == len(artifacts)
        assert done.log_head is not None
        assert done.reason == "privacy request"
        page = await vault.audit.query(AuditQuery(run_id=run.run_id, event=RUN_DELETED_EVENT))
        (entry,) = page.entries
        assert entry.actor == "ann"
        assert entry.details["manifest_sha256"] == done.manifest_sha256
        deleted = {(b.type, b.id) for b in entry.records if b.digest is None}
        assert ("run", run.run_id) in deleted
        assert ("log", run.run_id) in deleted
        assert {("artifact", a.artifact_id) for a in artifacts} <= deleted
        report = await vault.verify(record=False)
        assert report.ok, report.problems

    async def test_the_tombstone_names_what_went(self, vault: Vault) -> None:
        run = await self._ended(vault, _project())
        store = vault.metadata
        usage = await store.run_usage(run.run_id)
        ref = await store.get_log_reference(run.run_id)
        head = await store.log_head(run.run_id)
        assert ref is not None
        assert head is not None
        arts = sorted(await vault.artifacts.list(run_id=run.run_id), key=lambda a: a.artifact_id)
        manifest: list[list[str]] = [
            ["run", run.run_id, record_digest(await store.get_run(run.run_id))]
        ]
        manifest += [
            ["snapshot", f"{s.run_id}@{s.revision}", record_digest(s)]
            for s in await store.list_snapshots(run.run_id)
        ]
        manifest += [["artifact", a.artifact_id, record_digest(a)] for a in arts]
        manifest += [["log_ref", run.run_id, record_digest(ref)], ["log", run.run_id, head.hash]]
        done = await vault.retention.delete_run(run.run_id, reason="r")
        assert done.manifest_sha256 == hashlib.sha256(canonical_json(manifest)).hexdigest()
        assert done.blob_count == len(usage.blobs)
        assert done.blobs_sha256 == hashlib.sha256(canonical_json(sorted(usage.blobs))).hexdigest()
        assert done.log_head == {"seq": head.seq, "hash": head.hash}

    async def test_a_running_run_is_not_deleted(self, vault: Vault) -> None:
        run = await vault.runs.create(project=_project(), actor="tester")
        await vault.runs.start(run.run_id)
        head = await vault.audit.head()
        with pytest.raises(Conflict) as caught:
            await vault.retention.delete_run(run.run_id, reason="r")
        assert caught.value.details["reason"] == "not_ended"
        assert (await vault.runs.get(run.run_id)).status is RunStatus.RUNNING
        assert await vault.audit.head() == head

    async def test_a_deletion_needs_a_reason(self, vault: Vault) -> None:
        run = await self._ended(vault, _project())
        for reason in ("", "  ", "two\nlines", "x" * 1001):
            with pytest.raises(ValidationError):
                await vault.retention.delete_run(run.run_id, reason=reason)
        assert not await self._gone(vault, run.run_id)

    async def test_an_unknown_run_is_not_found(self, vault: Vault) -> None:
        with pytest.raises(NotFound):
            await vault.retention.delete_run(new_id(), reason="r")

    async def test_a_run_changed_since_the_plan_is_refused(self, vault: Vault) -> None:
        project = _project()
        run = await self._ended(vault, project, age_days=10)
        plan = await vault.retention.plan(_policy(project, keep_days=1), grace_seconds=0)
        (item,) = [i for i in plan.items if i.kind == "run"]
        await vault.runs.set_labels(run.run_id, {"kept": "yes"})
        result = await vault.retention.apply(plan)
        assert [r["reason"] for r in result.refused] == ["changed"]
        assert not await self._gone(vault, run.run_id)
        assert item.id == run.run_id

    # -- holds -------------------------------------------------------------------------------

    async def test_a_held_run_survives_every_path(self, vault: Vault) -> None:
        project = _project()
        run = await self._ended(vault, project, age_days=30)
        other = await self._ended(vault, project, age_days=30)
        plan = await vault.retention.plan(_policy(project, keep_days=1), grace_seconds=0)
        hold = await vault.retention.add_hold(run_id=run.run_id, reason="litigation", actor="lex")
        with pytest.raises(Conflict) as caught:
            await vault.retention.delete_run(run.run_id, reason="r")
        assert caught.value.details["reason"] == "held"
        result = await vault.retention.apply(plan)  # planned before the hold
        assert [(r["id"], r["reason"]) for r in result.refused] == [(run.run_id, "held")]
        assert not await self._gone(vault, run.run_id)
        assert await self._gone(vault, other.run_id)
        replanned = await vault.retention.plan(_policy(project, keep_days=1), grace_seconds=0)
        assert run.run_id not in {i.id for i in replanned.items}
        assert replanned.kept_held == 1
        released = await vault.retention.release_hold(hold.hold_id, reason="settled", actor="lex")
        assert not released.active
        assert released.released_by == "lex"
        with pytest.raises(Conflict):
            await vault.retention.release_hold(hold.hold_id, reason="again")
        await vault.retention.delete_run(run.run_id, reason="after the case")
        events = [
            e.event
            for e in (await vault.audit.query(AuditQuery(event="hold."))).entries
            if e.subject_id == hold.hold_id
        ]
        assert sorted(events) == ["hold.added", "hold.released"]
        assert (await vault.verify(record=False)).ok

    async def test_a_project_hold_covers_its_runs_only(self, vault: Vault) -> None:
        project, free = _project(), _project()
        held = await self._ended(vault, project)
        loose = await self._ended(vault, free)
        await vault.retention.add_hold(project=project, reason="audit")
        with pytest.raises(Conflict):
            await vault.retention.delete_run(held.run_id, reason="r")
        await vault.retention.delete_run(loose.run_id, reason="r")
        holds = await vault.retention.list_holds()
        assert project in {h.project for h in holds}

    async def test_a_hold_names_one_scope_and_an_existing_run(self, vault: Vault) -> None:
        with pytest.raises(ValidationError):
            await vault.retention.add_hold(reason="r")
        with pytest.raises(ValidationError):
            await vault.retention.add_hold(run_id=new_id(), project="p", reason="r")
        with pytest.raises(NotFound):
            await vault.retention.add_hold(run_id=new_id(), reason="r")
        with pytest.raises(ValidationError):
            await vault.retention.add_hold(project="p", reason="")

    # -- plans -------------------------------------------------------------------------------

    async def test_age_count_and_status_pick_exactly_the_right_runs(self, vault: Vault) -> None:
        project = _project()
        old_ok = [await self._ended(vault, project, age_days=d) for d in (40, 50, 60)]
        new_ok = await self._ended(vault, project, age_days=2)
        old_failed = await self._ended(vault, project, status=RunStatus.FAILED, age_days=9)
        new_failed = await self._ended(vault, project, status=RunStatus.FAILED, age_days=3)
        cancelled = await self._ended(vault, project, status=RunStatus.CANCELLED, age_days=400)
        running = await vault.runs.create(project=project, actor="tester")
        policy = RetentionPolicy.model_validate(
            {
                "rules": [
                    {"project": project, "statuses": ["failed"], "keep_days": 7},
                    # completed: keep the newest 2, and anything younger than 30 days
                    {
                        "project": project,
                        "statuses": ["completed"],
                        "keep_days": 30,
                        "keep_last": 2,
                    },
                ]
            }
        )
        plan = await vault.retention.plan(policy, grace_seconds=0)
        planned = {i.id: i.rule for i in plan.items if i.kind == "run"}
        # completed by age: 40, 50, 60 days; the newest two of the four (2 and 40) stay
        assert planned == {old_failed.run_id: 0, old_ok[1].run_id: 1, old_ok[2].run_id: 1}
        result = await vault.retention.apply(plan)
        assert result.deleted["run"] == 3
        assert not result.refused
        for kept in (new_ok, new_failed, cancelled, old_ok[0]):
            assert not await self._gone(vault, kept.run_id)
        assert not await self._gone(vault, running.run_id)
        assert (await vault.verify(record=False)).ok

    async def test_keep_last_counts_per_playbook(self, vault: Vault) -> None:
        project = _project()
        a = [await self._ended(vault, project, playbook="a", age_days=d) for d in (1, 2, 3)]
        b = [await self._ended(vault, project, playbook="b", age_days=d) for d in (1, 2)]
        plan = await vault.retention.plan(_policy(project, keep_last=2), grace_seconds=0)
        assert {i.id for i in plan.items if i.kind == "run"} == {a[2].run_id}
        assert b  # both of b are among its newest two

    async def test_a_project_config_carries_its_own_rules(self, vault: Vault) -> None:
        project, other = _project(), _project()
        old = await self._ended(vault, project, age_days=40)
        failed = await self._ended(vault, project, status=RunStatus.FAILED, age_days=40)
        elsewhere = await self._ended(vault, other, age_days=40)
        config = (
            f"kind: project_config\nproject_id: {project}\nname: Shrinking\nversion: 1.0.0\n"
            "retention:\n  rules:\n    - statuses: [completed]\n      keep_days: 30\n"
        )
        await vault.registry.publish(config.encode(), file_name="project.yaml")
        plan = await vault.retention.plan(None, grace_seconds=0)
        planned = {i.id for i in plan.items if i.kind == "run"}
        assert old.run_id in planned
        assert failed.run_id not in planned  # the config's rule covers completed runs only
        assert elsewhere.run_id not in planned  # and its own project only
        assert plan.policy is not None
        assert plan.policy.rules[0].project == project
        # An explicit policy replaces the configs' rules.
        explicit = await vault.retention.plan(_policy(other, keep_days=30), grace_seconds=0)
        assert {i.id for i in explicit.items if i.kind == "run"} == {elsewhere.run_id}
        # A config's rule may not reach into another project.
        foreign = config.replace("1.0.0", "1.0.1").replace(
            "    - statuses", f"    - project: {other}\n      statuses"
        )
        with pytest.raises(ValidationError):
            await vault.registry.publish(foreign.encode(), file_name="project.yaml")

    async def test_no_policy_deletes_no_run(self, vault: Vault) -> None:
        await self._ended(vault, _project(), age_days=1000)
        plan = await vault.retention.plan(None, grace_seconds=0)
        assert not [i for i in plan.items if i.kind == "run"]

    async def test_a_plan_survives_json(self, vault: Vault) -> None:
        project = _project()
        await self._ended(vault, project, age_days=5)
        plan = await vault.retention.plan(_policy(project, keep_days=1), grace_seconds=0)
        again = GcPlan.model_validate_json(plan.model_dump_json())
        assert again == plan
        result = await vault.retention.apply(again)
        assert result.deleted["run"] == 1

    # -- blobs -------------------------------------------------------------------------------

    async def test_a_shared_blob_survives_and_bytes_count_once(self, vault: Vault) -> None:
        project = _project()
        shared = os.urandom(300)
        gone = await self._ended(vault, project, age_days=20, data=shared)
        kept = await self._ended(vault, project, age_days=0, data=shared)
        plan = await vault.retention.plan(_policy(project, keep_days=10), grace_seconds=0)
        (item,) = [i for i in plan.items if i.kind == "run"]
        digest = hashlib.sha256(shared).hexdigest()
        assert item.id == gone.run_id
        assert digest not in item.blobs
        await vault.retention.apply(plan)
        assert await vault.blobs.exists(digest)
        (art,) = [a for a in await vault.artifacts.list(run_id=kept.run_id) if a.sha256 == digest]
        assert await vault.artifacts.get_bytes(art.artifact_id) == shared
        assert (await vault.verify(record=False)).ok

    async def test_blobs_only_the_run_used_are_reclaimed(self, vault: Vault) -> None:
        data = os.urandom(500)
        run = await self._ended(vault, _project(), data=data)
        await vault.retention.delete_run(run.run_id, reason="r")
        assert not await vault.blobs.exists(hashlib.sha256(data).hexdigest())

    async def test_orphan_blobs_past_grace_are_planned_and_reclaimed(self, vault: Vault) -> None:
        orphan = await vault.blobs.put_bytes(os.urandom(100))
        await self._require_blob_times(vault, orphan.sha256)
        used = await self._ended(vault, _project())
        young = await vault.retention.plan(None)  # default grace: an hour
        assert orphan.sha256 not in {i.id for i in young.items}
        report = await vault.verify(record=False)
        assert report.ok
        assert any(w.kind == "orphan_blobs" for w in report.warnings)
        plan = await vault.retention.plan(None, grace_seconds=0)
        planned = {i.id: i for i in plan.items if i.kind == "blob"}
        assert planned[orphan.sha256].bytes == 100
        usage = await vault.metadata.run_usage(used.run_id)
        assert not set(usage.blobs) & set(planned)
        result = await vault.retention.apply(plan)
        assert result.deleted["blob"] >= 1
        assert result.bytes >= 100
        assert not await vault.blobs.exists(orphan.sha256)
        after = await vault.verify(record=False)
        assert after.ok
        assert not [w for w in after.warnings if w.kind == "orphan_blobs"]

    async def test_a_blob_used_again_since_the_plan_stays(self, vault: Vault) -> None:
        data = os.urandom(80)
        orphan = await vault.blobs.put_bytes(data)
        await self._require_blob_times(vault, orphan.sha256)
        plan = await vault.retention.plan(None, grace_seconds=0)
        assert orphan.sha256 in {i.id for i in plan.items}
        run = await vault.runs.create(project=_project(), actor="tester")
        await vault.artifacts.put_bytes(run.run_id, data, name="again.bin")
        result = await vault.retention.apply(plan)
        assert orphan.sha256 in {r["id"] for r in result.refused}
        assert await vault.blobs.exists(orphan.sha256)
        assert (await vault.verify(record=False)).ok

    async def test_a_record_cannot_come_to_use_a_claimed_blob(self, vault: Vault) -> None:
        data = os.urandom(90)
        blob = await vault.blobs.put_bytes(data)
        assert await vault.metadata.claim_blobs([blob.sha256], new_id()) == [blob.sha256]
        run = await vault.runs.create(project=_project(), actor="tester")
        artifact = await vault.artifacts.put_bytes(run.run_id, os.urandom(10), name="x.bin")
        draft = artifact.model_copy(
            update={"artifact_id": new_id(), "sha256": blob.sha256, "size_bytes": len(data)}
        )
        head = await vault.audit.head()
        with pytest.raises(Conflict) as caught:
            await vault.metadata.insert_artifacts([draft], audit=stored_event(run.run_id, [draft]))
        assert caught.value.details["reason"] == "blob_reclaimed"
        assert await vault.audit.head() == head
        with pytest.raises(NotFound):
            await vault.metadata.get_artifact(draft.artifact_id)

    async def test_a_writer_puts_a_reclaimed_blob_back(self, vault: Vault) -> None:
        data = os.urandom(70)
        blob = await vault.blobs.put_bytes(data)
        # GC claimed and deleted it (its claim is kept as "deleted" for the grace period)
        (claimed,) = await vault.metadata.claim_blobs([blob.sha256], new_id())
        await vault.blobs.delete(claimed)
        await vault.metadata.finish_blob_claims([claimed])
        run = await vault.runs.create(project=_project(), actor="tester")
        artifact = await vault.artifacts.put_bytes(run.run_id, data, name="back.bin")
        assert await vault.artifacts.get_bytes(artifact.artifact_id) == data
        (claim,) = await vault.metadata.list_blob_claims(digests=[blob.sha256])
        assert claim.state == "restored"  # no GC claims it while the mark stands
        assert (await vault.verify(record=False)).ok

    async def test_apply_finishes_what_a_killed_gc_claimed(self, vault: Vault) -> None:
        orphan = await vault.blobs.put_bytes(os.urandom(60))
        await vault.metadata.claim_blobs([orphan.sha256], new_id())  # then "killed"
        assert await vault.blobs.exists(orphan.sha256)
        await vault.retention.apply(await vault.retention.plan(None))
        assert not await vault.blobs.exists(orphan.sha256)
        (claim,) = await vault.metadata.list_blob_claims(digests=[orphan.sha256])
        assert claim.state == "deleted"

    async def test_a_plan_applied_twice_finds_its_runs_gone(self, vault: Vault) -> None:
        project = _project()
        await self._ended(vault, project, age_days=5)
        plan = await vault.retention.plan(_policy(project, keep_days=1), grace_seconds=0)
        first = await vault.retention.apply(plan)
        second = await vault.retention.apply(plan)
        assert first.deleted["run"] == 1
        assert second.gone >= 1
        assert "run" not in second.deleted
        assert (await vault.verify(record=False)).ok

    async def test_catalog_objects_past_their_namespace_retention_go(self, vault: Vault) -> None:
        namespace = f"ns-{os.urandom(3).hex()}"
        await vault.catalog.put_namespace(
            {
                "namespace_id": namespace,
                "provider_id": "default",
                "name": namespace,
                "purpose": "test",
                "default_prefix": f"{namespace}/",
                "retention_days": 7,
            }
        )
        obj = await vault.catalog.put_object(namespace, "old.txt", os.urandom(40))
        today = await vault.retention.plan(None, grace_seconds=0)
        assert obj.object_id not in {i.id for i in today.items}
        later = NOW + timedelta(days=8)
        plan = await vault.retention.plan(None, grace_seconds=0, now=later)
        assert obj.object_id in {i.id for i in plan.items if i.kind == "object"}
        result = await vault.retention.apply(plan)
        assert result.deleted.get("object") == 1
        with pytest.raises(NotFound):
            await vault.catalog.get_object(obj.object_id)
        assert (await vault.verify(record=False)).ok
