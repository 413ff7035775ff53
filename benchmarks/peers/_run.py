"""The runner of ``python -m benchmarks.peers``: interleaves the sides of each workload, times
the command lines, prints the Markdown table and writes ``bench-results/peers.json``."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._common import cpu_seconds, number, proc_value
from benchmarks.peers._shared import PeerSizes, Result
from benchmarks.peers._worker import SIDES

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_OUTPUT = ROOT / "bench-results" / "peers.json"
DEFAULT_WORKDIR = ROOT / "bench-results" / "work"
PEERS = ("mlflow", "prefect", "dbos")
WORKLOADS = ("runs", "artifacts", "chain", "large", "index", "cli", "acceptance")
PEER_OF_SIDE = {"mlflow": "mlflow", "dbos": "dbos", "prefect": "prefect"}
# Telemetry off for every process (there is no network here anyway: a blocked call would only
# add noise). Durability settings are left at each tool's default.
QUIET_ENV = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def _clean_env() -> dict[str, str]:
    """This environment, telemetry off, without a vault or tracking store of the caller's
    (``STRONGROOM_*``, ``MLFLOW_TRACKING_URI``, ``PREFECT_API_URL``): each side names its own."""
    drop = ("STRONGROOM_", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **QUIET_ENV}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- running the sides ---------------------------------------------------------------------------


@dataclass
class Runner:
    sizes: PeerSizes
    root: Path  # this run's work directory
    logs: Path  # each side process's output, kept after the work directory is removed
    peers: tuple[str, ...]
    keep: bool
    timeout: float
    results: dict[str, dict[str, list[Result]]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # other processes' CPU share

    def sides(self, workload: str) -> list[str]:
        return [
            side
            for side in SIDES[workload]
            if side not in PEER_OF_SIDE or PEER_OF_SIDE[side] in self.peers
        ]

    def spawn(
        self, workload: str, side: str, work: Path, label: str, files: Sequence[Path] = ()
    ) -> Result:
        """Run one side in a fresh process; raises RuntimeError with the tail of its log."""
        logs = self.logs
        logs.mkdir(parents=True, exist_ok=True)
        request = logs / f"{workload}-{side}-{label}.request.json"
        result = logs / f"{workload}-{side}-{label}.result.json"
        log = logs / f"{workload}-{side}-{label}.log"
        request.write_text(
            json.dumps(
                {
                    "workload": workload,
                    "side": side,
                    "work": str(work),
                    "sizes": self.sizes.as_dict(),
                    "files": [str(p) for p in files],
                }
            )
        )
        env = _clean_env()
        with log.open("wb") as out:
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "benchmarks.peers._worker", str(request), str(result)],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"timed out after {self.timeout:.0f} s (log: {log})") from None
        if done.returncode != 0 or not result.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"exit {done.returncode}: {tail[0][:300]} (log: {log})")
        data: Result = json.loads(result.read_text())
        return data

    def interleave(
        self,
        workload: str,
        describe: Callable[[Result], str],
        files: Sequence[Path] = (),
        *,
        fixed_work: bool = False,
    ) -> None:
        """Every side once per repetition, the order reversed every other repetition; each
        side in a fresh process and (unless ``fixed_work``) a fresh work directory."""
        sides = self.sides(workload)
        store = self.results.setdefault(workload, {})
        failed = self.errors.setdefault(workload, {})
        cpu_before, wall_start = cpu_seconds(), time.perf_counter()
        for rep in range(self.sizes.reps):
            order = sides if rep % 2 == 0 else sides[::-1]
            for side in order:
                if side in failed:
                    continue
                work = (
                    self.root / workload / side
                    if fixed_work
                    else self.root / workload / f"rep{rep}" / side
                )
                try:
                    out = self.spawn(workload, side, work, f"rep{rep}", files)
                except RuntimeError as exc:
                    failed[side] = str(exc)
                    _log(f"[{workload}] rep {rep + 1}/{self.sizes.reps} {side}: FAILED {exc}")
                    continue
                finally:
                    if not fixed_work and not self.keep:
                        shutil.rmtree(work, ignore_errors=True)
                store.setdefault(side, []).append(out)
                _log(f"[{workload}] rep {rep + 1}/{self.sizes.reps} {side}: {describe(out)}")
        self.cpu[workload] = _others_share(cpu_before, cpu_seconds(), wall_start)

    def setup(self, workload: str, target: str) -> dict[str, Result]:
        """Run ``workload`` (a setup) once per side into ``root/target/side``."""
        done: dict[str, Result] = {}
        failed = self.errors.setdefault(target, {})
        for side in self.sides(workload):
            start = time.perf_counter()
            try:
                done[side] = self.spawn(workload, side, self.root / target / side, "setup")
            except RuntimeError as exc:
                failed[side] = f"setup: {exc}"
                _log(f"[{workload}] {side}: FAILED {exc}")
                continue
            _log(f"[{workload}] {side}: ready in {time.perf_counter() - start:.1f} s")
        return done


def _others_share(before: tuple[float, float], after: tuple[float, float], start: float) -> float:
    """Share of the machine's CPUs other processes used since ``start`` (our workers are our
    children and do not count)."""
    wall = time.perf_counter() - start
    others = (after[0] - before[0]) - (after[1] - before[1])
    return round(max(0.0, others) / (wall * (os.cpu_count() or 1)), 3) if wall > 0 else 0.0


# -- the command lines ---------------------------------------------------------------------------


@dataclass
class Command:
    key: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


def time_commands(commands: list[Command], repeats: int) -> dict[str, list[float] | str]:
    """Whole-process wall time of each command, ``repeats`` times after one warm-up, the
    commands taking turns (the order rotated each round). A command that fails is reported
    with its error and not run again."""
    times: dict[str, list[float] | str] = {c.key: [] for c in commands}
    for round_ in range(1 + repeats):
        k = round_ % len(commands)
        for command in commands[k:] + commands[:k]:
            if isinstance(times[command.key], str):
                continue
            start = time.perf_counter()
            done = subprocess.run(
                command.argv,
                cwd=command.cwd,
                env={**_clean_env(), **command.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                check=False,
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                lines = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                times[command.key] = f"exit {done.returncode}: {lines[0][:300]}"
                _log(f"[cli] {command.key}: FAILED {times[command.key]}")
                continue
            if round_ > 0:
                value = times[command.key]
                assert isinstance(value, list)
                value.append(elapsed * 1e3)
    for key, value in times.items():
        if isinstance(value, list) and value:
            _log(f"[cli] {key}: median {statistics.median(value):.0f} ms")
    return times


def cli(runner: Runner) -> dict[str, list[float] | str]:
    ready = runner.setup("cli-setup", "cli")
    bin_dir = Path(sys.executable).parent
    python = sys.executable
    commands: list[Command] = []
    if "strongroom" in ready:
        cwd = Path(ready["strongroom"]["cwd"])
        commands += [
            Command("strongroom runs list", [str(bin_dir / "strongroom"), "runs", "list"], cwd),
            Command("strongroom --help", [str(bin_dir / "strongroom"), "--help"], cwd),
        ]
    if "mlflow" in ready:
        env = {"MLFLOW_TRACKING_URI": ready["mlflow"]["tracking_uri"]}
        experiment = ready["mlflow"]["experiment_id"]
        mlflow = str(bin_dir / "mlflow")
        commands += [
            Command(
                "mlflow runs list",
                [mlflow, "runs", "list", "--experiment-id", experiment],
                runner.root / "cli" / "mlflow",
                env,
            ),
            Command("mlflow --help", [mlflow, "--help"], runner.root / "cli" / "mlflow", env),
            Command("import mlflow", [python, "-c", "import mlflow"], runner.root),
        ]
    commands += [
        Command("import strongroom", [python, "-c", "import strongroom"], runner.root),
        Command(
            "from strongroom import Vault",
            [python, "-c", "from strongroom import Vault"],
            runner.root,
        ),
    ]
    cpu_before, start = cpu_seconds(), time.perf_counter()
    times = time_commands(commands, runner.sizes.cli_repeats)
    runner.cpu["cli"] = _others_share(cpu_before, cpu_seconds(), start)
    return times


# -- the table -----------------------------------------------------------------------------------


@dataclass
class Stat:
    """A figure over the repetitions: median, min, max."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def text(self, unit: str) -> str:
        if len(self.values) == 1:
            return f"{number(self.values[0])} {unit}"
        low, high = min(self.values), max(self.values)
        return f"{number(self.median)} {unit} ({number(low)}–{number(high)})"


