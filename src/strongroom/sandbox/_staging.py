"""The write quota: everything a tool writes lands on one size- and inode-limited tmpfs,
and what it wrote to its write paths is copied out after it exits.

Run by the bootstrap's supervisor (outside the tool's confinement) before it forks the tool:

1. `enter` gives the supervisor a mount namespace of its own (inside a user namespace when
   not root; mounts made here are private, never seen by the host), mounts a tmpfs of
   ``bytes`` and ``files`` over the invocation's staging folder (the runner's temporary
   folder holding the scratch folder), and an overlay over each write path whose upper
   layer lives on that tmpfs. The tool, forked after, sees its scratch folder and its write
   paths as usual; every byte and every name it creates counts against the one quota, and
   past it the kernel answers ``ENOSPC``. The overlays' upper layers are outside what
   Landlock lets the tool reach.
2. `finish`, once the tool's process has exited: measures what the tool used (``statvfs``
   of the tmpfs: the kernel's figures), unmounts the overlays so the real write paths show
   again, and merges each upper layer into its write path in a child that confines itself
   first (Landlock: read the upper layers, write the write paths only; never a symbolic
   link followed), so a name the tool planted cannot steer the copy anywhere else.
   Whiteouts (names the tool deleted) and opaque folders (replaced ones) are applied;
   sockets, FIFOs and devices are not copied; set-id bits are dropped.

A tool killed before it exits (timeout, cancel, a runner that died) leaves nothing in its
write paths: the copy-out happens only when the tool's process ended by itself.
Standard library only (imported by the bootstrap script).
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs every invocation milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

#: Names the tmpfs holds besides the tool's: its root, the scratch folder, the staging
#: folders and, per overlay, an upper, a work folder and the overlay's own work entries.
_OVERHEAD_INODES = 8
_PER_OVERLAY_INODES = 6
#: Folders deeper than this in an upper layer are not copied out (the invocation fails).
MAX_MERGE_DEPTH = 256
_OPAQUE = "user.overlay.opaque"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _escape(path: str) -> str:
    """A path as an overlay mount option value (``\\``, ``,`` and ``:`` escaped)."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


class Stage:
    """One invocation's staging: the tmpfs and the overlays on it. (Plain classes here, not
    dataclasses: importing ``dataclasses`` would cost every invocation milliseconds.)"""

    def __init__(self, base: str, byte_cap: int, file_cap: int) -> None:
        self.base = base
        self.bytes = byte_cap
        self.files = file_cap
        self.overlays: list[tuple[str, str]] = []  # (write path, upper layer)
        self.baseline_bytes = 0
        self.baseline_files = 0


def _used(base: str) -> tuple[int, int]:
    info = os.statvfs(base)
    return (info.f_blocks - info.f_bfree) * info.f_frsize, info.f_files - info.f_ffree


def _write_map(name: str, text: str) -> None:
    with open(f"/proc/self/{name}", "w") as handle:
        handle.write(text)


