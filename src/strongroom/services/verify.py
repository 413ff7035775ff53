"""`strongroom verify`: re-hash every blob, check every record's blob exists with the right
size, replay every run log chain and the audit chain with its Merkle checkpoints (and, when
given, the heads anchored outside the vault), check every record against the digest its latest
audit binding carries, and check the registry (definition blobs, channel history).

Every chain is read by the rows' own keys in pages, so memory is bounded by a page and a
forged value inside a row cannot make the walk go back or loop."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path

from strongroom.errors import IntegrityError, NotFound, StrongroomError
from strongroom.integrity import SignedTreeHead
from strongroom.models import VerifyProblem, VerifyReport, utcnow
from strongroom.ports import BlobStore, MetadataStore, RegistryRecords
from strongroom.services._replay import AuditReplay
from strongroom.services.audit import AuditService
from strongroom.services.logs import LogService
from strongroom.services.registry import verify_registry

__all__ = ["ProgressCallback", "verify_vault"]

# (stage, done, total or None when unknown)
ProgressCallback = Callable[[str, int, int | None], None]


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
        records = 0
        async for problem in store.iter_record_problems():
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

        head = await audit.head()
        try:
            checkpoints = await audit.checkpoints()
        except IntegrityError:
            checkpoints = []  # a checkpoint row that does not parse: reported with the records
        replay = AuditReplay(checkpoints, anchors, trusted_keys)
        replay.plan_proof(head.seq if head else 0)
        total = head.seq if head else None
        async for row in audit.rows():
            replay.feed(row)
            if replay.count % 1000 == 0:
                progress("audit", replay.count, total)
        replay.finish()
        problems.extend(replay.problems)
        report.checked["audit_entries"] = replay.count
        report.checked["audit_checkpoints"] = len(replay.checkpoints)
        report.checked["signed_checkpoints"] = replay.signed_checkpoints
        report.checked["anchored_heads"] = len(replay.anchors)
        progress("audit", replay.count, replay.count)

        bound = 0
        async for problem in store.iter_binding_problems():
            bound += 1
            problems.append(problem)
        report.checked["binding_problems"] = bound
        progress("bindings", 1, 1)

        if isinstance(store, RegistryRecords):
            try:
                counts, found = await verify_registry(store, blobs, audit, verified=scratch.sizes)
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

    def pages(self, size: int = 1000) -> Iterator[list[str]]:
        after = ""
        while True:
            page = [
                row[0]
                for row in self.db.execute(
                    "SELECT digest FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?",
                    (after, size),
                )
            ]
            if not page:
                return
            yield page
            after = page[-1]

    def set_size(self, digest: str, size: int) -> None:
        self.db.execute("UPDATE blobs SET size = ? WHERE digest = ?", (size, digest))

    def reference(self, digest: str) -> int | None:
        """Mark the blob referenced; its verified size (None: not verified or not there)."""
        self.db.execute("UPDATE blobs SET referenced = 1 WHERE digest = ?", (digest,))
        row = self.db.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else row[0]

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
    batch: list[str] = []
    async for digest in blobs.iter_digests():
        batch.append(digest)
        if len(batch) >= 1000:
            scratch.add(batch)
            batch = []
    scratch.add(batch)
    total = scratch.count()
    done = 0
    damaged: dict[str, VerifyProblem] = {}
    for page in scratch.pages():
        for digest in page:
            done += 1
            try:
                scratch.set_size(digest, (await blobs.verify(digest)).size_bytes)
            except NotFound:
                pass  # deleted while we walked: not a corruption
            except StrongroomError as exc:
                problem = _problem("blob", digest, exc)
                problems.append(problem)
                damaged[digest] = problem
            progress("blobs", done, total)
    report.checked["blobs"] = total

    refs = 0
    async for kind, subject, digest, size in store.iter_blob_references():
        refs += 1
        verified = scratch.reference(digest)
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
        if refs % 1000 == 0:
            progress("references", refs, None)
    report.checked["references"] = refs
    progress("references", refs, refs)
    for problem in damaged.values():
        users = problem.details.get("referenced_by")
        if users:
            problem.message += f" (used by {', '.join(users[:5])}"
            problem.message += f" and {len(users) - 5} more)" if len(users) > 5 else ")"
    report.checked["unreferenced_blobs"] = scratch.count("referenced IS NULL AND size IS NOT NULL")


def _problem(kind: str, subject: str, exc: StrongroomError) -> VerifyProblem:
    return VerifyProblem(
        kind=kind, code=exc.code, subject=subject, message=exc.message, details=exc.details
    )
