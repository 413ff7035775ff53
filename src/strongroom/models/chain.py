"""Hash chains (run logs and the audit log): the hash of an entry covers its canonical JSON,
including the previous entry's hash, so changing, removing or reordering an entry breaks
every link after it. Pure functions: the services build log chains with them, the records
stores build the audit chain inside the transaction that writes the records it vouches for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from strongroom.models._base import canonical_json
from strongroom.models.audit import AuditEntry, AuditEvent, RecordBinding

__all__ = ["GENESIS_HASH", "ChainedEntry", "chain_audit_events", "chain_hash", "entry_hash"]

GENESIS_HASH = "0" * 64


class ChainedEntry(Protocol):
    """A log or audit entry: its hash covers every other field, including prev_hash."""

    seq: int
    prev_hash: str
    hash: str

    def model_dump(self, *, mode: str, exclude: set[str]) -> dict[str, Any]: ...


def chain_hash(body: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of an entry body (which includes its prev_hash)."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def entry_hash(entry: ChainedEntry) -> str:
    """The hash an entry must carry. An audit entry's ``records`` is left out when empty, so
    entries written before record bindings existed keep the hash they were written with."""
    body = entry.model_dump(mode="json", exclude={"hash"})
    if "records" in body and not body["records"]:
        del body["records"]
    return chain_hash(body)


def chain_audit_events(
    events: Sequence[tuple[AuditEvent, Sequence[RecordBinding]]],
    *,
    head_seq: int,
    head_hash: str,
) -> list[AuditEntry]:
    """The audit entries that continue the chain from (``head_seq``, ``head_hash``): one per
    event, carrying the event's own bindings followed by the given ones."""
    out: list[AuditEntry] = []
    seq, prev = head_seq, head_hash
    for event, bindings in events:
        seq += 1
        entry = AuditEntry(
            seq=seq,
            timestamp=event.timestamp,
            event=event.event,
            actor=event.actor,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            details=event.details,
            records=[*event.records, *bindings],
            prev_hash=prev,
            hash=GENESIS_HASH,
        )
        # The hash is taken over exactly the JSON form the entry is stored and re-read in.
        entry = entry.model_copy(update={"hash": entry_hash(entry)})
        out.append(entry)
        prev = entry.hash
    return out
