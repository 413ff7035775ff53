"""Hash chains (run logs and the audit log): the hash of an entry covers its canonical JSON,
including the previous entry's hash, so changing, removing or reordering an entry breaks
every link after it. Pure functions: the services build log chains with them, the records
stores build the audit chain inside the transaction that writes the records it vouches for.

The hashing format, for an auditor re-computing it (docs/security.md has a worked example):
an entry carrying ``"canon": "jcs"`` has ``hash`` = SHA-256 (lowercase hex) of the RFC 8785
canonical JSON of the entry as stored, without its ``hash`` member. An entry without
``canon`` was written before (CPython's sorted ``json.dumps``, see `sorted_json`) and its
hashed body also leaves out ``canon`` and an audit entry's empty ``records``. Once a chain
holds a ``jcs`` entry, strongroom writes no other kind after it, and verify reports one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from strongroom.models.audit import AuditEntry, AuditEvent, RecordBinding
from strongroom.models.canonical import CANON, canonical_json, sorted_json

__all__ = [
    "GENESIS_HASH",
    "MAX_BINDINGS_PER_ENTRY",
    "ChainedEntry",
    "canon_regressed",
    "chain_audit_events",
    "chain_audit_rows",
    "chain_hash",
    "entry_hash",
    "stored_entry_matches",
]

GENESIS_HASH = "0" * 64

# The most records one audit entry binds: a write binding more is chained as several entries
# (in the same transaction), so every entry stays far below what verify reads (~140
# characters a binding: ~700 KB).
MAX_BINDINGS_PER_ENTRY = 5000


class ChainedEntry(Protocol):
    """A log or audit entry: its hash covers every other field, including prev_hash."""

    seq: int
    prev_hash: str
    hash: str

    @property
    def canon(self) -> str | None: ...

    def model_dump(self, *, mode: str, exclude: set[str]) -> dict[str, Any]: ...


def chain_hash(body: dict[str, Any]) -> str:
    """sha256 over an entry body (which includes its prev_hash): RFC 8785 canonical JSON
    when the body says ``"canon": "jcs"``, else the older `sorted_json`."""
    if body.get("canon") == CANON:
        return hashlib.sha256(canonical_json(body)).hexdigest()
    return hashlib.sha256(sorted_json(body)).hexdigest()


def entry_hash(entry: ChainedEntry) -> str:
    """The hash an entry must carry. An entry without ``canon`` (written before it) was
    hashed without that member and, for an audit entry, without an empty ``records`` (so
    entries written before record bindings existed keep the hash they were written with)."""
    body = entry.model_dump(mode="json", exclude={"hash"})
    if body.get("canon") is None:
        body.pop("canon", None)
        if "records" in body and not body["records"]:
            del body["records"]
    return chain_hash(body)


def canon_regressed(previous: ChainedEntry | None, entry: ChainedEntry) -> bool:
    """Whether ``entry`` follows a ``jcs`` entry without being one: strongroom never writes
    that, so the entry was rewritten in the older form (or the chain spliced)."""
    return previous is not None and previous.canon is not None and entry.canon is None


def chain_audit_events(
    events: Sequence[tuple[AuditEvent, Sequence[RecordBinding]]],
    *,
    head_seq: int,
    head_hash: str,
) -> list[AuditEntry]:
    """The audit entries that continue the chain from (``head_seq``, ``head_hash``): one per
    event, carrying the event's own bindings followed by the given ones."""
    return [entry for entry, _ in chain_audit_rows(events, head_seq=head_seq, head_hash=head_hash)]


def chain_audit_rows(
    events: Sequence[tuple[AuditEvent, Sequence[RecordBinding]]],
    *,
    head_seq: int,
    head_hash: str,
) -> list[tuple[AuditEntry, str]]:
    """`chain_audit_events`, each entry with the text a store keeps for it: the canonical
    JSON its hash was taken over, with the ``hash`` member added in its sorted place (see
    `stored_entry_matches`)."""
    out: list[tuple[AuditEntry, str]] = []
    seq, prev = head_seq, head_hash
    for event, records in _split(events):
        seq += 1
        # Built from validated parts (the event, bindings made by `bind`), so not validated
        # again: this runs inside every write transaction.
        entry = AuditEntry.model_construct(
            seq=seq,
            timestamp=event.timestamp,
            event=event.event,
            actor=event.actor,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            details=dict(event.details),
            records=records,
            prev_hash=prev,
            hash=GENESIS_HASH,
            canon=CANON,
        )
        body = entry.model_dump(mode="json", exclude={"hash"})
        hashed = canonical_json(body).decode("utf-8")
        digest = hashlib.sha256(hashed.encode("utf-8")).hexdigest()
        entry = AuditEntry.model_construct(**{**entry.__dict__, "hash": digest})
        out.append((entry, _with_hash(hashed, digest)))
        prev = digest
    return out


def _split(
    events: Sequence[tuple[AuditEvent, Sequence[RecordBinding]]],
) -> list[tuple[AuditEvent, list[RecordBinding]]]:
    """Each event with all its bindings; an event binding more than `MAX_BINDINGS_PER_ENTRY`
    records becomes that many-th parts, each a copy of the event whose details say which part
    it is (``binding_part``: "i/n"), so no entry grows past what verify reads."""
    out: list[tuple[AuditEvent, list[RecordBinding]]] = []
    for event, bindings in events:
        records = [*event.records, *bindings]
        if len(records) <= MAX_BINDINGS_PER_ENTRY:
            out.append((event, records))
            continue
        parts = -(-len(records) // MAX_BINDINGS_PER_ENTRY)
        for part in range(parts):
            chunk = records[part * MAX_BINDINGS_PER_ENTRY : (part + 1) * MAX_BINDINGS_PER_ENTRY]
            details = {**event.details, "binding_part": f"{part + 1}/{parts}"}
            out.append((event.model_copy(update={"details": details}), chunk))
    return out


_PREV_KEY = ',"prev_hash":"'


def _with_hash(hashed: str, digest: str) -> str:
    """Insert ``"hash":digest`` into the canonical text of an entry without it, where sorted
    keys put it: right before ``prev_hash``. A key in canonical JSON is never inside a string
    (quotes there are escaped) and nothing after the top-level ``prev_hash`` has a key of that
    name, so the last occurrence is the top-level one."""
    at = hashed.rfind(_PREV_KEY)
    return f'{hashed[:at]},"hash":"{digest}"{hashed[at:]}'


def stored_entry_matches(text: str, digest: str) -> bool:
    """Whether ``text``, an audit entry's stored body, is the canonical text its hash
    ``digest`` was taken over with that hash added (what `chain_audit_rows` stores): then
    the entry is exactly what was hashed, without re-serializing it. False says nothing
    (an entry stored in another form is checked with `entry_hash`)."""
    member = f',"hash":"{digest}"'
    at = text.rfind(member)
    if at < 0 or not text.startswith(_PREV_KEY, at + len(member)):
        return False
    hashed = text[:at] + text[at + len(member) :]
    return hashlib.sha256(hashed.encode("utf-8")).hexdigest() == digest
