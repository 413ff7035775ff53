"""Run the benchmarks: ``make bench`` or ``python -m benchmarks.run [options]``.

Writes ``bench-results/latest.json`` (every figure, the sizes, the machine and its load) and
prints a Markdown table of the figures beside their baselines to stdout; progress goes to
stderr. Examples::

    python -m benchmarks.run                      # everything, full sizes (about 20-30 min;
                                                  # verify_large alone builds 1M records: 12-20)
    python -m benchmarks.run --quick              # smoke run with small sizes (about 1 min)
    python -m benchmarks.run --only run_index --index-runs 20000
    python -m benchmarks.run --only log_append --profile   # + cProfile of the benchmark
    python -m benchmarks.run --only verify_large --verify-records 100000 --verify-audit 100000
    python -m benchmarks.run --backend postgres-s3 --quick # PostgreSQL + S3 (moto)
    python -m benchmarks.run --backend all --only run_index --index-runs 1000000

``--backend postgres-s3`` needs a PostgreSQL server (``STRONGROOM_BENCH_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) and moto's server (``moto[server]``, started
here); if either is missing, that backend's benchmarks fail with the reason and the others run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.metadata
import io
import json
import os
import platform
import pstats
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    artifact_large,
    artifact_small,
    log_append,
    orchestrator,
    run_index,
    run_latency,
    sandbox_overhead,
    verify_large,
)
from benchmarks._backends import BACKENDS, Backend, BackendUnavailable, make_backend
from benchmarks._common import Context, Figure, Sizes, cpu_seconds, proc_value

BenchmarkFn = Callable[[Context], Coroutine[Any, Any, list[Figure]]]

BENCHMARKS: dict[str, tuple[str, BenchmarkFn]] = {
    module.NAME: (module.TITLE, module.run)
    for module in (
        artifact_large,
        artifact_small,
        run_latency,
        run_index,
        log_append,
        sandbox_overhead,
        orchestrator,
        verify_large,
    )
}

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench-results" / "latest.json"
DEFAULT_WORKDIR = ROOT / "bench-results" / "work"


# -- machine -----------------------------------------------------------------------------------


def _command(args: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def machine_info(workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    mem_kib = proc_value("/proc/meminfo", "MemTotal").split()
    df_lines = _command(["df", "-T", "-h", str(workdir)]).splitlines()
    df = df_lines[-1].split() if len(df_lines) > 1 else []
    status = _command(["git", "-C", str(ROOT), "status", "--porcelain"])
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": proc_value("/proc/cpuinfo", "model name"),
        "ram_gib": round(int(mem_kib[0]) / 1024 / 1024, 1) if mem_kib else None,
        "disk": {
            "device": df[0] if df else "?",
            "filesystem": df[1] if len(df) > 1 else "?",
            "size": df[2] if len(df) > 2 else "?",
            "mount": df[-1] if df else "?",
            "workdir": str(workdir),
        },
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "sqlite": sqlite3.sqlite_version,
        "packages": {
            name: _version(name)
            for name in ("strongroom", "sqlalchemy", "psycopg", "obstore", "pydantic")
        },
        "git": {
            "commit": _command(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
            "dirty": bool(status),
        },
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _share(seconds: float, wall: float) -> float:
    """CPU seconds over ``wall`` as a share (0..1) of all the machine's CPUs."""
    return round(max(0.0, seconds) / (wall * (os.cpu_count() or 1)), 3) if wall > 0 else 0.0


def _others_share(
    before: tuple[float, float],
    after: tuple[float, float],
    wall: float,
    services: float = 0.0,
) -> float:
    """Share of the machine's CPUs (0..1) used by other processes during ``wall`` seconds:
    a better measure of interference than the load average, which counts our own threads.
    ``services``: CPU seconds of the backend's servers working for us meanwhile (moto, the
    PostgreSQL processes serving our databases), which are not interference."""
    others = (after[0] - before[0]) - (after[1] - before[1]) - services
    return _share(others, wall)


