"""Writer processes for tests/test_crash.py (a script, not collected by pytest).

    python tests/_crash_writer.py PROGRESS_FD

The script is a small fork server driven by JSON lines on stdin: it imports strongroom once
and prints ``ready``; ``{"fork": SEED, "vault": URL, "blobs": URL or null, "acks": FILE,
"pause": [STREAM, CHUNK] or null}`` forks a writer child on that vault (a directory or
``postgresql://`` URL, with its blob store URL if not the default) and prints its pid;
``{"reap": PID}`` (sent after the test SIGKILLed the child) waits for it and prints
``exit PID SIGNAL CODE``. Forking from an already-imported interpreter makes a kill cycle
cost milliseconds instead of the ~0.7 s an interpreter start with these imports takes, so
hundreds of kills fit in a CI minute; each child is still a separate process holding its own
database connections and file descriptors (the server never opens a vault itself, so no
connection is shared across a fork).

A child opens the vault and writes forever: it continues the newest running run of project
``crash`` (or creates one), saving snapshots as a compare-and-set chain, putting artifacts of
mixed sizes (some multi-MiB, so that kills land mid-write), appending log batches, and every
few rounds completing the run (which seals its log) and starting a new one.

After each call returns it appends one JSON acknowledgement line to the ack file and fsyncs it;
the parent later checks that every acknowledged write survived. A line cut short by a kill is
not an acknowledgement: the next writer truncates it away before writing its own.

So that the test kills on progress rather than after a guessed delay, a child also reports
what it is doing on the pipe PROGRESS_FD (inherited from the test through the server), one
line ``PID EVENT [NAME]`` per event, each written with one atomic ``write`` (never torn):
``opening`` (before `Vault.open`), ``opened``, ``begin NAME`` (before each write call),
``ack NAME`` (once its ack line is durable), ``paused`` and ``failed`` (below). The last event
of a killed child tells where the kill landed. With ``"pause": [STREAM, CHUNK]`` the child
stops inside its STREAM-th multi-chunk streamed artifact, before handing out chunk CHUNK
(at least one chunk went in already), says ``paused`` and waits until the test kills it: a
kill inside an operation that does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

# Imported before forking like the rest, so that a kill lands in a writer's work rather than in
# its imports (the vault imports a backend's driver only when a URL asks for it).
import psycopg  # noqa: F401
import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

import strongroom.adapters._postgres  # noqa: F401
from strongroom.models import RunStatus
from strongroom.vault import Vault

PROJECT = "crash"
LARGE_CHUNK = 1024 * 1024
PAUSE_LIMIT = 600.0  # a paused child the test never killed gives up (and fails) after this


class Progress:
    """The child's progress reports to the test: ``PID EVENT [NAME]`` lines on a pipe."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._prefix = f"{os.getpid()} "

    def say(self, event: str, name: str = "") -> None:
        line = f"{self._prefix}{event} {name}".rstrip().encode() + b"\n"
        # One write of fewer than PIPE_BUF bytes: atomic, so a kill never leaves half a line.
        written = os.write(self._fd, line)
        assert written == len(line)


@dataclass(frozen=True)
class Pause:
    """Where the test wants the child stopped: in its ``stream``-th (or a later) streamed
    artifact of at least two chunks, before it hands out chunk ``chunk`` (or its last)."""

    stream: int
    chunk: int


class AckFile:
    """Append-only acknowledgement log; each line is durable before the next call starts."""

    def __init__(self, path: str, progress: Progress) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._progress = progress
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        keep = size
        while keep > 0:
            start = max(0, keep - 4096)
            block = os.pread(self._fd, keep - start, start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        if keep != size:
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)

    def ack(self, **record: Any) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        written = os.write(self._fd, line)
        assert written == len(line)
        os.fsync(self._fd)
        self._progress.say("ack", record["op"])


