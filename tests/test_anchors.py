"""Anchor witnesses outside the vault: JSONL files, directories and S3 prefixes.

A witness is what a rollback of the whole vault cannot take back, so these tests check both
halves of its contract: heads go in durably and come back complete, ordered and deduplicated
(forks are kept, never hidden), and a witness is treated as hostile input -- symbolic links,
FIFOs, devices, directories where a file belongs, oversized files and lines, unparsable or
truncated lines, S3 objects that are not heads or sit under the wrong name -- each refused with
one of strongroom's structured errors, never a raw OSError and never a hang. On S3 a head is
never overwritten, and nothing a witness prints carries a credential.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from _s3_fixtures import REGION, SECRET_ACCESS_KEY
from strongroom.adapters import _anchors
from strongroom.adapters._anchors import (
    ANCHOR_FILE_NAME,
    MAX_LINE_BYTES,
    MAX_WITNESS_BYTES,
    FileWitness,
    S3Witness,
    Witness,
    anchor_key,
    encode_head,
    open_witness,
)
from strongroom.errors import (
    IntegrityError,
    NotFound,
    OperationTimeout,
    PermissionDenied,
    StorageIOError,
    ValidationError,
)
from strongroom.integrity import SignedTreeHead, SigningKey, sign_tree_head

WHEN = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def root(n: int) -> str:
    return f"{n:064x}"


def head(
    key: SigningKey, size: int, root_hash: str | None = None, seconds: int = 0
) -> SignedTreeHead:
    return sign_tree_head(
        key,
        size,
        root_hash if root_hash is not None else root(size),
        WHEN + timedelta(seconds=seconds),
    )


def sparse(path: Path, size: int) -> None:
    """A file of ``size`` zero bytes that costs no disk."""
    with open(path, "wb") as f:
        f.truncate(size)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


# -- files: round trips ---------------------------------------------------------------------------


async def test_file_round_trip_is_ordered_by_tree_size(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "witness.jsonl"
    witness = open_witness(path)
    assert isinstance(witness, FileWitness)
    assert witness.describe() == str(path)
    heads = [head(key, 30), head(key, 10), head(key, 20)]
    for h in heads:
        await witness.append(h)
    assert await witness.read() == sorted(heads, key=lambda h: h.tree_size)
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    assert raw.split(b"\n")[:-1] == [encode_head(h) for h in heads]  # appended as given
    assert json.loads(raw.split(b"\n")[0])["tree_size"] == 30


async def test_a_string_target_works_like_a_path(tmp_path: Path, key: SigningKey) -> None:
    witness = open_witness(str(tmp_path / "w.jsonl"))
    await witness.append(head(key, 1))
    assert [h.tree_size for h in await witness.read()] == [1]


async def test_a_directory_target_appends_to_its_anchor_file(
    tmp_path: Path, key: SigningKey
) -> None:
    witness = open_witness(tmp_path)
    assert witness.describe() == str(tmp_path / ANCHOR_FILE_NAME)
    await witness.append(head(key, 2))
    await witness.append(head(key, 1))
    assert [h.tree_size for h in await witness.read()] == [1, 2]
    assert len(lines_of(tmp_path / ANCHOR_FILE_NAME)) == 3  # two lines and the final newline
    # A link to a directory is that directory (only the witness file itself is never a link).
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        assert [h.tree_size for h in await open_witness(link).read()] == [1, 2]
    finally:
        link.unlink()


async def test_identical_heads_collapse_and_forks_are_kept(tmp_path: Path, key: SigningKey) -> None:
    witness = open_witness(tmp_path / "w.jsonl")
    first = head(key, 5)
    fork = head(key, 5, root(999))
    resigned = head(key, 5, seconds=60)  # the same tree, signed again later
    for h in (first, first, fork, head(key, 7), first, resigned):
        await witness.append(h)
    read = await witness.read()
    assert [h.tree_size for h in read] == [5, 5, 5, 7]
    assert read.count(first) == 1
    assert fork in read
    assert resigned in read
    assert {h.root_hash for h in read if h.tree_size == 5} == {root(5), root(999)}


async def test_appends_survive_reopening(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "w.jsonl"
    await open_witness(path).append(head(key, 1))
    await open_witness(path).append(head(key, 2))
    again = open_witness(path)
    await again.append(head(key, 3))
    assert [h.tree_size for h in await open_witness(path).read()] == [1, 2, 3]


async def test_a_jsonl_path_gets_its_directories_on_first_append(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "a" / "b" / "witness.jsonl"
    witness = open_witness(path)
    with pytest.raises(NotFound) as caught:
        await witness.read()
    assert caught.value.details["reason"] == "no_anchors"
    await witness.append(head(key, 4))
    assert [h.tree_size for h in await witness.read()] == [4]
    assert path.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


async def test_a_write_only_witness_file_still_takes_appends(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.jsonl"
    await open_witness(path).append(head(key, 1))
    real_open = os.open

    def drop_box(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # The appender may write the file but not read it (root ignores a 0o200 mode).
        if str(file) == str(path) and flags & os.O_RDWR and not flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", drop_box)
    await open_witness(path).append(head(key, 2))
    monkeypatch.undo()
    assert [h.tree_size for h in await open_witness(path).read()] == [1, 2]


async def test_concurrent_appends_never_interleave(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "w.jsonl"
    witnesses = [open_witness(path) for _ in range(4)]
    heads = [head(key, n) for n in range(1, 81)]
    await asyncio.gather(*(witnesses[n % 4].append(h) for n, h in enumerate(heads)))
    assert await open_witness(path).read() == heads
    assert len(lines_of(path)) == len(heads) + 1


# -- files: missing and empty ---------------------------------------------------------------------


async def test_a_missing_file_is_not_found_with_the_target(tmp_path: Path) -> None:
    path = tmp_path / "nothing-here"
    with pytest.raises(NotFound) as caught:
        await open_witness(path).read()
    assert caught.value.code == "not_found"
    assert caught.value.details["reason"] == "no_anchors"
    assert caught.value.details["target"] == str(path)
    assert caught.value.details["operation"] == "anchor.read"


async def test_an_empty_file_holds_no_anchors(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_bytes(b"")
    with pytest.raises(NotFound) as caught:
        await open_witness(path).read()
    assert caught.value.details["reason"] == "no_anchors"


def test_a_path_with_no_directory_and_no_jsonl_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        open_witness(tmp_path / "missing-dir" / "witness")
    assert caught.value.details["reason"] == "bad_target"


@pytest.mark.parametrize("target", ["", "  ", "http://example.com/w", "gs://bucket/prefix"])
def test_other_targets_are_refused(target: str) -> None:
    with pytest.raises(ValidationError) as caught:
        open_witness(target)
    assert caught.value.details["reason"] in ("bad_target", "unsupported_scheme")


def test_a_url_with_a_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        open_witness("https://user:hunter2@example.com/w?token=hunter2")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in json.dumps(caught.value.to_dict())


# -- files: what is not a witness file ------------------------------------------------------------


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "w.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError) as caught:
        open_witness(fifo)
    assert caught.value.details["reason"] == "special_file"
    assert "FIFO" in caught.value.message


async def test_a_fifo_swapped_in_later_is_refused_without_hanging(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "w.jsonl"
    witness = open_witness(path)
    os.mkfifo(path)
    for action in (lambda: witness.append(head(key, 1)), witness.read):
        with pytest.raises(ValidationError) as caught:
            await asyncio.wait_for(action(), timeout=10)
        assert caught.value.details["reason"] == "special_file"


def test_a_device_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        open_witness("/dev/null")
    assert caught.value.details["reason"] == "special_file"


async def test_a_symlink_is_never_followed(tmp_path: Path, key: SigningKey) -> None:
    real = tmp_path / "real.jsonl"
    await open_witness(real).append(head(key, 1))
    before = real.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with pytest.raises(PermissionDenied) as caught:
        open_witness(link)
    assert caught.value.details["reason"] == "symlink"
    # Swapped in after the witness was opened: O_NOFOLLOW refuses it at the I/O itself.
    path = tmp_path / "w.jsonl"
    witness = open_witness(path)
    path.symlink_to(real)
    with pytest.raises(PermissionDenied) as caught:
        await witness.append(head(key, 2))
    assert caught.value.details["reason"] == "symlink"
    with pytest.raises(PermissionDenied):
        await witness.read()
    assert real.read_bytes() == before
    # A dangling link is refused too (an append must not create its target).
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(PermissionDenied):
        open_witness(dangling)
    assert not (tmp_path / "elsewhere.jsonl").exists()


async def test_a_directory_where_a_file_belongs_is_refused(tmp_path: Path, key: SigningKey) -> None:
    (tmp_path / "w.jsonl").mkdir()
    with pytest.raises(ValidationError) as caught:
        open_witness(tmp_path / "w.jsonl")
    assert caught.value.details["reason"] == "is_directory"
    inner = tmp_path / "d"
    (inner / ANCHOR_FILE_NAME).mkdir(parents=True)
    with pytest.raises(ValidationError) as caught:
        open_witness(inner)
    assert caught.value.details["reason"] == "is_directory"
    # Made a directory after the witness was opened.
    path = tmp_path / "later.jsonl"
    witness = open_witness(path)
    path.mkdir()
    with pytest.raises(ValidationError) as caught:
        await witness.append(head(key, 1))
    assert caught.value.details["reason"] == "is_directory"


# -- files: bounded reads -------------------------------------------------------------------------


async def test_an_oversized_file_is_refused_unread(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "w.jsonl"
    sparse(path, MAX_WITNESS_BYTES + 1)
    with pytest.raises(ValidationError) as caught:
        await open_witness(path).read()
    assert caught.value.details["reason"] == "too_large"
    assert caught.value.details["limit"] == MAX_WITNESS_BYTES


async def test_an_append_never_grows_a_file_past_the_limit(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "w.jsonl"
    sparse(path, MAX_WITNESS_BYTES - 100)
    with pytest.raises(ValidationError) as caught:
        await open_witness(path).append(head(key, 1))
    assert caught.value.details["reason"] == "too_large"
    assert path.stat().st_size == MAX_WITNESS_BYTES - 100


async def test_an_oversized_line_is_refused_with_its_number(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "w.jsonl"
    path.write_bytes(encode_head(head(key, 1)) + b"\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\n")
    with pytest.raises(IntegrityError) as caught:
        await open_witness(path).read()
    assert caught.value.details["reason"] == "line_too_long"
    assert caught.value.details["line"] == 2
    assert "line 2" in caught.value.message


async def test_too_many_heads_are_refused(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_anchors, "MAX_HEADS", 2)
    witness = open_witness(tmp_path / "w.jsonl")
    for n in (1, 2, 3):
        await witness.append(head(key, n))
    with pytest.raises(ValidationError) as caught:
        await witness.read()
    assert caught.value.details["reason"] == "too_many_heads"


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"not json at all", "json"),
        (b"", "json"),  # a blank line is not a head either
        (b'{"tree_size": 2}', "root_hash"),
        (b"[1, 2, 3]", ""),
        (b"\xff\xfe invalid utf-8", ""),
    ],
)
async def test_a_line_that_is_not_a_head_is_an_integrity_error_naming_it(
    tmp_path: Path, key: SigningKey, garbage: bytes, why: str
) -> None:
    path = tmp_path / "w.jsonl"
    good = encode_head(head(key, 1))
    path.write_bytes(good + b"\n" + garbage + b"\n" + good + b"\n")
    with pytest.raises(IntegrityError) as caught:
        await open_witness(path).read()
    error = caught.value
    assert error.details["reason"] == "bad_line"
    assert error.details["line"] == 2
    assert "line 2" in error.message
    assert why.lower() in error.message.lower()


async def test_a_head_with_an_extra_or_mistyped_field_is_not_a_head(
    tmp_path: Path, key: SigningKey
) -> None:
    good = head(key, 1).model_dump(mode="json")
    for bad in ({**good, "extra": 1}, {**good, "tree_size": "1"}, {**good, "timestamp": 0}):
        path = tmp_path / "w.jsonl"
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(IntegrityError) as caught:
            await open_witness(path).read()
        assert caught.value.details["line"] == 1


async def test_a_truncated_last_line_is_reported_and_later_heads_stay_whole(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "w.jsonl"
    witness = open_witness(path)
    await witness.append(head(key, 1))
    await witness.append(head(key, 2))
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # a crash (or an attacker) cut the last append short
    with pytest.raises(IntegrityError) as caught:
        await witness.read()
    assert caught.value.details["reason"] == "partial_line"
    assert caught.value.details["line"] == 2
    # The next append ends the torn line first: its own head is intact on line 3, and the
    # torn line is still reported rather than silently dropped.
    await witness.append(head(key, 3))
    lines = lines_of(path)
    assert lines[2] == encode_head(head(key, 3))
    assert lines[3] == b""
    with pytest.raises(IntegrityError) as caught:
        await witness.read()
    assert caught.value.details["reason"] == "bad_line"
    assert caught.value.details["line"] == 2
    # Once an operator removes the torn line, everything else reads back.
    path.write_bytes(b"\n".join([lines[0], lines[2], b""]))
    assert [h.tree_size for h in await witness.read()] == [1, 3]


async def test_a_complete_head_without_its_newline_is_still_partial(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "w.jsonl"
    path.write_bytes(encode_head(head(key, 1)))
    with pytest.raises(IntegrityError) as caught:
        await open_witness(path).read()
    assert caught.value.details["reason"] == "partial_line"
    assert caught.value.details["line"] == 1


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "w.jsonl"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        os.close(fd)


async def test_a_witness_locked_for_too_long_times_out(
    held_lock: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_anchors, "_LOCK_WAIT", 0.2)
    witness = open_witness(held_lock)
    for action in (lambda: witness.append(head(key, 1)), witness.read):
        with pytest.raises(OperationTimeout) as caught:
            await action()
        assert caught.value.details["reason"] == "witness_locked"
    assert lines_of(held_lock) == [b""]


async def test_only_signed_tree_heads_are_appended(tmp_path: Path) -> None:
    witness = open_witness(tmp_path / "w.jsonl")
    with pytest.raises(ValidationError) as caught:
        await witness.append({"tree_size": 1})  # type: ignore[arg-type]
    assert caught.value.details["reason"] == "bad_head"


async def test_os_errors_never_escape_raw(tmp_path: Path, key: SigningKey) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(StorageIOError) as caught:
        open_witness(blocker / "sub" / "w.jsonl")
    assert caught.value.details["reason"] == "ENOTDIR"
    # The same, found only at I/O time.
    witness = open_witness(tmp_path / "sub" / "w.jsonl")
    (tmp_path / "sub").write_text("now a file")
    for action in (lambda: witness.append(head(key, 1)), witness.read):
        with pytest.raises(StorageIOError) as caught:
            await action()
        assert caught.value.details["reason"] == "ENOTDIR"


# -- S3 -------------------------------------------------------------------------------------------


@pytest.fixture
def s3_url(s3_endpoint: str, s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/vault?endpoint={s3_endpoint}&region={REGION}&max_retries=1"


def _objects(client: Any, bucket: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


@pytest.mark.s3
async def test_s3_round_trip_layout_and_order(
    s3_url: str, s3_bucket: str, s3_client: Any, key: SigningKey
) -> None:
    witness = open_witness(s3_url)
    assert isinstance(witness, S3Witness)
    heads = [head(key, 300), head(key, 7), head(key, 20)]
    for h in heads:
        await witness.append(h)
    assert await witness.read() == sorted(heads, key=lambda h: h.tree_size)
    objects = _objects(s3_client, s3_bucket)
    assert sorted(objects) == sorted(f"vault/{anchor_key(h)}" for h in heads)
    assert f"vault/anchors/{7:020d}-{root(7)[:16]}.json" in objects
    for h in heads:
        assert SignedTreeHead.model_validate_json(objects[f"vault/{anchor_key(h)}"]) == h
    # A new witness object on the same prefix sees everything (and so does a new process).
    await open_witness(s3_url).append(head(key, 1))
    assert [h.tree_size for h in await open_witness(s3_url).read()] == [1, 7, 20, 300]


@pytest.mark.s3
async def test_s3_without_a_prefix(
    s3_endpoint: str, s3_bucket: str, s3_client: Any, key: SigningKey
) -> None:
    witness = open_witness(f"s3://{s3_bucket}?endpoint={s3_endpoint}&max_retries=1")
    await witness.append(head(key, 3))
    assert list(_objects(s3_client, s3_bucket)) == [anchor_key(head(key, 3))]
    assert [h.tree_size for h in await witness.read()] == [3]


@pytest.mark.s3
async def test_s3_never_overwrites_a_head(
    s3_url: str, s3_bucket: str, s3_client: Any, key: SigningKey
) -> None:
    witness = open_witness(s3_url)
    first = head(key, 9)
    await witness.append(first)
    before = _objects(s3_client, s3_bucket)
    # The same head again, or the same tree signed again later: already anchored.
    await witness.append(first)
    await witness.append(head(key, 9, seconds=30))
    assert _objects(s3_client, s3_bucket) == before
    # Another root whose name collides (same size, same first 16 hex): a fork, refused.
    other = head(key, 9, root(9)[:16] + "f" * 48)
    assert anchor_key(other) == anchor_key(first)
    with pytest.raises(IntegrityError) as caught:
        await witness.append(other)
    error = caught.value
    assert error.details["reason"] == "anchor_conflict"
    assert error.details["existing_root_hash"] == first.root_hash
    assert error.details["uri"] == f"s3://{s3_bucket}/vault/{anchor_key(first)}"
    assert _objects(s3_client, s3_bucket) == before
    assert await witness.read() == [first]


@pytest.mark.s3
async def test_s3_an_existing_object_that_is_not_a_head_is_a_conflict(
    s3_url: str, s3_bucket: str, s3_client: Any, key: SigningKey
) -> None:
    h = head(key, 4)
    s3_client.put_object(Bucket=s3_bucket, Key=f"vault/{anchor_key(h)}", Body=b"garbage")
    with pytest.raises(IntegrityError) as caught:
        await open_witness(s3_url).append(h)
    assert caught.value.details["reason"] == "anchor_conflict"
    assert _objects(s3_client, s3_bucket)[f"vault/{anchor_key(h)}"] == b"garbage"


@pytest.mark.s3
async def test_s3_missing_prefix_or_bucket(
    s3_url: str, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    with pytest.raises(NotFound) as caught:
        await open_witness(s3_url).read()
    assert caught.value.details["reason"] == "no_anchors"
    assert caught.value.details["target"] == f"s3://{s3_bucket}/vault at {s3_endpoint}"
    # Objects outside anchors/ are not heads and not counted.
    s3_client.put_object(Bucket=s3_bucket, Key="vault/sha256/ab/cd/x", Body=b"blob")
    with pytest.raises(NotFound):
        await open_witness(s3_url).read()
    missing = f"s3://sr-no-such-bucket-x?endpoint={s3_endpoint}&max_retries=1"
    with pytest.raises(StorageIOError) as io:
        await open_witness(missing).read()
    assert io.value.details["reason"] == "no_such_bucket"


@pytest.mark.s3
@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        (f"anchors/{1:020d}-{'0' * 16}.json", b"not json", "bad_object"),
        (f"anchors/{1:020d}-{'0' * 16}.json", b"x" * (MAX_LINE_BYTES + 1), "object_too_large"),
        ("anchors/README.txt", b"hello", "unexpected_object"),
        ("anchors/sub/deeper.json", b"{}", "unexpected_object"),
    ],
)
async def test_s3_objects_that_are_not_heads_are_integrity_errors(
    s3_url: str,
    s3_bucket: str,
    s3_client: Any,
    key: SigningKey,
    name: str,
    body: bytes,
    reason: str,
) -> None:
    witness = open_witness(s3_url)
    await witness.append(head(key, 2))
    s3_client.put_object(Bucket=s3_bucket, Key=f"vault/{name}", Body=body)
    with pytest.raises(IntegrityError) as caught:
        await witness.read()
    assert caught.value.details["reason"] == reason
    assert caught.value.details["uri"] == f"s3://{s3_bucket}/vault/{name}"


@pytest.mark.s3
async def test_s3_a_head_under_another_heads_name_is_an_integrity_error(
    s3_url: str, s3_bucket: str, s3_client: Any, key: SigningKey
) -> None:
    witness = open_witness(s3_url)
    await witness.append(head(key, 2))
    moved = f"vault/{anchor_key(head(key, 3))}"
    s3_client.put_object(Bucket=s3_bucket, Key=moved, Body=encode_head(head(key, 2)))
    with pytest.raises(IntegrityError) as caught:
        await witness.read()
    assert caught.value.details["reason"] == "key_mismatch"
    assert caught.value.details["tree_size"] == 2


@pytest.mark.s3
async def test_s3_read_limits(
    s3_url: str, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = open_witness(s3_url)
    for n in (1, 2, 3):
        await witness.append(head(key, n))
    monkeypatch.setattr(_anchors, "MAX_HEADS", 2)
    with pytest.raises(ValidationError) as caught:
        await witness.read()
    assert caught.value.details["reason"] == "too_many_heads"
    monkeypatch.setattr(_anchors, "MAX_HEADS", 10)
    monkeypatch.setattr(_anchors, "MAX_WITNESS_BYTES", 1000)
    with pytest.raises(ValidationError) as caught:
        await witness.read()
    assert caught.value.details["reason"] == "too_large"


@pytest.mark.s3
async def test_s3_describe_repr_and_errors_never_show_credentials(
    s3_env: dict[str, str], s3_url: str, s3_bucket: str, s3_endpoint: str, key: SigningKey
) -> None:
    witness = open_witness(s3_url)
    texts = [witness.describe(), repr(witness)]
    assert witness.describe() == f"s3://{s3_bucket}/vault at {s3_endpoint}"
    conflict = head(key, 1, root(1)[:16] + "e" * 48)
    await witness.append(head(key, 1))
    with pytest.raises(IntegrityError) as caught:
        await witness.append(conflict)
    texts += [str(caught.value), json.dumps(caught.value.to_dict())]
    for text in texts:
        assert SECRET_ACCESS_KEY not in text
        assert s3_env["AWS_ACCESS_KEY_ID"] not in text


@pytest.mark.parametrize(
    "url",
    [
        f"s3://AKIAEXAMPLE:{SECRET_ACCESS_KEY}@bucket/prefix",
        f"s3://{SECRET_ACCESS_KEY}@bucket/prefix",
        f"s3://bucket/prefix?aws_secret_access_key={SECRET_ACCESS_KEY}",
        f"s3://bucket/prefix?endpoint=http://user:{SECRET_ACCESS_KEY}@127.0.0.1:9000",
    ],
)
def test_s3_credentials_in_the_url_are_refused_without_being_echoed(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        open_witness(url)
    error = caught.value
    assert error.details["reason"] == "credentials_in_url"
    assert error.details["operation"] == "anchor.open"
    assert SECRET_ACCESS_KEY not in str(error)
    assert SECRET_ACCESS_KEY not in json.dumps(error.to_dict())


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://Bad_Bucket/prefix", "bad_bucket"),
        ("s3://bucket/../up", "bad_prefix"),
        ("s3://bucket/p?endpoint=ftp://host", "bad_endpoint"),
        ("s3://bucket/p?colour=blue", "unknown_option"),
    ],
)
def test_s3_bad_urls_are_refused_before_any_request(url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        open_witness(url)
    assert caught.value.details["reason"] == reason
    assert caught.value.details["operation"] == "anchor.open"


@pytest.mark.s3
async def test_s3_an_unreachable_endpoint_is_a_structured_error(
    s3_env: dict[str, str], key: SigningKey
) -> None:
    witness = open_witness("s3://bucket/p?endpoint=http://127.0.0.1:9&max_retries=0")
    assert isinstance(witness, Witness)
    for action in (lambda: witness.append(head(key, 1)), witness.read):
        with pytest.raises(StorageIOError) as caught:
            await asyncio.wait_for(action(), timeout=60)
        assert caught.value.details["reason"] == "unreachable"
        assert SECRET_ACCESS_KEY not in json.dumps(caught.value.to_dict())
