"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: roots, a streaming accumulator and proofs.

Why this exists: the audit log is a hash chain, which proves that nothing was changed *inside*
the history a verifier replays, but not that the history a vault shows today extends the one it
showed yesterday (a rewritten log re-chains cleanly). A Merkle tree head (size, root) lets an
auditor keep a few bytes and later demand a *consistency proof* that the new tree contains the
old one unchanged, and an *inclusion proof* that one entry is in a tree -- the same machinery
Certificate Transparency uses, so the construction and the proof formats are RFC 9162's
(section 2.1) rather than anything home-made:

* leaves are hashed as ``SHA-256(0x00 || data)`` and interior nodes as
  ``SHA-256(0x01 || left || right)`` (the domain separation that stops a leaf from posing as a
  node); the tree over ``n`` leaves splits at the largest power of two below ``n``;
* the empty tree's hash is ``SHA-256()``.

The leaf *data* of the audit tree is the 32 raw bytes of each audit entry's hash.

`MerkleAccumulator` computes a root in one pass over any number of leaves in O(log n) memory: it
keeps the "compact range" of the leaves so far, the hashes of the perfect subtrees their count
decomposes into (one per set bit of the size), which is all a root needs. Verification replays
a million entries through it, so `append` is written for CPython's speed (local names, no
method calls in the merge loop).

Proof generation takes a ``subtree(lo, hi)`` callback returning the hash of leaves
``[lo, hi)`` so that a caller with a better source of subtree hashes (stored checkpoints, a
database) can plug it in; `subtree_hash` and the ``*_from_leaves`` helpers cover the simple
in-memory case. Verification returns ``False`` on any wrong proof and raises (`ValidationError`)
only for sizes that cannot describe a tree at all.

This module sits at the bottom of the layering: it imports nothing from strongroom but
`strongroom.errors`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from strongroom.errors import ValidationError

__all__ = [
    "EMPTY_TREE_HASH",
    "HASH_SIZE",
    "MerkleAccumulator",
    "consistency_proof",
    "consistency_proof_from_leaves",
    "inclusion_proof",
    "inclusion_proof_from_leaves",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256

HASH_SIZE = 32
"""Bytes in every hash of these trees (SHA-256)."""

EMPTY_TREE_HASH: bytes = _sha256(b"").digest()
"""The Merkle Tree Hash of the empty tree: ``SHA-256()`` (RFC 9162 section 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of a leaf holding ``data``."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(_NODE_PREFIX + left + right).digest()


class MerkleAccumulator:
    """The RFC 6962 root of a stream of leaves, in O(log n) memory.

    The state is the compact range ``[0, size)``: for each set bit ``2**i`` of ``size`` (from
    the most significant), the hash of the perfect subtree over the next ``2**i`` leaves. An
    append pushes the new leaf hash and merges equal-sized neighbours, as a binary counter
    carries; `root` folds the stack right to left without changing it.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """How many leaves were appended."""
        return self._size

    def append(self, data: bytes) -> None:
        """Append one leaf holding ``data`` (hashed here as ``SHA-256(0x00 || data)``)."""
        h = _sha256(b"\x00" + data).digest()
        stack = self._stack
        n = self._size
        self._size = n + 1
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)

    def append_leaf_hash(self, hashed: bytes) -> None:
        """Append one leaf given its leaf hash (already ``SHA-256(0x00 || data)``)."""
        if len(hashed) != HASH_SIZE:
            raise ValidationError(
                f"a leaf hash is {HASH_SIZE} bytes, not {len(hashed)}",
                operation="merkle.append_leaf_hash",
                reason="bad_hash_length",
            )
        h = bytes(hashed)
        stack = self._stack
        n = self._size
        self._size = n + 1
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)

    def extend(self, items: Iterable[bytes]) -> None:
        """Append one leaf per item of leaf data (`append` in a loop, with less overhead)."""
        sha = _sha256
        stack = self._stack
        pop = stack.pop
        push = stack.append
        size = self._size
        try:
            for data in items:
                h = sha(b"\x00" + data).digest()
                n = size
                size += 1
                while n & 1:
                    h = sha(b"\x01" + pop() + h).digest()
                    n >>= 1
                push(h)
        finally:
            self._size = size

    def root_bytes(self) -> bytes:
        """The Merkle Tree Hash of every leaf appended so far (raw 32 bytes)."""
        stack = self._stack
        if not stack:
            return EMPTY_TREE_HASH
        r = stack[-1]
        for i in range(len(stack) - 2, -1, -1):
            r = _sha256(b"\x01" + stack[i] + r).digest()
        return r

    def root(self) -> str:
        """The Merkle Tree Hash of every leaf appended so far, as lowercase hex."""
        return self.root_bytes().hex()

    def compact_range(self) -> list[bytes]:
        """The state: the roots of the perfect subtrees the leaves so far decompose into,
        largest (leftmost) first. With `size`, enough to continue the stream later."""
        return list(self._stack)

    @classmethod
    def from_compact_range(cls, size: int, hashes: Sequence[bytes]) -> MerkleAccumulator:
        """An accumulator that continues after ``size`` leaves whose compact range is
        ``hashes`` (one 32-byte hash per set bit of ``size``)."""
        if size < 0 or len(hashes) != size.bit_count() or any(len(h) != HASH_SIZE for h in hashes):
            raise ValidationError(
                f"a compact range of {size} leaves has {size.bit_count()} hashes of "
                f"{HASH_SIZE} bytes; got {len(hashes)}",
                operation="merkle.from_compact_range",
                reason="bad_compact_range",
            )
        acc = cls()
        acc._stack = [bytes(h) for h in hashes]
        acc._size = size
        return acc

    def copy(self) -> MerkleAccumulator:
        """An independent accumulator in the same state (to branch a stream)."""
        twin = MerkleAccumulator()
        twin._stack = list(self._stack)
        twin._size = self._size
        return twin

    def __repr__(self) -> str:
        return f"MerkleAccumulator(size={self._size}, root={self.root()!r})"


