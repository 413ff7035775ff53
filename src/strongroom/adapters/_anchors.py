"""Witnesses outside the vault: where signed tree heads are anchored, and read back from.

Why a witness: the audit chain and its signed checkpoints live inside the vault, so whoever can
copy the whole vault back to an earlier moment (database and blobs together) or cut entries off
its tail leaves a history that is perfectly consistent with itself. A signed tree head appended
to a place the vault does not control -- an "anchor" -- is what such a rollback cannot take
back: ``strongroom verify --anchor TARGET`` reads every head from the witness and proves the
current chain extends each of them.

Three kinds of witness, chosen by `open_witness` from the target:

- a file (an existing regular file, a path whose parent exists, or any path ending in
  ``.jsonl``): one canonical-JSON line per head. Each line is written with one ``write(2)``
  of the whole line on a descriptor opened ``O_APPEND``, under an exclusive ``flock`` (so
  concurrent appenders never interleave and a short write is completed before anyone else
  writes), then fsynced; the directory is fsynced too when the file is created. Readers take
  a shared ``flock``, so they never see an append half done;
- an existing directory: the file ``<dir>/strongroom-anchors.jsonl``, with the same rules;
- ``s3://bucket/prefix``: one object per head, ``<prefix>/anchors/<tree_size:020d>-<first 16
  hex of root_hash>.json``, written with ``If-None-Match: *`` so a head is never overwritten.
  Endpoint, region, options and credentials are resolved exactly as the S3 blob store does it
  (`strongroom.adapters._s3.config`): credentials come from the environment only.

A witness is hostile input: whoever attacks the vault may have written to it too. So the
final component of a witness file is never followed if it is a symbolic link (``O_NOFOLLOW``),
special files (FIFOs, devices, sockets) are refused before and after opening, reads are
bounded (`MAX_WITNESS_BYTES` in all, `MAX_LINE_BYTES` a line or object, `MAX_HEADS` heads) and
every line or object must parse as a `SignedTreeHead`, else `IntegrityError` naming the line
number (or the object's URI). Signatures are *not* checked here: ``verify`` checks every head
against the trusted keys and reports the ones that fail.

What a witness cannot hide:

- a crash in the middle of an append (or a truncation in the middle of a line) leaves a last
  line without its newline. `read` reports it (`IntegrityError`, reason ``partial_line``)
  rather than skip it, so truncating the file cannot quietly remove a head. The next `append`
  first ends that torn line (its write starts with a newline), so later heads stay on lines of
  their own; the torn line is then reported as an unreadable line until an operator removes
  it. (An appender allowed to write the file but not to read it cannot look for a torn line,
  and appends without that check.) A truncation exactly at a line boundary cannot be told
  from a shorter history by the file alone: make the witness append-only (``chattr +a``, an
  S3 bucket with object lock) and keep it where the vault's operators cannot rewrite it.
- two heads with the same ``tree_size`` and different ``root_hash`` are two different
  histories of the same log: a fork. `read` returns both (identical heads collapse into one,
  nothing else is merged or dropped) and ``verify`` reports every head whose root the current
  chain does not reproduce. On S3 both cannot share a key: the second `append` is refused with
  `IntegrityError` (reason ``anchor_conflict``) and the first stays as written.

An empty witness (an empty file, or no object under the prefix) reads as `NotFound` with reason
``no_anchors``, like a missing one: verifying against a witness that vouches for nothing is
almost always a mistake, or a witness that was emptied.

Capacity: a head is about 400 bytes, so a file witness holds about 150,000 heads before
`MAX_WITNESS_BYTES`; `append` refuses to grow a file past it (start a new witness then).

POSIX only (``flock``, ``O_NOFOLLOW``), like the local blob store. obstore is imported only
when an ``s3://`` witness is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import pydantic

from strongroom._fs import fsync_dir
from strongroom.adapters._local_fs import mkdir_durable
from strongroom.errors import (
    IntegrityError,
    NotFound,
    OperationTimeout,
    PermissionDenied,
    StorageIOError,
    StrongroomError,
    ValidationError,
    map_os_errors,
)
from strongroom.integrity.signing import SignedTreeHead
from strongroom.models import canonical_json
from strongroom.secrets import safe_url

if TYPE_CHECKING:
    from obstore.store import S3Store

    from strongroom.adapters._s3.errors import S3Errors

__all__ = [
    "ANCHOR_FILE_NAME",
    "MAX_HEADS",
    "MAX_LINE_BYTES",
    "MAX_WITNESS_BYTES",
    "FileWitness",
    "S3Witness",
    "Witness",
    "anchor_key",
    "encode_head",
    "open_witness",
]

MAX_WITNESS_BYTES: Final = 64 * 1024 * 1024
"""A witness file larger than this (or S3 anchors adding up to more) is refused unread."""

MAX_LINE_BYTES: Final = 64 * 1024
"""A line (or S3 object) longer than this cannot be a signed tree head."""

MAX_HEADS: Final = 1_000_000
"""A witness with more heads (lines, objects) than this is refused."""

ANCHOR_FILE_NAME: Final = "strongroom-anchors.jsonl"
"""The file a directory witness appends to."""

_OP_OPEN = "anchor.open"
_OP_APPEND = "anchor.append"
_OP_READ = "anchor.read"
_LOCAL = "local"
_LOCK_WAIT = 30.0  # seconds an append or read waits for another process's flock
_S3_CONCURRENCY = 32  # GETs in flight while reading an S3 witness
_S3_DIR = "anchors"
_S3_KEY_RE = re.compile(r"anchors/([0-9]{20})-([0-9a-f]{16})\.json")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


# -- heads on the wire ----------------------------------------------------------------------------


def encode_head(head: SignedTreeHead) -> bytes:
    """A head as a witness stores it: canonical JSON (sorted keys, no whitespace), no newline."""
    return canonical_json(head.model_dump(mode="json"))


def anchor_key(head: SignedTreeHead) -> str:
    """The key of ``head`` below an S3 witness's prefix:
    ``anchors/<tree_size, 20 digits>-<first 16 hex of root_hash>.json``."""
    return f"{_S3_DIR}/{head.tree_size:020d}-{head.root_hash[:16]}.json"


def _decode_head(data: bytes) -> SignedTreeHead:
    """Parse one stored head (strictly: no coercion of types); pydantic's error on failure."""
    return SignedTreeHead.model_validate_json(data, strict=True)


