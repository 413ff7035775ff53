"""Audit records: one global append-only hash-chained log, with Merkle checkpoints.

Every durable record write appends an audit entry in the same transaction, carrying a
`RecordBinding` per record it wrote: the record's type, id and canonical digest
(`record_digest`). ``verify`` recomputes each record's digest and compares it with the latest
binding the chain holds for it, so a record rewritten, re-pointed or deleted behind
strongroom's back no longer matches the chain."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, Self, get_args

from pydantic import BaseModel, Field, model_validator
from pydantic_core import to_jsonable_python

from strongroom.ids import ActorName, Digest, EntityId
from strongroom.models._base import MAX_INT64, Record, UtcDatetime, utcnow
from strongroom.models.canonical import Canon, record_json, sorted_json

__all__ = [
    "AUDIT_QUERY_MAX",
    "BINDING_TYPES",
    "AuditEntry",
    "AuditEvent",
    "AuditPage",
    "AuditQuery",
    "BindingType",
    "MerkleCheckpoint",
    "RecordBinding",
    "audit_columns",
    "audit_run_id",
    "record_digest",
    "record_digest_as",
]

# What a binding can name. "log" binds a run's log head (``seq`` and the head's hash);
# every other type binds a whole record by its canonical digest.
BindingType = Literal[
    "run",
    "snapshot",
    "artifact",
    "log",
    "log_ref",
    "provider",
    "namespace",
    "object",
    "definition",
    "channel_move",
    "approval",
    "checkpoint",
    "actor",
    "hold",
]
BINDING_TYPES: tuple[str, ...] = get_args(BindingType)


def record_digest(record: BaseModel) -> str:
    """sha256 of the record's canonical JSON (`record_json`: RFC 8785 wherever it can
    represent the record): what a binding carries."""
    return hashlib.sha256(record_json(record.model_dump(mode="json"))).hexdigest()


def record_digest_as(record: BaseModel, expected: str | None) -> str:
    """The record's digest in the form ``expected`` (a binding's digest) was taken in: its
    `record_digest`, or, when that is not ``expected``, its `sorted_json` digest if that is
    (the form of bindings in entries written before ``canon``). Both are SHA-256 of a JSON
    text of the same value, so accepting either vouches for nothing the other would not."""
    body = record.model_dump(mode="json")
    digest = hashlib.sha256(record_json(body)).hexdigest()
    if digest == expected:
        return digest
    old = hashlib.sha256(sorted_json(body)).hexdigest()
    return old if old == expected else digest


class RecordBinding(Record):
    """One record an audit entry vouches for: its state after the write (``digest``), or its
    deletion (``digest`` None). For a log head: ``id`` is the run, ``seq`` the head's position
    and ``digest`` its hash."""

    type: BindingType
    id: str = Field(min_length=1, max_length=400)
    digest: Digest | None = None
    seq: int | None = Field(default=None, ge=0)


_EVENT_PATTERN: Final = r"^[a-z][a-z0-9_.]*$"


class AuditEvent(Record):
    """An audit event as a service emits it."""

    event: str = Field(min_length=1, max_length=128, pattern=_EVENT_PATTERN)
    actor: ActorName = "system"
    subject_type: str = Field(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    subject_id: str = Field(max_length=256)
    details: dict[str, Any] = Field(default_factory=dict)
    timestamp: UtcDatetime = Field(default_factory=utcnow)
    records: list[RecordBinding] = Field(
        default_factory=list,
        description="Bindings to add besides the ones the store computes for what it wrote.",
    )


class AuditEntry(Record):
    """A stored audit entry. ``hash`` = sha256 of the canonical JSON of the entry without
    ``hash`` (which includes ``prev_hash``); seq starts at 1. See `strongroom.models.chain`."""

    seq: int = Field(ge=1)
    timestamp: UtcDatetime
    event: str
    actor: str
    subject_type: str
    subject_id: str
    details: dict[str, Any] = Field(default_factory=dict)
    records: list[RecordBinding] = Field(
        default_factory=list,
        description="The records this entry vouches for. Left out of the hashed body when "
        "empty, so entries written before bindings existed keep their hash.",
    )
    prev_hash: Digest
    hash: Digest
    canon: Canon | None = Field(
        default=None,
        description="How ``hash`` and the digests of ``records`` were taken: 'jcs' = SHA-256 "
        "of RFC 8785 canonical JSON. Absent on entries written before it (CPython's sorted "
        "json.dumps; see strongroom.models.canonical).",
    )


class MerkleCheckpoint(Record):
    """RFC 6962 Merkle tree head over audit entries 1..tree_size (leaf = entry hash bytes).

    ``compact_range`` holds the roots of the perfect subtrees the first ``tree_size`` leaves
    decompose into (left to right): the next checkpoint continues from it instead of reading
    the whole chain again. verify never trusts it: it recomputes every root from the entries.
    A signed checkpoint also carries an Ed25519 signature over its tree head
    (`strongroom.integrity.tree_head_payload` of tree_size, root_hash and ``signed_at``),
    made with a key kept outside the vault."""

    tree_size: int = Field(ge=1)
    root_hash: Digest
    created_at: UtcDatetime = Field(default_factory=utcnow)
    compact_range: list[Digest] = Field(default_factory=list, max_length=64)
    signed_at: UtcDatetime | None = None
    key_id: str | None = Field(default=None, max_length=64)
    public_key: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    signature: str | None = Field(default=None, pattern=r"^[0-9a-f]{128}$")


# -- reading the chain by event, actor and run ------------------------------------------------

AUDIT_QUERY_MAX: Final = 1000
"""The most entries one `AuditQuery` page holds."""

_EVENT_RE: Final = re.compile(_EVENT_PATTERN)
_ACTOR_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$")  # `ActorName`'s rule
# What `EntityId` accepts unchanged: a ULID, or a UUID in its canonical (lowercase, hyphenated)
# form; a regular expression, as verify runs this for every entry of the chain.
_RUN_ID_RE: Final = re.compile(
    r"^(?:[0-9A-HJKMNP-TV-Z]{26}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


def audit_run_id(entry: AuditEntry) -> str | None:
    """The run an audit entry is about, or None: its subject when the subject is a run (run
    created, status changes, transitions, snapshots, artifacts stored, log events, resume
    forced...), else ``details.run_id`` (the execution lane's ``execution.*`` entries, whose
    subject is the tool invocation), else ``details.target.run_id`` when ``details.target`` is
    a run approval's target (``registry.approved`` of a run; its revocation names the same
    target). Only a canonical run id counts (what `EntityId` accepts unchanged).

    What the SQL stores index as the entry's ``run_id`` column (and what verify checks that
    column against): changing these rules needs a migration that rewrites the column."""
    candidate: object
    if entry.subject_type == "run":
        candidate = entry.subject_id
    else:
        details = entry.details
        candidate = details.get("run_id")
        if candidate is None:
            target = details.get("target")
            if target is not None and not isinstance(target, Mapping):
                target = to_jsonable_python(target)
            if isinstance(target, Mapping) and target.get("scope") == "run":
                candidate = target.get("run_id")
        if candidate is not None and not isinstance(candidate, str):
            candidate = to_jsonable_python(candidate)  # as the stored JSON has it (a UUID)
    return candidate if isinstance(candidate, str) and _RUN_ID_RE.fullmatch(candidate) else None


def audit_columns(entry: AuditEntry) -> dict[str, str | None]:
    """The copies of an entry's fields a SQL store keeps beside its body for `AuditQuery`
    (``event``, ``actor``, ``run_id``): each value only when a query could ask for it (an
    event name or an actor name as `AuditEvent` allows them, a canonical run id), else None.
    verify compares every stored row's columns with these."""
    event, actor = entry.event, entry.actor
    return {
        "event": event if len(event) <= 128 and _EVENT_RE.fullmatch(event) else None,
        "actor": actor if _ACTOR_RE.fullmatch(actor) else None,
        "run_id": audit_run_id(entry),
    }


