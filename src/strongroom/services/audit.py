"""The audit service: one global append-only hash-chained log of governance events, with
RFC 6962 Merkle checkpoints every ``checkpoint_interval`` entries."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any

from strongroom.errors import Conflict
from strongroom.models import AuditEntry, AuditEvent, MerkleCheckpoint, VerifyProblem
from strongroom.ports import MetadataStore
from strongroom.services._common import (
    GENESIS_HASH,
    parse,
    retry_on_conflict,
    seal_entry,
    verify_chain,
)

__all__ = ["AuditService", "merkle_root"]


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> str:
    """RFC 6962 Merkle Tree Hash over ``leaves`` (each leaf's data, not yet leaf-hashed)."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = [_leaf(x) for x in leaves]
    return _mth(level).hex()


def _mth(hashed: Sequence[bytes]) -> bytes:
    # Iterative form of RFC 6962 section 2.1: split at the largest power of two < n.
    n = len(hashed)
    if n == 1:
        return hashed[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return _node(_mth(hashed[:k]), _mth(hashed[k:]))


class AuditService:
    def __init__(self, store: MetadataStore, *, checkpoint_interval: int = 1000) -> None:
        if checkpoint_interval < 1:
            raise ValueError("checkpoint_interval must be >= 1")
        self._store = store
        self.checkpoint_interval = checkpoint_interval
        # The last head this process appended: saves a read per event. Another process
        # appending meanwhile makes our append collide (Conflict), and we re-read.
        self._head: tuple[int, str] | None = None

    async def record(self, event: AuditEvent | dict[str, Any]) -> AuditEntry:
        return (await self.record_many([event]))[0]

    async def record_many(self, events: Sequence[AuditEvent | dict[str, Any]]) -> list[AuditEntry]:
        parsed = [parse(AuditEvent, e, operation="audit.record") for e in events]

        async def attempt() -> list[AuditEntry]:
            if self._head is None:
                head = await self._store.audit_head()
                self._head = (head.seq, head.hash) if head else (0, GENESIS_HASH)
            seq, prev = self._head
            out: list[AuditEntry] = []
            for ev in parsed:
                seq += 1
                body: dict[str, Any] = {
                    "seq": seq,
                    "timestamp": ev.timestamp.isoformat(),
                    "event": ev.event,
                    "actor": ev.actor,
                    "subject_type": ev.subject_type,
                    "subject_id": ev.subject_id,
                    "details": ev.details,
                    "prev_hash": prev,
                }
                entry = seal_entry(AuditEntry.model_validate({**body, "hash": GENESIS_HASH}))
                prev = entry.hash
                out.append(entry)
            try:
                await self._store.append_audit_entries(out)
            except Conflict:
                self._head = None
                raise
            self._head = (seq, prev)
            return out

        entries = await retry_on_conflict(attempt)
        for entry in entries:
            if entry.seq % self.checkpoint_interval == 0:
                await self._checkpoint(entry.seq)
        return entries

    async def _checkpoint(self, tree_size: int) -> None:
        leaves = [bytes.fromhex(e.hash) for e in await self._read_all(tree_size)]
        with contextlib.suppress(Conflict):  # another writer made the same checkpoint
            await self._store.insert_checkpoint(
                MerkleCheckpoint(tree_size=tree_size, root_hash=merkle_root(leaves))
            )

    async def _read_all(self, upto: int | None = None) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        after = 0
        while upto is None or after < upto:
            limit = 5000 if upto is None else min(5000, upto - after)
            page = await self._store.read_audit_entries(after_seq=after, limit=limit)
            if not page:
                break
            out.extend(page)
            after = page[-1].seq
        return out

    async def entries(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        return await self._store.read_audit_entries(after_seq=after_seq, limit=limit)

    async def head(self) -> AuditEntry | None:
        return await self._store.audit_head()

    async def checkpoints(self) -> list[MerkleCheckpoint]:
        return await self._store.list_checkpoints()

    async def verify(self) -> tuple[int, list[VerifyProblem]]:
        """Replay the chain and recompute every checkpoint; returns (entries checked, problems)."""
        problems: list[VerifyProblem] = []
        entries = await self._read_all()
        problems.extend(verify_chain(entries, subject_prefix="audit", kind="audit_chain"))
        leaves = [bytes.fromhex(e.hash) for e in entries]
        for cp in await self._store.list_checkpoints():
            if cp.tree_size > len(leaves):
                problems.append(
                    VerifyProblem(
                        kind="audit_checkpoint",
                        code="integrity_error",
                        subject=f"checkpoint@{cp.tree_size}",
                        message=f"checkpoint covers {cp.tree_size} entries but the audit log "
                        f"has {len(leaves)}: entries were removed",
                    )
                )
            elif merkle_root(leaves[: cp.tree_size]) != cp.root_hash:
                problems.append(
                    VerifyProblem(
                        kind="audit_checkpoint",
                        code="integrity_error",
                        subject=f"checkpoint@{cp.tree_size}",
                        message="Merkle root of the audit log no longer matches its checkpoint",
                    )
                )
        return len(entries), problems