def enter(spec: dict[str, Any], libc: Any, as_root: bool) -> Stage:
    """Set up the staging tmpfs and the overlays (see the module docstring)."""
    if as_root:
        _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:
        uid, gid = os.geteuid(), os.getegid()
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
        _write_map("setgroups", "deny")
        _write_map("uid_map", f"{uid} {uid} 1")
        _write_map("gid_map", f"{gid} {gid} 1")
    # Nothing mounted here may propagate back to the host.
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    base = str(spec["base"])
    paths = [str(p) for p in spec.get("write_paths", [])]
    byte_cap, file_cap = int(spec["bytes"]), int(spec["files"])
    inodes = file_cap + _OVERHEAD_INODES + _PER_OVERLAY_INODES * len(paths)
    options = f"size={byte_cap},nr_inodes={inodes},mode=0700".encode()
    _check(
        libc.mount(b"tmpfs", base.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options),
        f"mount a {byte_cap}-byte tmpfs on {base}",
    )
    stage = Stage(base, byte_cap, file_cap)
    os.mkdir(os.path.join(base, "scratch"), 0o700)
    os.mkdir(os.path.join(base, ".stage"), 0o700)
    for index, path in enumerate(paths):
        upper = os.path.join(base, ".stage", f"upper{index}")
        work = os.path.join(base, ".stage", f"work{index}")
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
        # userxattr: the overlay's marks are user.overlay.* (readable by the confined merge)
        # and it creates no redirects, so an upper layer is a plain tree plus whiteouts.
        data = (
            f"lowerdir={_escape(path)},upperdir={_escape(upper)},workdir={_escape(work)},userxattr"
        )
        _check(
            libc.mount(b"overlay", path.encode(), b"overlay", MS_NOSUID | MS_NODEV, data.encode()),
            f"mount a staging overlay on {path}",
        )
        stage.overlays.append((path, upper))
    stage.baseline_bytes, stage.baseline_files = _used(base)
    # Now that the staging's own names are counted: exactly ``files`` more for the tool.
    options = f"size={byte_cap},nr_inodes={file_cap + stage.baseline_files}".encode()
    _check(
        libc.mount(None, base.encode(), None, MS_REMOUNT | MS_NOSUID | MS_NODEV, options),
        f"set the staging tmpfs's limits on {base}",
    )
    return stage


def probe(libc: Any) -> bool:
    """Whether a child of this process can set up the write quota's mounts (a tmpfs and an
    overlay), tried in a throwaway folder."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="strongroom-probe-")
    try:
        os.mkdir(os.path.join(folder, "stage"))
        os.mkdir(os.path.join(folder, "lower"))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked child
            try:
                spec = {
                    "base": os.path.join(folder, "stage"),
                    "bytes": 1 << 20,
                    "files": 64,
                    "write_paths": [os.path.join(folder, "lower")],
                }
                enter(spec, libc, os.geteuid() == 0)
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def finish(
    stage: Stage,
    libc: Any,
    confine_merge: Callable[[list[str], list[str]], None],
    *,
    exited: bool,
) -> dict[str, Any]:
    """What the tool wrote (the kernel's figures) and what was copied out of it: only when
    the tool's process ``exited`` by itself (a killed tool leaves its write paths as they
    were). Never raises: a failure is reported under ``error``."""
    discarded = not exited and bool(stage.overlays)
    if not exited:
        stage.overlays.clear()
    try:
        report = _finish(stage, libc, confine_merge)
    except BaseException as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if discarded:  # the runner must not report a success whose outputs are gone
        report["discarded"] = True
    return report


def _finish(
    stage: Stage, libc: Any, confine_merge: Callable[[list[str], list[str]], None]
) -> dict[str, Any]:
    used_bytes, used_files = _used(stage.base)
    used_bytes = max(0, used_bytes - stage.baseline_bytes)
    used_files = max(0, used_files - stage.baseline_files)
    report: dict[str, Any] = {
        "bytes": used_bytes,
        "files": used_files,
        "bytes_limit": stage.bytes,
        "files_limit": stage.files,
        # Within a page of the size, or every name taken: the tool met its quota.
        "full": used_bytes + 4096 >= stage.bytes or used_files >= stage.files,
    }
    for path, _ in reversed(stage.overlays):
        _check(libc.umount2(path.encode(), MNT_DETACH), f"unmount the staging overlay on {path}")
    if stage.overlays:
        report["copied_out"] = _merge_in_child(stage, confine_merge)
    return report


def _merge_in_child(
    stage: Stage, confine_merge: Callable[[list[str], list[str]], None]
) -> dict[str, Any]:
    import contextlib  # here, not at the top: only an invocation with write paths pays them
    import json

    uppers = [upper for _, upper in stage.overlays]
    targets = [path for path, _ in stage.overlays]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        os.close(read_end)
        code = 0
        try:
            confine_merge(uppers, targets)
            totals = Totals(budget=stage.bytes)
            for path, upper in stage.overlays:
                merge_tree(upper, path, totals)
            result: dict[str, Any] = totals.as_dict()
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
            code = 1
        with contextlib.suppress(OSError):
            os.write(write_end, json.dumps(result).encode())
        os._exit(code)
    os.close(write_end)
    data = b""
    with contextlib.suppress(OSError):
        while len(data) < 65536 and (chunk := os.read(read_end, 65536)):
            data += chunk
    os.close(read_end)
    while True:
        try:
            os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    try:
        merged = json.loads(data)
    except ValueError:
        merged = None
    return merged if isinstance(merged, dict) else {"error": "the copy-out reported nothing"}


# -- the copy-out ----------------------------------------------------------------------------


class Totals:
    """What a copy-out did. ``skipped``: entries left out by design (FIFOs, sockets,
    devices); ``failed``: entries the copy could not write, or would not (too deep, over
    the quota): the invocation then fails."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget  # data bytes the copy-out may write (the quota)
        self.files = 0
        self.bytes = 0
        self.removed = 0
        self.skipped = 0
        self.skipped_examples: list[str] = []
        self.failed: list[str] = []

    def skip(self, what: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < 10:
            self.skipped_examples.append(what)

    def fail(self, what: str) -> None:
        if len(self.failed) < 10:
            self.failed.append(what)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "files": self.files,
            "bytes": self.bytes,
            "removed": self.removed,
            "skipped": self.skipped,
            "skipped_examples": self.skipped_examples,
        }
        if self.failed:
            found["error"] = "could not copy out: " + "; ".join(self.failed)
        return found