# -- report ------------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        text = f"{value:,.0f}"
    elif value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def markdown(results: dict[str, Any], figures: list[Figure]) -> str:
    # A Backend column only when something else than the embedded vault was measured, so
    # that `make bench` prints the table docs/performance.md has always shown.
    with_backend = any(fig.backend != "embedded" for fig in figures) or any(
        backend != "embedded" for backend in results["backends"]
    )
    out = [
        "| "
        + ("Backend | " if with_backend else "")
        + "Benchmark | Figure | strongroom | Baseline (same run) | Speed vs baseline "
        "| Target | Met | Notes |",
        "|---|" + ("---|" if with_backend else "") + "---|---:|---:|---:|---|---|---|",
    ]
    for fig in figures:
        ratio = fig.speed_vs_baseline
        met = fig.target_met
        out.append(
            "| "
            + " | ".join(
                ([fig.backend] if with_backend else [])
                + [
                    fig.benchmark,
                    fig.name,
                    _fmt(fig.value, fig.unit),
                    _fmt(fig.baseline, fig.unit),
                    "–" if ratio is None else f"{ratio:.2f}×",
                    "–" if fig.target is None else fig.target.describe(fig.unit),
                    "–" if met is None else ("yes" if met else "**no**"),
                    fig.notes.replace("|", "\\|"),
                ]
            )
            + " |"
        )
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for fig in figures:
        if fig.baseline_name:
            key = (fig.backend, fig.benchmark, fig.baseline_name)
            grouped.setdefault(key, []).append(fig.name)
    baselines = [
        f"- {backend + ' ' if with_backend else ''}`{bench}` ({'; '.join(names)}): {baseline}"
        for (backend, bench, baseline), names in grouped.items()
    ]
    m = results["machine"]
    disk = m["disk"]
    load = results["load"]

    def share(key: str, entry: dict[str, Any]) -> str:
        label = f"{key.replace('@', ' on ')}" if with_backend else key
        text = f"{label} {entry['others_cpu_share']:.0%}"
        services = entry.get("service_cpu_share") or {}
        if services:
            text += " (" + ", ".join(f"{k} {v:.0%}" for k, v in services.items()) + ")"
        return text

    others = ", ".join(share(key, entry) for key, entry in results["benchmarks"].items())
    servers = [
        f"{name}: PostgreSQL {info['postgresql'].split(' (')[0]} at {info['postgres_url']} ("
        + ", ".join(f"{k} {v}" for k, v in info.get("postgres_settings", {}).items())
        + f"), moto {info['moto']} (S3 at {info['s3_endpoint']}), both on this machine"
        for name, info in results["backends"].items()
        if info.get("postgresql")
    ]
    failed = [
        f"- `{key}`: {entry['error']}"
        for key, entry in results["benchmarks"].items()
        if entry.get("error")
    ]
    out += [
        "",
        "Speed vs baseline: strongroom's rate ÷ the baseline's (for latencies, baseline time ÷ "
        "strongroom time); 1.00× = as fast as the baseline.",
        "",
        "Baselines:",
        *baselines,
        "",
        *(["Failed (no figures):", *failed, ""] if failed else []),
        f"Command: `{results['command']}` ({results['started_at']}, "
        f"{results['elapsed_s']:.0f} s, git {m['git']['commit']}"
        f"{' + uncommitted changes' if m['git']['dirty'] else ''})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model'] or 'unknown model'}), "
        f"{m['ram_gib']} GiB RAM, {m['kernel']}, {m['python']}, SQLite {m['sqlite']}; "
        f"disk {disk['device']} {disk['filesystem']} ({disk['size']}) mounted on "
        f"{disk['mount']}, vaults under {disk['workdir']}"
        + "".join(f"; {text}" for text in servers),
        "",
        f"Load average (1/5/15 min; it counts the benchmark's own threads): "
        f"{'/'.join(map(str, load['before']))} before, {'/'.join(map(str, load['after']))} "
        "after. Share of the CPUs used by other processes while each benchmark ran: "
        f"{others}"
        + (
            " (in brackets: the share the backend's own servers used working for the "
            "benchmark, not counted as other processes)."
            if any(e.get("service_cpu_share") for e in results["benchmarks"].values())
            else "."
        ),
    ]
    return "\n".join(out)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="strongroom benchmarks: each figure beside a baseline from the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--backend",
        choices=[*BACKENDS, "all"],
        default="embedded",
        help="where the vaults live: embedded (SQLite + local blobs, the default), "
        "postgres-s3 (a fresh PostgreSQL database on $STRONGROOM_BENCH_POSTGRES_URL + moto's "
        "S3 server, started here), or all (each benchmark on each backend)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file (%(default)s)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="where the temp vaults go; must be on the disk under test (%(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp vaults")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run each benchmark under cProfile: top functions to stderr, NAME.prof beside "
        "the JSON (event-loop thread only; the figures are slower while profiling)",
    )
    sizes = parser.add_argument_group("sizes (defaults: full run; --quick lowers them)")
    full, quick = Sizes(), Sizes.quick()
    for f in fields(Sizes):
        sizes.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=int,
            metavar="N",
            help=f"default {getattr(full, f.name)}, quick {getattr(quick, f.name)}",
        )
    args = parser.parse_args(argv)
    for f in fields(Sizes):
        value = getattr(args, f.name)
        if value is not None and value < 1:
            parser.error(f"--{f.name.replace('_', '-')} must be at least 1")
    return args


