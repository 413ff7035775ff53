"""RFC 6962 / 9162 Merkle trees: roots, the streaming accumulator, consistency and inclusion proofs.

Three independent checks: a recursive reference Merkle Tree Hash written here straight from
RFC 9162 section 2.1.1 (and the audit service's own ``merkle_root``, which the accumulator must
agree with byte for byte); the published certificate-transparency test vectors (roots of the
eight test leaves, the consistency and inclusion proofs over them, and one inclusion proof from
a real 3.6-million-entry log); and property tests that every honest proof verifies while any
tampering with a proof, a root or a size makes verification fail.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import ValidationError
from strongroom.integrity import (
    EMPTY_TREE_HASH,
    MerkleAccumulator,
    consistency_proof,
    consistency_proof_from_leaves,
    inclusion_proof,
    inclusion_proof_from_leaves,
    leaf_hash,
    merkle_root,
    node_hash,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

# -- references -------------------------------------------------------------------------------


def reference_mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, literally: recursive, split at the largest power of two < n."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def audit_merkle_root() -> Callable[[Sequence[bytes]], str]:
    """The audit service's ``merkle_root`` (what checkpoints were computed with so far), or the
    reference above should it have moved."""
    try:
        module = importlib.import_module("strongroom.services.audit")
        found = module.merkle_root
    except (ImportError, AttributeError):
        return lambda leaves: reference_mth(leaves).hex()
    return cast(Callable[[Sequence[bytes]], str], found)


def distinct_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """``n`` distinct 32-byte leaves (as audit entry hashes are)."""
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


def flip_bit(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


LEAF_LISTS = st.lists(st.binary(max_size=40), max_size=300)

# -- certificate-transparency test vectors ----------------------------------------------------
# The eight leaves of RFC 6962's reference tests and the Merkle Tree Hash of each prefix, from
# certificate-transparency's test suites (C++, Go and Python branches agree).

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (old size, new size, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (leaf index, tree size, audit path)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# One audit path from a real CT log (certificate-transparency's python verify tests): leaf
# 848049 of a tree of 3,630,887 entries.
CT_BIG_LEAF_HASH = "7a395c866d5ecdb0cccb623e011dbc392cd348d1d1d72776174e127a24b09c78"
CT_BIG_INDEX = 848049
CT_BIG_SIZE = 3630887
CT_BIG_ROOT = "78316a05c9bcf14a3a4548f5b854a9adfcd46a4c034401b3ce7eb7ac2f1d0ecb"
CT_BIG_PATH = [
    "1a208aeebcd1b39fe2de247ee8db9454e1e93a312d206b87f6ca9cc6ec6f1ddd",
    "0a1b78b383f580856f433c01a5741e160d451c185910027f6cc9f828687a40c4",
    "3d1745789bc63f2da15850de1c12a5bf46ed81e1cc90f086148b1662e79aab3d",
    "9095b61e14d8990acf390905621e62b1714fb8e399fbb71de5510e0aef45affe",
    "0a332b91b8fab564e6afd1dd452449e04619b18accc0ff9aa8393cd4928451f2",
    "2336f0181d264aed6d8f3a6507ca14a8d3b3c3a23791ac263e845d208c1ee330",
    "b4ce56e300590500360c146c6452edbede25d4ed83919278749ee5dbe178e048",
    "933f6ddc848ea562e4f9c5cfb5f176941301dad0c6fdb9d1fbbe34fac1be6966",
    "b95a6222958a86f74c030be27c44f57dbe313e5e7c7f4ffb98bcbd3a03bb52f2",
    "daeeb3ce5923defd0faeb8e0c210b753b85b809445d7d3d3cd537a9aabaa9c45",
    "7fadd0a13e9138a2aa6c3fdec4e2275af233b94812784f66bcca9aa8e989f2bc",
    "1864e6ba3e32878610546539734fb5eeae2529991f130c575c73a7e25a2a7c56",
    "12842d1202b1dc6828a17ab253c02e7ce9409b5192430feba44189f39cc02d66",
    "29af64b16fa3053c13d02ac63aa75b23aa468506e44c3a2315edc85d2dc22b11",
    "b527b99934a0bd9edd154e449b0502e2c499bba783f3bc3dfe23364b6b532009",
    "4584db8ae8e351ace08e01f306378a92bfd43611714814f3d834a2842d69faa8",
    "86a9a41573b0d6e4292f01e93243d6cc65b30f06606fc6fa57390e7e90ed580f",
    "a88b98fbe84d4c6aae8db9d1605dfac059d9f03fe0fcb0d5dff1295dacba09e6",
    "06326dc617a6d1f7021dc536026dbfd5fffc6f7c5531d48ef6ccd1ed1569f2a1",
    "f41fe8fdc3a2e4e8345e30216e7ebecffee26ff266eeced208a6c2a3cf08f960",
    "40cf5bde8abb76983f3e98ba97aa36240402975674e120f234b3448911090f8d",
    "b3222dc8658538079883d980d7fdc2bef9285344ea34338968f736b04aeb387a",
]


def hexes(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# -- known answers ----------------------------------------------------------------------------


def test_hash_primitives_are_domain_separated() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert EMPTY_TREE_HASH.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_empty_and_single_leaf_roots() -> None:
    assert merkle_root([]) == CT_ROOTS[0]
    assert MerkleAccumulator().root() == CT_ROOTS[0]
    assert MerkleAccumulator().root_bytes() == EMPTY_TREE_HASH
    assert merkle_root([b""]) == CT_ROOTS[1]
    one = hashlib.sha256(b"entry").digest()
    assert merkle_root([one]) == hashlib.sha256(b"\x00" + one).hexdigest()


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_ct_roots_of_every_prefix(size: int) -> None:
    assert merkle_root(CT_LEAVES[:size]) == CT_ROOTS[size]
    assert reference_mth(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_ct_root_of_all_eight_leaves() -> None:
    expected = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    acc = MerkleAccumulator()
    for leaf in CT_LEAVES:
        acc.append(leaf)
    assert acc.root() == expected
    assert merkle_root(CT_LEAVES) == expected


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_ct_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    assert consistency_proof_from_leaves(old, new, CT_LEAVES) == hexes(proof)
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, hexes(proof))


def test_ct_consistency_failures() -> None:
    """The failure cases of certificate-transparency's verifier tests, on the 6 -> 8 proof."""
    old_root, new_root = bytes.fromhex(CT_ROOTS[6]), bytes.fromhex(CT_ROOTS[8])
    proof = hexes(CT_CONSISTENCY[2][2])
    assert verify_consistency(6, 8, old_root, new_root, proof)
    assert not verify_consistency(6, 8, old_root, new_root, proof[:2])  # too short
    assert not verify_consistency(6, 8, old_root, flip_bit(new_root, 0), proof)
    assert not verify_consistency(6, 8, flip_bit(old_root, 0), new_root, proof)
    assert not verify_consistency(6, 8, flip_bit(old_root, 0), flip_bit(new_root, 0), proof)
    with pytest.raises(ValidationError):
        verify_consistency(5, 2, bytes.fromhex(CT_ROOTS[5]), bytes.fromhex(CT_ROOTS[2]), [])


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_ct_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    assert inclusion_proof_from_leaves(index, size, CT_LEAVES) == hexes(path)
    assert verify_inclusion(
        index, size, leaf_hash(CT_LEAVES[index]), bytes.fromhex(CT_ROOTS[size]), hexes(path)
    )