def _remove(name: str, dir_fd: int) -> None:
    """Remove ``name`` (a file, a link or a whole tree) from ``dir_fd``."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        _empty(name, dir_fd)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _empty(name: str, dir_fd: int) -> None:
    """Remove everything under the folder ``name`` of ``dir_fd``, iteratively (one open
    folder per level)."""
    stack = [(os.open(name, _DIR, dir_fd=dir_fd), name)]
    try:
        while stack:
            fd = stack[-1][0]
            child = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        child = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if child is not None:
                stack.append((os.open(child, _DIR, dir_fd=fd), child))
                continue
            os.close(fd)
            _, emptied = stack.pop()
            if stack:
                os.rmdir(emptied, dir_fd=stack[-1][0])
    finally:
        for fd, _ in stack:
            os.close(fd)


def _copy_file(name: str, src_fd: int, dst_fd: int, info: os.stat_result) -> int:
    """Copy one file under a temporary name, then rename it over ``name``: a copy cut short
    never leaves a half-written file under the real name. (A new inode, as the overlay's
    own copy-up gives: hard links to the old file keep the old content.)"""
    import contextlib

    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    temporary = f".strongroom-copy-{os.urandom(8).hex()}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        target = os.open(temporary, flags, 0o600, dir_fd=dst_fd)
        try:
            copied = _copy_data(source, target, info.st_size)
            os.fchmod(target, stat.S_IMODE(info.st_mode) & 0o1777)  # no set-id bits
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(target)
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
            if stat.S_ISDIR(existing.st_mode):
                _remove(name, dst_fd)
        os.rename(temporary, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
        return copied
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dst_fd)
        raise
    finally:
        os.close(source)


def _copy_data(source: int, target: int, size: int) -> int:
    """Copy the data of ``source`` into ``target``, holes kept as holes: a sparse file costs
    the tmpfs only the blocks it holds, and must not cost the disk more (a 1 GiB file of one
    written byte, 100,000 times over, would otherwise become 100 TB of zeros). Returns the
    bytes of data copied (at most what the staging tmpfs held)."""
    import errno

    copied = position = 0
    while position < size:
        try:
            start = os.lseek(source, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole up to the end
                break
            raise
        end = os.lseek(source, start, os.SEEK_HOLE)
        offset = start
        while offset < end:
            chunk = os.pread(source, min(1 << 20, end - offset), offset)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                written = os.pwrite(target, view, offset)
                view = view[written:]
                offset += written
            copied += len(chunk)
        position = end
    os.ftruncate(target, size)  # the size, with the trailing hole, as the tool left it
    return copied


def merge_tree(upper: str, target: str, totals: Totals) -> None:
    """Apply one overlay's upper layer to the real folder it covered: depth first, one
    open folder pair per level (so width costs no descriptors), at most
    `MAX_MERGE_DEPTH` levels."""
    source = os.open(upper, _DIR)
    try:
        root = (source, os.open(target, _DIR), "")
    except BaseException:
        os.close(source)
        raise
    try:
        stack = [(*root, _merge_entries(*root, totals))]
    except BaseException:
        os.close(root[0])
        os.close(root[1])
        raise
    try:
        while stack:
            src_fd, dst_fd, where, pending = stack[-1]
            if not pending:
                os.close(src_fd)
                os.close(dst_fd)
                stack.pop()
                continue
            name = pending.pop()
            shown = f"{where}/{name}"[:200]
            if len(stack) > MAX_MERGE_DEPTH:
                totals.fail(f"{shown}: deeper than {MAX_MERGE_DEPTH} folders")
                continue
            try:
                sub = _enter_folder(name, src_fd, dst_fd)
            except OSError as exc:
                totals.fail(f"{shown}: {exc.strerror or exc}")
                continue
            stack.append((*sub, shown, _merge_entries(*sub, shown, totals)))
    finally:
        for src_fd, dst_fd, _, _ in stack:
            os.close(src_fd)
            os.close(dst_fd)


def _enter_folder(name: str, src_fd: int, dst_fd: int) -> tuple[int, int]:
    """Open the upper layer's folder ``name`` and its counterpart in the target, made (or,
    when the tool replaced the folder, emptied) first."""
    sub = os.open(name, _DIR, dir_fd=src_fd)
    try:
        try:
            opaque = os.getxattr(sub, _OPAQUE) == b"y"
        except OSError:
            opaque = False
        try:
            existing = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            _remove(name, dst_fd)
            existing = None
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=dst_fd)
        elif opaque:  # the tool replaced the folder: nothing of the old one stays
            _empty(name, dst_fd)
        dst_sub = os.open(name, _DIR, dir_fd=dst_fd)
        try:
            os.fchmod(dst_sub, stat.S_IMODE(os.fstat(sub).st_mode) & 0o1777)
        except BaseException:
            os.close(dst_sub)
            raise
    except BaseException:
        os.close(sub)
        raise
    return sub, dst_sub


def _merge_entries(src_fd: int, dst_fd: int, where: str, totals: Totals) -> list[str]:
    """Apply a folder's files, links and whiteouts; return its subfolders' names."""
    folders: list[str] = []
    with os.scandir(src_fd) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        shown = f"{where}/{name}"[:200]
        try:
            info = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                folders.append(name)
            elif stat.S_ISCHR(mode) and info.st_rdev == 0:  # a whiteout: the tool deleted it
                _remove(name, dst_fd)
                totals.removed += 1
            elif stat.S_ISREG(mode):
                # Hard links are copied as separate files: without a budget, one big file
                # linked 100,000 times (names cost the quota nothing) would be written
                # 100,000 times. The quota bounds what the copy-out writes, in total.
                held = info.st_blocks * 512
                if totals.budget is not None and totals.bytes + held > totals.budget:
                    totals.fail(f"{shown}: the copy-out would write more than the quota")
                    continue
                totals.bytes += _copy_file(name, src_fd, dst_fd, info)
                totals.files += 1
            elif stat.S_ISLNK(mode):
                link = os.readlink(name, dir_fd=src_fd)
                _remove(name, dst_fd)
                os.symlink(link, name, dir_fd=dst_fd)
                totals.files += 1
            else:
                totals.skip(f"{shown}: not a file, folder or link")
        except OSError as exc:
            totals.fail(f"{shown}: {exc.strerror or exc}")
    return folders


if __name__ == "__main__":  # pragma: no cover
    sys.exit("this module is imported by the sandbox bootstrap")
