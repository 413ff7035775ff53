"""The log service: per-run append-only log lines, hash-chained, redacted before storage,
readable with filters, and sealed into an immutable JSONL artifact when the run ends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from strongroom.errors import Conflict, IntegrityError, NotFound, ValidationError
from strongroom.ids import check_entity_id
from strongroom.integrity import MerkleAccumulator
from strongroom.models import (
    CANON,
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactRole,
    AuditEvent,
    LogEntry,
    LogLine,
    LogQuery,
    LogReference,
    VerifyProblem,
    utcnow,
)
from strongroom.ports import MetadataStore
from strongroom.ports.metadata import sealed_log_conflict
from strongroom.secrets import Redactor
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import (
    GENESIS_HASH,
    chain_hash,
    check_int,
    parse,
    query_of,
    retry_on_conflict,
)
from strongroom.services._replay import ChainReplay

if TYPE_CHECKING:
    from strongroom.services.artifacts import ArtifactService

__all__ = ["LogService"]


def _run_id(value: str, operation: str = "logs.append") -> str:
    """A run id given by a caller, in canonical form; `ValidationError` if it is none."""
    try:
        return check_entity_id(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"invalid run id {str(value)[:80]!r}: {exc}", operation=operation, reason="bad_id"
        ) from None


@checked_arguments
class LogService:
    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactService,
        redactor: Redactor,
        *,
        head_every_lines: int = 100,
        head_every_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._redactor = redactor
        # Last known chain head per run: saves a read per batch; a stale head only costs a
        # Conflict and a re-read, never a wrong chain.
        self._heads: dict[str, tuple[int, str]] = {}
        # An open log's head is carried into the audit chain with every run transition and,
        # between them, by an append once ``head_every_lines`` lines or ``head_every_seconds``
        # passed since the head this process last carried: truncating an open log is caught
        # down to that head (see docs/security.md for the window).
        if head_every_lines < 1 or head_every_seconds < 0:
            raise ValidationError(
                "head_every_lines must be >= 1 and head_every_seconds >= 0",
                operation="logs.configure",
            )
        self.head_every_lines = head_every_lines
        self.head_every_seconds = head_every_seconds
        self._carried: dict[str, tuple[int, float]] = {}  # run -> (seq, monotonic time)

    @property
    def redactor(self) -> Redactor:
        """The redaction every stored message goes through (the vault's)."""
        return self._redactor

    async def append(self, run_id: str, line: LogLine | dict[str, Any]) -> LogEntry:
        return (await self.append_many(run_id, [line]))[0]

    async def append_many(
        self, run_id: str, lines: Sequence[LogLine | dict[str, Any]]
    ) -> list[LogEntry]:
        run_id = _run_id(run_id)
        redacted = self.prepare(run_id, lines)
        if not redacted:
            return []
        first_try = True

        async def attempt() -> list[LogEntry]:
            nonlocal first_try
            out = await self.chain(run_id, redacted, cached=first_try)
            if first_try:
                # After hashing: a line RFC 8785 cannot hash opens no log.
                await self.ensure_reference(run_id)
            first_try = False
            carry = self._head_due(run_id, out[-1].seq)
            try:
                await self._store.append_log_entries(
                    out,
                    audit=AuditEvent(
                        event="log.head",
                        subject_type="run",
                        subject_id=run_id,
                        details={"seq": out[-1].seq},
                    )
                    if carry
                    else None,
                )
            except Conflict:
                self.forget(run_id)
                raise
            self.remember(out)
            if carry:
                self.carried(run_id, out[-1].seq)
            return out

        return await retry_on_conflict(attempt)

    # -- the halves of append_many (`TransitionService` stores the entries with a snapshot) --

    def prepare(
        self, run_id: str, lines: Sequence[LogLine | dict[str, Any]]
    ) -> list[tuple[LogLine, dict[str, Any]]]:
        """Validate and redact lines: each as its `LogLine` and its redacted JSON body."""
        run_id = _run_id(run_id)
        parsed = [parse(LogLine, line, operation="logs.append", run_id=run_id) for line in lines]
        # One JSON-mode dump per line: the hash is taken over exactly the form that
        # LogEntry.model_dump(mode="json") produces, so verify recomputes it bit for bit.
        redacted: list[tuple[LogLine, dict[str, Any]]] = []
        for line in parsed:
            body = line.model_dump(mode="json")
            body["message"] = self._redactor.text(body["message"])
            body["data"] = self._redactor.value(body["data"])
            redacted.append((line, body))
        return redacted

    async def ensure_reference(self, run_id: str) -> None:
        """Create the run's log reference if it has none; `Conflict` (``sealed``) if its log
        is sealed. Skipped for a run this service appended to already (the store checks the
        seal again inside every append)."""
        if run_id in self._heads:
            return
        ref = await self._store.get_log_reference(run_id)
        if ref is None:
            await self._store.get_run(run_id)  # NotFound for an unknown run
            now = utcnow()
            # If absent only: a seal that lands meanwhile must not be overwritten.
            await self._store.put_log_reference(
                LogReference(
                    run_id=run_id,
                    created_at=now,
                    updated_at=now,
                    location="records",
                    entry_count=0,
                ),
                if_absent=True,
                audit=AuditEvent(event="log.opened", subject_type="run", subject_id=run_id),
            )
        elif ref.sealed:
            # Fail fast; the store re-checks inside the append transaction.
            raise sealed_log_conflict(run_id)

    async def chain(
        self, run_id: str, redacted: list[tuple[LogLine, dict[str, Any]]], *, cached: bool = True
    ) -> list[LogEntry]:
        """The entries that continue the run's chain from its head (the last one this
        service saw when ``cached``, else read), hashed; not stored yet."""
        head = self._heads.get(run_id) if cached else None
        if head is None:
            entry = await self._store.log_head(run_id)
            head = (entry.seq, entry.hash) if entry else (0, GENESIS_HASH)
        seq, prev = head
        out: list[LogEntry] = []
        for line, body in redacted:
            seq += 1
            digest = chain_hash(
                {**body, "run_id": run_id, "seq": seq, "prev_hash": prev, "canon": CANON}
            )
            # Every field was validated as a LogLine (and run_id by the store), so the
            # entry is assembled without a second validation pass.
            out.append(
                LogEntry.model_construct(
                    run_id=run_id,
                    seq=seq,
                    timestamp=line.timestamp,
                    level=line.level,
                    event=line.event,
                    phase=line.phase,
                    message=body["message"],
                    data=body["data"],
                    prev_hash=prev,
                    hash=digest,
                    canon=CANON,
                )
            )
            prev = digest
        return out

    def _head_due(self, run_id: str, seq: int) -> bool:
        last = self._carried.get(run_id)
        if last is None:
            self._carried[run_id] = (0, time.monotonic())
            return seq >= self.head_every_lines
        carried_seq, at = last
        return (
            seq - carried_seq >= self.head_every_lines
            or time.monotonic() - at >= self.head_every_seconds
        )

    def carried(self, run_id: str, seq: int) -> None:
        """The run's log head at ``seq`` entered the audit chain (a run write carries it)."""
        self._carried[run_id] = (seq, time.monotonic())

    def remember(self, entries: Sequence[LogEntry]) -> None:
        """Entries were stored: their last one is the run's head."""
        if entries:
            self._heads[entries[-1].run_id] = (entries[-1].seq, entries[-1].hash)

    def forget(self, run_id: str) -> None:
        """A stored head may be stale (a Conflict): read it again next time."""
        self._heads.pop(run_id, None)

    async def read(
        self, run_id: str, query: LogQuery | Mapping[str, Any] | None = None, **filters: Any
    ) -> list[LogEntry]:
        """The run's log lines matching a `LogQuery` (or a mapping of its fields, or its
        fields as keywords: ``read(run_id, limit=5, min_level="warning")``)."""
        run_id = _run_id(run_id, "logs.read")
        query = query_of(LogQuery, query, filters, operation="logs.read")
        entries = await self._store.read_log_entries(run_id, query)
        if not entries and query.after_seq == 0:
            await self._store.get_run(run_id)  # NotFound rather than an empty answer
        return entries

    async def iter_entries(self, run_id: str) -> AsyncIterator[LogEntry]:
        """Every line of the run's log in order, paged by the rows' own keys (a forged seq
        inside a line cannot send the reader back); `IntegrityError` at a damaged line."""
        run_id = _run_id(run_id, "logs.iter_entries")
        async for row in self._store.iter_log_rows(run_id):
            if row.entry is None:
                assert row.error is not None
                raise row.error
            yield row.entry

    async def tail(self, run_id: str, n: int = 20) -> list[LogEntry]:
        run_id = _run_id(run_id, "logs.tail")
        check_int(n, name="n", operation="logs.tail", high=100_000)
        count = await self._store.count_log_entries(run_id)
        return await self.read(run_id, LogQuery(after_seq=max(0, count - n), limit=max(n, 1)))

    async def reference(self, run_id: str) -> LogReference:
        """The run's log reference with the live entry count and head hash."""
        run_id = _run_id(run_id, "logs.reference")
        ref = await self._store.get_log_reference(run_id)
        if ref is None:
            await self._store.get_run(run_id)
            now = utcnow()
            return LogReference(
                run_id=run_id, created_at=now, updated_at=now, location="records", entry_count=0
            )
        head = await self._store.log_head(run_id)
        return ref.model_copy(
            update={
                "entry_count": head.seq if head else 0,
                "head_hash": head.hash if head else None,
                "updated_at": head.timestamp if head and not ref.sealed else ref.updated_at,
            }
        )

    async def seal(self, run_id: str, *, actor: str = "system") -> ArtifactMetadata:
        """Write the whole chain as an immutable JSONL artifact and mark the log sealed; no
        line can be appended afterwards. An empty log is sealed too (an empty artifact), so a
        finished run never grows new lines.

        Idempotent: sealing a sealed log returns its artifact.
        """
        run_id = _run_id(run_id, "logs.seal")
        ref = await self.reference(run_id)
        if ref.sealed and ref.sealed_artifact_id:
            return await self._artifacts.get(ref.sealed_artifact_id)
        # First close the log at its head, atomically with respect to appends (a line lands
        # before the close and is counted, or is refused after it); then write exactly the
        # closed chain. A crash in between leaves a closed log without its artifact, which the
        # next seal() completes.
        ref = await self._store.close_log(
            run_id,
            utcnow(),
            audit=AuditEvent(
                event="log.closed", actor=actor, subject_type="run", subject_id=run_id
            ),
        )
        tree = [MerkleAccumulator()]  # the leaves of the pass that was stored last

        async def lines() -> AsyncIterator[bytes]:
            leaves = tree[0] = MerkleAccumulator()
            async for entry in self.iter_entries(run_id):
                if entry.seq > ref.entry_count:
                    break
                leaves.append(bytes.fromhex(entry.hash))
                yield entry.model_dump_json().encode() + b"\n"

        artifact = await self._artifacts.put_stream(
            run_id,
            lines(),
            replay=lines,
            role=ArtifactRole.LOGS,
            format=ArtifactFormat.JSONL,
            name="run.log.jsonl",
            namespace="logs",
            description="Sealed hash-chained run log",
        )
        root = tree[0].root()
        now = utcnow()
        sealed = ref.model_copy(
            update={
                "sealed": True,
                "sealed_artifact_id": artifact.artifact_id,
                "location": artifact.location.uri,
                "updated_at": now,
            }
        )
        await self._store.put_log_reference(
            sealed,
            audit=AuditEvent(
                event="log.sealed",
                actor=actor,
                subject_type="run",
                subject_id=run_id,
                details={
                    "artifact_id": artifact.artifact_id,
                    "sha256": artifact.sha256,
                    "entry_count": tree[0].size,
                    "head_hash": sealed.head_hash,
                    "merkle_root": root,
                },
            ),
        )
        return artifact

    async def verify_run(self, run_id: str) -> tuple[int, list[VerifyProblem]]:
        """Replay the run's chain by its rows' keys (bounded memory, no loop a forged body
        could cause) and, for a sealed log, check the count and head it was sealed at."""
        replay = ChainReplay(kind="log_chain", prefix=f"log:{run_id}")
        async for row in self._store.iter_log_rows(run_id):
            replay.feed(row)
        problems = replay.problems
        try:
            ref = await self._store.get_log_reference(run_id)
        except IntegrityError:
            ref = None  # a reference that does not parse is reported with the records
        if ref is not None and ref.sealed:
            if ref.entry_count != replay.count:
                problems.append(
                    VerifyProblem(
                        kind="log_chain",
                        code="integrity_error",
                        subject=f"log:{run_id}",
                        message=f"log was sealed with {ref.entry_count} entries but now has "
                        f"{replay.count}",
                        details={"expected": ref.entry_count, "found": replay.count},
                    )
                )
            if replay.count and ref.head_hash != replay.prev:
                problems.append(
                    VerifyProblem(
                        kind="log_chain",
                        code="integrity_error",
                        subject=f"log:{run_id}",
                        message="log head no longer matches the head recorded at sealing",
                        details={"expected": ref.head_hash, "found": replay.prev},
                    )
                )
            if ref.sealed_artifact_id:
                try:
                    await self._artifacts.get(ref.sealed_artifact_id)
                except IntegrityError:
                    pass  # the artifact record does not parse: reported with the records
                except NotFound:
                    problems.append(
                        VerifyProblem(
                            kind="log_chain",
                            code="not_found",
                            subject=f"log:{run_id}",
                            message="sealed log artifact record is missing",
                        )
                    )
        return replay.count, problems
