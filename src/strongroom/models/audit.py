"""Audit records: one global append-only hash-chained log, with Merkle checkpoints."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from strongroom.ids import ActorName, Digest
from strongroom.models._base import Record, UtcDatetime, utcnow

__all__ = ["AuditEntry", "AuditEvent", "MerkleCheckpoint"]


class AuditEvent(Record):
    """An audit event as a service emits it."""

    event: str = Field(min_length=1, max_length=128, pattern=r"^[a-z][a-z0-9_.]*$")
    actor: ActorName = "system"
    subject_type: str = Field(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    subject_id: str = Field(max_length=256)
    details: dict[str, Any] = Field(default_factory=dict)
    timestamp: UtcDatetime = Field(default_factory=utcnow)


class AuditEntry(Record):
    """A stored audit entry. ``hash`` = sha256(prev_hash || canonical body); seq starts at 1."""

    seq: int = Field(ge=1)
    timestamp: UtcDatetime
    event: str
    actor: str
    subject_type: str
    subject_id: str
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: Digest
    hash: Digest


class MerkleCheckpoint(Record):
    """RFC 6962 Merkle tree head over audit entries 1..tree_size (leaf = entry hash bytes)."""

    tree_size: int = Field(ge=1)
    root_hash: Digest
    created_at: UtcDatetime = Field(default_factory=utcnow)
