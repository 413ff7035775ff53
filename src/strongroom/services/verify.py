"""`strongroom verify`: re-hash every blob, check every record's blob exists with the right
size, replay every run log chain and the audit chain with its Merkle checkpoints (and, when
given, the heads anchored outside the vault), check every record against the digest its latest
audit binding carries, and check the registry (definition blobs, channel history).

Every chain is read by the rows' own keys in pages, so memory is bounded by a page and a
forged value inside a row cannot make the walk go back or loop. The blobs' digests, sizes and
references are kept in a temporary SQLite file, with a bounded cache in front of it; what is
held for the whole run is one small entry per registry channel move and per damaged blob."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from strongroom.errors import IntegrityError, StrongroomError
from strongroom.integrity import SignedTreeHead
from strongroom.models import VerifyProblem, VerifyReport, utcnow
from strongroom.ports import BlobStore, MetadataStore, RegistryRecords
from strongroom.ports.blobs import StagingItem
from strongroom.ports.verify import BINDING_REASONS
from strongroom.services._replay import AuditReplay
from strongroom.services.audit import AuditService
from strongroom.services.logs import LogService
from strongroom.services.registry import collect_act, collect_move, verify_registry
from strongroom.services.rehash import rehash_blobs

__all__ = [
    "AuditWalk",
    "AuditWalker",
    "ProgressCallback",
    "verify_vault",
    "walk_audit",
]

# (stage, done, total or None when unknown)
ProgressCallback = Callable[[str, int, int | None], None]

_PAGE = 1000  # blobs listed, then re-hashed, at a time
_SIZE_CACHE = 10_000  # recently referenced digests whose verified size is kept in memory
_LOOKUP_PARAMS = 500  # digests per SELECT ... IN (...)


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


async def verify_vault(
    store: MetadataStore,
    blobs: BlobStore,
    logs: LogService,
    audit: AuditService,
    *,
    on_progress: ProgressCallback | None = None,
    anchors: Sequence[SignedTreeHead] = (),
    trusted_keys: Collection[str] | None = None,
    audit_walker: AuditWalker | None = None,
) -> VerifyReport:
    """Check everything; ``anchors`` are signed heads read from a witness outside the vault
    (the chain must extend each), ``trusted_keys`` the public keys (hex) whose signatures on
    checkpoints and anchors count (None: any valid signature).

    ``audit_walker``, when given, does the audit stage (what `walk_audit` does) somewhere
    else, typically in another process over the same store: it starts at once and runs
    beside the blob, reference, record and log stages (they are independent of it), and its
    progress is reported once those are done, so stages still arrive in order."""
    progress = on_progress or _noop
    report = VerifyReport()
    forward = _HeldProgress(progress)
    walking: asyncio.Task[AuditWalk] | None = None
    if audit_walker is not None:
        walking = asyncio.create_task(audit_walker(forward))

    try:
        return await _verify(
            store, blobs, logs, audit, report, progress, forward, walking, anchors, trusted_keys
        )
    finally:
        if walking is not None and not walking.done():
            walking.cancel()
            await asyncio.gather(walking, return_exceptions=True)


async def _verify(
    store: MetadataStore,
    blobs: BlobStore,
    logs: LogService,
    audit: AuditService,
    report: VerifyReport,
    progress: ProgressCallback,
    forward: _HeldProgress,
    walking: asyncio.Task[AuditWalk] | None,
    anchors: Sequence[SignedTreeHead],
    trusted_keys: Collection[str] | None,
) -> VerifyReport:
    problems = report.problems
    with _Scratch() as scratch:
        damaged = await _rehash_pages(blobs, scratch, report, progress)
        # Each record against its index columns, against its newest audit binding and (its
        # blob reference) against the blobs just re-hashed, in one read of each record where
        # the store can.
        references = _References(blobs, scratch, problems, damaged, progress)
        records = bound = 0
        async for problem in store.iter_all_record_problems(references.check):
            if problem.details.get("reason") in BINDING_REASONS:
                bound += 1
            else:
                records += 1
            problems.append(problem)
        references.finish(report)
        await _staging_warning(blobs, report)
        progress("records", 1, 1)
        report.checked["inconsistent_records"] = records

        lines = chains = 0
        async for run_id in store.iter_log_run_ids():
            count, found = await logs.verify_run(run_id)
            chains += 1
            lines += count
            problems.extend(found)
            progress("logs", chains, None)
        report.checked["log_chains"] = chains
        report.checked["log_entries"] = lines

        if walking is not None:
            forward.on = True
            forward.flush()
            walk = await walking
        else:
            walk = await walk_audit(
                audit, anchors=anchors, trusted_keys=trusted_keys, progress=progress
            )
        problems.extend(walk.problems)
        report.checked.update(walk.checked)
        progress("audit", walk.checked["audit_entries"], walk.checked["audit_entries"])

        report.checked["binding_problems"] = bound
        progress("bindings", 1, 1)

        if isinstance(store, RegistryRecords):
            try:
                counts, found = await verify_registry(
                    store,
                    blobs,
                    audit,
                    verified=scratch.sizes,
                    audited=walk.audited,
                    audited_through=walk.audited_through,
                    acts=walk.acts,
                )
            except IntegrityError as exc:
                # A registry row that does not parse stops this stage; it is named here
                # and with the records.
                counts, found = {}, [_problem("registry", exc.details.get("subject", "?"), exc)]
            problems.extend(found)
            report.checked.update(counts)
            progress("registry", 1, 1)

    report.finished_at = utcnow()
    return report


async def _staging_warning(blobs: BlobStore, report: VerifyReport) -> None:
    """Staging files writers left (not held by a live writer) and incomplete multipart uploads
    (S3) are warnings with their size."""
    left = [item for item in await blobs.list_staging() if not item.live]
    report.checked["staging_leftovers"] = len(left)
    _leftovers(
        report,
        "staging",
        left,
        "staging file(s)",
        "left by writers that did not finish: `strongroom gc plan` lists them",
    )
    try:
        uploads = await blobs.list_uploads()
    except StrongroomError as exc:
        # Listing uploads needs a permission reading blobs does not (S3's
        # ListBucketMultipartUploads): its absence is worth saying, not a failed verify.
        report.warnings.append(
            VerifyProblem(
                kind="staging",
                code="warning",
                subject="multipart",
                message=f"incomplete multipart uploads could not be listed: {exc.message}",
                details={"error": exc.code},
            )
        )
        return
    report.checked["incomplete_uploads"] = len(uploads)
    _leftovers(
        report,
        "multipart",
        uploads,
        "incomplete multipart upload(s)",
        "left by writers that did not finish (a live upload looks the same): `strongroom gc "
        "plan` lists those idle for 15 minutes",
    )


def _leftovers(
    report: VerifyReport, subject: str, items: list[StagingItem], what: str, why: str
) -> None:
    """One warning for ``items`` (none when there are none): count, bytes, the first paths."""
    if not items:
        return
    size = sum(item.size_bytes for item in items)
    report.warnings.append(
        VerifyProblem(
            kind="staging",
            code="warning",
            subject=subject,
            message=f"{len(items)} {what}, {size} bytes, {why}",
            details={"count": len(items), "bytes": size, "paths": [i.path for i in items[:10]]},
        )
    )


class AuditWalk(BaseModel):
    """What the audit stage found: its problems, its counts (``audit_entries``,
    ``audit_checkpoints``, ``signed_checkpoints``, ``anchored_heads``), and the registry's
    channel moves as the chain records them (move id -> (move digest, entry seq)) and the
    signed acts only the chain records (entry seq -> (subject id, signed act)) through entry
    ``audited_through``, for the registry stage."""

    problems: list[VerifyProblem] = Field(default_factory=list)
    checked: dict[str, int] = Field(default_factory=dict)
    audited: dict[str, tuple[str, int]] = Field(default_factory=dict)
    audited_through: int = 0
    acts: dict[int, tuple[str, Any]] = Field(default_factory=dict)


# Runs the audit stage and returns what it found; reports ("audit", done, total) as it goes.
AuditWalker = Callable[[ProgressCallback], Coroutine[Any, Any, AuditWalk]]


async def walk_audit(
    audit: AuditService,
    *,
    anchors: Sequence[SignedTreeHead] = (),
    trusted_keys: Collection[str] | None = None,
    progress: ProgressCallback = _noop,
) -> AuditWalk:
    """verify's audit stage: replay the audit chain from its first row with its Merkle
    checkpoints, anchored heads and binding index, and gather the channel moves it records
    (so the registry stage need not walk the chain again)."""
    try:
        head = await audit.head()
    except IntegrityError:
        head = None  # the newest entry does not parse: the replay reports it
    try:
        checkpoints = await audit.checkpoints()
    except IntegrityError:
        checkpoints = []  # a checkpoint row that does not parse: reported with the records
    replay = AuditReplay(checkpoints, anchors, trusted_keys)
    replay.plan_proof(head.seq if head else 0)
    total = head.seq if head else None
    walk = AuditWalk()
    async for row in audit.rows():
        replay.feed(row)
        collect_move(walk.audited, row)
        collect_act(walk.acts, row)
        walk.audited_through = row.key
        if replay.count % 1000 == 0:
            progress("audit", replay.count, total)
    replay.finish()
    walk.problems = replay.problems
    walk.checked = {
        "audit_entries": replay.count,
        "audit_checkpoints": len(replay.checkpoints),
        "signed_checkpoints": replay.signed_checkpoints,
        "anchored_heads": len(replay.anchors),
    }
    return walk


class _HeldProgress:
    """The audit walker's progress, held back until verify reaches the audit stage (``on``),
    then passed on: the newest report while held, every report after."""

    def __init__(self, progress: ProgressCallback) -> None:
        self._progress = progress
        self._held: tuple[int, int | None] | None = None
        self.on = False

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.on:
            self._progress(stage, done, total)
        else:
            self._held = (done, total)

    def flush(self) -> None:
        if self._held is not None:
            self._progress("audit", *self._held)
            self._held = None


class _Scratch:
    """verify's working set on disk (a temporary SQLite file): every blob's digest and
    verified size, and which are referenced. A vault of millions of blobs costs disk pages
    here, not memory."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="strongroom-verify-")
        self.db = sqlite3.connect(Path(self._dir.name) / "scratch.db")
        self.db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -8192;"
            "CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER, referenced INTEGER)"
        )

    @property
    def sizes(self) -> Mapping[str, int]:
        """Verified blob sizes by digest, read from disk on lookup."""
        return _Sizes(self.db)

    def __enter__(self) -> _Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()
        self._dir.cleanup()

    def add(self, digests: Sequence[str]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO blobs (digest) VALUES (?)", [(d,) for d in digests]
        )

    def add_new(self, digests: Collection[str]) -> list[str]:
        """Add ``digests``; those not there before, sorted."""
        fresh = sorted(set(digests) - self.lookup(digests).keys())
        self.add(fresh)
        return fresh

    def set_sizes(self, sizes: Sequence[tuple[str, int]]) -> None:
        """Record the verified size of each (digest, size)."""
        self.db.executemany(
            "UPDATE blobs SET size = ? WHERE digest = ?", [(size, d) for d, size in sizes]
        )

    def lookup(self, digests: Collection[str]) -> dict[str, int | None]:
        """The verified size (None: not verified) of each of ``digests`` that is listed."""
        found: dict[str, int | None] = {}
        ordered = list(digests)
        for start in range(0, len(ordered), _LOOKUP_PARAMS):
            chunk = ordered[start : start + _LOOKUP_PARAMS]
            marks = ",".join("?" * len(chunk))
            for digest, size in self.db.execute(
                f"SELECT digest, size FROM blobs WHERE digest IN ({marks})", chunk
            ):
                found[digest] = size
        return found

    def mark_referenced(self, digests: Collection[str]) -> None:
        self.db.executemany(
            "UPDATE blobs SET referenced = 1 WHERE digest = ?", [(d,) for d in digests]
        )

    def count(self, where: str = "1") -> int:
        return int(self.db.execute(f"SELECT count(*) FROM blobs WHERE {where}").fetchone()[0])

    def total(self, where: str = "1") -> int:
        """Bytes of the blobs matching ``where`` (a constant clause, never input)."""
        row = self.db.execute(f"SELECT coalesce(sum(size), 0) FROM blobs WHERE {where}").fetchone()
        return int(row[0])