def _run_one(name: str, fn: BenchmarkFn, ctx: Context, profile_dir: Path | None) -> list[Figure]:
    if profile_dir is None:
        return asyncio.run(fn(ctx))
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return asyncio.run(fn(ctx))
    finally:
        profiler.disable()
        profile_dir.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile_dir / f"{name}.prof")
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue(), file=sys.stderr)


def _run_backend(
    backend: Backend,
    names: list[str],
    args: argparse.Namespace,
    ctx: Context,
    results: dict[str, Any],
    progress: tuple[int, int],
) -> tuple[list[Figure], int]:
    """Start the backend, run the benchmarks on it, stop it; (figures, failures)."""
    figures: list[Figure] = []
    failures = 0
    unavailable: str | None = None
    print(f"backend {backend.name}: {backend.description}", file=sys.stderr, flush=True)
    try:
        backend.start(ctx.workdir)
    except BackendUnavailable as exc:
        unavailable = str(exc)
        print(f"    UNAVAILABLE: {unavailable}", file=sys.stderr, flush=True)
    results["backends"][backend.name] = {"description": backend.description, **backend.info()}
    if unavailable is not None:
        results["backends"][backend.name]["error"] = unavailable
    done, count = progress
    try:
        for i, name in enumerate(names, start=done + 1):
            title, fn = BENCHMARKS[name]
            key = name if backend.name == "embedded" else f"{name}@{backend.name}"
            print(f"[{i}/{count}] {key}: {title} ...", file=sys.stderr, flush=True)
            entry: dict[str, Any] = {
                "title": title,
                "backend": backend.name,
                "load_before": _load(),
            }
            t0 = time.perf_counter()
            cpu0 = cpu_seconds()
            services0 = backend.service_cpu_seconds()
            try:
                if unavailable is not None:
                    raise BackendUnavailable(unavailable)
                got = _run_one(key, fn, ctx, args.output.parent if args.profile else None)
            except Exception as exc:  # report and go on with the other benchmarks
                failures += 1
                entry["error"] = f"{type(exc).__name__}: {exc}"
                print(f"    FAILED: {entry['error']}", file=sys.stderr, flush=True)
                got = []
            wall = time.perf_counter() - t0
            services = {
                k: v - services0.get(k, 0.0) for k, v in backend.service_cpu_seconds().items()
            }
            entry.update(
                elapsed_s=round(wall, 1),
                load_after=_load(),
                others_cpu_share=_others_share(cpu0, cpu_seconds(), wall, sum(services.values())),
                service_cpu_share={k: _share(v, wall) for k, v in services.items()},
            )
            for fig in got:
                fig.backend = backend.name
            entry["figures"] = [fig.as_dict() for fig in got]
            results["benchmarks"][key] = entry
            figures += got
            for fig in got:
                print(f"    {fig.name}: {_fmt(fig.value, fig.unit)}", file=sys.stderr, flush=True)
            print(f"    done in {entry['elapsed_s']} s", file=sys.stderr, flush=True)
    finally:
        backend.stop()
    return figures, failures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, (title, _) in BENCHMARKS.items():
            print(f"{name:16} {title}")
        return 0
    sizes = (Sizes.quick() if args.quick else Sizes()).override(vars(args))
    names = list(dict.fromkeys(args.only)) if args.only else list(BENCHMARKS)
    backend_names = list(BACKENDS) if args.backend == "all" else [args.backend]
    workdir = args.workdir.resolve()
    shown = sys.argv[1:] if argv is None else list(argv)
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python -m benchmarks.run", *map(shlex.quote, shown)]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": sizes.as_dict(),
        "machine": machine_info(workdir),
        "load": {"before": _load()},
        "backends": {},
        "benchmarks": {},
    }
    figures: list[Figure] = []
    failures = 0
    started = time.perf_counter()
    for n, backend_name in enumerate(backend_names):
        backend = make_backend(backend_name)
        ctx = Context(sizes=sizes, workdir=workdir, keep=args.keep, backend=backend)
        got, failed = _run_backend(
            backend,
            names,
            args,
            ctx,
            results,
            (n * len(names), len(names) * len(backend_names)),
        )
        figures += got
        failures += failed
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["load"]["after"] = _load()

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown(results, figures))
    print(f"\nresults written to {args.output}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
