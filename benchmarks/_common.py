"""What every benchmark shares: sizes, figures and targets, temp vault directories, timing
statistics and the raw (standard library only) I/O the baselines are made of."""

from __future__ import annotations

import math
import os
import resource
import shutil
import sqlite3
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from benchmarks._backends import Backend, EmbeddedBackend, VaultSpace

__all__ = [
    "MIB",
    "Context",
    "Figure",
    "Sizes",
    "Target",
    "cpu_seconds",
    "fsync_dir",
    "median",
    "number",
    "percentile",
    "proc_value",
    "raw_sqlite",
    "write_all",
    "write_file_durable",
]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """Every size a benchmark uses; each has a ``--NAME`` command-line override."""

    artifact_mib: int = 1024  # size of the large artifact (benchmark 1)
    chunk_mib: int = 8  # chunk size of the source stream (benchmark 1)
    artifact_repeats: int = 3  # measured rounds of benchmark 1 (each: put, get_file, stream)
    small_count: int = 2000  # 4 KiB artifacts per mode (benchmark 2)
    small_batch: int = 100  # put_many batch size and baseline SQLite batch (benchmark 2)
    latency_count: int = 300  # measured create+snapshot iterations (benchmark 3)
    index_runs: int = 100_000  # runs in the run index (benchmark 4)
    index_queries: int = 200  # measured filtered queries, page 1 and page 2 (benchmark 4)
    search_queries: int = 50  # measured purpose text searches (benchmark 4; each scans all runs)
    insert_sample: int = 1000  # runs inserted one by one through insert_run (benchmark 4)
    log_lines: int = 20_000  # lines per batch size (benchmark 5)
    sandbox_runs: int = 100  # measured no-op tool invocations (benchmark 6)
    orchestrator_steps: int = 100  # steps of the stub-runner chain (benchmark 7)
    orchestrator_resume_steps: int = 10_000  # steps of the resumed run, all but 1 done (7)
    orchestrator_repeats: int = 5  # measured stub runs and resumes (benchmark 7)
    verify_records: int = 1_000_000  # bound artifact records in the verified vault (8)
    verify_audit: int = 1_000_000  # audit entries in it (benchmark 8; also 1/10 of both)
    verify_blobs: int = 2000  # 256 KiB blobs for verify's blob rate (benchmark 8)

    @classmethod
    def quick(cls) -> Sizes:
        """Small sizes for a smoke run (about a minute): the figures are only indicative."""
        return cls(
            artifact_mib=64,
            artifact_repeats=1,
            small_count=300,
            latency_count=50,
            index_runs=10_000,
            index_queries=50,
            search_queries=20,
            insert_sample=200,
            log_lines=3000,
            sandbox_runs=50,
            orchestrator_resume_steps=2000,
            orchestrator_repeats=2,
            verify_records=20_000,
            verify_audit=20_000,
            verify_blobs=50,
        )

    def override(self, values: dict[str, int | None]) -> Sizes:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in values.items() if k in known and v is not None})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """What the issue asks for: ``relative`` = at least ``value`` × the baseline figure;
    ``at_least`` / ``at_most`` = an absolute bound on the strongroom figure."""

    kind: Literal["relative", "at_least", "at_most"]
    value: float

    def met(self, figure: Figure) -> bool | None:
        if self.kind == "relative":
            ratio = figure.speed_vs_baseline
            return None if ratio is None else ratio >= self.value
        if self.kind == "at_least":
            return figure.value >= self.value
        return figure.value <= self.value

    def describe(self, unit: str) -> str:
        if self.kind == "relative":
            return f"≥ {self.value:g}× baseline"
        sign = "≥" if self.kind == "at_least" else "≤"
        return f"{sign} {number(self.value)} {unit}"


@dataclass
class Figure:
    """One measured figure of strongroom beside its baseline from the same run."""

    benchmark: str
    name: str
    unit: str
    value: float
    higher_is_better: bool
    backend: str = "embedded"  # set by the runner
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    samples: int = 0
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def speed_vs_baseline(self) -> float | None:
        """How fast strongroom is relative to the baseline: 1.0 = as fast, 0.5 = half as fast
        (for a latency: twice the time), whatever the unit."""
        if self.baseline is None or self.baseline <= 0 or self.value <= 0:
            return None
        if self.higher_is_better:
            return self.value / self.baseline
        return self.baseline / self.value

    @property
    def target_met(self) -> bool | None:
        return None if self.target is None else self.target.met(self)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["speed_vs_baseline"] = self.speed_vs_baseline
        data["target"] = (
            None
            if self.target is None
            else {
                "kind": self.target.kind,
                "value": self.target.value,
                "text": self.target.describe(self.unit),
                "met": self.target_met,
            }
        )
        return data


@dataclass
class Context:
    """Sizes, the backend under test and the directory under which each benchmark makes its
    fresh temp vaults (and, for the embedded backend, their databases and blobs)."""

    sizes: Sizes
    workdir: Path
    keep: bool = False  # keep temp directories (and databases) for inspection (--keep)
    backend: Backend = field(default_factory=EmbeddedBackend)

    @contextmanager
    def fresh_vault(self, label: str) -> Iterator[VaultSpace]:
        """A fresh place for one vault on the backend under test (a new directory, and on
        postgres-s3 a new database and bucket), removed afterwards; open the vault with
        ``space.open_vault()``."""
        with self.fresh_dir(label) as root, self.backend.space(root, keep=self.keep) as space:
            yield space

    @contextmanager
    def fresh_dir(self, label: str) -> Iterator[Path]:
        """A new empty directory under the work directory, removed afterwards."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.workdir))
        try:
            yield path
        finally:
            if not self.keep:
                _remove_tree(path)


def _remove_tree(path: Path) -> None:
    # Blob files are read-only (0444) but their directories are not, so rmtree copes.
    shutil.rmtree(path)


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds every process has used since boot, CPU seconds this process and its
    finished children have used: a benchmark's own side processes, verify's worker, tools)."""
    busy = 0.0
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: everything but idle and iowait
        busy = (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def proc_value(path: str, key: str) -> str:
    """The value of ``key`` in a ``key: value`` file such as /proc/cpuinfo ("" if absent)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return ""


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# -- raw I/O for the baselines -----------------------------------------------------------------


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durable(path: str | Path, data: bytes) -> None:
    """Create ``path`` with ``data`` and fsync it (the file, not its directory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_sqlite(path: str | Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with the pragmas strongroom's SQLite store uses (WAL,
    synchronous=NORMAL, foreign keys on), in autocommit mode: callers write BEGIN/COMMIT."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn
