"""Large artifacts stream through the embedded vault in bounded memory: a 2 GiB artifact is
written from an async generator and read back as a stream and as a file, with the process's
resident memory sampled throughout."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from strongroom.vault import Vault

T = TypeVar("T")

MIB = 1024 * 1024
GIB = 1024 * MIB
SIZE = 2 * GIB
CHUNK = MIB
RSS_BUDGET = 200 * MIB
FREE_DISK_NEEDED = 6 * GIB  # the blob, the exported copy and its temp file, with headroom


class PeakRss:
    """Samples this process's resident set size in a background thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


async def measured(label: str, operation: Callable[[], Awaitable[T]]) -> T:
    """Run ``operation`` and fail if resident memory grew by the budget or more meanwhile."""
    started = time.monotonic()
    with PeakRss() as rss:
        result = await operation()
    seconds = time.monotonic() - started
    rate = SIZE / MIB / seconds
    print(f"{label}: {seconds:.1f}s ({rate:.0f} MiB/s), rss +{rss.growth / MIB:.0f} MiB")
    assert rss.growth < RSS_BUDGET, f"{label} grew RSS by {rss.growth / MIB:.0f} MiB"
    return result


class PseudoRandomSource:
    """Deterministic pseudo-random bytes, produced chunk by chunk and hashed as they go."""

    def __init__(self, size: int, seed: bytes = b"strongroom-large-data") -> None:
        self.size = size
        self.seed = seed
        self.hasher = hashlib.sha256()

    async def chunks(self) -> AsyncIterator[bytes]:
        for index, offset in enumerate(range(0, self.size, CHUNK)):
            length = min(CHUNK, self.size - offset)
            chunk = hashlib.shake_128(self.seed + index.to_bytes(8, "big")).digest(length)
            self.hasher.update(chunk)
            yield chunk


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextmanager
def removed_afterwards(*paths: Path) -> Iterator[None]:
    try:
        yield
    finally:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@pytest.mark.slow
async def test_two_gib_artifact_round_trips_in_bounded_memory(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < FREE_DISK_NEEDED:
        pytest.skip(
            f"needs {FREE_DISK_NEEDED / GIB:.0f} GiB free under {tmp_path}, "
            f"found {free / GIB:.1f} GiB"
        )
    vault_dir, exported = tmp_path / "vault", tmp_path / "exported.bin"
    with removed_afterwards(vault_dir, exported):
        async with await Vault.open(vault_dir) as vault:
            run = await vault.runs.create(project="large")
            source = PseudoRandomSource(SIZE)

            meta = await measured(
                "put_stream", lambda: vault.artifacts.put_stream(run.run_id, source.chunks())
            )
            expected = source.hasher.hexdigest()
            assert (meta.sha256, meta.size_bytes) == (expected, SIZE)

            async def read_stream() -> tuple[str, int, int]:
                hasher, size, largest = hashlib.sha256(), 0, 0
                async for chunk in await vault.artifacts.stream(meta.artifact_id):
                    hasher.update(chunk)
                    size += len(chunk)
                    largest = max(largest, len(chunk))
                return hasher.hexdigest(), size, largest

            streamed, streamed_size, largest_chunk = await measured("stream", read_stream)
            assert (streamed, streamed_size) == (expected, SIZE)
            assert largest_chunk <= 16 * MIB

            await measured("get_file", lambda: vault.artifacts.get_file(meta.artifact_id, exported))
            assert exported.stat().st_size == SIZE
            assert await asyncio.to_thread(file_sha256, exported) == expected
