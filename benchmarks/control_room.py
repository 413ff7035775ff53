"""Benchmark: the Control Room (``strongroom serve``) over a large vault (issue 18).

Targets: the runs page's server time p95 ≤ 100 ms at 1,000,000 runs; a run with 1,000 steps
renders in ≤ 300 ms; 50 concurrent clients on the index for 30 s with 0 errors; previewing
(and downloading) a 2 GiB artifact keeps the server's memory flat.

Standalone (not part of ``python -m benchmarks.run``)::

    python -m benchmarks.control_room [--runs 1000000] [--postgres URL] [--reuse DIR]
        [--keep] [--workdir DIR] [--requests 200] [--step-requests 50] [--kind-seconds 60]
        [--steps 1000] [--revisions 1000] [--artifact-mib 2048] [--previews 100]
        [--clients 50] [--duration 30]
        [--loader auto|wrk|httpx] [--only PART] [--json FILE]

Options:

- ``--runs N``: runs bulk-inserted into the vault (default 1,000,000: 6 minutes on SQLite on
  a quiet 2-vCPU VM, 16 on a loaded one; 4-5 on PostgreSQL).
- ``--postgres URL``: measure a PostgreSQL vault at URL (an EMPTY database, e.g. made with
  ``createdb bench_cr``; blobs go to a local directory) instead of the embedded SQLite one.
- ``--reuse DIR``: measure again a vault an earlier ``--keep`` run left in DIR (SQLite: the
  vault directory; with ``--postgres``: the directory holding ``blobs/``, the database being
  already filled): nothing is inserted, fixtures are made only if missing.
- ``--keep``: keep the vault (and the 2 GiB artifact) for ``--reuse``; its path is printed.
- ``--workdir DIR``: where the temporary vault is made (default: the system temp directory).
- ``--requests N``: measured sequential requests per index query kind (default 200, after
  10 unmeasured ones); ``--step-requests N``: per run page kind (default 50, after 5);
  ``--kind-seconds S``: a kind stops after S seconds (default 60) once it has 20 samples
  (the sample count is printed).
- ``--steps N`` / ``--revisions N``: steps of the big playbook run (default 1,000) and the
  snapshot revisions its "as left by the orchestrator" variant holds (default 1,000).
- ``--artifact-mib N``: size of the large JSONL artifact (default 2048 = 2 GiB; 0 skips the
  memory benchmark); ``--previews N``: preview requests of each kind (default 100).
- ``--clients N`` / ``--duration S``: the load test (default 50 clients for 30 s);
  ``--loader``: ``wrk`` (Debian's package; ``auto`` uses it when on PATH) or ``httpx`` (an
  asyncio + httpx load generator in this file).
- ``--only PART`` (repeatable): measure only ``index``, ``steps``, ``load`` or ``memory``.
- ``--json FILE``: also write every figure as JSON.

What it does:

1. Builds the vault: opened (and so migrated) by strongroom first, then ``--runs`` runs
   bulk-inserted by ``benchmarks.run_labels.populate`` (``benchmarks.run_index``'s
   distributions: 5 statuses, 20 projects, 50 actors over 180 days, plus the labels ``lang``
   and ``batch`` and the metric ``cost``; 5,000 rows per transaction through SQLAlchemy Core,
   then ANALYZE / VACUUM ANALYZE). Then, through the vault's API, the fixtures (project
   ``control-room-bench``): a playbook run whose only snapshot holds a ``--steps`` plan
   (``steps-plan``); the same plan as the orchestrator leaves it (``steps-full``:
   ``--revisions`` snapshot revisions, the latest the final plan, two log lines and one
   output artifact per step); a run holding a ``--artifact-mib`` JSONL artifact streamed in
   with ``artifacts.put_stream`` from a generator of 4 MiB chunks (never all in memory).
   The plan: a root step, 8 parallel chains with a cross-chain edge every 16 steps, a fan-in
   step, then a short tail chain; each step starts when its upstream steps are finished,
   runs 1-40 s.
2. Starts a real ``strongroom serve --port 0`` subprocess on it (uvicorn, one process) and
   reads the bound port from its start-up line.
3. Index: ``--requests`` sequential GETs over one keep-alive loopback connection (httpx) per
   kind, the filter values drawn per request from the population's distributions:
   ``/runs`` unfiltered, by status, by project, by label, status + project + label, and
   ``/api/v1/runs`` unfiltered, by label, its second page (cursor) and ``/api/v1/runs/counts``.
   The page runs the capped COUNT + page of 50 + one capped COUNT per status (the status
   counts). Client-side latency over loopback is an upper bound of the server time.
4. Run pages: ``/runs/{id}`` of both step runs and ``/api/v1/runs/{id}/steps``.
5. Load: ``--clients`` concurrent keep-alive clients on ``/runs`` (unfiltered) for
   ``--duration`` seconds, then the same on a mix of filtered index URLs; requests/s, latency
   percentiles, socket errors (wrk: ``-t2 --timeout 10s``, a request slower than 10 s is an
   error) and non-2xx answers. The load generator shares the machine's cores.
6. Memory: the server's RSS (psutil, sampled every 10 ms) before, at peak and after
   ``--previews`` GETs of ``/artifacts/{id}`` and of ``/api/v1/artifacts/{id}/preview``, then
   during a full download of ``/api/v1/artifacts/{id}/content`` (streamed, read in 1 MiB
   pieces and discarded, SHA-256 computed client-side and compared with the recorded one).
   "Flat" = peak - before ≤ 64 MiB (3 % of 2 GiB).

Prints a table of figures with MET / MISSED per target; benchmarks report, they do not assert
(the exit status is 0 whatever the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import psutil
from sqlalchemy import create_engine, text

from benchmarks._common import MIB, median, percentile
from benchmarks.run_index import PROJECT_WEIGHTS, PROJECTS, STATUS_WEIGHTS
from benchmarks.run_labels import LANG_WEIGHTS, LANGS, populate
from strongroom import Vault

PROJECT: Final = "control-room-bench"
WARMUP: Final = 10
STEP_WARMUP: Final = 5
CHUNK: Final = 4 * MIB
LINE: Final = 1024  # bytes per JSONL line of the large artifact
FLAT_MIB: Final = 64
INDEX_P95_MS: Final = 100.0
STEPS_P95_MS: Final = 300.0
LANES: Final = 8
TAIL: Final = 6
MIN_SAMPLES: Final = 20
PARTS: Final = ("index", "steps", "load", "memory")
STARTED_LINE: Final = re.compile(r"Control Room on http://(\S+?):(\d+)/")


# -- results ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the printed table."""

    name: str
    figure: str
    target: str = ""
    met: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    backend: str
    runs: int
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        verdict = "" if row.met is None else ("MET" if row.met else "MISSED")
        print(f"  {row.name:<44} {row.figure:<52} {row.target:<18} {verdict}", flush=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "runs": self.runs,
            "facts": self.facts,
            "rows": [
                {"name": r.name, "figure": r.figure, "target": r.target, "met": r.met, **r.data}
                for r in self.rows
            ],
        }