class _Sizes(Mapping[str, int]):
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getitem__(self, digest: str) -> int:
        row = self._db.execute(
            "SELECT size FROM blobs WHERE digest = ? AND size IS NOT NULL", (digest,)
        ).fetchone()
        if row is None:
            raise KeyError(digest)
        return int(row[0])

    def __iter__(self) -> Iterator[str]:
        for (digest,) in self._db.execute("SELECT digest FROM blobs WHERE size IS NOT NULL"):
            yield str(digest)

    def __len__(self) -> int:
        return int(
            self._db.execute("SELECT count(*) FROM blobs WHERE size IS NOT NULL").fetchone()[0]
        )


async def _rehash_pages(
    blobs: BlobStore,
    scratch: _Scratch,
    report: VerifyReport,
    progress: ProgressCallback,
) -> dict[str, VerifyProblem]:
    """Re-hash every blob, noting its verified size in ``scratch``; the damaged ones (their
    problems, by digest) are returned as well as reported."""
    problems = report.problems
    total: int | None = None  # known once the listing ends
    done = 0

    def verified() -> None:
        nonlocal done
        done += 1
        if total is None or done < total:  # the last once its page is written down
            progress("blobs", done, total)

    damaged: dict[str, VerifyProblem] = {}

    async def rehash(page: Sequence[str]) -> None:
        sizes: list[tuple[str, int]] = []
        for digest, outcome in zip(page, await rehash_blobs(blobs, page, verified), strict=True):
            if isinstance(outcome, StrongroomError):
                damaged[digest] = _problem("blob", digest, outcome)
            elif outcome is not None:
                sizes.append((digest, outcome))
        scratch.set_sizes(sizes)

    # Each page is re-hashed while the next one is listed: two pages at most are held.
    running: asyncio.Task[None] | None = None
    try:
        batch: list[str] = []
        async for digest in blobs.iter_digests():
            batch.append(digest)
            if len(batch) >= _PAGE:
                page = scratch.add_new(batch)
                batch = []
                if running is not None:
                    await running
                running = asyncio.create_task(rehash(page))
        page = scratch.add_new(batch)
        total = scratch.count()
        if running is not None:
            await running
        await rehash(page)
    finally:
        if running is not None and not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    if done:
        progress("blobs", done, total)
    # In digest order, whatever order the store listed the blobs in.
    problems.extend(damaged[digest] for digest in sorted(damaged))
    report.checked["blobs"] = total
    return damaged


