"""Benchmark 1: large artifact throughput (MiB/s) for put, get_file and streaming.

The source is one pre-generated random buffer of ``chunk_mib`` MiB yielded again and again,
so producing bytes costs nothing on either side. Each round uses a fresh vault and, in the
same directory tree, the baseline:

- put      strongroom ``artifacts.put_stream`` from an async generator of the chunks, against
           one thread doing SHA-256 + ``os.write`` of the same chunks, ``fsync``, rename and a
           directory ``fsync``;
- get_file strongroom ``artifacts.get_file`` (verified, atomic, fsynced copy), against read +
           SHA-256 + write + ``fsync`` + rename of the baseline's file;
- stream   ``async for`` over ``artifacts.stream``, against read + SHA-256.

Reads hit a warm page cache for both (the file was just written). Target: ≥ 0.8× baseline.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

from benchmarks._common import MIB, Context, Figure, Target, fsync_dir, median, write_all
from strongroom import Vault

NAME = "artifact_large"
TITLE = "Large artifact put/get throughput"

_TARGET = Target("relative", 0.8)


# -- baseline ----------------------------------------------------------------------------------


def raw_put(directory: Path, chunk: bytes, count: int) -> Path:
    """Hash and write ``count`` copies of ``chunk``, fsync, publish under the digest."""
    hasher = hashlib.sha256()
    temp = directory / "put.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for _ in range(count):
            hasher.update(chunk)
            write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    final = directory / hasher.hexdigest()
    os.rename(temp, final)
    fsync_dir(directory)
    return final


def raw_copy_verified(source: Path, dest: Path, chunk_size: int) -> int:
    """Read + hash + write + fsync + rename; the digest is checked against the file name."""
    hasher = hashlib.sha256()
    temp = dest.with_name(dest.name + ".tmp")
    size = 0
    fd_in = os.open(source, os.O_RDONLY)
    try:
        fd_out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while data := os.read(fd_in, chunk_size):
                hasher.update(data)
                write_all(fd_out, data)
                size += len(data)
            os.fsync(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    if hasher.hexdigest() != source.name:
        raise RuntimeError("baseline copy: digest mismatch")
    os.replace(temp, dest)
    return size


def raw_read_verified(source: Path, chunk_size: int) -> int:
    hasher = hashlib.sha256()
    size = 0
    fd = os.open(source, os.O_RDONLY)
    try:
        while data := os.read(fd, chunk_size):
            hasher.update(data)
            size += len(data)
    finally:
        os.close(fd)
    if hasher.hexdigest() != source.name:
        raise RuntimeError("baseline read: digest mismatch")
    return size


# -- strongroom --------------------------------------------------------------------------------


async def _chunks(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield chunk


async def _round(
    ctx: Context, chunk: bytes, count: int, first_raw: bool, seconds: dict[str, list[float]]
) -> None:
    size = len(chunk) * count
    with ctx.fresh_dir(NAME) as root:
        raw_dir = root / "raw"
        raw_dir.mkdir()
        async with await Vault.open(root / "vault") as vault:
            run = await vault.runs.create(project="bench", purpose="large artifact benchmark")

            # put
            raw_file: Path | None = None
            artifact_id = ""
            for side in ("raw", "sr") if first_raw else ("sr", "raw"):
                start = time.perf_counter()
                if side == "raw":
                    raw_file = raw_put(raw_dir, chunk, count)
                else:
                    meta = await vault.artifacts.put_stream(
                        run.run_id, _chunks(chunk, count), name="large.bin"
                    )
                    artifact_id = meta.artifact_id
                seconds[f"put/{side}"].append(time.perf_counter() - start)
            assert raw_file is not None

            # get_file
            for side in ("raw", "sr") if first_raw else ("sr", "raw"):
                dest = root / f"out-{side}.bin"
                start = time.perf_counter()
                if side == "raw":
                    got = raw_copy_verified(raw_file, dest, len(chunk))
                else:
                    await vault.artifacts.get_file(artifact_id, dest)
                    got = dest.stat().st_size
                seconds[f"get_file/{side}"].append(time.perf_counter() - start)
                if got != size:
                    raise RuntimeError(f"get_file ({side}): {got} bytes, expected {size}")
                dest.unlink()

            # stream
            for side in ("raw", "sr") if first_raw else ("sr", "raw"):
                start = time.perf_counter()
                if side == "raw":
                    got = raw_read_verified(raw_file, len(chunk))
                else:
                    got = 0
                    async for piece in await vault.artifacts.stream(artifact_id):
                        got += len(piece)
                seconds[f"stream/{side}"].append(time.perf_counter() - start)
                if got != size:
                    raise RuntimeError(f"stream ({side}): {got} bytes, expected {size}")


async def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    chunk = os.urandom(sizes.chunk_mib * MIB)
    count = max(1, sizes.artifact_mib // sizes.chunk_mib)
    total_mib = count * sizes.chunk_mib

    # Warm-up: imports, thread pools, first-use paths; not measured.
    await _round(ctx, chunk, 2, True, defaultdict(list))

    seconds: dict[str, list[float]] = defaultdict(list)
    for i in range(sizes.artifact_repeats):
        await _round(ctx, chunk, count, i % 2 == 0, seconds)

    def rate(key: str) -> float:
        return total_mib / median(seconds[key])

    label = f"{total_mib:,} MiB" if total_mib < 1024 else f"{total_mib / 1024:g} GiB"
    rounds = "round" if sizes.artifact_repeats == 1 else "rounds"
    common = f"median of {sizes.artifact_repeats} {rounds}; {sizes.chunk_mib} MiB chunks"
    return [
        Figure(
            benchmark=NAME,
            name=f"put_stream {label}",
            unit="MiB/s",
            value=rate("put/sr"),
            baseline=rate("put/raw"),
            baseline_name="SHA-256 + write + fsync + rename + dir fsync, one thread",
            higher_is_better=True,
            target=_TARGET,
            samples=sizes.artifact_repeats,
            notes=common,
        ),
        Figure(
            benchmark=NAME,
            name=f"get_file {label}",
            unit="MiB/s",
            value=rate("get_file/sr"),
            baseline=rate("get_file/raw"),
            baseline_name="read + SHA-256 + write + fsync + rename",
            higher_is_better=True,
            target=_TARGET,
            samples=sizes.artifact_repeats,
            notes=common + "; warm page cache",
        ),
        Figure(
            benchmark=NAME,
            name=f"stream {label}",
            unit="MiB/s",
            value=rate("stream/sr"),
            baseline=rate("stream/raw"),
            baseline_name="read + SHA-256",
            higher_is_better=True,
            target=_TARGET,
            samples=sizes.artifact_repeats,
            notes=common + "; warm page cache",
        ),
    ]