def _latency_row(name: str, samples: list[float], target_ms: float | None, **extra: Any) -> Row:
    p50, p95 = median(samples), percentile(samples, 95)
    size = extra.pop("bytes", None)
    figure = f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {max(samples):7.1f} ms  n {len(samples)}"
    if size is not None:
        figure += f"  {size / 1024:,.0f} KiB"
    return Row(
        name,
        figure,
        target=f"p95 ≤ {target_ms:g} ms" if target_ms is not None else "",
        met=None if target_ms is None else p95 <= target_ms,
        data={
            "p50_ms": p50,
            "p95_ms": p95,
            "max_ms": max(samples),
            "n": len(samples),
            "bytes": size,
            **extra,
        },
    )


# -- the vault --------------------------------------------------------------------------------


@dataclass
class Place:
    """Where the vault is: its URL, blobs URL, and the directory to remove afterwards."""

    url: str
    blobs_url: str | None
    cli: list[str]  # the global options naming it for `strongroom`
    scratch: Path | None  # removed at the end (None: kept)


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _held_runs(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM runs")).scalar_one())
    finally:
        engine.dispose()


async def build_vault(args: argparse.Namespace, report: Report) -> Place:
    """The vault, filled with ``--runs`` runs (or reused as it is)."""
    if args.postgres:
        root = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(dir=args.workdir))
        blobs = root / "blobs"
        place = Place(
            args.postgres,
            str(blobs),
            ["--vault", args.postgres, "--blobs", str(blobs)],
            None if args.reuse or args.keep else root,
        )
        db_url = _sqlalchemy_url(args.postgres)
    else:
        root = (
            Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(dir=args.workdir)) / "vault"
        )
        place = Place(
            str(root),
            None,
            ["--vault", str(root)],
            None if args.reuse or args.keep else root.parent,
        )
        db_url = f"sqlite+pysqlite:///{root / 'vault.db'}"
    print(f"vault: {place.url}" + (f" (blobs {place.blobs_url})" if place.blobs_url else ""))
    vault = await Vault.open(place.url, blobs_url=place.blobs_url)
    await vault.close()
    held = _held_runs(db_url)
    if args.reuse:
        build_s = 0.0
        print(f"reusing {held:,} runs")
    else:
        if held:
            raise SystemExit(f"{place.url} already holds {held:,} runs: give an empty database")
        print(f"inserting {args.runs:,} runs ...", flush=True)
        engine = create_engine(db_url)
        try:
            build_s = populate(engine, args.runs)
        finally:
            engine.dispose()
        held = _held_runs(db_url)
        print(f"  {held:,} runs in {build_s:.0f} s", flush=True)
    report.runs = held
    report.facts["build_seconds"] = round(build_s, 1)
    return place


