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

- put_file strongroom ``artifacts.put_file`` of a 200 MiB file (``--artifact-mib`` if smaller;
           the file in the page cache, as one just produced), against ``hashlib.sha256`` of
           the same bytes already in memory: the rate of SHA-256 alone, so the figure says how
           close a durable put of a file comes to hashing it (issue 21: ≥ 0.8×). Alternated
           with the hash, in a fresh vault each round; the read + SHA-256 rate of the file is
           reported beside it.

On the postgres-s3 backend the blobs go to moto's S3 server and the baseline is plain
``obstore`` on the same bucket with the same part size (16 MiB) and parallelism (4 parts in
flight) as strongroom's S3 store: put = multipart upload of the chunks while hashing them, to
a staging key, then ``CopyObject`` to the key named by the digest and ``DeleteObject`` of the
staging key (what strongroom must do for a stream whose digest is unknown up front);
get_file = ``GetObject`` streamed through SHA-256 into a file + ``fsync`` + rename; stream =
``GetObject`` + SHA-256. moto (one Python process on the same machine) is the bottleneck of
both sides, so these figures say what strongroom adds on top of S3 requests, not what S3 does.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks._backends import VaultSpace
from benchmarks._common import MIB, Context, Figure, Target, fsync_dir, median, write_all

if TYPE_CHECKING:
    from obstore.store import S3Store

NAME = "artifact_large"
TITLE = "Large artifact put/get throughput"

_TARGET = Target("relative", 0.8)
_FILE_MIB = 200  # the put_file figure's file (issue 21 measured 5 x 200 MiB files)


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


class LocalRaw:
    """The baseline on the local disk (embedded backend)."""

    put_name = "SHA-256 + write + fsync + rename + dir fsync, one thread"
    get_name = "read + SHA-256 + write + fsync + rename"
    stream_name = "read + SHA-256"

    def __init__(self, directory: Path, chunk_size: int) -> None:
        self.directory = directory
        self.chunk_size = chunk_size
        directory.mkdir()

    def put(self, chunk: bytes, count: int) -> str:
        """Returns the file's path."""
        return str(raw_put(self.directory, chunk, count))

    def get_file(self, source: str, dest: Path) -> int:
        return raw_copy_verified(Path(source), dest, self.chunk_size)

    def stream(self, source: str) -> int:
        return raw_read_verified(Path(source), self.chunk_size)


# strongroom's S3 store defaults (``_s3.DEFAULT_PART_SIZE``, ``DEFAULT_MAX_CONCURRENCY``)
S3_PART_SIZE = 16 * MIB
S3_MAX_CONCURRENCY = 4


class S3Raw:
    """The baseline on S3 (postgres-s3 backend): plain obstore calls + hashlib."""

    put_name = (
        "obstore multipart upload + SHA-256 to a staging key, CopyObject to the digest key, "
        "DeleteObject"
    )
    get_name = "obstore GetObject + SHA-256 + write + fsync + rename"
    stream_name = "obstore GetObject + SHA-256"

    def __init__(self, store: S3Store, chunk_size: int) -> None:
        self.store = store
        self.chunk_size = chunk_size

    def put(self, chunk: bytes, count: int) -> str:
        """Returns the object's key (the digest)."""
        import obstore as obs

        hasher = hashlib.sha256()

        def source() -> Iterator[bytes]:
            for _ in range(count):
                hasher.update(chunk)
                yield chunk

        staging = f"tmp/{uuid.uuid4().hex}"
        obs.put(
            self.store,
            staging,
            source(),
            use_multipart=True,
            chunk_size=S3_PART_SIZE,
            max_concurrency=S3_MAX_CONCURRENCY,
        )
        digest = hasher.hexdigest()
        obs.copy(self.store, staging, digest)
        obs.delete(self.store, staging)
        return digest

    def get_file(self, key: str, dest: Path) -> int:
        import obstore as obs

        hasher = hashlib.sha256()
        temp = dest.with_name(dest.name + ".tmp")
        size = 0
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for piece in obs.get(self.store, key).stream(self.chunk_size):
                view = memoryview(piece)
                hasher.update(view)
                write_all(fd, view)
                size += len(view)
            os.fsync(fd)
        finally:
            os.close(fd)
        if hasher.hexdigest() != key:
            raise RuntimeError("baseline copy: digest mismatch")
        os.replace(temp, dest)
        return size

    def stream(self, key: str) -> int:
        import obstore as obs

        hasher = hashlib.sha256()
        size = 0
        for piece in obs.get(self.store, key).stream(self.chunk_size):
            view = memoryview(piece)
            hasher.update(view)
            size += len(view)
        if hasher.hexdigest() != key:
            raise RuntimeError("baseline read: digest mismatch")
        return size


def _raw_side(space: VaultSpace, chunk_size: int) -> LocalRaw | S3Raw:
    if space.s3 is not None:
        return S3Raw(space.s3.raw_store(), chunk_size)
    return LocalRaw(space.root / "raw", chunk_size)


# -- strongroom --------------------------------------------------------------------------------