def _why(exc: pydantic.ValidationError) -> str:
    """The first problem pydantic found, without the (hostile, maybe huge) input."""
    errors = exc.errors(include_input=False, include_url=False)
    if not errors:
        return "not a signed tree head"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    text = f"{where}: {first['msg']}" if where else str(first["msg"])
    return text if len(text) <= 200 else text[:197] + "..."


def _check_head(head: object, **details: Any) -> SignedTreeHead:
    if not isinstance(head, SignedTreeHead):
        raise ValidationError(
            f"{_OP_APPEND}: a witness stores SignedTreeHead objects, not {type(head).__name__}",
            operation=_OP_APPEND,
            reason="bad_head",
            **details,
        )
    return head


def _collapse(heads: Iterable[SignedTreeHead]) -> list[SignedTreeHead]:
    """Identical heads once each, ordered by tree size (then root, time and signature, so the
    order never depends on where a head was stored)."""
    unique: dict[tuple[Any, ...], SignedTreeHead] = {}
    for head in heads:
        key = (
            head.tree_size,
            head.root_hash,
            head.timestamp,
            head.key_id,
            head.public_key,
            head.signature,
        )
        unique.setdefault(key, head)
    return [unique[key] for key in sorted(unique)]


# -- the port -------------------------------------------------------------------------------------