@dataclass
class Row:
    work: str
    strongroom: str
    peer: str
    ratio: str
    target: str
    met: bool | None
    data: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[str]:
        met = "–" if self.met is None else ("yes" if self.met else "**no**")
        return [self.work, self.strongroom, self.peer, self.ratio, self.target, met]


def _failure(error: str | None) -> str:
    """A failure for a table cell: the error without the log path (that is in the JSON)."""
    if error is None:
        return "not run"
    return "failed: " + error.split(" (log: ")[0].replace("|", "\\|")


def _ratio_text(ratios: list[float]) -> str:
    if not ratios:
        return "–"
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}×"
    return f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"


def _speed(sr: float, peer: float, higher_is_better: bool) -> float:
    return sr / peer if higher_is_better else peer / sr


def _pair_row(
    runner: Runner,
    workload: str,
    work: str,
    key: Callable[[Result], float],
    unit: str,
    peer_side: str,
    peer_name: str,
    *,
    higher_is_better: bool = True,
    target: str = "–",
    met: Callable[[float, float | None], bool | None] | None = None,
) -> Row:
    """A row from paired repetitions: strongroom's and the peer's figure of repetition r, and
    their ratio (strongroom's speed ÷ the peer's) per repetition."""
    results = runner.results.get(workload, {})
    errors = runner.errors.get(workload, {})
    sr = [key(r) for r in results.get("strongroom", [])]
    peer = [key(r) for r in results.get(peer_side, [])]
    ratios = [_speed(a, b, higher_is_better) for a, b in zip(sr, peer, strict=False)]
    sr_text = Stat(sr).text(unit) if sr else _failure(errors.get("strongroom"))
    peer_text = f"{peer_name}: " + (
        Stat(peer).text(unit) if peer else _failure(errors.get(peer_side))
    )
    ratio = statistics.median(ratios) if ratios else None
    return Row(
        work=work,
        strongroom=sr_text,
        peer=peer_text,
        ratio=_ratio_text(ratios),
        target=target,
        met=None if met is None or not sr else met(Stat(sr).median, ratio),
        data={"strongroom": sr, peer_side: peer, "ratios": ratios, "unit": unit},
    )


