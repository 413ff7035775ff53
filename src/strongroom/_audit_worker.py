"""verify's audit stage in a process of its own, beside the rest of verify.

The audit walk and the record checks read different tables and share nothing, and each is
Python work bound by the GIL; on a machine with two cores or more, running the walk in a
second process over the same store halves verify's wall time on large vaults. `Vault.verify`
starts ``python -m strongroom._audit_worker`` for a SQL vault whose chain is long enough to be
worth the process's start (`CHILD_THRESHOLD` entries), and falls back to walking in its own
process when the child cannot start or fails: the walk is the same code either way
(`strongroom.services.walk_audit`).

The child is started with ``-P`` (the working directory is not put on its import path: a
``strongroom`` folder where verify happens to run must not be what it imports) and refuses to
work unless it imported the same strongroom package as its parent. The request comes on stdin
as one JSON object, so the store's URL (which may hold a password) never appears in a process
listing: ``{"url": ..., "package": ..., "anchors": [...], "trusted_keys": [...] | null}``.
The answer is JSON lines on stdout: ``{"progress": [done, total]}`` as the walk goes, one
``{"problem": {...}}`` per problem, and last ``{"walk": {...}}`` (the `AuditWalk` without its
problems). Exit status 0 means the last line was written.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TextIO

from strongroom.integrity import SignedTreeHead
from strongroom.models import VerifyProblem
from strongroom.services.verify import AuditWalk, ProgressCallback, walk_audit

__all__ = ["CHILD_THRESHOLD", "WorkerFailed", "walk_in_child"]

# Below this many audit entries the walk takes less than a child's start-up (about a second
# of imports) and stays in verify's own process.
CHILD_THRESHOLD = 50_000
_LINE_LIMIT = 64 * 1024 * 1024  # one problem's line (a problem's details are bounded)
_STDERR_KEPT = 4096


class WorkerFailed(Exception):
    """The child did not deliver a whole answer (it could not start, crashed or was killed)."""


async def walk_in_child(
    url: str,
    anchors: Sequence[SignedTreeHead],
    trusted_keys: Collection[str] | None,
    progress: ProgressCallback,
) -> AuditWalk:
    """Run verify's audit stage over the store at ``url`` in a child process; `WorkerFailed`
    when it gives no whole answer. The child is killed if this is cancelled."""
    request = json.dumps(
        {
            "url": url,
            "package": _package(),
            "anchors": [a.model_dump(mode="json") for a in anchors],
            "trusted_keys": None if trusted_keys is None else sorted(trusted_keys),
        }
    ).encode("utf-8")
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",
            "-m",
            "strongroom._audit_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
    except OSError as exc:
        raise WorkerFailed(f"could not start: {exc}") from exc
    assert child.stdin is not None
    assert child.stdout is not None
    assert child.stderr is not None
    stderr = asyncio.create_task(_tail(child.stderr))
    try:
        child.stdin.write(request)
        await child.stdin.drain()
        child.stdin.close()
        walk: AuditWalk | None = None
        found: list[Any] = []
        while line := await child.stdout.readline():
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError(f"a line that is not an object: {line[:80]!r}")
            if "progress" in message:
                done, total = message["progress"]
                progress("audit", int(done), None if total is None else int(total))
            elif "problem" in message:
                found.append(message["problem"])
            elif "walk" in message:
                walk = AuditWalk.model_validate(message["walk"])
        code = await child.wait()
        if walk is None or code != 0:
            text = (await stderr).decode("utf-8", "replace").strip()
            raise WorkerFailed(f"exit status {code}: {text[-500:] or 'no message'}")
        walk.problems = [VerifyProblem.model_validate(p) for p in found]
        return walk
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise WorkerFailed(f"a malformed answer: {exc}") from exc
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        if not stderr.done():
            stderr.cancel()
        await asyncio.gather(stderr, return_exceptions=True)


async def _tail(stream: asyncio.StreamReader) -> bytes:
    """Read ``stream`` to its end, keeping its last `_STDERR_KEPT` bytes (the traceback)."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-_STDERR_KEPT:]
    return kept


def _package() -> str:
    """Where the strongroom package this process imported lives (this module is in it)."""
    return str(Path(__file__).resolve().parent)


async def _serve(request: dict[str, Any], out: TextIO) -> None:
    if request.get("package") != _package():
        raise SystemExit(
            f"this worker imported strongroom from {_package()}, not from "
            f"{str(request.get('package'))[:300]}: refusing to walk"
        )
    # Only the records store is opened: the walk reads no blob.
    from strongroom.adapters import open_stores
    from strongroom.services.audit import AuditService

    metadata, _ = open_stores(str(request["url"]), blobs_url="memory://", create=False)
    await metadata.open()
    try:
        anchors = [SignedTreeHead.model_validate(a) for a in request.get("anchors") or []]
        keys = request.get("trusted_keys")

        def progress(stage: str, done: int, total: int | None) -> None:
            out.write(json.dumps({"progress": [done, total]}) + "\n")
            out.flush()

        walk = await walk_audit(
            AuditService(metadata),
            anchors=anchors,
            trusted_keys=None if keys is None else set(keys),
            progress=progress,
        )
    finally:
        await metadata.close()
    for problem in walk.problems:
        out.write(json.dumps({"problem": problem.model_dump(mode="json")}) + "\n")
    out.write(json.dumps({"walk": walk.model_dump(mode="json", exclude={"problems"})}) + "\n")
    out.flush()


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    asyncio.run(_serve(request, sys.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