class Witness(ABC):
    """A place outside the vault that signed tree heads are appended to and read back from."""

    backend: str

    @abstractmethod
    def describe(self) -> str:
        """Where the heads go, safe to print and to store (never a credential)."""

    @abstractmethod
    async def append(self, head: SignedTreeHead) -> None:
        """Append ``head`` durably. Appending a head the witness holds already is harmless."""

    @abstractmethod
    async def read(self) -> list[SignedTreeHead]:
        """Every head, ordered by ``tree_size``; identical heads collapse into one, heads of
        the same size with different roots (a fork) are all returned. `NotFound` (reason
        ``no_anchors``) when the witness holds no head; `IntegrityError` when anything in it
        is not a signed tree head."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


def open_witness(target: str | Path) -> Witness:
    """The witness at ``target``: ``s3://bucket/prefix[?endpoint=...&region=...]``, an existing
    directory or any path ending in ``/`` (heads go to `ANCHOR_FILE_NAME` inside it; a missing
    one is made by the first append), or a file (an existing regular file,
    a new path in an existing directory, or any path ending in ``.jsonl``, whose missing
    directories the first append creates).

    Only the target's shape is checked here (a few ``stat`` calls); nothing is created or
    read until `Witness.append` or `Witness.read`. A symbolic link as the file itself is
    `PermissionDenied` (reason ``symlink``); a FIFO, device or socket, or a directory where a
    file is expected, is `ValidationError` (reasons ``special_file``, ``is_directory``).
    """
    if isinstance(target, str):
        if not target.strip():
            raise ValidationError(
                "an anchor witness is a file, a directory or an s3:// URL, not an empty string",
                operation=_OP_OPEN,
                reason="bad_target",
            )
        scheme = _SCHEME_RE.match(target)
        if scheme is not None:
            if scheme.group(1).lower() == "s3":
                return S3Witness(target)
            raise ValidationError(
                f"unsupported anchor witness {safe_url(target)!r}: give a file, a directory "
                "or an s3://bucket/prefix URL",
                operation=_OP_OPEN,
                reason="unsupported_scheme",
                target=safe_url(target),
            )
    if not isinstance(target, str | os.PathLike):
        raise ValidationError(
            f"an anchor witness is a path or an s3:// URL, not {type(target).__name__}",
            operation=_OP_OPEN,
            reason="bad_target",
        )
    path = Path(target).expanduser()
    if isinstance(target, str) and target.endswith(("/", os.sep)):
        path = path / ANCHOR_FILE_NAME  # a trailing / means a directory, made on first append
    return FileWitness(_witness_file(path))


# -- files ----------------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return f"of file type {stat.S_IFMT(mode):o}"


def _not_a_file(path: Path, operation: str, mode: int | None) -> StrongroomError:
    """Why ``path`` (of ``mode``, not followed; None: a FIFO or device found by ``open``) is
    not a witness file."""
    where = {"operation": operation, "backend": _LOCAL, "path": str(path)}
    if mode is not None and stat.S_ISLNK(mode):
        return PermissionDenied(
            f"{operation}: the anchor witness {path} is a symbolic link; it is not followed "
            "(name the file it points to)",
            **where,
            reason="symlink",
        )
    if mode is not None and stat.S_ISDIR(mode):
        return ValidationError(
            f"{operation}: the anchor witness file {path} is a directory",
            **where,
            reason="is_directory",
        )
    what = "" if mode is None else f"is {_kind(mode)}, "
    return ValidationError(
        f"{operation}: the anchor witness {path} {what}not a regular file",
        **where,
        reason="special_file",
    )


def _refuse_non_file(path: Path, mode: int, operation: str) -> None:
    """Raise unless ``mode`` (of ``path``, not followed) is a regular file's."""
    if not stat.S_ISREG(mode):
        raise _not_a_file(path, operation, mode)


def _lstat(path: Path, operation: str) -> os.stat_result | None:
    """``lstat(path)``, or None when nothing is there."""
    try:
        with map_os_errors(operation, backend=_LOCAL, path=str(path)):
            return os.lstat(path)
    except NotFound:
        return None


def _witness_file(path: Path) -> Path:
    """The file a witness at ``path`` appends to, after checking the target's shape."""
    try:
        with map_os_errors(_OP_OPEN, backend=_LOCAL, path=str(path)):
            target = os.stat(path)  # followed: a link to a directory is that directory
    except NotFound:
        target = None
    except StorageIOError as exc:
        if exc.details.get("reason") != "ELOOP":
            raise
        target = None  # a symbolic link loop: the lstat below names it
    if target is not None and stat.S_ISDIR(target.st_mode) and not path.name.endswith(".jsonl"):
        path = path / ANCHOR_FILE_NAME
    elif (
        target is None
        and not path.name.endswith(".jsonl")
        and not path.parent.is_dir()
        and _lstat(path, _OP_OPEN) is None
    ):
        raise ValidationError(
            f"the anchor witness {path} does not exist and neither does its directory: "
            "give an existing directory, a file, or a path ending in .jsonl",
            operation=_OP_OPEN,
            backend=_LOCAL,
            path=str(path),
            reason="bad_target",
        )
    found = _lstat(path, _OP_OPEN)
    if found is not None:
        _refuse_non_file(path, found.st_mode, _OP_OPEN)
    return path