def _latency_median(result: Result) -> float:
    return float(statistics.median(result["latencies_ms"]))


def _p95(result: Result) -> float:
    ordered = sorted(result["latencies_ms"])
    return float(ordered[max(0, int(0.95 * len(ordered) + 0.999999) - 1)])


def rows(runner: Runner, cli_times: dict[str, list[float] | str] | None) -> list[Row]:
    s = runner.sizes
    out: list[Row] = []
    if "runs" in runner.results:
        out.append(
            _pair_row(
                runner,
                "runs",
                f"{s.runs:,} runs: create, 10 metadata values, a ~1 KB snapshot, complete",
                lambda r: float(r["rate"]),
                "runs/s",
                "mlflow",
                "MLflow",
                target="≥ 10× MLflow",
                met=lambda _v, ratio: None if ratio is None else ratio >= 10,
            )
        )
    if "artifacts" in runner.results:
        out.append(
            _pair_row(
                runner,
                "artifacts",
                f"{s.small_count:,} × 4 KiB artifacts, one call each (put_bytes; log_artifact)",
                lambda r: float(r["single_rate"]),
                "artifacts/s",
                "mlflow",
                "MLflow `log_artifact`",
                target="≥ 3,000/s and ≥ 2× MLflow",
                met=lambda v, ratio: None if ratio is None else v >= 3000 and ratio >= 2,
            )
        )
        out.append(
            _pair_row(
                runner,
                "artifacts",
                f"{s.small_count:,} × 4 KiB artifacts, batched by {s.small_batch} "
                "(put_many; log_artifacts of a folder)",
                lambda r: float(r["batch_rate"]),
                "artifacts/s",
                "mlflow",
                "MLflow `log_artifacts`",
                target="≥ 20,000/s",
                met=lambda v, _ratio: v >= 20_000,
            )
        )
    if "chain" in runner.results:
        work = f"{s.chain_steps}-step chain of in-process durable steps, each output persisted"
        out.append(
            _pair_row(
                runner,
                "chain",
                work + " (PipelineRun; DBOS SQLite)",
                lambda r: float(r["ms_per_step"]),
                "ms/step",
                "dbos",
                "DBOS",
                higher_is_better=False,
                target="≤ DBOS's ms/step (≥ 1×)",
                met=lambda _v, ratio: None if ratio is None else ratio >= 1,
            )
        )
        out.append(
            _pair_row(
                runner,
                "chain",
                work + " (PipelineRun; Prefect tasks, persisted results)",
                lambda r: float(r["ms_per_step"]),
                "ms/step",
                "prefect",
                "Prefect",
                higher_is_better=False,
            )
        )
    if "large" in runner.results:
        work = f"{s.large_files} × {s.large_mib} MiB files"
        out.append(
            _pair_row(
                runner,
                "large",
                work + ": put_file vs cp + sync + sha256sum",
                lambda r: float(r["mb_s"]),
                "MB/s",
                "cp",
                "`cp` + `sync` + `sha256sum`",
            )
        )
        out.append(
            _pair_row(
                runner,
                "large",
                work + ": put_file vs the hash rate (hashlib alone, same files)",
                lambda r: float(r["mb_s"]),
                "MB/s",
                "hashlib",
                "hashlib.sha256",
                target="≥ 0.8× the hash rate",
                met=lambda _v, ratio: None if ratio is None else ratio >= 0.8,
            )
        )
    if "index" in runner.results:
        out.append(
            _pair_row(
                runner,
                "index",
                f"run index, status + project filter, page of 50, {s.index_runs:,} runs, median",
                _latency_median,
                "ms",
                "mlflow",
                "MLflow `search_runs`",
                higher_is_better=False,
            )
        )
        out.append(
            _pair_row(
                runner,
                "index",
                "run index, same queries, p95",
                _p95,
                "ms",
                "mlflow",
                "MLflow `search_runs`",
                higher_is_better=False,
            )
        )
    if cli_times is not None:
        out += _cli_rows(runner, cli_times)
    if "acceptance" in runner.results:
        out += _acceptance_rows(runner)
    return out