def test_ct_inclusion_proof_from_a_real_log() -> None:
    leaf, root, path = bytes.fromhex(CT_BIG_LEAF_HASH), bytes.fromhex(CT_BIG_ROOT), CT_BIG_PATH
    assert verify_inclusion(CT_BIG_INDEX, CT_BIG_SIZE, leaf, root, hexes(path))
    assert not verify_inclusion(CT_BIG_INDEX + 1, CT_BIG_SIZE, leaf, root, hexes(path))
    assert not verify_inclusion(CT_BIG_INDEX, CT_BIG_SIZE // 2, leaf, root, hexes(path))
    assert not verify_inclusion(CT_BIG_INDEX, CT_BIG_SIZE, leaf, root, hexes(path[:-1]))
    assert not verify_inclusion(CT_BIG_INDEX, CT_BIG_SIZE, flip_bit(leaf, 7), root, hexes(path))


# -- the accumulator --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(LEAF_LISTS)
def test_accumulator_matches_merkle_root_at_every_prefix(leaves: list[bytes]) -> None:
    audit_root = audit_merkle_root()
    acc = MerkleAccumulator()
    assert acc.root() == audit_root([]) == CT_ROOTS[0]
    for i, leaf in enumerate(leaves, start=1):
        acc.append(leaf)
        assert acc.size == i
        assert acc.root() == audit_root(leaves[:i])
    assert merkle_root(leaves) == audit_root(leaves) == reference_mth(leaves).hex()


@settings(max_examples=100, deadline=None)
@given(LEAF_LISTS)
def test_merkle_root_equals_the_audit_services(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == audit_merkle_root()(leaves)


@settings(max_examples=60, deadline=None)
@given(LEAF_LISTS)
def test_accumulator_feeding_paths_agree(leaves: list[bytes]) -> None:
    by_data, by_hash, by_extend = MerkleAccumulator(), MerkleAccumulator(), MerkleAccumulator()
    for leaf in leaves:
        by_data.append(leaf)
        by_hash.append_leaf_hash(leaf_hash(leaf))
    by_extend.extend(iter(leaves))
    assert by_data.root_bytes() == by_hash.root_bytes() == by_extend.root_bytes()
    assert by_data.size == by_hash.size == by_extend.size == len(leaves)
    assert by_data.root() == by_data.root_bytes().hex()


def test_root_does_not_disturb_the_accumulator() -> None:
    leaves = distinct_leaves(37)
    acc = MerkleAccumulator()
    for i, leaf in enumerate(leaves):
        assert acc.root() == acc.root()  # read twice, same answer
        acc.append(leaf)
        assert acc.size == i + 1
    assert acc.root() == merkle_root(leaves)


def test_copy_branches_the_stream() -> None:
    leaves = distinct_leaves(20)
    acc = MerkleAccumulator()
    acc.extend(leaves[:11])
    twin = acc.copy()
    acc.extend(leaves[11:])
    assert twin.size == 11
    assert twin.root() == merkle_root(leaves[:11])
    assert acc.root() == merkle_root(leaves)
    assert "size=20" in repr(acc)


def test_a_leaf_hash_must_be_32_bytes() -> None:
    acc = MerkleAccumulator()
    with pytest.raises(ValidationError) as caught:
        acc.append_leaf_hash(b"short")
    assert caught.value.details["reason"] == "bad_hash_length"
    assert acc.size == 0


def test_a_large_stream_matches_the_recursive_root() -> None:
    leaves = distinct_leaves(5000)
    acc = MerkleAccumulator()
    acc.extend(leaves)
    assert acc.root() == audit_merkle_root()(leaves)


# -- consistency proofs -----------------------------------------------------------------------


@st.composite
def tree_pairs(draw: st.DrawFn, max_size: int = 200) -> tuple[int, int, list[bytes]]:
    new = draw(st.integers(min_value=0, max_value=max_size))
    old = draw(st.integers(min_value=0, max_value=new))
    salt = draw(st.binary(max_size=8))
    return old, new, distinct_leaves(new, salt)


def _roots(old: int, new: int, leaves: Sequence[bytes]) -> tuple[bytes, bytes]:
    return bytes.fromhex(merkle_root(leaves[:old])), bytes.fromhex(merkle_root(leaves[:new]))


@settings(max_examples=300, deadline=None)
@given(tree_pairs())
def test_honest_consistency_proofs_verify(pair: tuple[int, int, list[bytes]]) -> None:
    old, new, leaves = pair
    proof = consistency_proof_from_leaves(old, new, leaves)
    old_root, new_root = _roots(old, new, leaves)
    assert verify_consistency(old, new, old_root, new_root, proof)
    if old in (0, new):
        assert proof == []
    else:
        assert len(proof) <= 2 * new.bit_length()


@settings(max_examples=300, deadline=None)
@given(tree_pairs(), st.data())
def test_any_tampering_with_a_consistency_proof_fails(
    pair: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, leaves = pair
    proof = consistency_proof_from_leaves(old, new, leaves)
    old_root, new_root = _roots(old, new, leaves)
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")

    # a wrong root on either side (the empty tree is consistent with any new root)
    assert not verify_consistency(old, new, flip_bit(old_root, bit), new_root, proof)
    if old > 0 or new == 0:
        assert not verify_consistency(old, new, old_root, flip_bit(new_root, bit), proof)
    assert not verify_consistency(old, new, new_root, old_root, proof) or old_root == new_root

    # a stray element makes any proof wrong, even an empty one
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    assert not verify_consistency(old, new, old_root, new_root, [*proof, extra])
    assert not verify_consistency(old, new, old_root, new_root, [extra, *proof])

    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="element")
        flipped = [*proof]
        flipped[i] = flip_bit(flipped[i], bit)
        assert not verify_consistency(old, new, old_root, new_root, flipped)
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
        assert not verify_consistency(old, new, old_root, new_root, proof[1:])
        assert not verify_consistency(old, new, old_root, new_root, [*proof, proof[-1]])
        assert not verify_consistency(old, new, old_root, new_root, [proof[i][:31], *proof[1:]])
        if len(proof) > 1:
            j = data.draw(
                st.integers(min_value=0, max_value=len(proof) - 1).filter(lambda j: j != i),
                label="other element",
            )
            swapped = [*proof]
            swapped[i], swapped[j] = swapped[j], swapped[i]
            assert not verify_consistency(old, new, old_root, new_root, swapped)
            assert not verify_consistency(old, new, old_root, new_root, proof[::-1])


@settings(max_examples=300, deadline=None)
@given(tree_pairs(max_size=64), st.data())
def test_a_proof_does_not_verify_for_other_sizes(
    pair: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    """A proof made for (old, new) fails for any other pair of sizes, checked against the
    genuine roots of the trees of those sizes (what an auditor holding signed tree heads has)."""
    old, new, leaves = pair
    proof = consistency_proof_from_leaves(old, new, leaves)
    other_new = data.draw(st.integers(min_value=1, max_value=64), label="other new")
    other_old = data.draw(st.integers(min_value=1, max_value=other_new), label="other old")
    if (other_old, other_new) == (old, new) or (not proof and other_old == other_new):
        return  # the same claim, or equal trees, which an empty proof rightly links
    everything = distinct_leaves(max(new, other_new), b"more")
    everything[: len(leaves)] = leaves  # the same log, grown if need be
    other_old_root, other_new_root = _roots(other_old, other_new, everything)
    assert not verify_consistency(other_old, other_new, other_old_root, other_new_root, proof)


def test_proofs_bind_roots_not_sizes() -> None:
    """RFC 9162 proofs bind the *roots*: a verifier cannot tell a leaf hash from a node hash,
    so a (1 -> 2) proof also "verifies" a (2 -> 3) claim when the same two roots are presented
    as those sizes' roots. That claim is vacuous (no 2-leaf tree has a 1-leaf tree's root,
    short of a SHA-256 preimage), and signed tree heads bind each size to its root; this test
    pins the behaviour so nobody mistakes it for a bug, or relies on proofs to check sizes."""
    leaves = distinct_leaves(3)
    r1, r2, r3 = (bytes.fromhex(merkle_root(leaves[:k])) for k in (1, 2, 3))
    proof = consistency_proof_from_leaves(1, 2, leaves)
    assert verify_consistency(1, 2, r1, r2, proof)
    assert verify_consistency(2, 3, r1, r2, proof)  # the same hashes, read as other sizes
    assert not verify_consistency(2, 3, r2, r3, proof)  # the genuine size-2 and size-3 roots


def test_consistency_edge_cases() -> None:
    leaves = distinct_leaves(10)
    r10 = bytes.fromhex(merkle_root(leaves))
    r4 = bytes.fromhex(merkle_root(leaves[:4]))
    any_hash = hashlib.sha256(b"x").digest()
    # the empty tree is consistent with anything, with an empty proof
    assert verify_consistency(0, 10, EMPTY_TREE_HASH, r10, [])
    assert verify_consistency(0, 0, EMPTY_TREE_HASH, EMPTY_TREE_HASH, [])
    assert not verify_consistency(0, 10, EMPTY_TREE_HASH, r10, [any_hash])
    assert not verify_consistency(0, 10, any_hash, r10, [])  # not the empty tree's root
    assert not verify_consistency(0, 0, EMPTY_TREE_HASH, any_hash, [])
    # equal sizes: equal roots, no proof
    assert verify_consistency(10, 10, r10, r10, [])
    assert not verify_consistency(10, 10, r10, r4, [])
    assert not verify_consistency(10, 10, r10, r10, [r10])
    # a non-empty proof is needed between different non-empty trees
    assert not verify_consistency(4, 10, r4, r10, [])
    # malformed hashes are a failed proof, not an exception
    proof = consistency_proof_from_leaves(4, 10, leaves)
    assert verify_consistency(4, 10, r4, r10, proof)
    assert not verify_consistency(4, 10, r4[:31], r10, proof)
    assert not verify_consistency(4, 10, r4, r10 + b"\x00", proof)
    assert not verify_consistency(4, 10, r4, r10, [*proof[:-1], proof[-1] + b"\x00"])


@pytest.mark.parametrize(("old", "new"), [(5, 4), (-1, 4), (0, -1), (True, 4)])
def test_nonsense_sizes_raise(old: int, new: int) -> None:
    h = EMPTY_TREE_HASH
    with pytest.raises(ValidationError) as caught:
        verify_consistency(old, new, h, h, [])
    assert caught.value.details["reason"] == "bad_tree_size"
    with pytest.raises(ValidationError):
        consistency_proof(old, new, lambda lo, hi: h)


def test_proof_generation_asks_for_few_subtrees() -> None:
    leaves = distinct_leaves(1000)
    hashed = [leaf_hash(x) for x in leaves]
    asked: list[tuple[int, int]] = []

    def subtree(lo: int, hi: int) -> bytes:
        asked.append((lo, hi))
        return subtree_hash(hashed, lo, hi)

    proof = consistency_proof(357, 1000, subtree)
    assert len(asked) == len(proof) <= 2 * (1000).bit_length()
    assert all(0 <= lo < hi <= 1000 for lo, hi in asked)
    r357, r1000 = _roots(357, 1000, leaves)
    assert verify_consistency(357, 1000, r357, r1000, proof)


def test_subtree_hash_and_leaf_counts_are_checked() -> None:
    leaves = distinct_leaves(8)
    hashed = [leaf_hash(x) for x in leaves]
    assert subtree_hash(hashed, 0, 8).hex() == merkle_root(leaves)
    assert subtree_hash(hashed, 2, 6) == reference_mth(leaves[2:6])
    assert subtree_hash(hashed, 3, 3) == EMPTY_TREE_HASH
    with pytest.raises(ValidationError):
        subtree_hash(hashed, 0, 9)
    with pytest.raises(ValidationError):
        subtree_hash(hashed, 5, 4)
    with pytest.raises(ValidationError):
        consistency_proof_from_leaves(2, 9, leaves)


# -- inclusion proofs -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=150), st.binary(max_size=8), st.data())
def test_inclusion_proofs_verify_and_tampering_fails(
    size: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = distinct_leaves(size, salt)
    root = bytes.fromhex(merkle_root(leaves))
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = inclusion_proof_from_leaves(index, size, leaves)
    hashed = leaf_hash(leaves[index])
    assert verify_inclusion(index, size, hashed, root, proof)
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
    assert not verify_inclusion(index, size, flip_bit(hashed, bit), root, proof)
    assert not verify_inclusion(index, size, hashed, flip_bit(root, bit), proof)
    assert not verify_inclusion(index, size, hashed, root, [*proof, hashed])
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="element")
        flipped = [*proof]
        flipped[i] = flip_bit(flipped[i], bit)
        assert not verify_inclusion(index, size, hashed, root, flipped)
        assert not verify_inclusion(index, size, hashed, root, proof[:-1])
    other = data.draw(st.integers(min_value=0, max_value=size - 1), label="other index")
    if other != index:
        assert not verify_inclusion(other, size, hashed, root, proof)
    # another size, checked against the genuine root of the log at that size
    other_size = data.draw(st.integers(min_value=index + 1, max_value=200), label="other size")
    if other_size != size:
        grown = distinct_leaves(max(size, other_size), b"more")
        grown[:size] = leaves
        other_root = bytes.fromhex(merkle_root(grown[:other_size]))
        assert not verify_inclusion(index, other_size, hashed, other_root, proof)


def test_inclusion_arguments_are_checked() -> None:
    h = EMPTY_TREE_HASH
    for index, size in [(3, 3), (-1, 3), (0, 0)]:
        with pytest.raises(ValidationError):
            verify_inclusion(index, size, h, h, [])
        with pytest.raises(ValidationError):
            inclusion_proof(index, size, lambda lo, hi: h)
    assert not verify_inclusion(0, 1, h[:5], h, [])
    assert verify_inclusion(0, 1, h, h, [])
