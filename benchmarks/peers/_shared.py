"""What every side of the peer comparison shares: the sizes, and the data each side writes
(the same labels, snapshot state, payloads and step function for strongroom and its peers)."""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "MLFLOW_STATUS",
    "PAYLOAD_SIZE",
    "PeerSizes",
    "Result",
    "chain_step",
    "labels",
    "payloads",
    "queries",
    "snapshot_state",
]

Result = dict[str, Any]
"""What one side of one workload returns: figures (floats) and notes, JSON-serialisable."""

PAYLOAD_SIZE = 4096

# strongroom run status -> MLflow run status (the run index population and its filters).
MLFLOW_STATUS = {
    "completed": "FINISHED",
    "running": "RUNNING",
    "pending": "SCHEDULED",
    "failed": "FAILED",
    "cancelled": "KILLED",
}


@dataclass(frozen=True)
class PeerSizes:
    """Every size of the comparison; each has a ``--NAME`` command-line flag."""

    reps: int = 3  # repetitions of every workload, sides alternating, order swapped each time
    runs: int = 1000  # runs created per repetition (create, 10 labels/tags, snapshot, complete)
    small_count: int = 1000  # distinct 4 KiB artifacts per mode (one call each; batched)
    small_batch: int = 100  # put_many batch size = files per MLflow log_artifacts folder
    chain_steps: int = 100  # steps of the durable chain
    large_files: int = 5  # random files put whole
    large_mib: int = 200  # size of each, MiB
    index_runs: int = 10_000  # runs in the run index (populated once, unmeasured)
    index_queries: int = 200  # measured filtered queries per repetition (after 10 warm-up)
    cli_runs: int = 50  # runs in the vault / experiment the CLI lists
    cli_repeats: int = 7  # whole-process timings per command (after one warm-up)
    log_lines: int = 20_000  # strongroom-only: log lines per batch size (benchmarks.log_append)
    latency_count: int = 300  # strongroom-only: create + snapshot iterations (run_latency)

    @classmethod
    def quick(cls) -> PeerSizes:
        """A smoke run (a few minutes, most of it the peers' start-up): figures indicative."""
        return cls(
            reps=1,
            runs=100,
            small_count=200,
            chain_steps=50,
            large_files=2,
            large_mib=32,
            index_runs=1000,
            index_queries=30,
            cli_runs=20,
            cli_repeats=3,
            log_lines=2000,
            latency_count=50,
        )

    def override(self, values: dict[str, int | None]) -> PeerSizes:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in values.items() if k in known and v is not None})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> PeerSizes:
        return cls().override(dict(data))


def labels(i: int) -> dict[str, str]:
    """The 10 metadata values of run ``i``: strongroom labels, MLflow tags."""
    return {f"key{k}": f"value {k} of run {i}" for k in range(10)}


def snapshot_state(i: int) -> dict[str, Any]:
    """A resumable state of about 1 KB of JSON (strongroom snapshot, MLflow ``log_dict``)."""
    return {
        "phase_history": [{"phase": "ingest", "status": "completed"}],
        "progress": {"steps_total": 4, "steps_completed": 1, "message": "ingest done"},
        "data": {
            "cursor": i,
            "source": f"s3://bucket/input/batch-{i:06}.jsonl",
            "segments": [
                {"id": f"seg-{k}", "chars": 100 + k, "done": k < 6, "lang": "fr"} for k in range(12)
            ],
        },
    }


def payloads(count: int) -> list[bytes]:
    """Distinct random 4 KiB payloads (no deduplication on either side)."""
    return [os.urandom(PAYLOAD_SIZE) for _ in range(count)]


def chain_step(i: int, previous: dict[str, Any]) -> dict[str, Any]:
    """The work of step ``i`` of the durable chain: a small JSON value from the previous one."""
    return {"step": i, "value": previous["value"] + 1, "note": "x" * 100}


def queries(count: int, seed: int = 21) -> list[tuple[str, str]]:
    """(status, project) filters drawn from the run index's own distributions (fixed seed):
    both sides ask the same questions in the same order."""
    from benchmarks.run_index import PROJECT_WEIGHTS, PROJECTS, STATUS_WEIGHTS

    rng = random.Random(seed)
    statuses = [s.value for s in STATUS_WEIGHTS]
    status_weights = list(STATUS_WEIGHTS.values())
    return [
        (
            rng.choices(statuses, weights=status_weights)[0],
            rng.choices(PROJECTS, weights=PROJECT_WEIGHTS)[0],
        )
        for _ in range(count)
    ]