async def _chunks(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield chunk


async def _round(
    ctx: Context, chunk: bytes, count: int, first_raw: bool, seconds: dict[str, list[float]]
) -> None:
    size = len(chunk) * count
    with ctx.fresh_vault(NAME) as space:
        root = space.root
        raw = _raw_side(space, len(chunk))
        async with await space.open_vault() as vault:
            run = await vault.runs.create(project="bench", purpose="large artifact benchmark")

            # put
            raw_file: str | None = None
            artifact_id = ""
            for side in ("raw", "sr") if first_raw else ("sr", "raw"):
                start = time.perf_counter()
                if side == "raw":
                    raw_file = raw.put(chunk, count)
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
                    got = raw.get_file(raw_file, dest)
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
                    got = raw.stream(raw_file)
                else:
                    got = 0
                    async for piece in await vault.artifacts.stream(artifact_id):
                        got += len(piece)
                seconds[f"stream/{side}"].append(time.perf_counter() - start)
                if got != size:
                    raise RuntimeError(f"stream ({side}): {got} bytes, expected {size}")


async def _put_file_rounds(
    ctx: Context, chunk: bytes, file_mib: int
) -> tuple[int, dict[str, list[float]]]:
    """put_file of one file against hashlib.sha256 of its bytes, alternated: the file's size
    and the seconds of each side (``put_file``, ``sha256``, and ``read+sha256``)."""
    count = max(1, file_mib // (len(chunk) // MIB))
    seconds: dict[str, list[float]] = defaultdict(list)
    with ctx.fresh_dir(f"{NAME}-file") as scratch:
        source = scratch / "source.bin"
        fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for _ in range(count):
                write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        data = source.read_bytes()
        digest = hashlib.sha256(data).hexdigest()  # also a warm-up of the hash

        async def put_file() -> None:
            with ctx.fresh_vault(NAME) as space:
                async with await space.open_vault() as vault:
                    run = await vault.runs.create(project="bench", purpose="put_file benchmark")
                    start = time.perf_counter()
                    meta = await vault.artifacts.put_file(run.run_id, source, name="large.bin")
                    seconds["put_file"].append(time.perf_counter() - start)
                    if meta.sha256 != digest or meta.size_bytes != len(data):
                        raise RuntimeError("put_file: stored another digest or size")

        def sha256() -> None:
            start = time.perf_counter()
            if hashlib.sha256(data).hexdigest() != digest:
                raise RuntimeError("sha256: another digest")
            seconds["sha256"].append(time.perf_counter() - start)
            start = time.perf_counter()
            raw_read_verified_as(source, digest, len(chunk))
            seconds["read+sha256"].append(time.perf_counter() - start)

        await put_file()  # warm-up: first-use paths, not measured
        seconds.clear()
        for i in range(ctx.sizes.artifact_repeats):
            if i % 2 == 0:
                sha256()
                await put_file()
            else:
                await put_file()
                sha256()
    return len(data), seconds


def raw_read_verified_as(source: Path, digest: str, chunk_size: int) -> None:
    hasher = hashlib.sha256()
    fd = os.open(source, os.O_RDONLY)
    try:
        while data := os.read(fd, chunk_size):
            hasher.update(data)
    finally:
        os.close(fd)
    if hasher.hexdigest() != digest:
        raise RuntimeError("baseline read: digest mismatch")


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
    raw: type[LocalRaw | S3Raw]
    if ctx.backend.name == "postgres-s3":
        raw, reads = S3Raw, "; moto on this machine bounds both sides"
        common += f"; {S3_PART_SIZE // MIB} MiB parts, {S3_MAX_CONCURRENCY} in flight"
    else:
        raw, reads = LocalRaw, "; warm page cache"
    file_bytes, file_seconds = await _put_file_rounds(
        ctx, chunk, min(_FILE_MIB, sizes.artifact_mib)
    )
    file_mib = file_bytes / MIB

    def file_rate(key: str) -> float:
        return file_mib / median(file_seconds[key])

    file_notes = (
        f"median of {sizes.artifact_repeats} {rounds}, alternated with the hash; the file in "
        f"the page cache; read + SHA-256 of the file: {file_rate('read+sha256'):,.0f} MiB/s"
    )
    if raw is S3Raw:
        file_notes += "; on S3 put_file is put_stream of the file's chunks (no target)"
    put_file = Figure(
        benchmark=NAME,
        name=f"put_file {file_mib:g} MiB",
        unit="MiB/s",
        value=file_rate("put_file"),
        baseline=file_rate("sha256"),
        baseline_name="hashlib.sha256 of the same bytes, in memory",
        higher_is_better=True,
        target=None if raw is S3Raw else _TARGET,
        samples=sizes.artifact_repeats,
        notes=file_notes,
        extra={"read_sha256_mib_s": file_rate("read+sha256")},
    )
    return [
        put_file,
        Figure(
            benchmark=NAME,
            name=f"put_stream {label}",
            unit="MiB/s",
            value=rate("put/sr"),
            baseline=rate("put/raw"),
            baseline_name=raw.put_name,
            higher_is_better=True,
            target=_TARGET,
            samples=sizes.artifact_repeats,
            notes=common + (reads if raw is S3Raw else ""),
        ),
        Figure(
            benchmark=NAME,
            name=f"get_file {label}",
            unit="MiB/s",
            value=rate("get_file/sr"),
            baseline=rate("get_file/raw"),
            baseline_name=raw.get_name,
            higher_is_better=True,
            target=_TARGET,
            samples=sizes.artifact_repeats,
            notes=common + reads,
        ),
        Figure(
            benchmark=NAME,
            name=f"stream {label}",
            unit="MiB/s",
            value=rate("stream/sr"),
            baseline=rate("stream/raw"),
            baseline_name=raw.stream_name,
            higher_is_better=True,
            target=_TARGET,
            samples=sizes.artifact_repeats,
            notes=common + reads,
        ),
    ]
