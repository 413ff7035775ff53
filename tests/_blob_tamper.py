"""Change a stored blob of an embedded vault behind the vault's back, wherever it is kept: a
row of ``vault.db``'s ``inline_blobs`` (blobs up to 64 KiB; the append-only guards dropped
first, as someone who owns the file would) or a read-only file of the blob directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["flip_stored_byte", "write_stored_blob"]


def _drop_guards(conn: sqlite3.Connection) -> None:
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'inline_blobs_%'"
    ).fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')


def _row(vault: Path, digest: str) -> bytes | None:
    conn = sqlite3.connect(vault / "vault.db")
    try:
        found = conn.execute("SELECT data FROM inline_blobs WHERE sha256 = ?", (digest,)).fetchone()
    finally:
        conn.close()
    return None if found is None else bytes(found[0])


def write_stored_blob(vault: Path, digest: str, data: bytes) -> None:
    """Replace the stored bytes of blob ``digest`` of the embedded vault in ``vault``."""
    digest = digest.removeprefix("sha256:")
    if _row(vault, digest) is not None:
        conn = sqlite3.connect(vault / "vault.db")
        try:
            with conn:
                _drop_guards(conn)
                conn.execute("UPDATE inline_blobs SET data = ? WHERE sha256 = ?", (data, digest))
        finally:
            conn.close()
        return
    path = vault / "blobs" / "sha256" / digest[:2] / digest[2:4] / digest
    path.chmod(0o644)
    path.write_bytes(data)


def flip_stored_byte(vault: Path, digest: str) -> None:
    """Flip one byte in the middle of blob ``digest``, as a bad disk or an attacker would."""
    digest = digest.removeprefix("sha256:")
    row = _row(vault, digest)
    if row is None:
        path = vault / "blobs" / "sha256" / digest[:2] / digest[2:4] / digest
        row = path.read_bytes()
    data = bytearray(row or b"\0")
    data[len(data) // 2] ^= 0x01
    write_stored_blob(vault, digest, bytes(data))
