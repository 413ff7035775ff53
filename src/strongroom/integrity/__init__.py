"""Tamper evidence beyond the hash chain: RFC 9162 Merkle proofs and signed tree heads.

The audit log's hash chain shows a history was not altered *internally*; it cannot show that
today's history extends yesterday's, nor who vouched for it. This package supplies the two
missing pieces: Merkle trees with consistency and inclusion proofs (`merkle`), and Ed25519 keys
kept outside the vault that sign tree heads (`signing`). It sits at the bottom of the layering,
beside `strongroom.models`, and imports nothing else from strongroom but `strongroom.errors`.
"""

from __future__ import annotations

from strongroom.integrity.merkle import (
    EMPTY_TREE_HASH,
    HASH_SIZE,
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
from strongroom.integrity.signing import (
    KEY_ENV_VAR,
    MAX_KEY_FILE_BYTES,
    TREE_HEAD_TYPE,
    KeyInfo,
    SignedTreeHead,
    SigningKey,
    check_tree_head,
    default_key_path,
    init_key,
    key_id_for,
    load_signing_key,
    public_key_path,
    sign_tree_head,
    tree_head_payload,
    verify_signature,
)

__all__ = [
    "EMPTY_TREE_HASH",
    "HASH_SIZE",
    "KEY_ENV_VAR",
    "MAX_KEY_FILE_BYTES",
    "TREE_HEAD_TYPE",
    "KeyInfo",
    "MerkleAccumulator",
    "SignedTreeHead",
    "SigningKey",
    "check_tree_head",
    "consistency_proof",
    "consistency_proof_from_leaves",
    "default_key_path",
    "inclusion_proof",
    "inclusion_proof_from_leaves",
    "init_key",
    "key_id_for",
    "leaf_hash",
    "load_signing_key",
    "merkle_root",
    "node_hash",
    "public_key_path",
    "sign_tree_head",
    "subtree_hash",
    "tree_head_payload",
    "verify_consistency",
    "verify_inclusion",
    "verify_signature",
]
