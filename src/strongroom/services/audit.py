"""The audit service: one global append-only hash-chained log of governance events and record
bindings, with RFC 6962 Merkle checkpoints every ``checkpoint_interval`` entries (and every
``checkpoint_seconds``), signed with a key kept outside the vault when one is configured, and
anchored to a witness outside the vault when one is configured.

The chain itself is built by the records store, inside the transaction of the write each
entry vouches for (`MetadataStore.append_audit_events` and the ``audit=`` of every write).
This service reacts to appends (the store's audit listener) to take checkpoints, and replays
the chain for ``verify``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from strongroom.errors import Conflict, IntegrityError, StrongroomError
from strongroom.integrity import MerkleAccumulator, SigningKey, merkle_root, tree_head_payload
from strongroom.models import (
    VERIFIED_EVENT,
    AuditEntry,
    AuditEvent,
    AuditPage,
    AuditQuery,
    MerkleCheckpoint,
    RecordBinding,
    VerifyOutcome,
    VerifyRecord,
    VerifyReport,
    utcnow,
)
from strongroom.ports import MetadataStore
from strongroom.ports.metadata import ChainRow
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import check_int, parse, query_of

__all__ = ["Anchor", "AuditService", "merkle_root"]

# Called with each new checkpoint: appends its signed head to a witness outside the vault.
Anchor = Callable[[MerkleCheckpoint], Awaitable[None]]

_HASH_PAGE = 5000


@checked_arguments
class AuditService:
    def __init__(
        self,
        store: MetadataStore,
        *,
        checkpoint_interval: int = 1000,
        checkpoint_seconds: float | None = 300.0,
        signing_key: SigningKey | None = None,
        anchor: Anchor | None = None,
    ) -> None:
        if checkpoint_interval < 1:
            raise ValueError("checkpoint_interval must be >= 1")
        self._store = store
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_seconds = checkpoint_seconds
        self.signing_key = signing_key
        self.anchor = anchor
        # The newest checkpoint this process knows (None: not read yet) and when it was
        # taken (monotonic clock), for the time-based checkpoints.
        self._last: MerkleCheckpoint | None = None
        self._last_known = False
        self._last_at = time.monotonic()
        self._checkpointing = False
        # Failures after the write committed (a checkpoint or an anchor that could not be
        # written): the write stands, the next checkpoint retries; `strongroom audit` shows
        # them, and verify --anchor reports a stale witness.
        self.errors: list[StrongroomError] = []
        store.set_audit_listener(self._appended)

    async def record(self, event: AuditEvent | dict[str, Any]) -> AuditEntry:
        return (await self.record_many([event]))[0]

    async def record_many(self, events: Sequence[AuditEvent | dict[str, Any]]) -> list[AuditEntry]:
        """Append events that bind no record of their own (an execution, a refusal...)."""
        parsed = [parse(AuditEvent, e, operation="audit.record") for e in events]
        return await self._store.append_audit_events(parsed)

    # -- checkpoints --------------------------------------------------------------------------

    async def _appended(self, first_seq: int, last_seq: int) -> None:
        if self._checkpointing:
            return  # the checkpoint's own audit entry: the next write takes it into account
        n = self.checkpoint_interval
        due = list(range(-(-first_seq // n) * n, last_seq + 1, n))
        if (
            not due
            and self.checkpoint_seconds is not None
            and time.monotonic() - self._last_at >= self.checkpoint_seconds
        ):
            last = await self._latest_checkpoint()
            if last is None or last.tree_size < last_seq:
                due = [last_seq]
        for size in due:
            try:
                await self.checkpoint(size)
            except StrongroomError as exc:
                self.errors.append(exc)

    async def checkpoint(self, tree_size: int | None = None) -> MerkleCheckpoint | None:
        """Take (and sign, and anchor, as configured) a checkpoint over the first
        ``tree_size`` entries (default: all); None when the chain is empty. Continues from
        the newest earlier checkpoint's compact range, so its cost is the entries since.
        The checkpoint row is bound into the chain by an ``audit.checkpoint`` entry."""
        if tree_size is not None:
            check_int(tree_size, name="tree_size", operation="audit.checkpoint", low=1)
        self._checkpointing = True
        try:
            return await self._checkpoint(tree_size)
        finally:
            self._checkpointing = False

    async def _latest_checkpoint(self) -> MerkleCheckpoint | None:
        if not self._last_known:
            found = await self._store.list_checkpoints()
            self._last = found[-1] if found else None
            self._last_known = True
        return self._last

    async def _checkpoint(self, tree_size: int | None) -> MerkleCheckpoint | None:
        if tree_size is None:
            head = await self._store.audit_head()
            if head is None:
                return None
            tree_size = head.seq
        base = await self._latest_checkpoint()
        if base is None or base.tree_size > tree_size or not base.compact_range:
            base = await self._base_for(tree_size)
        acc = (
            MerkleAccumulator.from_compact_range(
                base.tree_size, [bytes.fromhex(h) for h in base.compact_range]
            )
            if base is not None and base.compact_range
            else MerkleAccumulator()
        )
        after = acc.size
        while after < tree_size:
            page = await self._store.read_audit_hashes(
                after_seq=after, limit=min(_HASH_PAGE, tree_size - after)
            )
            if not page:
                return None  # the chain is shorter than asked (it was cut): verify says so
            for seq, digest in page:
                if seq != after + 1:
                    return None
                acc.append(bytes.fromhex(digest))
                after = seq
        checkpoint = self._sign(
            MerkleCheckpoint(
                tree_size=tree_size,
                root_hash=acc.root(),
                compact_range=[h.hex() for h in acc.compact_range()],
            )
        )
        try:
            # Bound like any record, so removing or editing a checkpoint row is caught.
            await self._store.insert_checkpoint(
                checkpoint,
                audit=AuditEvent(
                    event="audit.checkpoint",
                    subject_type="audit",
                    subject_id=str(tree_size),
                    details={"root_hash": checkpoint.root_hash, "key_id": checkpoint.key_id},
                ),
            )
        except Conflict:
            # Another writer took this checkpoint first; theirs covers the same entries.
            self._last_known = False
            return checkpoint
        if self._last is None or checkpoint.tree_size >= self._last.tree_size:
            self._last, self._last_known = checkpoint, True
        self._last_at = time.monotonic()
        if self.anchor is not None:
            try:
                await self.anchor(checkpoint)
            except StrongroomError as exc:
                self.errors.append(exc)
        return checkpoint

    async def _base_for(self, tree_size: int) -> MerkleCheckpoint | None:
        usable = [
            c
            for c in await self._store.list_checkpoints()
            if c.tree_size <= tree_size and c.compact_range
        ]
        return usable[-1] if usable else None

    def _sign(self, checkpoint: MerkleCheckpoint) -> MerkleCheckpoint:
        key = self.signing_key
        if key is None:
            return checkpoint
        at = utcnow()
        payload = tree_head_payload(checkpoint.tree_size, checkpoint.root_hash, at)
        return checkpoint.model_copy(
            update={
                "signed_at": at,
                "key_id": key.key_id,
                "public_key": key.public_key_hex,
                "signature": key.sign(payload),
            }
        )

    async def adopt_unbound(self, *, actor: str = "local", batch: int = 1000) -> int:
        """Bind every record that has no audit binding (written by a strongroom from before
        bindings existed, or imported without its chain) as it is now, in ``audit.adopted``
        entries of up to ``batch`` records; returns how many were bound. Trust on first use:
        this vouches for whatever the records hold today, so run `verify` first and adopt
        only a vault you trust; the entries say who adopted what and when."""
        pending: list[RecordBinding] = []
        total = 0

        async def flush() -> None:
            nonlocal pending, total
            if pending:
                await self._store.append_audit_events(
                    [
                        AuditEvent(
                            event="audit.adopted",
                            actor=actor,
                            subject_type="vault",
                            subject_id="records",
                            details={"count": len(pending)},
                            records=pending,
                        )
                    ]
                )
                total += len(pending)
                pending = []

        found = [
            p
            async for p in self._store.iter_binding_problems()
            if p.details.get("reason") == "unbound"
        ]
        for problem in found:
            kind, _, ident = problem.subject.partition(":")
            pending.append(
                RecordBinding.model_validate(
                    {"type": kind, "id": ident, "digest": problem.details["found"]}
                )
            )
            if len(pending) >= batch:
                await flush()
        await flush()
        return total

    # -- reading ------------------------------------------------------------------------------

    async def entries(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        check_int(after_seq, name="after_seq", operation="audit.read")
        check_int(limit, name="limit", operation="audit.read", low=1)
        return await self._store.read_audit_entries(after_seq=after_seq, limit=limit)

    async def query(
        self, query: AuditQuery | Mapping[str, Any] | None = None, **filters: Any
    ) -> AuditPage:
        """A page of audit entries matching an `AuditQuery` (or a mapping of its fields, or
        its fields as keywords: ``query(event="run.", run_id=run.run_id, limit=20)``),
        newest first; pass the page's ``next_cursor`` as ``before_seq`` for the next one
        (oldest first with ``after_seq``). Answered from indexes, whatever the chain's
        length."""
        parsed = query_of(AuditQuery, query, filters, operation="audit.query")
        return await self._store.query_audit(parsed)

    async def record_verify(self, report: VerifyReport, *, actor: str = "system") -> AuditEntry:
        """Append the outcome of a verify (`VerifyOutcome` of ``report``: counts, how many
        problems of each kind, the first few without messages) as a ``vault.verified`` entry
        by ``actor``. It binds no record, so the next verify finds the chain as consistent
        as before (one entry longer). `Vault.verify(record=True)` records as the process's
        principal."""
        return await self.record(
            {
                "event": VERIFIED_EVENT,
                "actor": actor,
                "subject_type": "vault",
                "subject_id": "verify",
                "details": VerifyOutcome.of(report).model_dump(mode="json"),
            }
        )

    async def last_verify(self) -> VerifyRecord | None:
        """The newest recorded verify (when, by whom, what it found), or None when no verify
        was recorded: one index lookup. `IntegrityError` when that entry's details are not a
        verify outcome (written around `record_verify`)."""
        page = await self._store.query_audit(AuditQuery(event=VERIFIED_EVENT, limit=1))
        if not page.entries:
            return None
        entry = page.entries[0]
        try:
            outcome = VerifyOutcome.model_validate(entry.details)
        except ValueError as exc:
            raise IntegrityError(
                f"audit entry #{entry.seq} ({VERIFIED_EVENT}) does not hold a verify outcome",
                operation="audit.last_verify",
                subject=f"audit#{entry.seq}",
                reason="invalid_verify_outcome",
            ) from exc
        return VerifyRecord(
            seq=entry.seq, timestamp=entry.timestamp, actor=entry.actor, outcome=outcome
        )

    def rows(self, after_seq: int = 0) -> AsyncIterator[ChainRow[AuditEntry]]:
        """Every stored row in key order (what verify replays)."""
        check_int(after_seq, name="after_seq", operation="audit.read")
        return self._store.iter_audit_rows(after_seq)

    async def head(self) -> AuditEntry | None:
        return await self._store.audit_head()

    async def checkpoints(self) -> list[MerkleCheckpoint]:
        return await self._store.list_checkpoints()
