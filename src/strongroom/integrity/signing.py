"""Ed25519 signing keys kept outside the vault, and signed tree heads.

Why the key lives outside the vault: a Merkle root proves nothing about *who* vouched for a
history. Whoever can rewrite the vault can rewrite every root stored in it too; a tree head
signed with a key the vault never holds can only be forged by someone who also holds the key.
So the private key is a file in the operator's configuration directory
(``$XDG_CONFIG_HOME/strongroom/signing-key.pem``, or wherever ``$STRONGROOM_SIGNING_KEY`` points),
and auditors get the public half (written beside it as ``<key file name>.pub``).

The key file is handled like ssh handles its identities: created 0600 from the first byte (the
temporary file is opened with that mode, then fsynced and renamed or linked into place, so a
crash never leaves a half-written or briefly world-readable key), never silently overwritten,
and refused on load when group or others can read it. Reads are bounded (64 KiB): a key is a
few hundred bytes, and a huge or endless "key" file must not exhaust memory.

A signed tree head binds ``(tree_size, root_hash, timestamp)`` under a type tag
(``strongroom.tree_head.v1``), as canonical JSON -- the same canonical form every other hash in
strongroom is taken over -- so a signature cannot be replayed as a signature over any other kind
of strongroom record. The timestamp is always rendered as ISO-8601 UTC with microseconds, so
the signed bytes do not depend on how a head was serialized in transit.

This module sits at the bottom of the layering: it imports nothing from strongroom but
`strongroom.errors` and `strongroom.models`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ConfigDict, Field

from strongroom._fs import check_output_file
from strongroom.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
    map_os_errors,
)
from strongroom.models import Record, UtcDatetime, canonical_json, utcnow

__all__ = [
    "KEY_ENV_VAR",
    "MAX_KEY_FILE_BYTES",
    "TREE_HEAD_TYPE",
    "KeyInfo",
    "SignedTreeHead",
    "SigningKey",
    "check_tree_head",
    "default_key_path",
    "init_key",
    "key_id_for",
    "load_signing_key",
    "public_key_path",
    "sign_tree_head",
    "tree_head_payload",
    "verify_signature",
]

KEY_ENV_VAR: Final = "STRONGROOM_SIGNING_KEY"
"""Environment variable naming the signing key file (overrides the XDG default)."""

MAX_KEY_FILE_BYTES: Final = 64 * 1024
"""A key file larger than this is refused without being read."""

TREE_HEAD_TYPE: Final = "strongroom.tree_head.v1"
"""The ``type`` tag inside every signed tree head payload."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_BACKEND = "local"


# -- key location -----------------------------------------------------------------------------


def default_key_path() -> Path:
    """``$STRONGROOM_SIGNING_KEY`` if set, else ``$XDG_CONFIG_HOME/strongroom/signing-key.pem``
    (``XDG_CONFIG_HOME`` defaulting to ``~/.config``; a relative value is ignored, as the XDG
    base directory specification asks)."""
    explicit = os.environ.get(KEY_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "strongroom" / "signing-key.pem"


def public_key_path(key_path: Path) -> Path:
    """Where the public half of the key at ``key_path`` is written: ``<name>.pub`` beside it."""
    return key_path.with_name(key_path.name + ".pub")


def key_id_for(public_key_hex: str) -> str:
    """A key's short id: the first 16 hex characters of SHA-256 over the raw public key."""
    if not isinstance(public_key_hex, str) or not _HEX64.fullmatch(public_key_hex.lower()):
        raise ValidationError(
            "a public key is 64 hex characters (32 raw Ed25519 bytes)",
            operation="signing.key_id",
            reason="bad_public_key",
        )
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


# -- the key ----------------------------------------------------------------------------------


class SigningKey:
    """An Ed25519 private key, with the ids auditors know it by. Its repr never shows the key."""

    __slots__ = ("_private", "_public_raw")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValidationError(
                "a signing key must be an Ed25519 private key",
                operation="signing.key",
                reason="bad_key",
                key_type=type(private_key).__name__,
            )
        self._private = private_key
        self._public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key (kept in memory only; `init_key` writes one to disk)."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key_hex(self) -> str:
        """The raw 32-byte public key as 64 lowercase hex characters."""
        return self._public_raw.hex()

    @property
    def key_id(self) -> str:
        """First 16 hex characters of SHA-256 over the raw public key."""
        return hashlib.sha256(self._public_raw).hexdigest()[:16]

    def sign(self, payload: bytes) -> str:
        """The Ed25519 signature of ``payload``, as 128 lowercase hex characters."""
        return self._private.sign(payload).hex()

    def private_pem(self) -> bytes:
        """The key as unencrypted PKCS8 PEM (what `init_key` writes)."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def verify_signature(public_key_hex: str, payload: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is a valid Ed25519 signature of ``payload`` by the key
    ``public_key_hex``. Hex may be either case, but no other spelling (no prefix, no spaces).
    Any malformed input gives ``False``; this never raises."""
    try:
        if not (
            isinstance(public_key_hex, str)
            and isinstance(signature_hex, str)
            and isinstance(payload, bytes | bytearray | memoryview)
        ):
            return False
        key_hex = public_key_hex.lower()
        sig_hex = signature_hex.lower()
        if not (_HEX64.fullmatch(key_hex) and _HEX128.fullmatch(sig_hex)):
            return False
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        public.verify(bytes.fromhex(sig_hex), bytes(payload))
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


class KeyInfo(Record):
    """Where `init_key` wrote a key, and how auditors will know it."""

    model_config = ConfigDict(frozen=True)

    path: Path = Field(description="The private key file (PKCS8 PEM, mode 0600).")
    public_key_path: Path = Field(description="The public key file (hex + newline).")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    public_key_hex: str = Field(pattern=r"^[0-9a-f]{64}$")


# -- writing and reading key files ------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, stem: str, data: bytes, mode: int) -> Path:
    """Write ``data`` to a fresh temporary file in ``directory``, created with ``mode`` (so it
    is never more readable than that), fsynced; returns its path."""
    while True:
        tmp = directory / f".{stem}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode
            )
        except FileExistsError:
            continue
        break
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away; never adds any
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _install_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (atomically where hard links work)."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise _key_exists(path) from None
    except OSError:
        # A file system without hard links: check, then rename (a narrow race remains).
        if os.path.lexists(path):
            raise _key_exists(path) from None
        os.rename(tmp, path)
    else:
        tmp.unlink()


