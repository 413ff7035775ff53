"""Retention: holds, deleting runs under a tombstone, and garbage collection as a plan you can
read and then apply (docs/retention.md).

How deletion stays safe:

- a run goes in one records transaction that checks, inside it, that the run has ended, is not
  held and is the run that was planned, and appends its tombstone (`RunDeletion`) binding every
  removed record as deleted, so ``verify`` accepts exactly these disappearances;
- records go before blobs; a blob goes only after a *claim* on it was taken in a transaction
  that found no record using it, and while the claim exists no record that uses the blob can be
  written (the store refuses, reason ``blob_reclaimed``; the writer puts the blob again and
  retries), so no record ever points at a deleted blob;
- blobs younger than the grace period, staging files a live writer holds and staging files or
  S3 multipart uploads written to in the last 15 minutes (or the grace, if longer) are never
  planned, and apply re-checks the last two before it removes them;
- a GC killed mid-apply leaves claims that the next apply finishes (the blobs they name were
  unused when claimed and nothing could come to use them since), and a plan applied twice finds
  its runs gone (``gone``), not a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from strongroom.errors import Conflict, NotFound, PermissionDenied, ValidationError
from strongroom.ids import new_id
from strongroom.models import (
    GC_ITEM_KINDS,
    MAX_GRACE_SECONDS,
    RUN_DELETED_EVENT,
    AuditEvent,
    GcItem,
    GcPlan,
    GcResult,
    Hold,
    HoldQuery,
    RetentionPolicy,
    RunDeletion,
    utcnow,
)
from strongroom.ports import BlobStore, MetadataStore
from strongroom.ports.retention import RunForRetention
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import parse

__all__ = ["DEFAULT_GRACE_SECONDS", "GcProgress", "RetentionService"]

_log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS: Final = 3600
"""Blobs and staging files younger than this are never planned, and a blob deletion is
remembered this long (a writer that put a blob before GC deleted it learns of it)."""

_BATCH: Final = 500  # blobs claimed, deleted and finished together
_SEAL_AFTER: Final = timedelta(minutes=10)  # an unsealed ended run older than this: seal it
# A staging file (or an S3 multipart upload) is a writer's for at least this long after its
# last write, whatever the grace: small puts write, fsync and link their temp files without a
# lock, in milliseconds on a quiet machine; an upload's age is its newest part's.
_STAGING_FLOOR: Final = timedelta(minutes=15)
# Deletion and restore marks live at least this long, whatever a plan's grace: a writer that
# put a blob GC then deleted has this long to write its record.
_MARK_SECONDS: Final = 3600

GcProgress = Callable[[str, int, int | None], None]


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


@checked_arguments
class RetentionService:
    """Holds, run deletion and garbage collection over one store pair."""

    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        *,
        seal: Callable[[str], Awaitable[object]] | None = None,
        project_policies: Callable[[], Awaitable[list[tuple[str, RetentionPolicy]]]] | None = None,
    ) -> None:
        """``seal(run_id)``: seals a run's log (`LogService.seal`), for an ended run whose
        seal was interrupted long ago (a run is deletable only once its log is sealed).
        ``project_policies()``: (project, policy) of every project config that carries
        retention rules (the registry's), what `plan` applies without a policy of its own."""
        self._store = store
        self._blobs = blobs
        self._seal = seal
        self._project_policies = project_policies

    async def effective_policy(self, policy: RetentionPolicy | None = None) -> RetentionPolicy:
        """``policy`` when given; else the rules of every project config (each scoped to its
        project, in project config order): the rules `plan` applies."""
        if policy is not None:
            return policy
        rules = []
        if self._project_policies is not None:
            for project, own in await self._project_policies():
                rules += [rule.model_copy(update={"project": project}) for rule in own.rules]
        return RetentionPolicy.model_validate({"rules": [r.model_dump() for r in rules]})

    async def _delete(
        self, run_id: str, expected: str | None, audit: AuditEvent
    ) -> dict[str, object]:
        """`delete_run` of the store; an ended run whose log was left unsealed for more than
        `_SEAL_AFTER` (its writer died between ending it and sealing) is sealed first."""
        try:
            return await self._store.delete_run(run_id, expected=expected, audit=audit)
        except Conflict as exc:
            if exc.details.get("reason") != "not_sealed" or self._seal is None:
                raise
            run = await self._store.get_run(run_id)
            if utcnow() - run.updated_at < _SEAL_AFTER:
                raise  # its writer is probably sealing it right now
            await self._seal(run_id)
            return await self._store.delete_run(run_id, expected=expected, audit=audit)

    # -- holds --------------------------------------------------------------------------------

    async def add_hold(
        self,
        *,
        run_id: str | None = None,
        project: str | None = None,
        reason: str,
        actor: str = "system",
    ) -> Hold:
        """Hold a run, or every run of a project: no path deletes it while the hold is active."""
        _require_utf8(reason, "holds.add")
        hold = parse(
            Hold,
            {
                "hold_id": new_id(),
                "run_id": run_id,
                "project": project,
                "reason": reason,
                "actor": actor,
            },
            operation="holds.add",
        )
        await self._store.insert_hold(
            hold,
            audit=AuditEvent(
                event="hold.added",
                actor=actor,
                subject_type="hold",
                subject_id=hold.hold_id,
                details={"scope": hold.scope, "reason": hold.reason, "run_id": run_id},
            ),
        )
        return hold

    async def release_hold(self, hold_id: str, *, reason: str, actor: str = "system") -> Hold:
        """Release an active hold (`Conflict` reason ``released`` if it is not active)."""
        _require_utf8(reason, "holds.release")
        stored = await self._store.get_hold(hold_id)
        released = parse(
            Hold,
            {
                **stored.model_dump(),
                "released_at": utcnow(),
                "released_by": actor,
                "release_reason": reason,
            },
            operation="holds.release",
        )
        await self._store.release_hold(
            released,
            audit=AuditEvent(
                event="hold.released",
                actor=actor,
                subject_type="hold",
                subject_id=hold_id,
                details={"scope": stored.scope, "reason": reason, "run_id": stored.run_id},
            ),
        )
        return released

    async def list_holds(self, query: HoldQuery | None = None) -> list[Hold]:
        return await self._store.list_holds(query or HoldQuery())

    # -- deleting a run -----------------------------------------------------------------------

    async def delete_run(
        self,
        run_id: str,
        *,
        reason: str,
        actor: str = "system",
        expected: str | None = None,
        rule: int | None = None,
        plan_id: str | None = None,
    ) -> RunDeletion:
        """Delete an ended, unheld run: its records under a tombstone, then the blobs nothing
        else uses. ``expected``: the run record's digest when it was planned (`Conflict`
        reason ``changed`` if it differs)."""
        reason = reason.strip()
        if not reason or len(reason) > 1000 or "\n" in reason or not _is_utf8(reason):
            raise ValidationError(
                "a deletion needs a reason: one line of 1 to 1000 characters",
                operation="runs.delete",
                field="reason",
            )
        usage = await self._store.run_usage(run_id)
        details: dict[str, Any] = {"reason": reason, "policy_rule": rule, "plan_id": plan_id}
        computed = await self._delete(
            run_id,
            expected,
            AuditEvent(
                event=RUN_DELETED_EVENT,
                actor=actor,
                subject_type="run",
                subject_id=run_id,
                details=details,
            ),
        )
        await self.reclaim_blobs(list(usage.blobs), claim_id=plan_id or new_id())
        return RunDeletion.model_validate({**details, **computed})

    # -- blobs --------------------------------------------------------------------------------

    async def reclaim_blobs(
        self, digests: Sequence[str], *, claim_id: str, on_progress: GcProgress = _no_progress
    ) -> tuple[int, int, list[str]]:
        """Delete each of ``digests`` that no record uses (claim, delete, finish, in batches);
        returns (blobs deleted, bytes freed, the digests not claimed: in use or claimed by
        another GC)."""
        deleted = freed = 0
        unclaimed: list[str] = []
        wanted = sorted(set(digests))
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            claimed = await self._store.claim_blobs(batch, claim_id)
            mine = set(claimed)
            unclaimed += [d for d in batch if d not in mine]
            count, size = await self._delete_claimed(claimed)
            deleted += count
            freed += size
            on_progress("blobs", min(start + _BATCH, len(wanted)), len(wanted))
        return deleted, freed, unclaimed

    async def _delete_claimed(self, digests: Sequence[str]) -> tuple[int, int]:
        deleted = freed = 0
        for digest in digests:
            try:
                size = (await self._blobs.stat(digest)).size_bytes
            except NotFound:
                size = 0
            if await self._blobs.delete(digest):
                deleted += 1
                freed += size
        await self._store.finish_blob_claims(digests)
        return deleted, freed

    async def finish_interrupted(self) -> int:
        """Finish the claims a killed GC left: their blobs were unused when claimed and no
        record could come to use them since, so they are deleted now. Returns how many."""
        done = 0
        while True:
            claims = await self._store.list_blob_claims(state="claimed", limit=_BATCH)
            if not claims:
                return done
            count, _ = await self._delete_claimed([c.sha256 for c in claims])
            done += count

    # -- plan ---------------------------------------------------------------------------------

    async def plan(
        self,
        policy: RetentionPolicy | None = None,
        *,
        actor: str = "system",
        grace_seconds: int = DEFAULT_GRACE_SECONDS,
        now: datetime | None = None,
        on_progress: GcProgress = _no_progress,
    ) -> GcPlan:
        """What `apply` would delete now: runs the policy (None: the project configs' rules,
        `effective_policy`) lets go (held ones are counted in
        ``kept_held``, never listed), catalog objects past their namespace's
        ``retention_days``, blobs nothing uses, staging files writers left. Reads only."""
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise ValidationError(
                f"grace_seconds must be 0 to {MAX_GRACE_SECONDS} (ten years)",
                operation="gc.plan",
                field="grace_seconds",
            )
        now = now or utcnow()
        horizon = now - timedelta(seconds=grace_seconds)
        policy = await self.effective_policy(policy)
        plan = GcPlan(plan_id=new_id(), actor=actor, grace_seconds=grace_seconds, policy=policy)
        runs, held = await self._plan_runs(policy, now, on_progress)
        plan.kept_held = held
        objects = await self._plan_objects(now)
        # Bytes: a blob is freed when every user of it goes with the plan.
        going = {f"run:{item.id}" for item in runs} | {f"object:{item.id}" for item in objects}
        run_blobs: dict[str, dict[str, int]] = {}
        for item in runs:
            run_blobs[item.id] = (await self._store.run_usage(item.id)).blobs
        object_blobs = {item.id: item.blobs[0] for item in objects}
        candidates = {d for blobs in run_blobs.values() for d in blobs} | set(object_blobs.values())
        users = await self._store.blob_users(sorted(candidates))
        freed = {d for d in candidates if users.get(d, set()) <= going}
        for item in runs:
            mine = sorted(d for d in run_blobs[item.id] if d in freed)
            item.blobs = mine
            item.bytes = sum(run_blobs[item.id][d] for d in mine)
            freed -= set(mine)  # a blob two runs share counts once
        for item in objects:
            digest = item.blobs[0]
            if digest in freed:
                freed.discard(digest)
            else:
                item.bytes = 0
                item.blobs = []
        orphans = await self._plan_orphans(horizon, on_progress)
        staging = await self._plan_staging(now - _staging_age(grace_seconds))
        uploads = await self._plan_uploads(now - _staging_age(grace_seconds))
        plan.items = [*runs, *objects, *orphans, *staging, *uploads]
        plan.totals = {kind: sum(1 for i in plan.items if i.kind == kind) for kind in GC_ITEM_KINDS}
        plan.bytes = sum(item.bytes for item in plan.items)
        return plan

    async def _plan_runs(
        self, policy: RetentionPolicy, now: datetime, on_progress: GcProgress
    ) -> tuple[list[GcItem], int]:
        if not policy.rules:
            return [], 0
        groups: dict[tuple[int, str, str | None], list[RunForRetention]] = {}
        seen = 0
        async for run in self._store.iter_ended_runs():
            seen += 1
            for index, rule in enumerate(policy.rules):
                if rule.covers(run.project, run.playbook_id, run.status):
                    groups.setdefault((index, run.project, run.playbook_id), []).append(run)
                    break
            if seen % 10_000 == 0:
                on_progress("runs", seen, None)
        on_progress("runs", seen, seen)
        chosen: list[tuple[int, RunForRetention]] = []
        for (index, _, _), runs in groups.items():
            rule = policy.rules[index]
            runs.sort(key=lambda r: (r.ended_at, r.run_id), reverse=True)
            keep = rule.keep_last or 0
            for position, run in enumerate(runs):
                if rule.keep_last is not None and position < keep:
                    continue
                if rule.keep_days is not None and run.ended_at > now - timedelta(
                    days=rule.keep_days
                ):
                    continue
                chosen.append((index, run))
        held = await self._store.held_runs([run.run_id for _, run in chosen])
        items = [
            GcItem(
                kind="run",
                id=run.run_id,
                reason=_rule_reason(policy, index, run),
                rule=index,
                digest=run.digest,
            )
            for index, run in chosen
            if run.run_id not in held
        ]
        items.sort(key=lambda item: item.id)
        return items, len(held)

    async def _plan_objects(self, now: datetime) -> list[GcItem]:
        items: list[GcItem] = []
        for namespace in await self._store.list_namespaces():
            if namespace.retention_days is None:
                continue
            cutoff = now - timedelta(days=namespace.retention_days)
            for obj in await self._store.list_objects(namespace.namespace_id, limit=100_000):
                if obj.created_at < cutoff:
                    items.append(
                        GcItem(
                            kind="object",
                            id=obj.object_id,
                            bytes=obj.size_bytes,
                            reason=f"namespace {namespace.namespace_id} keeps objects "
                            f"{namespace.retention_days} days",
                            blobs=[obj.sha256],
                        )
                    )
        return items

    async def _plan_orphans(self, horizon: datetime, on_progress: GcProgress) -> list[GcItem]:
        items: list[GcItem] = []
        page: dict[str, int] = {}
        seen = 0

        async def flush() -> None:
            used = await self._store.referenced_blobs(list(page))
            items.extend(
                GcItem(kind="blob", id=d, bytes=size, reason="no record uses it")
                for d, size in page.items()
                if d not in used
            )
            page.clear()

        async for blob in self._blobs.iter_inventory():
            seen += 1
            if blob.modified is not None and blob.modified < horizon:
                page[blob.sha256] = blob.size_bytes
                if len(page) >= 1000:
                    await flush()
            if seen % 10_000 == 0:
                on_progress("blobs", seen, None)
        if page:
            await flush()
        on_progress("blobs", seen, seen)
        items.sort(key=lambda item: item.id)
        return items

    async def _plan_staging(self, horizon: datetime) -> list[GcItem]:
        return [
            GcItem(kind="staging", id=item.path, bytes=item.size_bytes, reason="left by a writer")
            for item in await self._blobs.list_staging()
            if not item.live and item.modified < horizon
        ]

    async def _plan_uploads(self, horizon: datetime) -> list[GcItem]:
        try:
            uploads = await self._blobs.list_uploads()
        except PermissionDenied as exc:
            # Credentials that may manage blobs but not list uploads (S3's
            # ListBucketMultipartUploads): the rest of the plan stands; verify says so too.
            _log.warning("gc: incomplete multipart uploads not listed: %s", exc.message)
            return []
        return [
            GcItem(
                kind="multipart",
                id=item.path,
                bytes=item.size_bytes,
                reason="an incomplete multipart upload left by a writer",
            )
            for item in uploads
            if item.modified < horizon
        ]

    # -- apply --------------------------------------------------------------------------------

    async def apply(
        self, plan: GcPlan, *, actor: str | None = None, on_progress: GcProgress = _no_progress
    ) -> GcResult:
        """Delete exactly ``plan``'s items, each re-checked as it goes: a run that is held,
        changed or still running since, an object that changed, a blob a record uses again
        and a staging file a writer holds are refused, never deleted."""
        who = actor or plan.actor
        for item in plan.items:  # a plan file is input: its texts go into audit entries
            _require_utf8(item.reason, "gc.apply")
            _require_utf8(item.id, "gc.apply")
        result = GcResult(plan_id=plan.plan_id)
        interrupted = await self.finish_interrupted()
        if interrupted:
            _log.info("gc: finished %d blob deletions a killed GC left", interrupted)
        await self._store.drop_blob_claims(
            before=utcnow() - timedelta(seconds=max(plan.grace_seconds, _MARK_SECONDS))
        )
        items = plan.items
        total = len(items)
        blobs: list[str] = []
        sizes: dict[str, int] = {}
        for done, item in enumerate(items, 1):
            if item.kind == "run":
                await self._apply_run(plan, item, who, result, blobs)
            elif item.kind == "object":
                await self._apply_object(item, who, result, blobs)
            elif item.kind == "blob":
                blobs.append(item.id)
                sizes[item.id] = item.bytes
            else:
                await self._apply_staging(plan, item, result)
            on_progress("items", done, total)
        count, freed, unclaimed = await self.reclaim_blobs(
            blobs, claim_id=plan.plan_id, on_progress=on_progress
        )
        result.deleted["blob"] = result.deleted.get("blob", 0) + count
        result.bytes += freed
        planned = set(sizes)
        result.refused += [
            {"kind": "blob", "id": d, "reason": "in_use", "message": "a record uses it again"}
            for d in unclaimed
            if d in planned
        ]
        return result

    async def _apply_run(
        self, plan: GcPlan, item: GcItem, actor: str, result: GcResult, blobs: list[str]
    ) -> None:
        try:
            usage = await self._store.run_usage(item.id)
            await self._delete(
                item.id,
                item.digest,
                AuditEvent(
                    event=RUN_DELETED_EVENT,
                    actor=actor,
                    subject_type="run",
                    subject_id=item.id,
                    details={
                        "reason": item.reason,
                        "policy_rule": item.rule,
                        "plan_id": plan.plan_id,
                    },
                ),
            )
        except NotFound:
            result.gone += 1
            return
        except Conflict as exc:
            result.refused.append(
                {
                    "kind": "run",
                    "id": item.id,
                    "reason": exc.details.get("reason"),
                    "message": exc.message,
                }
            )
            return
        result.deleted["run"] = result.deleted.get("run", 0) + 1
        blobs.extend(usage.blobs)

    async def _apply_object(
        self, item: GcItem, actor: str, result: GcResult, blobs: list[str]
    ) -> None:
        try:
            obj = await self._store.get_object(item.id)
        except NotFound:
            result.gone += 1
            return
        if item.blobs and obj.sha256 not in item.blobs:
            result.refused.append(
                {"kind": "object", "id": item.id, "reason": "changed", "message": "object changed"}
            )
            return
        try:
            await self._store.delete_object(
                item.id,
                audit=AuditEvent(
                    event="catalog.object.deleted",
                    actor=actor,
                    subject_type="object",
                    subject_id=item.id,
                    details={
                        "namespace_id": obj.namespace_id,
                        "path": obj.path,
                        "sha256": obj.sha256,
                        "reason": item.reason,
                    },
                ),
            )
        except NotFound:
            result.gone += 1
            return
        result.deleted["object"] = result.deleted.get("object", 0) + 1
        blobs.append(obj.sha256)

    async def _apply_staging(self, plan: GcPlan, item: GcItem, result: GcResult) -> None:
        """A staging file or an incomplete multipart upload, if no writer touched it within
        the staging age (re-checked here: a plan may be old)."""
        horizon = utcnow() - _staging_age(plan.grace_seconds)
        if item.kind == "multipart":
            try:
                freed = await self._blobs.abort_upload(item.id, older_than=horizon)
            except PermissionDenied as exc:
                result.refused.append(
                    {"kind": item.kind, "id": item.id, "reason": "denied", "message": exc.message}
                )
                return
        else:
            freed = await self._blobs.remove_staging(item.id, older_than=horizon)
        if freed or item.bytes == 0:
            result.deleted[item.kind] = result.deleted.get(item.kind, 0) + 1
            result.bytes += freed
        else:
            result.gone += 1


def _staging_age(grace_seconds: int) -> timedelta:
    """How old a staging file must be to be planned or removed."""
    return max(timedelta(seconds=grace_seconds), _STAGING_FLOOR)


def _require_utf8(text: str, operation: str) -> None:
    if not _is_utf8(text):
        raise ValidationError(
            "text must be UTF-8 (a lone surrogate is not)", operation=operation, reason="not_utf8"
        )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rule_reason(policy: RetentionPolicy, index: int, run: RunForRetention) -> str:
    rule = policy.rules[index]
    parts = []
    if rule.keep_days is not None:
        parts.append(f"ended more than {rule.keep_days} days ago")
    if rule.keep_last is not None:
        parts.append(f"not among the newest {rule.keep_last}")
    return f"rule {index}: {run.status.value} run " + " and ".join(parts)