class AuditQuery(Record):
    """Filters of a page of audit entries (`AuditService.query`), answered from an index on
    every filter (not by scanning the chain).

    ``event``: an event name (``run.created``), or a prefix ending in ``.`` (``registry.``:
    every event whose name starts with it). ``actor``: who the entry names (``os:alice``,
    ``pg:app``, a registered name). ``run_id``: the entries about that run (`audit_run_id`:
    its creation, status changes and transitions, snapshots, artifacts, log events, tool
    executions in it, approvals of it). Filters combine with AND.

    Newest first, paged by ``before_seq`` (entries with a lower seq; None: from the head);
    or, with ``after_seq``, oldest first (entries with a higher seq). The page's
    ``next_cursor`` is the next page's ``before_seq`` (or ``after_seq``)."""

    event: str | None = Field(default=None, min_length=1, max_length=128, pattern=_EVENT_PATTERN)
    actor: ActorName | None = None
    run_id: EntityId | None = None
    before_seq: int | None = Field(default=None, ge=1, le=MAX_INT64)
    after_seq: int | None = Field(default=None, ge=0, le=MAX_INT64)
    limit: int = Field(default=50, ge=1, le=AUDIT_QUERY_MAX)

    @model_validator(mode="after")
    def _one_direction(self) -> Self:
        if self.before_seq is not None and self.after_seq is not None:
            raise ValueError("give before_seq (newest first) or after_seq (oldest first), not both")
        return self

    @property
    def newest_first(self) -> bool:
        return self.after_seq is None

    @property
    def event_prefix(self) -> str | None:
        """The prefix when ``event`` is one (ends in ``.``), else None."""
        return self.event if self.event is not None and self.event.endswith(".") else None

    def matches(self, entry: AuditEntry) -> bool:
        """Whether ``entry`` passes the filters and the cursor (what every store answers)."""
        columns = audit_columns(entry)
        if self.event is not None:
            event = columns["event"]
            prefix = self.event_prefix
            if event is None or not (
                event.startswith(prefix) if prefix is not None else event == self.event
            ):
                return False
        if self.actor is not None and columns["actor"] != self.actor:
            return False
        if self.run_id is not None and columns["run_id"] != self.run_id:
            return False
        if self.before_seq is not None and entry.seq >= self.before_seq:
            return False
        return self.after_seq is None or entry.seq > self.after_seq


class AuditPage(Record):
    """One page of `AuditQuery` results."""

    entries: list[AuditEntry]
    next_cursor: int | None = Field(
        default=None,
        description="The next page's before_seq (newest first) or after_seq (oldest first); "
        "None on the last page.",
    )
