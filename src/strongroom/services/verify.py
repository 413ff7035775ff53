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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path

from strongroom.errors import IntegrityError, StrongroomError
from strongroom.integrity import SignedTreeHead
from strongroom.models import BlobInfo, VerifyProblem, VerifyReport, utcnow
from strongroom.ports import BlobStore, MetadataStore, RegistryRecords
from strongroom.ports.verify import BINDING_REASONS
from strongroom.services._replay import AuditReplay
from strongroom.services.audit import AuditService
from strongroom.services.logs import LogService
from strongroom.services.registry import collect_move, verify_registry

__all__ = ["ProgressCallback", "verify_vault"]

# (stage, done, total or None when unknown)
ProgressCallback = Callable[[str, int, int | None], None]

# Blobs re-hashed at once: the local store hashes in a worker thread and hashlib lets go of
# the GIL, so a few overlap reading and hashing (and S3 round trips) without holding more
# than a few read buffers.
_VERIFY_CONCURRENCY = 3
_VERIFY_RUN = 8  # blobs re-hashed per verify_each call (per thread hop)
_PAGE = 1000  # blobs listed, then re-hashed, at a time
_REFERENCE_BATCH = 1000  # references checked against the working set per query
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
) -> VerifyReport:
    """Check everything; ``anchors`` are signed heads read from a witness outside the vault
    (the chain must extend each), ``trusted_keys`` the public keys (hex) whose signatures on
    checkpoints and anchors count (None: any valid signature)."""
    progress = on_progress or _noop
    report = VerifyReport()
    problems = report.problems

    with _Scratch() as scratch:
        await _check_blobs(store, blobs, scratch, report, progress)
        # Each record against its index columns and against its newest audit binding, in
        # one read of each record where the store can.
        records = bound = 0
        async for problem in store.iter_all_record_problems():
            if problem.details.get("reason") in BINDING_REASONS:
                bound += 1
            else:
                records += 1
            problems.append(problem)
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
        # The registry's channel moves as their audit entries record them, gathered on this
        # walk so the registry stage need not walk the chain again (one entry per move).
        audited: dict[str, tuple[str, int]] = {}
        audited_through = 0
        async for row in audit.rows():
            replay.feed(row)
            collect_move(audited, row)
            audited_through = row.key
            if replay.count % 1000 == 0:
                progress("audit", replay.count, total)
        replay.finish()
        problems.extend(replay.problems)
        report.checked["audit_entries"] = replay.count
        report.checked["audit_checkpoints"] = len(replay.checkpoints)
        report.checked["signed_checkpoints"] = replay.signed_checkpoints
        report.checked["anchored_heads"] = len(replay.anchors)
        progress("audit", replay.count, replay.count)

        report.checked["binding_problems"] = bound
        progress("bindings", 1, 1)

        if isinstance(store, RegistryRecords):
            try:
                counts, found = await verify_registry(
                    store,
                    blobs,
                    audit,
                    verified=scratch.sizes,
                    audited=audited,
                    audited_through=audited_through,
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


async def _check_blobs(
    store: MetadataStore,
    blobs: BlobStore,
    scratch: _Scratch,
    report: VerifyReport,
    progress: ProgressCallback,
) -> None:
    """Re-hash every blob, then check every record's blob exists with the size it records."""
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
        for digest, outcome in zip(page, await _verify_page(blobs, page, verified), strict=True):
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

    refs = 0
    # digest -> verified size (None: not verified, or not listed) of recently referenced
    # blobs, already marked referenced; most recently used last, at most _SIZE_CACHE.
    cache: OrderedDict[str, int | None] = OrderedDict()
    chunk: list[tuple[str, str, str, int]] = []

    async def check(chunk: Sequence[tuple[str, str, str, int]]) -> None:
        known: dict[str, int | None] = {}  # this chunk's digests (at most _REFERENCE_BATCH)
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
            await _check_reference(blobs, problems, damaged, kind, subject, digest, size, known)

    async for reference in store.iter_blob_references():
        refs += 1
        chunk.append(reference)
        if len(chunk) >= _REFERENCE_BATCH:
            await check(chunk)
            chunk = []
            progress("references", refs, None)
    await check(chunk)
    report.checked["references"] = refs
    progress("references", refs, refs)
    for problem in damaged.values():
        users = problem.details.get("referenced_by")
        if users:
            problem.message += f" (used by {', '.join(users[:5])}"
            problem.message += f" and {len(users) - 5} more)" if len(users) > 5 else ")"
    report.checked["unreferenced_blobs"] = scratch.count("referenced IS NULL AND size IS NOT NULL")


async def _verify_page(
    blobs: BlobStore, page: Sequence[str], verified: Callable[[], None]
) -> list[int | StrongroomError | None]:
    """Re-hash the blobs of ``page``: runs of `_VERIFY_RUN` at a time (one `verify_each`,
    one thread hop on a local store), `_VERIFY_CONCURRENCY` runs at once (hashing releases
    the GIL); for each blob, in page order, its size, the error that fails it, or None when
    it is gone (deleted while we walked: not a corruption). ``verified`` is called as each
    one is done."""
    outcomes: list[int | StrongroomError | None] = [None] * len(page)
    runs = iter(range(0, len(page), _VERIFY_RUN))

    async def work() -> None:
        for start in runs:  # shared: each run goes to one worker
            run = page[start : start + _VERIFY_RUN]
            for offset, outcome in enumerate(await blobs.verify_each(run)):
                outcomes[start + offset] = (
                    outcome.size_bytes if isinstance(outcome, BlobInfo) else outcome
                )
                verified()

    workers = [asyncio.create_task(work()) for _ in range(min(_VERIFY_CONCURRENCY, len(page)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        # Stop the others before the error (unwrapped) goes on.
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return outcomes


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