def _plan(n: int, artifacts: dict[str, tuple[str, str]] | None) -> dict[str, Any]:
    """A playbook plan of ``n`` steps (all completed), as the orchestrator persists it:
    ``root`` -> 8 chains (each step also waits for the previous step of the next chain every
    16 steps) -> ``merge`` -> a tail chain."""
    rng = random.Random(18)
    body = n - 2 - TAIL
    per_lane = body // LANES
    extra = body - per_lane * LANES
    upstream: dict[str, list[str]] = {"root": []}
    lanes: list[list[str]] = []
    for lane in range(LANES):
        length = per_lane + (1 if lane < extra else 0)
        lanes.append([f"lane{lane}-step{k:03}" for k in range(length)])
    for lane, ids in enumerate(lanes):
        for k, step_id in enumerate(ids):
            ups = [ids[k - 1] if k else "root"]
            other = lanes[(lane + 1) % LANES]
            if k and k % 16 == 0 and k - 1 < len(other):
                ups.append(other[k - 1])
            upstream[step_id] = ups
    upstream["merge"] = [ids[-1] for ids in lanes if ids]
    previous = "merge"
    for k in range(TAIL):
        upstream[f"publish{k}"] = [previous]
        previous = f"publish{k}"
    # Execution order: round k starts step k of every chain (a topological order).
    order = ["root"]
    for k in range(per_lane + 1):
        order += [ids[k] for ids in lanes if k < len(ids)]
    order += ["merge"] + [f"publish{k}" for k in range(TAIL)]
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    finished: dict[str, datetime] = {}
    steps: dict[str, Any] = {}
    for step_id in order:
        start = max((finished[u] for u in upstream[step_id]), default=t0)
        start += timedelta(milliseconds=rng.uniform(5, 200))
        end = start + timedelta(seconds=rng.uniform(1, 40))
        finished[step_id] = end
        tool = ["fetch", "clean", "translate", "qa", "export"][len(step_id) % 5]
        output = artifacts.get(step_id) if artifacts else None
        steps[step_id] = {
            "step_id": step_id,
            "status": "completed",
            "tool_id": tool,
            "tool_version": "1.4.2",
            "manifest_digest": "sha256:" + hashlib.sha256(tool.encode()).hexdigest(),
            "tool_ref": f"{tool}@1.4.2",
            "upstream": upstream[step_id],
            "starts": 1,
            "request_id": f"req-{step_id}",
            "started_at": start.isoformat(),
            "finished_at": end.isoformat(),
            "output_artifact_id": output[0] if output else None,
            "output_sha256": output[1] if output else None,
            "error": None,
        }
    return {
        "playbook_ref": "bench@1.0.0",
        "playbook_id": "bench",
        "playbook_version": "1.0.0",
        "playbook_digest": "sha256:" + "1" * 64,
        "max_parallel": LANES,
        "steps": steps,
        "order": order,
    }


