"""Replaying a hash chain as verify does: row by row in the rows' own key order, in constant
memory, checking every link, every hash, every copy of a field kept beside the body, and (for
the audit chain) the Merkle roots of checkpoints and anchored heads, with an RFC 9162
consistency proof from the newest anchored head to the chain's head."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from strongroom.integrity import (
    MerkleAccumulator,
    SignedTreeHead,
    check_tree_head,
    tree_head_payload,
    verify_consistency,
    verify_signature,
)
from strongroom.models import (
    GENESIS_HASH,
    AuditEntry,
    LogEntry,
    MerkleCheckpoint,
    VerifyProblem,
    audit_columns,
    entry_hash,
    stored_entry_matches,
)
from strongroom.ports.metadata import ChainRow, binding_key

__all__ = ["AuditReplay", "ChainReplay", "consistency_ranges"]


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose subtree hashes make the RFC 9162 (section 2.1.4.1)
    consistency proof from ``old_size`` to ``new_size``, in proof order. They are disjoint,
    so one replay of the leaves computes them all."""
    if not 0 < old_size <= new_size or old_size == new_size:
        return []
    out: list[tuple[int, int]] = []

    def sub(m: int, lo: int, hi: int, whole: bool) -> None:
        n = hi - lo
        if m == n:
            if not whole:
                out.append((lo, hi))
            return
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            sub(m, lo, lo + k, whole)
            out.append((lo + k, hi))
        else:
            sub(m - k, lo + k, hi, False)
            out.append((lo, lo + k))

    sub(old_size, 0, new_size, True)
    return out


@dataclass
class ChainReplay:
    """Checks of one chain, fed one stored row at a time."""

    kind: str
    prefix: str
    problems: list[VerifyProblem] = field(default_factory=list)
    expected: int = 1
    prev: str = GENESIS_HASH
    count: int = 0
    last: LogEntry | AuditEntry | None = None
    jcs_since: int | None = None  # the first entry hashed as RFC 8785 (``canon``)

    def problem(self, key: int | str, message: str, **details: Any) -> None:
        self.problems.append(
            VerifyProblem(
                kind=self.kind,
                code="integrity_error",
                subject=f"{self.prefix}#{key}",
                message=message,
                details=details,
            )
        )

    def _check_canon(self, key: int, entry: LogEntry | AuditEntry) -> None:
        """Once an entry was hashed as RFC 8785 (``canon``), every later one must be."""
        if entry.canon is not None:
            self.jcs_since = self.jcs_since or key
        elif self.jcs_since is not None:
            self.problem(
                key,
                f"entry hashed in the form before RFC 8785 after entry #{self.jcs_since} "
                "was hashed with it: strongroom never writes that (rewritten in the older form)",
                reason="canon_regressed",
                since=self.jcs_since,
            )

    def feed(self, row: ChainRow[Any]) -> str | None:
        """Check one row; returns the hash the chain continues from (None: no entry)."""
        if row.entry is None and row.error is not None and row.column_hash is None:
            self.problem(row.key, row.error.message, **row.error.details)
            return None  # not a row of the chain (an orphan index row)
        self.count += 1
        if row.key != self.expected:
            self.problem(
                row.key,
                f"sequence gap: expected entry {self.expected}, found {row.key} "
                "(entries were removed or reordered)",
                expected=self.expected,
                found=row.key,
            )
        self.expected = row.key + 1
        entry = row.entry
        if entry is None:
            assert row.error is not None
            self.problem(row.key, row.error.message, **row.error.details)
            # Continue from the hash column, so one damaged body is one problem, not every
            # link after it.
            self.prev = row.column_hash or self.prev
            return row.column_hash
        if entry.seq != row.key:
            self.problem(
                row.key,
                f"entry stored as row {row.key} says it is entry {entry.seq} (edited)",
                expected=row.key,
                found=entry.seq,
            )
        if entry.prev_hash != self.prev:
            self.problem(
                row.key,
                "chain broken: prev_hash does not match the previous entry's hash",
                expected=self.prev,
                found=entry.prev_hash,
            )
        edited = False
        if (row.text is None or not stored_entry_matches(row.text, entry.hash)) and (
            recomputed := entry_hash(entry)
        ) != entry.hash:
            edited = True
            self.problem(
                row.key,
                "entry content does not match its hash (edited after writing)",
                expected=entry.hash,
                found=recomputed,
            )
        self._check_canon(row.key, entry)
        if row.column_hash is not None and row.column_hash != entry.hash:
            self.problem(
                row.key,
                "the hash column differs from the entry's hash (the row was edited)",
                expected=entry.hash,
                found=row.column_hash,
            )
        # An audit entry's body that no longer matches its hash is reported as such; its
        # query columns (copies of the body as written) would only repeat that.
        if row.columns and not (edited and isinstance(entry, AuditEntry)):
            # An audit entry's columns are its `audit_columns`; a log line's, its fields.
            expected: dict[str, object] = (
                dict(audit_columns(entry))
                if isinstance(entry, AuditEntry)
                else {
                    name: getattr(getattr(entry, name), "value", getattr(entry, name))
                    for name in row.columns
                }
            )
            differing = sorted(
                name for name, value in row.columns.items() if expected.get(name) != value
            )
            if differing:
                self.problem(
                    row.key,
                    f"{', '.join(differing)} differ between the entry and its index columns "
                    "(the row was edited)",
                    fields=differing,
                )
        if (
            row.bindings is not None
            and isinstance(entry, AuditEntry)
            and (
                row.bindings != [binding_key(b) for b in entry.records]
                or (row.positions is not None and row.positions != list(range(len(row.positions))))
            )
        ):
            self.problem(
                row.key,
                "the binding index differs from the records this entry binds (the index "
                "was edited)",
            )
        self.prev = entry.hash
        self.last = entry
        return entry.hash