async def random_chunks(
    rng: random.Random, size: int, progress: Progress, pause_before: int | None
) -> AsyncIterator[bytes]:
    """``size`` random bytes in chunks; with ``pause_before``, stops before that chunk."""
    chunks = -(-size // LARGE_CHUNK)
    if pause_before is not None:
        pause_before = min(pause_before, chunks - 1)
    remaining = size
    for index in range(chunks):
        if index == pause_before and index > 0:
            progress.say("paused")
            await asyncio.sleep(PAUSE_LIMIT)  # the call waits for this chunk until the kill
            raise RuntimeError(f"paused mid-stream for {PAUSE_LIMIT} s and never killed")
        step = min(LARGE_CHUNK, remaining)
        remaining -= step
        yield rng.randbytes(step)
        await asyncio.sleep(0)  # let the kill land between chunks as well as inside writes


def artifact_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.randrange(0, 16 * 1024)
    if roll < 0.88:
        return rng.randrange(64 * 1024, 512 * 1024)
    return rng.randrange(1024 * 1024, 5 * 1024 * 1024)


async def current_run(vault: Vault, acks: AckFile, progress: Progress) -> str:
    """The newest running run of the crash project, or a new one (created and started)."""
    page = await vault.runs.list(project=PROJECT, status=[RunStatus.RUNNING], limit=1)
    if page.items:
        return page.items[0].run_id
    progress.say("begin", "run")
    run = await vault.runs.create(project=PROJECT, actor="crash-writer", purpose="crash test")
    acks.ack(op="run", run_id=run.run_id)
    progress.say("begin", "status")
    await vault.runs.start(run.run_id)
    acks.ack(op="status", run_id=run.run_id, status="running")
    return run.run_id


async def write_forever(
    vault_url: str,
    blobs_url: str | None,
    ack_path: str,
    seed: int,
    progress: Progress,
    pause: Pause | None,
) -> None:
    rng = random.Random(seed)
    acks = AckFile(ack_path, progress)
    streams = 0
    progress.say("opening")
    vault = await Vault.open(vault_url, blobs_url=blobs_url)
    progress.say("opened")
    try:
        run_id = await current_run(vault, acks, progress)
        revision = await vault.snapshots.latest_revision(run_id)
        step = 0
        while True:
            step += 1
            state = {
                "phase_revisions": {"write": revision + 1},
                "data": {"seed": seed, "step": step, "noise": rng.randbytes(64).hex()},
            }
            progress.say("begin", "snapshot")
            record = await vault.snapshots.save(run_id, state, expected_revision=revision)
            revision = record.revision
            acks.ack(
                op="snapshot",
                run_id=run_id,
                revision=record.revision,
                sha256=record.sha256,
                size=record.size_bytes,
            )

            size = artifact_size(rng)
            progress.say("begin", "artifact")
            if size >= LARGE_CHUNK:
                streams += 1
                pause_before = (
                    pause.chunk if pause is not None and streams >= pause.stream else None
                )
                chunks = random_chunks(rng, size, progress, pause_before)
                meta = await vault.artifacts.put_stream(run_id, chunks)
            else:
                meta = await vault.artifacts.put_bytes(run_id, rng.randbytes(size))
            acks.ack(op="artifact", artifact_id=meta.artifact_id, sha256=meta.sha256, size=size)

            if rng.random() < 0.3:
                items: list[tuple[bytes, dict[str, Any]]] = [
                    (rng.randbytes(rng.randrange(1, 2048)), {}) for _ in range(3)
                ]
                progress.say("begin", "artifacts")
                for item in await vault.artifacts.put_many(run_id, items):
                    acks.ack(
                        op="artifact",
                        artifact_id=item.artifact_id,
                        sha256=item.sha256,
                        size=item.size_bytes,
                    )

            lines = [
                {"event": "crash.step", "message": f"step {step} line {n}", "data": {"n": n}}
                for n in range(rng.randrange(1, 8))
            ]
            progress.say("begin", "log")
            entries = await vault.logs.append_many(run_id, lines)
            acks.ack(op="log", run_id=run_id, seq=entries[-1].seq, hash=entries[-1].hash)

            if rng.random() < 0.15:
                progress.say("begin", "status")
                await vault.runs.complete(run_id)
                acks.ack(op="status", run_id=run_id, status="completed")
                run_id = await current_run(vault, acks, progress)
                revision = 0
    finally:
        await vault.close()


def run_child(command: dict[str, Any], progress_fd: int) -> None:
    """Body of a forked writer: never returns into the fork server's loop."""
    progress = Progress(progress_fd)
    pause = None if command.get("pause") is None else Pause(*command["pause"])
    code = 0
    try:
        asyncio.run(
            write_forever(
                command["vault"],
                command.get("blobs"),
                command["acks"],
                command["fork"],
                progress,
                pause,
            )
        )
    except BaseException:  # write_forever only ever ends by an error
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        with contextlib.suppress(OSError):
            progress.say("failed")  # after the traceback: the test shows it at once
        os._exit(code)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    progress_fd = int(argv[0])
    print("ready", flush=True)
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        if "fork" in command:
            pid = os.fork()
            if pid == 0:
                run_child(command, progress_fd)
            print(pid, flush=True)
        elif "reap" in command:
            # Only now is the child reaped: until then its pid stays a zombie, so the parent's
            # kill can never hit another process that reused the pid.
            pid, status = os.waitpid(command["reap"], 0)
            signal_number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
            exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
            print(f"exit {pid} {signal_number} {exit_code}", flush=True)
        else:
            raise ValueError(f"unknown command {line!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
