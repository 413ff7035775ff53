"""When a record the target already holds under the same primary key is fine: identical
(skipped), an earlier state of the source's record (updated in place), or neither (`Conflict`,
raised before anything is written)."""

from __future__ import annotations

from typing import Any

from strongroom.bundle import RecordKind
from strongroom.errors import Conflict
from strongroom.models import Record, sorted_json
from strongroom.transfer.sinks import Sink
from strongroom.transfer.sources import Source

__all__ = ["conflict", "differing_fields", "same", "target_is_earlier_copy", "updatable"]


def same(a: Any, b: Any) -> bool:
    """Whether two records are identical (their canonical JSON, as a bundle stores them)."""
    return bool(sorted_json(a.model_dump(mode="json")) == sorted_json(b.model_dump(mode="json")))


def differing_fields(a: Record, b: Record) -> list[str]:
    left, right = a.model_dump(mode="json"), b.model_dump(mode="json")
    return sorted(k for k in set(left) | set(right) if left.get(k) != right.get(k))


async def target_is_earlier_copy(source: Source, sink: Sink) -> bool:
    """True when the target's audit chain is a prefix of the source's (or empty): the target
    is an earlier copy of the same vault, so a catalog entry that differs was changed since
    (every catalog change is audited)."""
    head = await sink.audit_head()
    return head is None or await source.audit_hash(head[0]) == head[1]


def updatable(kind: RecordKind, record: Any, old: Any, *, descendant: bool) -> bool:
    """Whether the target's ``old`` is an earlier state of the source's ``record``, rather
    than a different record: the only mutable records are runs (with a row version that
    only grows), log references (until sealed), audited catalog entries (``descendant``:
    `target_is_earlier_copy`), approvals and actors (revoked since: the one change they
    allow), holds (released since)."""
    if kind.name == "runs":
        return bool(record.version > old.version)
    if kind.name == "log_references":
        return not old.sealed
    if kind.name in ("providers", "namespaces"):
        return descendant
    if kind.name == "approvals":
        return (
            old.revoked_at is None
            and record.revoked_at is not None
            and set(differing_fields(record, old)) <= _REVOCATION
        )
    if kind.name == "holds":
        return old.active and not record.active and set(differing_fields(record, old)) <= _RELEASE
    if kind.name == "actors":
        return (
            old.revoked_at is None
            and record.revoked_at is not None
            and set(differing_fields(record, old)) <= _ACTOR_REVOCATION
        )
    return False


_REVOCATION = frozenset({"revoked_at", "revoked_by", "revoke_reason", "revoke_signature"})
_ACTOR_REVOCATION = _REVOCATION
_RELEASE = frozenset({"released_at", "released_by", "release_reason"})


def conflict(
    kind: RecordKind, record: Any, old: Any, *, hint: str, target: dict[str, str]
) -> Conflict:
    """The error for a target record that is neither the source's nor an earlier state of it."""
    key = kind.key(record)
    fields = differing_fields(record, old)
    return Conflict(
        f"the target already holds a different {kind.label} {key} "
        f"({', '.join(fields)} differ){hint}",
        operation="transfer",
        kind=kind.name,
        key=key,
        fields=fields,
        target=target,
    )