def _key_exists(path: Path) -> Conflict:
    return Conflict(
        f"a signing key already exists at {path} (pass overwrite to replace it)",
        operation="signing.init_key",
        reason="key_exists",
        path=str(path),
    )


def init_key(path: Path | None = None, *, overwrite: bool = False) -> KeyInfo:
    """Generate an Ed25519 key and write it to ``path`` (default `default_key_path`) as
    unencrypted PKCS8 PEM, mode 0600, atomically; its public half goes to `public_key_path`.

    The parent directory is created with mode 0700 if missing. An existing key file is a
    `Conflict` (reason ``key_exists``) unless ``overwrite``.
    """
    path = Path(path) if path is not None else default_key_path()
    if path.name in ("", ".", ".."):
        raise ValidationError(
            f"{str(path)[:200]!r} is not a key file path",
            operation="signing.init_key",
            field="path",
        )
    key = SigningKey.generate()
    pub_path = public_key_path(path)
    with map_os_errors("signing.init_key", backend=_BACKEND, path=str(path)):
        directory = path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not overwrite and os.path.lexists(path):
            raise _key_exists(path)
        for target in (path, pub_path):  # never replace a device, FIFO, socket or folder
            check_output_file(target)
        tmp = _write_temp(directory, path.name, key.private_pem(), 0o600)
        try:
            if overwrite:
                os.replace(tmp, path)
            else:
                _install_no_clobber(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        pub_tmp = _write_temp(directory, pub_path.name, f"{key.public_key_hex}\n".encode(), 0o644)
        try:
            os.replace(pub_tmp, pub_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                pub_tmp.unlink()
        _fsync_dir(directory)
    return KeyInfo(
        path=path, public_key_path=pub_path, key_id=key.key_id, public_key_hex=key.public_key_hex
    )


def _read_key_file(path: Path) -> bytes:
    """The bytes of the key file, after its type, permissions and size were checked on the
    open descriptor (so a swap between the checks and the read is impossible)."""
    # O_NONBLOCK: a FIFO planted at the key path must not hang the open (it fails the
    # regular-file check below instead); it changes nothing for a regular file.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(
                f"the signing key {path} is not a regular file",
                operation="signing.load_key",
                reason="bad_key",
                path=str(path),
            )
        if os.name == "posix" and st.st_mode & 0o077:
            raise PermissionDenied(
                f"the signing key {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 on it",
                operation="signing.load_key",
                reason="key_permissions",
                path=str(path),
                mode=f"{stat.S_IMODE(st.st_mode):04o}",
            )
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise _too_large(path, st.st_size)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, MAX_KEY_FILE_BYTES + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_KEY_FILE_BYTES:
                raise _too_large(path, total)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(path: Path, size: int) -> ValidationError:
    return ValidationError(
        f"the signing key {path} is larger than {MAX_KEY_FILE_BYTES} bytes; not a key",
        operation="signing.load_key",
        reason="bad_key",
        path=str(path),
        size=size,
    )


def load_signing_key(path: Path | None = None, *, required: bool = False) -> SigningKey | None:
    """The key at ``path`` (default `default_key_path`), or ``None`` when there is no file
    there (`NotFound` when ``required``).

    A file group or others may access is `PermissionDenied` (reason ``key_permissions``); a file
    that is not an unencrypted Ed25519 private key PEM is `ValidationError` (reason ``bad_key``).
    """
    path = Path(path) if path is not None else default_key_path()
    try:
        with map_os_errors("signing.load_key", backend=_BACKEND, path=str(path)):
            data = _read_key_file(path)
    except NotFound:
        if required:
            raise NotFound(
                f"no signing key at {path} (create one with init_key)",
                operation="signing.load_key",
                reason="no_key",
                path=str(path),
            ) from None
        return None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # ValueError: not PEM / not a key; TypeError: encrypted (a password is needed).
        raise ValidationError(
            f"the signing key {path} is not an unencrypted PKCS8 PEM private key",
            operation="signing.load_key",
            reason="bad_key",
            path=str(path),
        ) from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ValidationError(
            f"the signing key {path} is not an Ed25519 key",
            operation="signing.load_key",
            reason="bad_key",
            path=str(path),
            key_type=type(private).__name__,
        )
    return SigningKey(private)


# -- signed tree heads ------------------------------------------------------------------------


def _timestamp_text(timestamp: datetime) -> str:
    return timestamp.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


MAX_TREE_SIZE = 2**53 - 1
"""The largest tree a head can name: RFC 8785 writes no larger integer."""


def tree_head_payload(tree_size: int, root_hash: str, timestamp: datetime) -> bytes:
    """The canonical bytes a tree head signature covers: canonical JSON of ``{"type":
    "strongroom.tree_head.v1", "tree_size", "root_hash", "timestamp"}``, the timestamp as
    ISO-8601 UTC with microseconds (``2025-01-02T03:04:05.000006Z``)."""
    if (
        isinstance(tree_size, bool)
        or not isinstance(tree_size, int)
        or not 0 <= tree_size <= MAX_TREE_SIZE
    ):
        raise ValidationError(
            f"tree_size must be an integer from 0 to 2**53 - 1 (RFC 8785), not {tree_size!r}",
            operation="signing.tree_head",
            reason="bad_tree_size",
        )
    if not isinstance(root_hash, str) or not _HEX64.fullmatch(root_hash):
        raise ValidationError(
            "root_hash must be 64 lowercase hex characters",
            operation="signing.tree_head",
            reason="bad_root_hash",
        )
    if not isinstance(timestamp, datetime) or timestamp.utcoffset() is None:
        raise ValidationError(
            "a tree head timestamp must be timezone-aware",
            operation="signing.tree_head",
            reason="naive_timestamp",
        )
    return canonical_json(
        {
            "type": TREE_HEAD_TYPE,
            "tree_size": tree_size,
            "root_hash": root_hash,
            "timestamp": _timestamp_text(timestamp),
        }
    )


class SignedTreeHead(Record):
    """A Merkle tree head (size and root of the audit tree at a time) signed by a key kept
    outside the vault."""

    model_config = ConfigDict(frozen=True)

    tree_size: int = Field(
        ge=0, le=MAX_TREE_SIZE, description="Leaves in the tree (audit entries 1..tree_size)."
    )
    root_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="RFC 6962 root, hex.")
    timestamp: UtcDatetime = Field(description="When the head was signed (UTC).")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="Short id of the signing key.")
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="Raw Ed25519 key, hex.")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$", description="Ed25519 signature, hex.")

    def payload(self) -> bytes:
        """The bytes `signature` covers (`tree_head_payload` of this head)."""
        return tree_head_payload(self.tree_size, self.root_hash, self.timestamp)


def sign_tree_head(
    key: SigningKey, tree_size: int, root_hash: str, timestamp: datetime | None = None
) -> SignedTreeHead:
    """Sign the tree head (``tree_size``, ``root_hash``) at ``timestamp`` (default now)."""
    when = utcnow() if timestamp is None else timestamp
    payload = tree_head_payload(tree_size, root_hash, when)
    return SignedTreeHead(
        tree_size=tree_size,
        root_hash=root_hash,
        timestamp=when.astimezone(UTC),
        key_id=key.key_id,
        public_key=key.public_key_hex,
        signature=key.sign(payload),
    )


def check_tree_head(
    head: SignedTreeHead, trusted_public_keys: Collection[str] | None = None
) -> bool:
    """Whether ``head``'s signature is valid for its public key and its key id matches that key;
    when ``trusted_public_keys`` (hex) is given, also whether the key is one of them."""
    if trusted_public_keys is not None and head.public_key not in {
        k.lower() for k in trusted_public_keys if isinstance(k, str)
    }:
        return False
    if key_id_for(head.public_key) != head.key_id:
        return False
    return verify_signature(head.public_key, head.payload(), head.signature)
