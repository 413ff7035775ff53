"""Personal keys for tests that sign governed acts (under the default policy, approvals of
A2+ tools, runs and production promotions, and every move of the production channel, must be
signed).

- `test_key` derives a key from a name: the same key in every vault and run.
- `approver` registers ``name``'s key as an approver (also publisher and operator) in a vault
  (registering the vault's first admin, `ROOT`, when it has none yet) and returns the key to
  sign with.
- `register_people` registers a fresh admin and people with fresh keys in a new vault.
"""

from __future__ import annotations

import contextlib
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom.errors import Conflict
from strongroom.integrity import SigningKey
from strongroom.models import ActorRole
from strongroom.vault import Vault

__all__ = ["ROOT", "approver", "register_people", "test_key"]


def test_key(name: str) -> SigningKey:
    """A key derived from ``name`` (never use such a key outside tests)."""
    seed = hashlib.sha256(f"strongroom-testing-{name}".encode()).digest()
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


test_key.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest

ROOT = test_key("root")


async def approver(vault: Vault, name: str = "bob") -> SigningKey:
    """``name``'s key, registered in ``vault`` as an approver (and publisher and operator)."""
    if not await vault.identity.actors():
        await vault.identity.add("root", ROOT.public_key_hex, [ActorRole.ADMIN])
    key = test_key(name)
    with contextlib.suppress(Conflict):  # registered before
        await vault.identity.add(
            name,
            key.public_key_hex,
            [ActorRole.APPROVER, ActorRole.PUBLISHER, ActorRole.OPERATOR],
            signer=ROOT,
        )
    return key


async def register_people(vault: Vault, **people: list[ActorRole]) -> list[SigningKey]:
    """Fresh keys registered in a vault that has no actors yet: its first admin ``root``,
    then each of ``people`` (name=roles) signed by it, in order; returns the keys likewise."""
    admin = SigningKey.generate()
    await vault.identity.add("root", admin.public_key_hex, [ActorRole.ADMIN])
    keys = [admin]
    for name, roles in people.items():
        key = SigningKey.generate()
        await vault.identity.add(name, key.public_key_hex, roles, signer=admin)
        keys.append(key)
    return keys