class _References:
    """Checks every record's blob reference against the blobs' verified sizes, fed in
    batches as the records are read (`ReferenceSink`)."""

    def __init__(
        self,
        blobs: BlobStore,
        scratch: _Scratch,
        problems: list[VerifyProblem],
        damaged: dict[str, VerifyProblem],
        progress: ProgressCallback,
    ) -> None:
        self._blobs = blobs
        self._scratch = scratch
        self._problems = problems
        self._damaged = damaged
        self._progress = progress
        self.count = 0
        # digest -> verified size (None: not verified, or not listed) of recently referenced
        # blobs, already marked referenced; most recently used last, at most _SIZE_CACHE.
        self._cache: OrderedDict[str, int | None] = OrderedDict()

    async def check(self, chunk: list[tuple[str, str, str, int]]) -> None:
        cache, scratch = self._cache, self._scratch
        known: dict[str, int | None] = {}  # this chunk's digests
        wanted: list[str] = []
        for _, _, digest, _ in chunk:
            if digest in known:
                continue
            if digest in cache:
                cache.move_to_end(digest)
                known[digest] = cache[digest]
            else:
                known[digest] = None
                wanted.append(digest)
        found = scratch.lookup(wanted)
        scratch.mark_referenced(found)
        for digest in wanted:
            known[digest] = cache[digest] = found.get(digest)
            if len(cache) > _SIZE_CACHE:
                cache.popitem(last=False)
        for kind, subject, digest, size in chunk:
            await _check_reference(
                self._blobs, self._problems, self._damaged, kind, subject, digest, size, known
            )
        self.count += len(chunk)
        self._progress("references", self.count, None)

    def finish(self, report: VerifyReport) -> None:
        report.checked["references"] = self.count
        self._progress("references", self.count, self.count)
        for problem in self._damaged.values():
            users = problem.details.get("referenced_by")
            if users:
                problem.message += f" (used by {', '.join(users[:5])}"
                problem.message += f" and {len(users) - 5} more)" if len(users) > 5 else ")"
        unused = "referenced IS NULL AND size IS NOT NULL"
        count = report.checked["unreferenced_blobs"] = self._scratch.count(unused)
        if count:
            size = self._scratch.total(unused)
            report.warnings.append(
                VerifyProblem(
                    kind="orphan_blobs",
                    code="warning",
                    subject="blobs",
                    message=f"{count} blob(s), {size} bytes, that no record uses (puts killed "
                    "before their record, deleted records): `strongroom gc plan` lists them",
                    details={"count": count, "bytes": size},
                )
            )