async def _fixture(vault: Vault, name: str) -> str | None:
    page = await vault.runs.list(project=PROJECT, labels={"bench": name}, limit=1)
    return page.items[0].run_id if page.items else None


async def _steps_run(vault: Vault, n: int, revisions: int, full: bool) -> str:
    name = f"steps-{'full' if full else 'plan'}-{n}" + (f"-r{revisions}" if full else "")
    found = await _fixture(vault, name)
    if found:
        return found
    print(f"making the fixture {name} ...", flush=True)
    run = await vault.runs.create(
        project=PROJECT, purpose=f"a playbook run with {n} steps", labels={"bench": name}
    )
    run_id = run.run_id
    await vault.runs.start(run_id)
    artifacts: dict[str, tuple[str, str]] | None = None
    plan = _plan(n, None)
    if full:
        artifacts = {}
        ids = list(plan["order"])
        for start in range(0, len(ids), 100):
            batch = ids[start : start + 100]
            stored = await vault.artifacts.put_many(
                run_id,
                [
                    (
                        json.dumps({"step": s, "rows": k, "ok": True}).encode(),
                        {"format": "json", "role": "phase_output", "step": s, "name": f"{s}.json"},
                    )
                    for k, s in enumerate(batch)
                ],
            )
            artifacts.update(
                {s: (a.artifact_id, a.sha256) for s, a in zip(batch, stored, strict=True)}
            )
        plan = _plan(n, artifacts)
        lines: list[dict[str, Any]] = []
        for s in ids:
            step = plan["steps"][s]
            lines.append(
                {
                    "event": "step_started",
                    "phase": s,
                    "message": f"{s} started",
                    "timestamp": step["started_at"],
                }
            )
            lines.append(
                {
                    "event": "step_completed",
                    "phase": s,
                    "message": f"{s} completed",
                    "timestamp": step["finished_at"],
                }
            )
        for start in range(0, len(lines), 500):
            await vault.logs.append_many(run_id, lines[start : start + 500])
    state = {"data": {"orchestrator": plan}}
    for revision in range(revisions if full else 1):
        # Earlier revisions hold the final plan too: the page reads only the latest one's
        # blob; the others are history rows (content-addressed: one blob for all of them).
        await vault.snapshots.save(run_id, state, expected_revision=revision)
    await vault.runs.complete(run_id)
    return run_id


def _jsonl_chunks(total: int) -> Iterator[bytes]:
    """``total`` bytes (a multiple of `LINE`) of JSONL, in `CHUNK`-sized pieces."""
    filler = ("lorem ipsum dolor sit amet " * 64).encode()
    lines_per_chunk = CHUNK // LINE
    n_lines = total // LINE
    for first in range(0, n_lines, lines_per_chunk):
        out = bytearray()
        for i in range(first, min(n_lines, first + lines_per_chunk)):
            head = b'{"id": %10d, "name": "row %10d", "amount": %4d, "text": "' % (i, i, i % 1000)
            pad = LINE - len(head) - 3
            out += head + filler[:pad] + b'"}\n'
        yield bytes(out)


