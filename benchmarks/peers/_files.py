"""The large-file references beside ``artifacts.put_file``: the shell's ``cp`` + ``sync FILE``
(fsync of the copy, as strongroom fsyncs its blob) + ``sha256sum``, one process per file; and
Python's ``hashlib`` alone over the same file (``hashlib.file_digest``: read + SHA-256, no
write), the "hash rate" the issue sets ``put_file`` against. The files are in the page cache
for every side (written just before the workload, read by every repetition)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from benchmarks.peers._shared import PeerSizes, Result

__all__ = ["generate", "hashlib_rate", "shell_copy"]

_CHUNK = 8 * 1024 * 1024
# cp, then fsync the copy (coreutils sync FILE), then hash: in series, as a script would.
_SCRIPT = 'cp -- "$1" "$2" && sync -- "$2" && sha256sum -- "$2" > /dev/null'


def generate(directory: Path, sizes: PeerSizes) -> list[Path]:
    """``large_files`` files of ``large_mib`` MiB of random bytes each (not timed)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(sizes.large_files):
        path = directory / f"large-{n}.bin"
        with path.open("wb") as handle:
            for _ in range(sizes.large_mib * 1024 * 1024 // _CHUNK):
                handle.write(os.urandom(_CHUNK))
            rest = sizes.large_mib * 1024 * 1024 % _CHUNK
            if rest:
                handle.write(os.urandom(rest))
        paths.append(path)
    return paths


def shell_copy(work: Path, files: list[Path]) -> Result:
    """``sh -c 'cp SRC DST && sync DST && sha256sum DST'`` per file."""
    out = work / "copies"
    out.mkdir(parents=True, exist_ok=True)
    warm = work / "warmup.bin"
    warm.write_bytes(b"w" * (1 << 20))
    subprocess.run(["sh", "-c", _SCRIPT, "sh", str(warm), str(out / "warm")], check=True)
    total = 0
    start = time.perf_counter()
    for path in files:
        subprocess.run(["sh", "-c", _SCRIPT, "sh", str(path), str(out / path.name)], check=True)
        total += path.stat().st_size
    seconds = time.perf_counter() - start
    return {"mb_s": total / seconds / 1e6, "bytes": total, "seconds": seconds}


def hashlib_rate(work: Path, files: list[Path]) -> Result:
    """``hashlib.file_digest(f, "sha256")`` per file: read + hash, nothing written."""
    total = 0
    start = time.perf_counter()
    for path in files:
        with path.open("rb") as handle:
            hashlib.file_digest(handle, "sha256")
        total += path.stat().st_size
    seconds = time.perf_counter() - start
    return {"mb_s": total / seconds / 1e6, "bytes": total, "seconds": seconds}
