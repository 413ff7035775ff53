"""What the chained records share across ports: a stored chain row as verify reads it, and a
binding as verify compares it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from strongroom.errors import IntegrityError
from strongroom.models import AuditEntry, LogEntry, RecordBinding

__all__ = ["BindingKey", "ChainRow", "binding_key"]

E = TypeVar("E", AuditEntry, LogEntry)


@dataclass
class ChainRow(Generic[E]):
    """One stored row of a hash chain, as verify reads it: by the row's own key (``key``),
    never by a value inside the body (a forged body cannot make a reader go back or loop).

    ``entry`` is the parsed body, or None with ``error`` when it does not validate;
    ``column_hash`` the hash column kept beside the body (None where there is none);
    ``bindings`` the store's binding index rows for this seq as `binding_key` tuples (audit
    rows of stores that keep an index separate from the bodies; None otherwise); ``columns``
    the other copies of body fields the row keeps for queries (level, event, phase,
    timestamp of a log line), which must agree with the body; ``text`` the body as stored,
    when the store has it (a replay can then check the hash against the stored text
    without re-serializing the entry)."""

    key: int
    entry: E | None
    error: IntegrityError | None = None
    column_hash: str | None = None
    bindings: list[BindingKey] | None = field(default=None)
    columns: dict[str, object] | None = field(default=None)
    positions: list[int] | None = field(default=None)  # of ``bindings`` in the index
    text: str | None = None


# A binding as compared by verify: (type, id, digest, log seq).
BindingKey = tuple[str, str, str | None, int | None]


def binding_key(binding: RecordBinding) -> BindingKey:
    return (binding.type, binding.id, binding.digest, binding.seq)