async def _large_artifact(vault: Vault, mib: int) -> tuple[str, str, int]:
    name = f"artifact-{mib}m"
    found = await _fixture(vault, name)
    if found:
        listed = await vault.artifacts.list({"run_id": found, "limit": 10})
        if listed:
            meta = listed[0]
            return meta.artifact_id, meta.sha256, meta.size_bytes
    print(f"streaming in a {mib} MiB JSONL artifact ...", flush=True)
    run = await vault.runs.create(
        project=PROJECT, purpose=f"a run with a {mib} MiB artifact", labels={"bench": name}
    )
    await vault.runs.start(run.run_id)

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in _jsonl_chunks(mib * MIB):
            yield chunk

    started = time.perf_counter()
    meta = await vault.artifacts.put_stream(
        run.run_id, chunks(), format="jsonl", name="big.jsonl", role="export"
    )
    print(f"  stored in {time.perf_counter() - started:.0f} s", flush=True)
    await vault.runs.complete(run.run_id)
    return meta.artifact_id, meta.sha256, meta.size_bytes


@dataclass
class Fixtures:
    plan_run: str
    full_run: str
    artifact: tuple[str, str, int] | None
    steps: int


async def make_fixtures(place: Place, args: argparse.Namespace) -> Fixtures:
    async with await Vault.open(place.url, blobs_url=place.blobs_url) as vault:
        plan_run = await _steps_run(vault, args.steps, args.revisions, full=False)
        full_run = await _steps_run(vault, args.steps, args.revisions, full=True)
        artifact = await _large_artifact(vault, args.artifact_mib) if args.artifact_mib else None
    return Fixtures(plan_run, full_run, artifact, args.steps)


# -- the server -------------------------------------------------------------------------------