def merkle_root(leaves: Sequence[bytes]) -> str:
    """The RFC 6962 Merkle Tree Hash (hex) over ``leaves`` (each leaf's data, not yet hashed).

    ``SHA-256()`` of nothing for no leaves.
    """
    acc = MerkleAccumulator()
    acc.extend(leaves)
    return acc.root()


# -- sizes -------------------------------------------------------------------------------------


def _check_size(name: str, value: int, operation: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            f"{name} must be a non-negative integer, not {value!r}",
            operation=operation,
            reason="bad_tree_size",
            **{name: repr(value)},
        )


def _check_sizes(old_size: int, new_size: int, operation: str) -> None:
    _check_size("old_size", old_size, operation)
    _check_size("new_size", new_size, operation)
    if old_size > new_size:
        raise ValidationError(
            f"old_size {old_size} is larger than new_size {new_size}",
            operation=operation,
            reason="bad_tree_size",
            old_size=old_size,
            new_size=new_size,
        )


def _check_index(index: int, tree_size: int, operation: str) -> None:
    _check_size("index", index, operation)
    _check_size("tree_size", tree_size, operation)
    if index >= tree_size:
        raise ValidationError(
            f"leaf index {index} is outside a tree of {tree_size} leaves",
            operation=operation,
            reason="bad_leaf_index",
            index=index,
            tree_size=tree_size,
        )


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``): RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


# -- subtree hashes ----------------------------------------------------------------------------