def _lock(fd: int, kind: int, path: Path, operation: str) -> None:
    """``flock`` the witness file, waiting at most `_LOCK_WAIT` seconds for another holder."""
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise OperationTimeout(
                    f"{operation}: the anchor witness {path} stayed locked by another process "
                    f"for {_LOCK_WAIT:.0f} s",
                    operation=operation,
                    backend=_LOCAL,
                    path=str(path),
                    reason="witness_locked",
                ) from None
            time.sleep(0.02)
        else:
            return


class FileWitness(Witness):
    """Heads as lines of a JSONL file (see the module docstring for the write discipline)."""

    backend = _LOCAL

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    # -- errors -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        """OS errors become strongroom errors that say what was wrong with the witness."""
        path = self.path
        try:
            yield
        except StrongroomError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _not_a_file(path, operation, stat.S_IFLNK) from exc
            if exc.errno == errno.EISDIR:
                raise _not_a_file(path, operation, stat.S_IFDIR) from exc
            if exc.errno == errno.ENXIO:  # a FIFO without a reader, a device without a driver
                raise _not_a_file(path, operation, None) from exc
            if isinstance(exc, FileNotFoundError) and operation == _OP_READ:
                raise self._no_anchors() from exc
            with map_os_errors(operation, backend=_LOCAL, path=str(path)):
                raise

    def _no_anchors(self) -> NotFound:
        return NotFound(
            f"{_OP_READ}: no anchored heads at {self.path}",
            operation=_OP_READ,
            backend=_LOCAL,
            path=str(self.path),
            target=self.describe(),
            reason="no_anchors",
        )

    def _too_large(self, operation: str, size: int) -> ValidationError:
        return ValidationError(
            f"{operation}: the anchor witness {self.path} would be larger than "
            f"{MAX_WITNESS_BYTES} bytes"
            + (" (start a new witness)" if operation == _OP_APPEND else ""),
            operation=operation,
            backend=_LOCAL,
            path=str(self.path),
            reason="too_large",
            size=size,
            limit=MAX_WITNESS_BYTES,
        )

    def _bad(self, line: int, message: str, reason: str, **details: Any) -> IntegrityError:
        return IntegrityError(
            f"{_OP_READ}: line {line} of the anchor witness {self.path} {message}",
            operation=_OP_READ,
            backend=_LOCAL,
            path=str(self.path),
            line=line,
            reason=reason,
            **details,
        )

    # -- appending --------------------------------------------------------------------------------

    async def append(self, head: SignedTreeHead) -> None:
        line = encode_head(_check_head(head, backend=_LOCAL, path=str(self.path))) + b"\n"
        await asyncio.to_thread(self._append_sync, line)

    def _open_for_append(self) -> tuple[int, bool, bool]:
        """A descriptor open for appending, whether this call created the file, and whether
        the descriptor can read (to check that the last append was not torn)."""
        flags = os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY
        try:
            return os.open(self.path, flags | os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True, True
        except FileExistsError:
            pass
        # O_NONBLOCK: a FIFO planted here must fail the regular-file check, not hang.
        flags |= os.O_NONBLOCK
        try:
            return os.open(self.path, flags | os.O_RDWR), False, True
        except PermissionError:
            # A write-only drop box: appends still work, without the torn-line check.
            return os.open(self.path, flags | os.O_WRONLY), False, False

    def _append_sync(self, line: bytes) -> None:
        path = self.path
        with self._translated(_OP_APPEND):
            found = os.lstat(path) if os.path.lexists(path) else None
            if found is not None:
                _refuse_non_file(path, found.st_mode, _OP_APPEND)
            else:
                mkdir_durable(str(path.parent))
            fd, created, readable = self._open_for_append()
            try:
                st = os.fstat(fd)
                _refuse_non_file(path, st.st_mode, _OP_APPEND)
                _lock(fd, fcntl.LOCK_EX, path, _OP_APPEND)
                size = os.fstat(fd).st_size
                if size and readable and os.pread(fd, 1, size - 1) != b"\n":
                    # The last append was torn (a crash mid-write): end that line so this
                    # head gets one of its own. read() still reports the torn line.
                    line = b"\n" + line
                if size + len(line) > MAX_WITNESS_BYTES:
                    raise self._too_large(_OP_APPEND, size + len(line))
                # One write(2) of the whole line; under the lock a short write (a full disk,
                # a signal) is completed before any other appender can write.
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)  # releases the flock
            if created:
                fsync_dir(path.parent)

    # -- reading ----------------------------------------------------------------------------------

    async def read(self) -> list[SignedTreeHead]:
        return await asyncio.to_thread(self._read_sync)

    def _read_sync(self) -> list[SignedTreeHead]:
        path = self.path
        with self._translated(_OP_READ):
            found = os.lstat(path)
            _refuse_non_file(path, found.st_mode, _OP_READ)
            if found.st_size > MAX_WITNESS_BYTES:
                raise self._too_large(_OP_READ, found.st_size)
            flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK
            fd = os.open(path, flags)
            try:
                _refuse_non_file(path, os.fstat(fd).st_mode, _OP_READ)
                _lock(fd, fcntl.LOCK_SH, path, _OP_READ)  # no append is half done
                chunks: list[bytes] = []
                total = 0
                while True:
                    chunk = os.read(fd, min(1024 * 1024, MAX_WITNESS_BYTES + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > MAX_WITNESS_BYTES:
                        raise self._too_large(_OP_READ, total)
            finally:
                os.close(fd)
        return self._parse(b"".join(chunks))

    def _parse(self, data: bytes) -> list[SignedTreeHead]:
        if not data:
            raise self._no_anchors()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline, as every append leaves it
        if len(lines) > MAX_HEADS:
            raise ValidationError(
                f"{_OP_READ}: the anchor witness {self.path} has more than {MAX_HEADS} lines",
                operation=_OP_READ,
                backend=_LOCAL,
                path=str(self.path),
                reason="too_many_heads",
                limit=MAX_HEADS,
            )
        heads: list[SignedTreeHead] = []
        for number, raw in enumerate(lines, 1):
            heads.append(self._parse_line(number, raw))
        if tail:
            raise self._bad(
                len(lines) + 1,
                "is cut short (no newline at its end): an append was interrupted, or the "
                "file was truncated; a head may have been removed",
                "partial_line",
                size=len(tail),
            )
        return _collapse(heads)

    def _parse_line(self, number: int, raw: bytes) -> SignedTreeHead:
        if len(raw) > MAX_LINE_BYTES:
            raise self._bad(
                number,
                f"is longer than {MAX_LINE_BYTES} bytes: not a signed tree head",
                "line_too_long",
                size=len(raw),
                limit=MAX_LINE_BYTES,
            )
        try:
            return _decode_head(raw)
        except pydantic.ValidationError as exc:
            why = _why(exc)
            raise self._bad(
                number, f"is not a signed tree head ({why})", "bad_line", cause=why
            ) from None


# -- S3 -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _as_operation(operation: str) -> Iterator[None]:
    """The S3 configuration checks name the blob store's operation: name the witness's."""
    try:
        yield
    except ValidationError as exc:
        details = {**exc.details, "operation": operation, "backend": "s3"}
        raise ValidationError(exc.message, **details) from exc


class S3Witness(Witness):
    """Heads as objects under ``<prefix>/anchors/`` of an S3 bucket, one per head, never
    overwritten (conditional ``PutObject``)."""

    backend = "s3"

    def __init__(self, url: str) -> None:
        """A witness at ``s3://bucket/prefix``; the URL takes the blob store's options
        (``endpoint``, ``region``, ``allow_http``, ``max_retries``, ``connect_timeout``,
        ``timeout``) and never a credential. No I/O happens here."""
        # Imported here: obstore loads only when an s3:// witness is used.
        from obstore.store import S3Store

        from strongroom.adapters._s3.config import (
            CLIENT_DEFAULTS,
            check_bucket,
            check_prefix,
            parse_url,
            resolve_endpoint,
            resolve_region,
        )
        from strongroom.adapters._s3.errors import S3Errors, scrub, scrub_in_place, summary

        with _as_operation(_OP_OPEN):
            bucket, prefix, options = parse_url(url, {})
            self.bucket = check_bucket(bucket)
            self.prefix = check_prefix(prefix)
            self.endpoint = resolve_endpoint(options["endpoint"])
            self.region = resolve_region(options["region"])
        allow_http = options["allow_http"]
        if allow_http is None:
            allow_http = self.endpoint is not None and self.endpoint.startswith("http://")
        client: dict[str, Any] = dict(CLIENT_DEFAULTS)
        client["allow_http"] = allow_http
        client.update(options["client_options"] or {})
        config: dict[str, Any] = {}
        if self.endpoint is not None:
            config["endpoint"] = self.endpoint
        if self.region is not None:
            config["region"] = self.region
        self._err: S3Errors = S3Errors(
            backend=self.backend,
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint=self.endpoint,
            region=self.region,
        )
        try:
            # S3Store reads the credentials (AWS_*) from the environment itself.
            self._store: S3Store = S3Store(
                self.bucket,
                prefix=self.prefix or None,
                client_options=client,  # type: ignore[arg-type]
                retry_config=options["retry_config"],
                **config,
            )
        except Exception as exc:
            scrub_in_place(exc)
            raise ValidationError(
                "invalid S3 configuration for the anchor witness",
                operation=_OP_OPEN,
                backend=self.backend,
                bucket=self.bucket,
                endpoint=self.endpoint,
                reason=summary(scrub(str(exc))),
            ) from exc

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        if self.endpoint is not None:
            where += f" at {self.endpoint}"
        return safe_url(where)

    def _where(self, key: str | None = None) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "bucket": self.bucket,
            "path": key,
            "uri": self._err.uri(key if key is not None else f"{_S3_DIR}/"),
            "endpoint": self._err.where(),
        }

    # -- appending --------------------------------------------------------------------------------

    async def append(self, head: SignedTreeHead) -> None:
        import obstore as obs
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        head = _check_head(head, backend=self.backend, bucket=self.bucket)
        key = anchor_key(head)
        exists = False
        try:
            with self._err.translated(_OP_APPEND, key):
                try:
                    await obs.put_async(self._store, key, encode_head(head) + b"\n", mode="create")
                except (AlreadyExistsError, PreconditionError):
                    exists = True  # If-None-Match: * failed
        except StorageIOError as exc:
            if exc.details.get("reason") not in ("not_supported", "http_501"):
                raise
            raise StorageIOError(
                f"{_OP_APPEND}: the S3 store at {self._err.where()} does not support "
                "conditional writes (If-None-Match); an anchor is never written without one, "
                "since it could overwrite another",
                **{**exc.details, "reason": "no_conditional_put"},
            ) from exc
        if exists:
            self._same_tree_or_raise(head, key, await self._get(_OP_APPEND, key))

    def _same_tree_or_raise(self, head: SignedTreeHead, key: str, data: bytes) -> None:
        """An object was already under ``key``: fine if it anchors the same tree (the same
        head, or the same size and root signed again), else evidence of a fork."""
        try:
            existing: SignedTreeHead | None = _decode_head(data)
        except pydantic.ValidationError:
            existing = None
        if (
            existing is not None
            and existing.tree_size == head.tree_size
            and existing.root_hash == head.root_hash
        ):
            return
        raise IntegrityError(
            f"{_OP_APPEND}: {self._err.uri(key)} already holds "
            + (
                f"a different head for tree size {head.tree_size} (root "
                f"{existing.root_hash}, not {head.root_hash}): two histories of the same log"
                if existing is not None
                else "something that is not a signed tree head"
            )
            + "; it is left as it is",
            operation=_OP_APPEND,
            **self._where(key),
            reason="anchor_conflict",
            tree_size=head.tree_size,
            root_hash=head.root_hash,
            existing_root_hash=existing.root_hash if existing is not None else None,
        )

    # -- reading ----------------------------------------------------------------------------------

    async def _get(self, operation: str, key: str) -> bytes:
        """The object at ``key``, refused unread past `MAX_LINE_BYTES`."""
        import obstore as obs

        with self._err.translated(operation, key):
            result = await obs.get_async(self._store, key)
            size = result.meta["size"]
            if size > MAX_LINE_BYTES:
                raise self._bad(
                    operation,
                    key,
                    f"is larger than {MAX_LINE_BYTES} bytes: not a signed tree head",
                    "object_too_large",
                    size=size,
                    limit=MAX_LINE_BYTES,
                )
            return bytes(await result.bytes_async())

    def _bad(
        self, operation: str, key: str, message: str, reason: str, **details: Any
    ) -> IntegrityError:
        return IntegrityError(
            f"{operation}: the anchor object {self._err.uri(key)} {message}",
            operation=operation,
            **self._where(key),
            reason=reason,
            **details,
        )

    def _refused(self, message: str, reason: str, **details: Any) -> NoReturn:
        raise ValidationError(
            f"{_OP_READ}: the anchor witness {self.describe()} {message}",
            operation=_OP_READ,
            **self._where(),
            reason=reason,
            **details,
        )

    async def _keys(self) -> list[str]:
        """Every anchor key, checked against the naming scheme and the limits."""
        import obstore as obs

        keys: list[str] = []
        total = 0
        with self._err.translated(_OP_READ, f"{_S3_DIR}/"):
            stream = obs.list(self._store, _S3_DIR, chunk_size=1000)
        while True:
            with self._err.translated(_OP_READ, f"{_S3_DIR}/"):
                try:
                    batch = await anext(stream)
                except StopAsyncIteration:
                    break
            for meta in batch:
                key = meta["path"]
                if not _S3_KEY_RE.fullmatch(key):
                    raise self._bad(
                        _OP_READ,
                        key,
                        "is not named like an anchor (anchors/<20 digits>-<16 hex>.json)",
                        "unexpected_object",
                    )
                if meta["size"] > MAX_LINE_BYTES:
                    raise self._bad(
                        _OP_READ,
                        key,
                        f"is larger than {MAX_LINE_BYTES} bytes: not a signed tree head",
                        "object_too_large",
                        size=meta["size"],
                        limit=MAX_LINE_BYTES,
                    )
                total += meta["size"]
                keys.append(key)
            if len(keys) > MAX_HEADS:
                self._refused(f"holds more than {MAX_HEADS} heads", "too_many_heads")
            if total > MAX_WITNESS_BYTES:
                self._refused(
                    f"holds more than {MAX_WITNESS_BYTES} bytes of heads",
                    "too_large",
                    size=total,
                    limit=MAX_WITNESS_BYTES,
                )
        return sorted(keys)

    async def _read_one(self, key: str) -> SignedTreeHead:
        data = await self._get(_OP_READ, key)
        try:
            head = _decode_head(data)
        except pydantic.ValidationError as exc:
            why = _why(exc)
            raise self._bad(
                _OP_READ, key, f"is not a signed tree head ({why})", "bad_object", cause=why
            ) from None
        if anchor_key(head) != key:
            raise self._bad(
                _OP_READ,
                key,
                f"holds the head of tree size {head.tree_size}, root {head.root_hash}: not "
                "the head its name says (it was moved or edited)",
                "key_mismatch",
                tree_size=head.tree_size,
                root_hash=head.root_hash,
            )
        return head

    async def read(self) -> list[SignedTreeHead]:
        keys = await self._keys()
        if not keys:
            raise NotFound(
                f"{_OP_READ}: no anchored heads at {self.describe()}",
                operation=_OP_READ,
                **self._where(),
                target=self.describe(),
                reason="no_anchors",
            )
        heads: list[SignedTreeHead] = []
        for start in range(0, len(keys), _S3_CONCURRENCY):
            window = keys[start : start + _S3_CONCURRENCY]
            results = await asyncio.gather(
                *(self._read_one(key) for key in window), return_exceptions=True
            )
            for result in results:  # the first failure in key order, so errors are stable
                if isinstance(result, BaseException):
                    raise result
                heads.append(result)
        return _collapse(heads)