class Server:
    """``strongroom serve --port 0`` as a subprocess; its stderr is drained in a thread."""

    def __init__(self, place: Place) -> None:
        exe = Path(sys.executable).with_name("strongroom")
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "strongroom.cli"]
        self.process = subprocess.Popen(
            [*command, *place.cli, "serve", "--host", "127.0.0.1", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._bound = threading.Event()
        self.port = 0
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._bound.wait(120) or not self.port:
            self.stop()
            raise SystemExit("strongroom serve did not start:\n" + "".join(self.lines[-30:]))
        self.base = f"http://127.0.0.1:{self.port}"
        self.ps = psutil.Process(self.process.pid)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = STARTED_LINE.search(line)
            if found and not self.port:
                self.port = int(found.group(2))
                self._bound.set()
        self._bound.set()

    def rss(self) -> int:
        total = self.ps.memory_info().rss
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RssSampler:
    """The server's RSS every 10 ms while in its ``with`` block."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.server.rss())
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self.peak = self.server.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss())


# -- sequential latency -----------------------------------------------------------------------


def _timed(
    client: httpx.Client,
    url: Callable[[], str],
    n: int,
    warmup: int,
    budget: float = float("inf"),
) -> tuple[list[float], int]:
    """Latencies (ms) of ``n`` sequential GETs after ``warmup`` (fewer, but at least
    `MIN_SAMPLES`, when they take more than ``budget`` seconds); also the last body's size.
    Any answer but 200 stops the benchmark (the figures would mean nothing)."""
    samples: list[float] = []
    size = 0
    deadline = time.perf_counter() + budget
    for k in range(warmup + n):
        if len(samples) >= MIN_SAMPLES and time.perf_counter() > deadline:
            break
        target = url()
        t0 = time.perf_counter()
        response = client.get(target)
        body = response.content
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {target}: {response.status_code} {body[:500]!r}")
        size = len(body)
        if k >= warmup:
            samples.append(elapsed)
    return samples, size


def _constant(url: str) -> Callable[[], str]:
    return lambda: url


def _choose_status(rng: random.Random) -> str:
    return rng.choices([s.value for s in STATUS_WEIGHTS], weights=list(STATUS_WEIGHTS.values()))[0]


def _choose_project(rng: random.Random) -> str:
    return rng.choices(PROJECTS, weights=PROJECT_WEIGHTS)[0]


def _choose_lang(rng: random.Random) -> str:
    return rng.choices(LANGS, weights=LANG_WEIGHTS)[0]


def measure_index(client: httpx.Client, report: Report, n: int, budget: float) -> None:
    rng = random.Random(18)
    first = client.get("/api/v1/runs").json()
    cursor = first.get("next_cursor")
    kinds: list[tuple[str, Callable[[], str], float | None]] = [
        ("/runs (no filter)", lambda: "/runs", INDEX_P95_MS),
        ("/runs?status=S", lambda: f"/runs?status={_choose_status(rng)}", INDEX_P95_MS),
        ("/runs?project=P", lambda: f"/runs?project={_choose_project(rng)}", INDEX_P95_MS),
        ("/runs?label=lang=L", lambda: f"/runs?label=lang%3D{_choose_lang(rng)}", INDEX_P95_MS),
        (
            "/runs?status&project&label",
            lambda: (
                f"/runs?status={_choose_status(rng)}&project={_choose_project(rng)}"
                f"&label=lang%3D{_choose_lang(rng)}"
            ),
            INDEX_P95_MS,
        ),
        ("/api/v1/runs (no filter)", lambda: "/api/v1/runs", None),
        (
            "/api/v1/runs?label=lang=L",
            lambda: f"/api/v1/runs?label=lang%3D{_choose_lang(rng)}",
            None,
        ),
        (
            "/api/v1/runs page 2 (cursor)",
            lambda: "/api/v1/runs" + (f"?cursor={cursor}" if cursor else ""),
            None,
        ),
        ("/api/v1/runs/counts", lambda: "/api/v1/runs/counts", None),
    ]
    for name, url, target in kinds:
        samples, size = _timed(client, url, n, WARMUP, budget)
        report.add(_latency_row(name, samples, target, bytes=size))


def measure_steps(
    client: httpx.Client, report: Report, fixtures: Fixtures, n: int, budget: float
) -> None:
    for name, run_id in (("plan", fixtures.plan_run), ("full", fixtures.full_run)):
        samples, size = _timed(client, _constant(f"/runs/{run_id}"), n, STEP_WARMUP, budget)
        report.add(
            _latency_row(
                f"/runs/{{id}} {fixtures.steps:,} steps ({name})", samples, STEPS_P95_MS, bytes=size
            )
        )
    samples, size = _timed(
        client, lambda: f"/api/v1/runs/{fixtures.full_run}/steps", n, STEP_WARMUP, budget
    )
    report.add(
        _latency_row(f"/api/v1/runs/{{id}}/steps ({fixtures.steps:,})", samples, None, bytes=size)
    )


# -- load -------------------------------------------------------------------------------------


_WRK_UNITS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(value: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not found:
        raise ValueError(f"wrk latency {value!r}")
    return float(found.group(1)) * _WRK_UNITS[found.group(2)]


def _wrk(base: str, paths: list[str], clients: int, seconds: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        listed = ", ".join(json.dumps(p) for p in paths)
        script.write(
            f"local paths = {{{listed}}}\nlocal i = 0\n"
            "request = function()\n  i = i + 1\n"
            "  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n"
        )
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{clients}",
                f"-d{seconds}s",
                "--latency",
                "--timeout",
                "10s",
                "-s",
                script.name,
                base + paths[0],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    result: dict[str, Any] = {"raw": out}
    for pct in ("50", "75", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if found:
            result[f"p{pct}_ms"] = _wrk_ms(found.group(1))
    found = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if found:
        result["mean_ms"], result["max_ms"] = _wrk_ms(found.group(1)), _wrk_ms(found.group(3))
    found = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    assert found, out
    result["requests"] = int(found.group(1))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    result["rps"] = float(rps.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    result["socket_errors"] = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    result["timeouts"] = int(socket_errors.group(4)) if socket_errors else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    return result


def _httpx_load(base: str, paths: list[str], clients: int, seconds: int) -> dict[str, Any]:
    """The asyncio + httpx equivalent of wrk: ``clients`` tasks, each its own keep-alive
    connection, GET in a loop until the deadline."""

    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        non_2xx = 0
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:

            async def worker(k: int) -> None:
                nonlocal errors, non_2xx
                i = k
                while time.perf_counter() < deadline:
                    i += 1
                    t0 = time.perf_counter()
                    try:
                        response = await client.get(paths[i % len(paths)])
                    except httpx.HTTPError:
                        errors += 1
                        continue
                    latencies.append((time.perf_counter() - t0) * 1000)
                    if response.status_code >= 300:
                        non_2xx += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(clients)))
            elapsed = time.perf_counter() - started
        return {
            "requests": len(latencies),
            "rps": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50),
            "p75_ms": percentile(latencies, 75),
            "p90_ms": percentile(latencies, 90),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies),
            "socket_errors": errors,
            "non_2xx": non_2xx,
        }

    return asyncio.run(main())


def measure_load(server: Server, report: Report, args: argparse.Namespace) -> None:
    loader = args.loader
    if loader == "auto":
        loader = "wrk" if shutil.which("wrk") else "httpx"
    report.facts["loader"] = loader
    rng = random.Random(7)
    mixed = ["/runs"] + [
        f"/runs?status={_choose_status(rng)}&project={_choose_project(rng)}"
        if k % 3 == 0
        else f"/runs?label=lang%3D{_choose_lang(rng)}"
        if k % 3 == 1
        else f"/runs?project={_choose_project(rng)}"
        for k in range(29)
    ]
    for name, paths in (("/runs", ["/runs"]), ("/runs + 29 filtered URLs", mixed)):
        server.ps.cpu_percent(None)
        with RssSampler(server) as rss:
            run = _wrk if loader == "wrk" else _httpx_load
            result = run(server.base, paths, args.clients, args.duration)
        cpu = server.ps.cpu_percent(None)
        errors = result["socket_errors"] + result["non_2xx"]
        timeouts = result.get("timeouts", 0)
        if timeouts and timeouts >= result["requests"]:
            figure = f"all {timeouts} requests timed out (> 10 s)"
        else:
            figure = (
                f"{result['rps']:.1f} req/s, p50 {result['p50_ms']:.0f} / p90 "
                f"{result['p90_ms']:.0f} / p99 {result['p99_ms']:.0f} ms, errors {errors}"
            )
        data = {k: v for k, v in result.items() if k != "raw"}
        data.update(server_cpu_percent=cpu, server_rss_peak_mib=rss.peak / MIB)
        report.add(
            Row(
                f"load {args.clients} clients {args.duration}s {name}",
                figure,
                target="0 errors",
                met=errors == 0 and result["requests"] > 0,
                data=data,
            )
        )
        if "raw" in result:
            report.facts[f"wrk {name}"] = result["raw"]


# -- memory -----------------------------------------------------------------------------------


def measure_memory(
    client: httpx.Client, server: Server, report: Report, fixtures: Fixtures, n: int
) -> None:
    assert fixtures.artifact is not None
    artifact_id, sha256, size = fixtures.artifact
    mib = size / MIB
    before = server.rss()
    with RssSampler(server) as page_rss:
        page, _ = _timed(client, lambda: f"/artifacts/{artifact_id}", n, 2)
    with RssSampler(server) as api_rss:
        api, _ = _timed(client, lambda: f"/api/v1/artifacts/{artifact_id}/preview", n, 2)
    report.add(_latency_row(f"/artifacts/{{id}} ({mib:,.0f} MiB JSONL)", page, None))
    report.add(_latency_row("/api/v1/artifacts/{id}/preview", api, None))
    preview = client.get(f"/api/v1/artifacts/{artifact_id}/preview").json()
    after_previews = server.rss()
    digest = hashlib.sha256()
    got = 0
    with RssSampler(server) as download_rss:
        t0 = time.perf_counter()
        with client.stream("GET", f"/api/v1/artifacts/{artifact_id}/content") as response:
            status = response.status_code
            for piece in response.iter_bytes(MIB):
                digest.update(piece)
                got += len(piece)
        seconds = time.perf_counter() - t0
    after = server.rss()
    same = status == 200 and got == size and digest.hexdigest() == sha256.removeprefix("sha256:")
    peak = max(page_rss.peak, api_rss.peak, download_rss.peak)
    growth = (peak - before) / MIB
    report.add(
        Row(
            "download /api/v1/artifacts/{id}/content",
            f"{got / MIB:,.0f} MiB in {seconds:.1f} s = {got / MIB / seconds:,.0f} MiB/s, "
            f"sha256 {'matches' if same else 'DIFFERS'}",
            target="same digest",
            met=same,
            data={"seconds": seconds, "bytes": got, "digest_matches": same},
        )
    )
    report.add(
        Row(
            "server RSS (preview, previews, download)",
            f"before {before / MIB:.0f} MiB, peaks {page_rss.peak / MIB:.0f} / "
            f"{api_rss.peak / MIB:.0f} / {download_rss.peak / MIB:.0f} MiB, "
            f"after {after / MIB:.0f} MiB",
            target=f"peak-before ≤ {FLAT_MIB} MiB",
            met=growth <= FLAT_MIB,
            data={
                "before_mib": before / MIB,
                "peak_page_mib": page_rss.peak / MIB,
                "peak_preview_api_mib": api_rss.peak / MIB,
                "after_previews_mib": after_previews / MIB,
                "peak_download_mib": download_rss.peak / MIB,
                "after_mib": after / MIB,
                "growth_mib": growth,
                "preview_rows": len(preview.get("rows") or []),
                "preview_bytes_read": preview.get("bytes_read"),
            },
        )
    )


# -- main -------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in load],
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": sys.version.split()[0],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="URL of an EMPTY PostgreSQL database to fill.")
    parser.add_argument("--reuse", help="Measure the vault an earlier --keep left here.")
    parser.add_argument("--keep", action="store_true", help="Keep the vault for --reuse.")
    parser.add_argument("--workdir", default=None, help="Where the temporary vault is made.")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--step-requests", type=int, default=50)
    parser.add_argument("--kind-seconds", type=float, default=60.0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--revisions", type=int, default=1000)
    parser.add_argument("--artifact-mib", type=int, default=2048)
    parser.add_argument("--previews", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--loader", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--only", action="append", choices=PARTS, help="Measure only this.")
    parser.add_argument("--json", help="Also write the figures as JSON here.")
    args = parser.parse_args()
    if args.steps < LANES + 2 + TAIL:
        parser.error(f"--steps must be at least {LANES + 2 + TAIL}")

    report = Report("postgresql" if args.postgres else "sqlite", args.runs)
    report.facts["machine"] = _machine()
    place = asyncio.run(build_vault(args, report))
    server: Server | None = None
    try:
        fixtures = asyncio.run(make_fixtures(place, args))
        server = Server(place)
        report.facts["load_average_start"] = report.facts["machine"]["load_average"]
        print(
            f"\n{report.backend}, {report.runs:,} runs, server pid {server.process.pid} on "
            f"{server.base}; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        parts = set(args.only or PARTS)
        with httpx.Client(base_url=server.base, timeout=120) as client:
            if "index" in parts:
                measure_index(client, report, args.requests, args.kind_seconds)
            if "steps" in parts:
                measure_steps(client, report, fixtures, args.step_requests, args.kind_seconds)
            if "load" in parts:
                measure_load(server, report, args)
            if "memory" in parts and fixtures.artifact is not None:
                measure_memory(client, server, report, fixtures, args.previews)
        report.facts["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        problems = [line for line in server.lines if "Traceback" in line or "ERROR" in line]
        report.facts["server_error_lines"] = len(problems)
        print(
            f"\nload average at the end: {report.facts['load_average_end']}; "
            f"server error lines: {len(problems)}"
        )
    finally:
        if server is not None:
            server.stop()
        if args.json:
            Path(args.json).write_text(json.dumps(report.as_dict(), indent=2, default=str))
        if place.scratch is not None:
            shutil.rmtree(place.scratch, ignore_errors=True)
        elif not args.reuse:
            kept = Path(place.blobs_url).parent if place.blobs_url else Path(place.url)
            print(f"kept: --reuse {kept}")


if __name__ == "__main__":
    main()