def subtree_hash(leaf_hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """The Merkle Tree Hash (raw) of leaves ``[lo, hi)`` given every leaf's *leaf hash*."""
    _check_sizes(lo, hi, "merkle.subtree_hash")
    if hi > len(leaf_hashes):
        raise ValidationError(
            f"range [{lo}, {hi}) is outside {len(leaf_hashes)} leaves",
            operation="merkle.subtree_hash",
            reason="bad_tree_size",
            lo=lo,
            hi=hi,
            leaves=len(leaf_hashes),
        )
    acc = MerkleAccumulator()
    for i in range(lo, hi):
        acc.append_leaf_hash(leaf_hashes[i])
    return acc.root_bytes()


def _leaf_hashes(leaves: Sequence[bytes], size: int, operation: str) -> list[bytes]:
    if size > len(leaves):
        raise ValidationError(
            f"a tree of {size} leaves was asked of {len(leaves)} leaves",
            operation=operation,
            reason="bad_tree_size",
            size=size,
            leaves=len(leaves),
        )
    return [leaf_hash(leaves[i]) for i in range(size)]


# -- consistency proofs (RFC 9162 section 2.1.4) -----------------------------------------------


def consistency_proof(
    old_size: int, new_size: int, subtree: Callable[[int, int], bytes]
) -> list[bytes]:
    """The RFC 9162 consistency proof ``PROOF(old_size, D[new_size])`` (SUBPROOF algorithm).

    ``subtree(lo, hi)`` returns the Merkle Tree Hash (raw bytes) of leaves ``[lo, hi)``. The
    proof is empty when ``old_size`` is 0 or equals ``new_size``.
    """
    _check_sizes(old_size, new_size, "merkle.consistency_proof")
    if old_size == 0 or old_size == new_size:
        return []
    # SUBPROOF(m, D[lo:hi], b) recurses first and appends its node after, so the nodes met on
    # the way down come out deepest first: collect them top-down, then reverse.
    nodes: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                nodes.append(subtree(lo, hi))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:
            nodes.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            nodes.append(subtree(lo, lo + k))
            lo += k
            m -= k
            complete = False
    nodes.reverse()
    return nodes


def consistency_proof_from_leaves(
    old_size: int, new_size: int, leaves: Sequence[bytes]
) -> list[bytes]:
    """`consistency_proof` between the trees over the first ``old_size`` and ``new_size`` of
    ``leaves`` (leaf data)."""
    _check_sizes(old_size, new_size, "merkle.consistency_proof")
    hashed = _leaf_hashes(leaves, new_size, "merkle.consistency_proof")
    return consistency_proof(old_size, new_size, lambda lo, hi: subtree_hash(hashed, lo, hi))


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray | memoryview) and len(value) == HASH_SIZE


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree (``new_size``, ``new_root``) extends the tree
    (``old_size``, ``old_root``): RFC 9162 section 2.1.4.2.

    Equal sizes need an empty proof and equal roots; an empty old tree (whose root must be
    `EMPTY_TREE_HASH`) is consistent with any tree and needs an empty proof. A wrong proof,
    root or size gives ``False``; only impossible sizes (negative, ``old_size > new_size``)
    raise `ValidationError`.
    """
    _check_sizes(old_size, new_size, "merkle.verify_consistency")
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    old_root, new_root = bytes(old_root), bytes(new_root)
    path = list(proof)
    if not all(_is_hash(p) for p in path):
        return False
    if old_size == 0:
        if old_root != EMPTY_TREE_HASH or path:
            return False
        return new_size != 0 or new_root == EMPTY_TREE_HASH
    if old_size == new_size:
        return not path and old_root == new_root
    # 1. an empty proof cannot link two different non-empty trees.
    if not path:
        return False
    # 2. a power-of-two old tree is a complete subtree of the new one: its root starts the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3-4.
    fn = old_size - 1
    sn = new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = bytes(path[0])
    # 6.
    sha = _sha256
    for raw in path[1:]:
        c = bytes(raw)
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha(b"\x01" + c + fr).digest()
            sr = sha(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    # 7.
    return sn == 0 and fr == old_root and sr == new_root


# -- inclusion proofs (RFC 9162 section 2.1.3) -------------------------------------------------


def inclusion_proof(
    index: int, tree_size: int, subtree: Callable[[int, int], bytes]
) -> list[bytes]:
    """The RFC 9162 inclusion proof ``PATH(index, D[tree_size])`` of leaf ``index``.

    ``subtree(lo, hi)`` returns the Merkle Tree Hash (raw bytes) of leaves ``[lo, hi)``.
    """
    _check_index(index, tree_size, "merkle.inclusion_proof")
    nodes: list[bytes] = []
    lo, hi, m = 0, tree_size, index
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if m < k:
            nodes.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            nodes.append(subtree(lo, lo + k))
            lo += k
            m -= k
    nodes.reverse()
    return nodes


def inclusion_proof_from_leaves(index: int, tree_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """`inclusion_proof` of leaf ``index`` in the tree over the first ``tree_size`` of
    ``leaves`` (leaf data)."""
    _check_index(index, tree_size, "merkle.inclusion_proof")
    hashed = _leaf_hashes(leaves, tree_size, "merkle.inclusion_proof")
    return inclusion_proof(index, tree_size, lambda lo, hi: subtree_hash(hashed, lo, hi))


def verify_inclusion(
    index: int, tree_size: int, hashed_leaf: bytes, root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the leaf with leaf hash ``hashed_leaf`` (see `leaf_hash`) is
    leaf ``index`` of the tree (``tree_size``, ``root``): RFC 9162 section 2.1.3.2.

    A wrong proof, hash or root gives ``False``; an index outside the tree (or a negative size)
    raises `ValidationError`.
    """
    _check_index(index, tree_size, "merkle.verify_inclusion")
    if not (_is_hash(hashed_leaf) and _is_hash(root)):
        return False
    path = list(proof)
    if not all(_is_hash(p) for p in path):
        return False
    fn = index
    sn = tree_size - 1
    r = bytes(hashed_leaf)
    sha = _sha256
    for raw in path:
        p = bytes(raw)
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == bytes(root)