def _cli_rows(runner: Runner, times: dict[str, list[float] | str]) -> list[Row]:
    def stat(key: str) -> tuple[str, float | None]:
        value = times.get(key)
        if value is None:  # its store's setup failed, or it was not selected
            return _failure(runner.errors.get("cli", {}).get(key.split()[0])), None
        if isinstance(value, str):
            return _failure(value), None
        return Stat(value).text("ms"), statistics.median(value)

    n = runner.sizes.cli_runs
    specs: list[tuple[str, str, str, str, float | None]] = [
        (
            f"`strongroom runs list` from the shell ({n} runs), median of "
            f"{runner.sizes.cli_repeats} whole processes",
            "strongroom runs list",
            "mlflow runs list",
            "≤ 150 ms",
            150.0,
        ),
        ("`strongroom --help`", "strongroom --help", "mlflow --help", "≤ 120 ms", 120.0),
        ('`python -c "import strongroom"`', "import strongroom", "import mlflow", "–", None),
        (
            '`python -c "from strongroom import Vault"`',
            "from strongroom import Vault",
            "import mlflow",
            "–",
            None,
        ),
    ]
    out = []
    for work, sr_key, peer_key, target, bound in specs:
        sr_text, sr = stat(sr_key)
        peer_text, peer = stat(peer_key)
        ratio = None if sr is None or peer is None else peer / sr
        out.append(
            Row(
                work=work,
                strongroom=sr_text,
                peer=f"`{peer_key}`: {peer_text}",
                ratio="–" if ratio is None else f"{ratio:.2f}×",
                target=target,
                met=None if bound is None or sr is None else sr <= bound,
                data={"strongroom": times.get(sr_key), peer_key: times.get(peer_key)},
            )
        )
    return out


