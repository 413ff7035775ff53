"""Low-level file-system helpers shared by the local blob store, bundles, the sandbox and the
commands that read or write a file the user names.

The user's files: `open_regular_file` and `read_regular_file` read only a regular file (a
FIFO, device, socket or directory is refused before anything blocks on it), and
`output_path` / `check_output_file` resolve where ``-o PATH`` writes and refuse to replace
anything but a regular file. A refusal is a `FileRefused`, an `OSError` that
`strongroom.errors.map_os_errors` turns into a ``validation_error`` carrying its ``reason``
(this module sits below `strongroom.errors` and cannot raise its classes itself)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "DEFAULT_VAULT_URL",
    "FileRefused",
    "check_output_file",
    "file_kind",
    "fsync_dir",
    "open_regular_file",
    "output_path",
    "read_regular_file",
    "remove_tree",
]

DEFAULT_VAULT_URL = "./.strongroom"
"""The vault of a command or `Vault.open` given none: ``.strongroom`` in the current directory
(here, below everything else, so the CLI's start-up can name it without importing the vault)."""


class FileRefused(OSError):
    """A path strongroom will not read or write as a file. ``reason``: ``not_a_regular_file``,
    ``too_large``, ``not_a_directory`` or ``missing_directory``; ``details``: more context
    (``file_type``, ``limit``). Raised inside `strongroom.errors.map_os_errors`, it becomes a
    `strongroom.errors.ValidationError` with that reason and those details."""

    def __init__(self, message: str, *, path: str, reason: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.strongroom_reason = reason
        self.details = details

    def __str__(self) -> str:
        return self.message


_KINDS = (
    (stat.S_ISREG, "regular file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISLNK, "symbolic link"),
)


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: regular file, directory, FIFO (named pipe)..."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "special file"


def _not_regular(path: str | os.PathLike[str], mode: int, doing: str) -> FileRefused:
    kind = file_kind(mode)
    return FileRefused(
        f"{os.fspath(path)} is a {kind}, not a regular file: {doing}",
        path=os.fspath(path),
        reason="not_a_regular_file",
        file_type=kind,
    )


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading in binary mode if it is a regular file (symbolic links
    followed); `FileRefused` (``not_a_regular_file``) for a FIFO, device, socket or
    directory, checked before it is opened and again on the open descriptor, and opened
    non-blocking: a FIFO with no writer never blocks the caller. Other failures are the
    usual `OSError`s (`FileNotFoundError`, `PermissionError`)."""
    doing = "strongroom reads only regular files"
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode, doing)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)  # swapped for something else since the stat above?
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, info.st_mode, doing)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """The bytes of a regular file (`open_regular_file`) of at most ``max_bytes``;
    `FileRefused` (``too_large``, ``limit``) for a larger one, read no further than that."""
    with open_regular_file(path) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileRefused(
            f"{os.fspath(path)} is larger than the {max_bytes:,} bytes it may have",
            path=os.fspath(path),
            reason="too_large",
            limit=max_bytes,
        )
    return data


def check_output_file(path: str | os.PathLike[str]) -> None:
    """Refuse (`FileRefused`, ``not_a_regular_file``) to write ``path`` unless it is absent
    or a regular file: a device, FIFO, socket or directory is never replaced or written
    into. A symbolic link is judged by what it points to (a dangling one counts as absent:
    the link itself is replaced)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode, "strongroom writes only regular files")


def output_path(target: str, default_name: str) -> Path:
    """Where ``-o TARGET`` writes a file whose own name is ``default_name``.

    ``TARGET`` ending in ``/`` is a directory, created (with its parents) if missing; an
    existing directory is one too; the file is ``default_name`` inside it. Otherwise
    ``TARGET`` is the file itself, and its directory must exist (`FileRefused`,
    ``missing_directory``, saying to end the path with ``/`` to mean a new directory).
    Whatever is there must be a regular file or nothing (`check_output_file`)."""
    path = Path(target)
    if target.endswith(("/", os.sep)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise FileRefused(
                f"{target} is not a directory (a trailing / means a directory)",
                path=target,
                reason="not_a_directory",
            ) from None
        path = path / default_name
    else:
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.stat(path).st_mode):
                path = path / default_name
        parent = path.parent
        if not parent.is_dir():
            raise FileRefused(
                f"directory {parent} does not exist: create it first (mkdir -p {parent}), or "
                "end the path with / to write into a new directory of that name",
                path=str(parent),
                reason="missing_directory",
            )
    check_output_file(path)
    return path


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a new, renamed or linked name) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: str | os.PathLike[str]) -> bool:
    """Remove ``path`` and everything under it, whatever its depth, width or permissions;
    True if nothing is left.

    Made for trees a sandboxed tool left behind (after every process of the tool is dead):
    iterative, so a 100,000-deep tree cannot exhaust the recursion limit as
    `shutil.rmtree` does; relative to one directory descriptor at a time, so a path longer
    than ``PATH_MAX`` and the open-files limit do not matter; never follows a symbolic link;
    a directory the tool made unreadable is made readable first. What cannot be removed
    (another owner's file on a non-root run, say) is skipped, never retried forever.
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return True
    except OSError:
        # Not a directory (or a link to one): remove the name itself.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return not os.path.lexists(path)
    names: list[str] = []  # the path from ``path`` down to ``fd``
    stuck: set[tuple[int, int]] = set()  # directories that could not be emptied
    try:
        while True:
            child = _first_subdirectory(fd, stuck)
            if child is not None:
                with contextlib.suppress(OSError):
                    os.chmod(child, 0o700, dir_fd=fd)
                try:
                    down = os.open(child, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    stuck.add(_identity(fd, child))
                    continue
                os.close(fd)
                fd = down
                names.append(child)
                continue
            if not names:
                break
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = up
            name = names.pop()
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                stuck.add(_identity(fd, name))
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(path)
    return not os.path.lexists(path)


def _identity(dir_fd: int, name: str) -> tuple[int, int]:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return (-1, -1)  # gone meanwhile: nothing to skip
    return info.st_dev, info.st_ino


def _first_subdirectory(fd: int, stuck: set[tuple[int, int]]) -> str | None:
    """Unlink every non-directory in ``fd``; the name of a subdirectory still to empty."""
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) not in stuck:
                    return entry.name
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.name, dir_fd=fd)
    return None
