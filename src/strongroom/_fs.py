"""Low-level file-system helpers shared by the local blob store, bundles and the sandbox."""

from __future__ import annotations

import contextlib
import os
import stat

__all__ = ["fsync_dir", "remove_tree"]

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