_ACCEPTANCE = (
    (
        "log_append: append_many, batches of 100",
        "log appends, chained, batches of 100",
        "≥ 50,000 lines/s",
        50_000.0,
        True,
    ),
    (
        "log_append: append_many, batches of 1,000",
        "log appends, chained, batches of 1,000",
        "≥ 50,000 lines/s",
        50_000.0,
        True,
    ),
    (
        "run_latency: runs.create + snapshots.save, median",
        "run create + snapshot, median",
        "≤ 2 ms",
        2.0,
        False,
    ),
)


def _acceptance_rows(runner: Runner) -> list[Row]:
    results = runner.results.get("acceptance", {}).get("strongroom", [])
    out = []
    for key, work, target, bound, at_least in _ACCEPTANCE:
        found = [r[key] for r in results if key in r]
        if not found:
            error = runner.errors.get("acceptance", {}).get("strongroom")
            out.append(Row(work, _failure(error), "–", "–", target, None))
            continue
        unit = str(found[0]["unit"])
        values = Stat([float(f["value"]) for f in found])
        baseline = Stat([float(f["baseline"]) for f in found if f["baseline"] is not None])
        median = values.median
        out.append(
            Row(
                work=work + " (strongroom only)",
                strongroom=values.text(unit),
                peer=f"no peer; stdlib baseline {baseline.text(unit)}" if baseline.values else "–",
                ratio="–",
                target=target,
                met=median >= bound if at_least else median <= bound,
                data={"strongroom": values.values, "baseline": baseline.values, "unit": unit},
            )
        )
    return out