class AuditReplay(ChainReplay):
    """The audit chain's replay: a `ChainReplay` that also recomputes the Merkle root at every
    checkpoint and anchored head, checks their signatures against the trusted keys, and
    builds the consistency proof from the newest anchored head."""

    def __init__(
        self,
        checkpoints: Sequence[MerkleCheckpoint],
        anchors: Sequence[SignedTreeHead] = (),
        trusted_keys: Collection[str] | None = None,
    ) -> None:
        super().__init__(kind="audit_chain", prefix="audit")
        self.acc = MerkleAccumulator()
        self.trusted = trusted_keys
        self.checkpoints = sorted(checkpoints, key=lambda c: c.tree_size)
        self.anchors = sorted(anchors, key=lambda a: a.tree_size)
        self._cp = 0
        self._an = 0
        self.signed_checkpoints = 0
        for cp in self.checkpoints:
            self._check_signature(cp)
        for head in self.anchors:
            if not check_tree_head(head, trusted_keys):
                self.problems.append(
                    VerifyProblem(
                        kind="audit_anchor",
                        code="integrity_error",
                        subject=f"anchor@{head.tree_size}",
                        message="the anchored head's signature does not verify"
                        + (" with a trusted key" if trusted_keys is not None else ""),
                        details={"key_id": head.key_id},
                    )
                )
        newest = self.anchors[-1] if self.anchors else None
        self.proof_from = newest
        self._ranges: list[tuple[int, int]] = []
        self._range_acc: dict[tuple[int, int], MerkleAccumulator] = {}

    def plan_proof(self, head_size: int) -> None:
        """Before the replay: the chain's current size, so the consistency proof from the
        newest anchored head can be computed during it."""
        if self.proof_from is not None and 0 < self.proof_from.tree_size < head_size:
            self._ranges = consistency_ranges(self.proof_from.tree_size, head_size)
            self._range_acc = {r: MerkleAccumulator() for r in self._ranges}

    def _check_signature(self, cp: MerkleCheckpoint) -> None:
        if cp.signature is None:
            return
        self.signed_checkpoints += 1
        subject = f"checkpoint@{cp.tree_size}"
        if cp.signed_at is None or cp.public_key is None:
            ok = False
        else:
            payload = tree_head_payload(cp.tree_size, cp.root_hash, cp.signed_at)
            ok = verify_signature(cp.public_key, payload, cp.signature)
        if not ok:
            message = "checkpoint signature does not verify (the checkpoint was edited)"
        elif self.trusted is not None and cp.public_key not in self.trusted:
            message = "checkpoint is signed by a key that is not trusted (it was re-signed)"
        else:
            return
        self.problems.append(
            VerifyProblem(
                kind="audit_checkpoint",
                code="integrity_error",
                subject=subject,
                message=message,
                details={"key_id": cp.key_id},
            )
        )

    def feed(self, row: ChainRow[Any]) -> str | None:
        leaf = super().feed(row)
        if leaf is None:
            return None
        index = self.acc.size
        data = bytes.fromhex(leaf)
        self.acc.append(data)
        for r in self._ranges:
            if r[0] <= index < r[1]:
                self._range_acc[r].append(data)
                break
        size = self.acc.size
        while self._cp < len(self.checkpoints) and self.checkpoints[self._cp].tree_size <= size:
            cp = self.checkpoints[self._cp]
            self._cp += 1
            self._check_root(
                "audit_checkpoint",
                f"checkpoint@{cp.tree_size}",
                cp.tree_size,
                cp.root_hash,
                "Merkle root of the audit log no longer matches its checkpoint",
            )
        while self._an < len(self.anchors) and self.anchors[self._an].tree_size <= size:
            head = self.anchors[self._an]
            self._an += 1
            self._check_root(
                "audit_anchor",
                f"anchor@{head.tree_size}",
                head.tree_size,
                head.root_hash,
                f"the audit log's first {head.tree_size} entries are not the ones anchored "
                "outside the vault: history was rewritten",
            )
        return leaf

    def _check_root(
        self, kind: str, subject: str, tree_size: int, expected: str, message: str
    ) -> None:
        """The root over the first ``tree_size`` leaves, if that is where the replay is."""
        if tree_size == self.acc.size and self.acc.root() != expected:
            self.problems.append(
                VerifyProblem(
                    kind=kind,
                    code="integrity_error",
                    subject=subject,
                    message=message,
                    details={"expected": expected, "found": self.acc.root()},
                )
            )

    def finish(self) -> None:
        size = self.acc.size
        for cp in self.checkpoints[self._cp :]:
            self.problems.append(
                VerifyProblem(
                    kind="audit_checkpoint",
                    code="integrity_error",
                    subject=f"checkpoint@{cp.tree_size}",
                    message=f"checkpoint covers {cp.tree_size} entries but the audit log has "
                    f"{size}: entries were removed",
                    details={"expected": cp.tree_size, "found": size},
                )
            )
        if self.anchors and self.anchors[-1].tree_size > size:
            newest = self.anchors[-1]
            self.problems.append(
                VerifyProblem(
                    kind="audit_anchor",
                    code="integrity_error",
                    subject=f"anchor@{newest.tree_size}",
                    message=f"the audit log has {size} entries but {newest.tree_size} were "
                    "anchored outside the vault: the vault was rolled back or its tail "
                    "truncated",
                    details={"expected": newest.tree_size, "found": size},
                )
            )
        head = self.proof_from
        if head is not None and self._ranges and size >= head.tree_size:
            proof = [self._range_acc[r].root_bytes() for r in self._ranges]
            if not verify_consistency(
                head.tree_size,
                size,
                bytes.fromhex(head.root_hash),
                self.acc.root_bytes(),
                proof,
            ):
                self.problems.append(
                    VerifyProblem(
                        kind="audit_anchor",
                        code="integrity_error",
                        subject=f"anchor@{head.tree_size}",
                        message=f"no consistency proof from the anchored head "
                        f"({head.tree_size} entries) to the current log ({size}): the log "
                        "does not extend what was anchored",
                        details={"expected": head.root_hash},
                    )
                )
