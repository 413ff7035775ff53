"""Signing keys outside the vault, and signed tree heads.

Key files are treated as ssh treats identities: created 0600 (even under a permissive umask),
never overwritten by accident, refused when others may read them, and bounded in size; every
refusal is one of strongroom's structured errors. Signatures must fail on any change to the
payload, the signature or the key, and tree heads must survive a JSON round trip unchanged.
Every test works under ``tmp_path`` with ``HOME``/``XDG_CONFIG_HOME`` redirected, so the real
``~/.config`` is never touched.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pydantic
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import Conflict, NotFound, PermissionDenied, ValidationError
from strongroom.integrity import (
    KEY_ENV_VAR,
    MAX_KEY_FILE_BYTES,
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

ROOT = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
WHEN = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME at a scratch directory and clear the variables that choose the key path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    return home


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def flip_hex(value: str, index: int = 0) -> str:
    digit = value[index]
    return value[:index] + ("1" if digit == "0" else "0") + value[index + 1 :]


# -- key location -----------------------------------------------------------------------------


def test_default_key_path_falls_back_to_home_config(isolated_home: Path) -> None:
    assert default_key_path() == isolated_home / ".config" / "strongroom" / "signing-key.pem"


def test_default_key_path_follows_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_path() == tmp_path / "xdg" / "strongroom" / "signing-key.pem"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # ignored, as the XDG spec asks
    assert default_key_path() == isolated_home / ".config" / "strongroom" / "signing-key.pem"


def test_env_var_overrides_the_key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(KEY_ENV_VAR, str(tmp_path / "keys" / "audit.pem"))
    assert default_key_path() == tmp_path / "keys" / "audit.pem"
    info = init_key()
    assert info.path == tmp_path / "keys" / "audit.pem"
    assert info.public_key_path == tmp_path / "keys" / "audit.pem.pub"
    loaded = load_signing_key()
    assert loaded is not None
    assert loaded.key_id == info.key_id
    assert not (tmp_path / "xdg").exists()


# -- init_key ---------------------------------------------------------------------------------


def test_init_key_writes_a_private_key_and_its_public_half(isolated_home: Path) -> None:
    info = init_key()
    key_dir = isolated_home / ".config" / "strongroom"
    assert info.path == key_dir / "signing-key.pem"
    assert mode_of(info.path) == 0o600
    assert mode_of(key_dir) == 0o700
    assert info.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert info.public_key_path == public_key_path(info.path)
    assert info.public_key_path.read_text() == info.public_key_hex + "\n"
    assert len(info.public_key_hex) == 64
    assert info.key_id == key_id_for(info.public_key_hex)
    assert len(info.key_id) == 16
    key = load_signing_key(info.path, required=True)
    assert key is not None
    assert key.public_key_hex == info.public_key_hex
    assert key.key_id == info.key_id
    # nothing but the two files is left behind (no temporary files)
    assert sorted(p.name for p in key_dir.iterdir()) == ["signing-key.pem", "signing-key.pem.pub"]


def test_init_key_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k" / "key.pem"
    first = init_key(path)
    before = path.read_bytes()
    with pytest.raises(Conflict) as caught:
        init_key(path)
    assert caught.value.code == "conflict"
    assert caught.value.details["reason"] == "key_exists"
    assert caught.value.details["path"] == str(path)
    assert path.read_bytes() == before
    second = init_key(path, overwrite=True)
    assert second.key_id != first.key_id
    assert mode_of(path) == 0o600
    assert public_key_path(path).read_text() == second.public_key_hex + "\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["key.pem", "key.pem.pub"]


def test_init_key_refuses_even_a_dangling_symlink(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.symlink_to(tmp_path / "nowhere")
    with pytest.raises(Conflict):
        init_key(path)
    assert not (tmp_path / "nowhere").exists()


def test_key_is_never_group_or_world_readable_even_under_umask_zero(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        info = init_key(tmp_path / "fresh" / "key.pem")
    finally:
        os.umask(previous)
    assert mode_of(info.path) == 0o600
    assert mode_of(info.path.parent) == 0o700
    assert mode_of(info.public_key_path) == 0o644


def test_an_existing_parent_directory_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    init_key(shared / "key.pem")
    assert mode_of(shared) == 0o755


# -- load_signing_key -------------------------------------------------------------------------


def test_a_missing_key_is_none_or_not_found(tmp_path: Path) -> None:
    path = tmp_path / "absent.pem"
    assert load_signing_key(path) is None
    assert load_signing_key() is None  # the default location, empty in the scratch HOME
    with pytest.raises(NotFound) as caught:
        load_signing_key(path, required=True)
    assert caught.value.details["path"] == str(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key at all\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        bytes(range(256)),
    ],
)
def test_garbage_is_a_bad_key(tmp_path: Path, content: bytes) -> None:
    path = write_private(tmp_path / "key.pem", content)
    with pytest.raises(ValidationError) as caught:
        load_signing_key(path)
    assert caught.value.details["reason"] == "bad_key"
    assert caught.value.details["path"] == str(path)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_key_of_another_algorithm_is_a_bad_key(tmp_path: Path, kind: str) -> None:
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    path = write_private(tmp_path / "key.pem", _pem(other))
    with pytest.raises(ValidationError) as caught:
        load_signing_key(path)
    assert caught.value.details["reason"] == "bad_key"
    assert "key_type" in caught.value.details


def test_an_encrypted_key_is_a_bad_key(tmp_path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = write_private(tmp_path / "key.pem", pem)
    with pytest.raises(ValidationError) as caught:
        load_signing_key(path)
    assert caught.value.details["reason"] == "bad_key"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_a_key_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    info = init_key(tmp_path / "key.pem")
    info.path.chmod(mode)
    with pytest.raises(PermissionDenied) as caught:
        load_signing_key(info.path)
    assert caught.value.code == "permission_denied"
    assert caught.value.details["reason"] == "key_permissions"
    assert caught.value.details["mode"] == f"{mode:04o}"
    info.path.chmod(0o600)
    assert load_signing_key(info.path) is not None
    info.path.chmod(0o400)  # read-only for the owner is fine too
    assert load_signing_key(info.path) is not None


def test_an_oversized_key_file_is_refused(tmp_path: Path) -> None:
    path = write_private(tmp_path / "key.pem", b"A" * (MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(ValidationError) as caught:
        load_signing_key(path)
    assert caught.value.details["reason"] == "bad_key"
    assert caught.value.details["size"] == MAX_KEY_FILE_BYTES + 1


def test_a_key_path_that_is_not_a_file_is_a_bad_key(tmp_path: Path) -> None:
    directory = tmp_path / "dir.pem"
    directory.mkdir(mode=0o700)
    with pytest.raises(ValidationError) as caught:
        load_signing_key(directory)
    assert caught.value.details["reason"] == "bad_key"
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ValidationError):  # and the open does not hang waiting for a writer
        load_signing_key(fifo)


# -- signatures -------------------------------------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    key = SigningKey.generate()
    signature = key.sign(b"payload")
    assert len(signature) == 128
    assert verify_signature(key.public_key_hex, b"payload", signature)
    assert verify_signature(key.public_key_hex.upper(), b"payload", signature.upper())
    assert repr(key) == f"SigningKey(key_id={key.key_id!r})"  # never the key material


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=127), st.data())
def test_any_tampering_breaks_a_signature(payload: bytes, index: int, data: st.DataObject) -> None:
    key = SigningKey.generate()
    signature = key.sign(payload)
    assert verify_signature(key.public_key_hex, payload, signature)
    assert not verify_signature(key.public_key_hex, payload + b"x", signature)
    if payload:
        i = data.draw(st.integers(min_value=0, max_value=len(payload) - 1), label="byte")
        tampered = bytearray(payload)
        tampered[i] ^= 1 << data.draw(st.integers(min_value=0, max_value=7), label="bit")
        assert not verify_signature(key.public_key_hex, bytes(tampered), signature)
    assert not verify_signature(key.public_key_hex, payload, flip_hex(signature, index))
    assert not verify_signature(SigningKey.generate().public_key_hex, payload, signature)


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        ("", "00" * 64),
        ("zz" * 32, "00" * 64),
        ("00" * 31, "00" * 64),
        ("00" * 32, "00" * 63),
        ("00" * 32, "0" * 127),
        ("00" * 32 + "\n", "00" * 64),
        (" " + "00" * 32, "00" * 64),
        ("00" * 32, "00 " * 64),
        ("ff" * 32, "ff" * 64),
    ],
)
def test_malformed_inputs_never_verify_and_never_raise(public: str, signature: str) -> None:
    assert not verify_signature(public, b"payload", signature)


def test_wrong_types_never_verify() -> None:
    key = SigningKey.generate()
    signature = key.sign(b"p")
    assert not verify_signature(key.public_key_hex, "p", signature)  # type: ignore[arg-type]
    assert not verify_signature(None, b"p", signature)  # type: ignore[arg-type]
    assert not verify_signature(key.public_key_hex, b"p", None)  # type: ignore[arg-type]


def test_a_signing_key_must_be_ed25519() -> None:
    with pytest.raises(ValidationError):
        SigningKey(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        key_id_for("not hex")


# -- signed tree heads ------------------------------------------------------------------------


def test_tree_head_payload_is_canonical_json() -> None:
    assert tree_head_payload(8, ROOT, WHEN) == (
        b'{"root_hash":"' + ROOT.encode() + b'","timestamp":"2025-01-02T03:04:05.000006Z",'
        b'"tree_size":8,"type":"strongroom.tree_head.v1"}'
    )
    # microseconds are always written, and any time zone is rendered as the same UTC instant
    whole = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert b'"timestamp":"2025-01-02T03:04:05.000000Z"' in tree_head_payload(0, ROOT, whole)
    elsewhere = WHEN.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert tree_head_payload(8, ROOT, elsewhere) == tree_head_payload(8, ROOT, WHEN)


@pytest.mark.parametrize(
    ("size", "root", "when", "reason"),
    [
        (-1, ROOT, WHEN, "bad_tree_size"),
        (True, ROOT, WHEN, "bad_tree_size"),
        (1, ROOT.upper(), WHEN, "bad_root_hash"),
        (1, ROOT[:-1], WHEN, "bad_root_hash"),
        (1, "sha256:" + ROOT, WHEN, "bad_root_hash"),
        (1, ROOT, datetime(2025, 1, 1), "naive_timestamp"),
    ],
)
def test_tree_head_payload_refuses_nonsense(
    size: int, root: str, when: datetime, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        tree_head_payload(size, root, when)
    assert caught.value.details["reason"] == reason


def test_sign_and_check_a_tree_head() -> None:
    key = SigningKey.generate()
    head = sign_tree_head(key, 8, ROOT, WHEN)
    assert head.tree_size == 8
    assert head.root_hash == ROOT
    assert head.timestamp == WHEN
    assert head.key_id == key.key_id
    assert head.public_key == key.public_key_hex
    assert head.payload() == tree_head_payload(8, ROOT, WHEN)
    assert verify_signature(key.public_key_hex, head.payload(), head.signature)
    assert check_tree_head(head)
    # default timestamp: now, in UTC
    fresh = sign_tree_head(key, 0, ROOT)
    assert fresh.timestamp.tzinfo is not None
    assert abs(fresh.timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert check_tree_head(fresh)


def test_check_tree_head_against_trusted_keys() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    head = sign_tree_head(key, 3, ROOT, WHEN)
    assert check_tree_head(head, {key.public_key_hex})
    assert check_tree_head(head, [other.public_key_hex, key.public_key_hex.upper()])
    assert not check_tree_head(head, {other.public_key_hex})
    assert not check_tree_head(head, set())
    # a head re-signed by another key is valid on its own, but not trusted
    forged = sign_tree_head(other, 3, ROOT, WHEN)
    assert check_tree_head(forged)
    assert not check_tree_head(forged, {key.public_key_hex})


def test_tampered_tree_heads_fail() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    head = sign_tree_head(key, 8, ROOT, WHEN)
    changes: list[dict[str, object]] = [
        {"tree_size": 9},
        {"root_hash": flip_hex(ROOT, 10)},
        {"timestamp": WHEN + timedelta(microseconds=1)},
        {"signature": flip_hex(head.signature, 5)},
        {"public_key": other.public_key_hex},  # another key, the key id left as it was
        {"public_key": other.public_key_hex, "key_id": other.key_id},
        {"key_id": other.key_id},
    ]
    for change in changes:
        assert not check_tree_head(head.model_copy(update=change)), change


def test_signed_tree_head_validation() -> None:
    key = SigningKey.generate()
    good = sign_tree_head(key, 8, ROOT, WHEN).model_dump()
    for field, value in [
        ("tree_size", -1),
        ("root_hash", ROOT.upper()),
        ("timestamp", datetime(2025, 1, 1)),
        ("key_id", "xyz"),
        ("public_key", "00"),
        ("signature", "00" * 63),
    ]:
        with pytest.raises(pydantic.ValidationError):
            SignedTreeHead.model_validate({**good, field: value})
    with pytest.raises(pydantic.ValidationError):
        SignedTreeHead.model_validate({**good, "extra": 1})


def test_a_tree_head_larger_than_rfc8785_integers_is_refused() -> None:
    key = SigningKey.generate()
    with pytest.raises(ValidationError) as caught:
        sign_tree_head(key, 2**53, "0" * 64, datetime(2026, 1, 1, tzinfo=UTC))
    assert caught.value.details["reason"] == "bad_tree_size"


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**53 - 1),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.datetimes(timezones=st.just(UTC)),
)
def test_tree_heads_survive_json(size: int, root: str, when: datetime) -> None:
    key = SigningKey.generate()
    head = sign_tree_head(key, size, root, when)
    again = SignedTreeHead.model_validate_json(head.model_dump_json())
    assert again == head
    assert check_tree_head(again, {key.public_key_hex})
    plain = SignedTreeHead.model_validate(json.loads(head.model_dump_json()))
    assert check_tree_head(plain)