def markdown(table: list[Row]) -> str:
    header = ["work", "strongroom", "peer", "strongroom ÷ peer", "issue-21 target", "met?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in table]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    out = {}
    for name in ("strongroom", "mlflow", "prefect", "dbos", "sqlalchemy", "pydantic"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _output(args: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def git_state() -> dict[str, Any]:
    """HEAD and the uncommitted changes to strongroom: the editable install runs the working
    tree, so this is the code measured."""
    dirty = _output(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "pyproject.toml"]
    )
    return {
        "head": _output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "uncommitted": [line.strip() for line in dirty.splitlines()],
    }


def machine_info(workdir: Path) -> dict[str, Any]:
    mem_kib = proc_value("/proc/meminfo", "MemTotal").split()
    df_lines = _output(["df", "-T", "-h", str(workdir)]).splitlines()
    df = df_lines[-1].split() if len(df_lines) > 1 else []
    return {
        "nproc": os.cpu_count(),
        "cpu_model": proc_value("/proc/cpuinfo", "model name"),
        "ram_gib": round(int(mem_kib[0]) / 1024 / 1024, 1) if mem_kib else None,
        "disk": " ".join(df[:3] + df[-1:]) if df else "?",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "sqlite": sqlite3.sqlite_version,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description="strongroom beside MLflow, Prefect and DBOS (issue 21), interleaved.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", action="append", choices=WORKLOADS, help="run only this workload (repeatable)"
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers to run (default: {','.join(PEERS)})",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="where each run makes its work directory (default bench-results/work: the "
        "repository's disk)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="the JSON report (default bench-results/peers.json; the side processes' logs go "
        "to peers-logs/ beside it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per side process (default 1800)"
    )
    defaults = PeerSizes()
    for f in fields(PeerSizes):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=int,
            default=None,
            help=f"default {getattr(defaults, f.name)}",
        )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = PeerSizes.quick() if args.quick else PeerSizes()
    sizes = base.override({f.name: getattr(args, f.name) for f in fields(PeerSizes)})
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peers: {', '.join(sorted(unknown))}")
    selected = args.only or list(WORKLOADS)

    args.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="peers-", dir=args.workdir))
    logs = args.output.parent / "peers-logs"
    shutil.rmtree(logs, ignore_errors=True)
    runner = Runner(
        sizes=sizes, root=root, logs=logs, peers=peers, keep=args.keep, timeout=args.timeout
    )
    started = datetime.now(UTC)
    load_before = [round(x, 2) for x in os.getloadavg()]
    git_before = git_state()
    t0 = time.perf_counter()
    _log(f"work directory {root}; sizes {sizes.as_dict()}; peers {', '.join(peers)}")
    cli_times = None
    try:
        if "runs" in selected:
            runner.interleave("runs", lambda r: f"{r['rate']:,.1f} runs/s")
        if "artifacts" in selected:
            runner.interleave(
                "artifacts",
                lambda r: f"one call {r['single_rate']:,.0f}/s, batched {r['batch_rate']:,.0f}/s",
            )
        if "chain" in selected:
            runner.interleave("chain", lambda r: f"{r['ms_per_step']:.2f} ms/step")
        if "large" in selected:
            from benchmarks.peers._files import generate

            _log(f"[large] writing {sizes.large_files} × {sizes.large_mib} MiB of random bytes")
            files = generate(root / "large-src", sizes)
            runner.interleave("large", lambda r: f"{r['mb_s']:,.0f} MB/s", files)
            if not args.keep:
                shutil.rmtree(root / "large-src", ignore_errors=True)
        if "index" in selected:
            runner.setup("index-setup", "index")  # a failed side's error lands in its row
            runner.interleave(
                "index",
                lambda r: f"median {_latency_median(r):.2f} ms, p95 {_p95(r):.2f} ms",
                fixed_work=True,
            )
        if "cli" in selected:
            cli_times = cli(runner)
        if "acceptance" in selected:
            runner.interleave(
                "acceptance",
                lambda r: ", ".join(
                    f"{k.split(': ', 1)[1]} {v['value']:,.2f} {v['unit']}" for k, v in r.items()
                ),
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.perf_counter() - t0
    load_after = [round(x, 2) for x in os.getloadavg()]

    table = rows(runner, cli_times)
    text = markdown(table)
    print(text)
    machine = machine_info(args.workdir)
    git_after = git_state()
    report = {
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.peers", *(argv or sys.argv[1:])]
        ),
        "python": sys.executable,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "sizes": sizes.as_dict(),
        "versions": _versions(),
        "machine": machine,
        "git": {"before": git_before, "after": git_after},
        "load_average": {"before": load_before, "after": load_after},
        "others_cpu_share": runner.cpu,
        "rows": [
            {
                "work": r.work,
                "strongroom": r.strongroom,
                "peer": r.peer,
                "ratio": r.ratio,
                "target": r.target,
                "met": r.met,
                "data": r.data,
            }
            for r in table
        ],
        "results": runner.results,
        "cli_ms": cli_times,
        "errors": {k: v for k, v in runner.errors.items() if v},
        "markdown": text,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    versions = report["versions"]
    _log(
        f"done in {seconds:.0f} s; load average {load_before} before, {load_after} after; "
        f"other processes' CPU share {runner.cpu}; versions {versions}; "
        f"{machine['nproc']} CPUs ({machine['cpu_model']}), {machine['python']}; "
        f"figures in {args.output}"
    )
    return 1 if report["errors"] else 0