async def _check_reference(
    blobs: BlobStore,
    problems: list[VerifyProblem],
    damaged: Mapping[str, VerifyProblem],
    kind: str,
    subject: str,
    digest: str,
    size: int,
    sizes: Mapping[str, int | None],
) -> None:
    """Check one record's reference to a blob against the blob's verified size."""
    verified = sizes[digest]
    if verified is None:
        if digest in damaged:
            # Reported once under "blob"; name who depends on it there.
            users = damaged[digest].details.setdefault("referenced_by", [])
            if len(users) < 100:
                users.append(f"{kind}:{subject}")
        elif not await blobs.exists(digest):
            problems.append(
                VerifyProblem(
                    kind=kind,
                    code="not_found",
                    subject=subject,
                    message=f"{kind} {subject} refers to missing blob sha256:{digest}",
                    details={"sha256": digest},
                )
            )
    elif verified != size:
        problems.append(
            VerifyProblem(
                kind=kind,
                code="integrity_error",
                subject=subject,
                message=f"{kind} {subject} records {size} bytes but its blob has {verified}",
                details={"sha256": digest, "expected": size, "found": verified},
            )
        )


def _problem(kind: str, subject: str, exc: StrongroomError) -> VerifyProblem:
    return VerifyProblem(
        kind=kind, code=exc.code, subject=subject, message=exc.message, details=exc.details
    )
