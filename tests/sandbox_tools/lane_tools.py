"""Well-behaved tools for the execution-lane tests (run inside the sandbox)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def noop(request: dict[str, Any]) -> dict[str, Any]:
    return {}


def echo(request: dict[str, Any]) -> dict[str, Any]:
    print(f"echo: {request.get('text', '')}")
    print("to stderr", file=sys.stderr)
    return {"text": request.get("text", ""), "pid": os.getpid()}


def fail(request: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError(f"deliberate failure: token=sk-live-{request.get('secret', 'x')}")


def flaky(request: dict[str, Any]) -> dict[str, Any]:
    """Fails until a marker file in the (writable) ``dir`` says it has failed ``times``."""
    marker = os.path.join(request["dir"], "attempts")
    count = 0
    if os.path.exists(marker):
        with open(marker) as handle:
            count = int(handle.read())
    with open(marker, "w") as handle:
        handle.write(str(count + 1))
    if count < request["times"]:
        raise RuntimeError(f"flaky failure {count + 1}")
    return {"attempts": count + 1}


def sleep(request: dict[str, Any]) -> dict[str, Any]:
    time.sleep(float(request.get("seconds", 3600)))
    return {}


def wrong_output(request: dict[str, Any]) -> dict[str, Any]:
    return {"count": "not a number"}


def read_file(request: dict[str, Any]) -> dict[str, Any]:
    with open(request["path"]) as handle:
        return {"text": handle.read()}


def write_file(request: dict[str, Any]) -> dict[str, Any]:
    with open(request["path"], "w") as handle:
        handle.write(request.get("text", "x"))
    return {"written": request["path"]}


def call_host(request: dict[str, Any], host: Any) -> dict[str, Any]:
    """Tries the host services reserved for the built-in tools."""
    return dict(host.call("record_summary", summary=request["summary"]))


def http_get(request: dict[str, Any]) -> dict[str, Any]:
    """GET a URL the standard way (urllib honours the HTTP_PROXY the runner sets)."""
    import urllib.request

    with urllib.request.urlopen(request["url"], timeout=10) as response:
        return {"status": response.status, "body": response.read().decode()}


def add(request: dict[str, Any]) -> dict[str, Any]:
    """``{x, y}`` -> ``{sum}``; sleeps ``delay`` seconds first (to make steps overlap)."""
    time.sleep(float(request.get("delay", 0)))
    return {"sum": request["x"] + request["y"]}


def rework_outputs(request: dict[str, Any]) -> dict[str, Any]:
    """Every kind of change a tool can make to a write path: append to a file, delete a
    file and a tree, replace a folder, add a deep tree, a link, a FIFO, a set-uid file,
    replace a planted symbolic link by a file, rename a file."""
    import shutil

    out = os.path.abspath("out")
    with open(os.path.join(out, "keep.txt"), "a") as handle:
        handle.write(" + tool")
    os.unlink(os.path.join(out, "drop.txt"))
    shutil.rmtree(os.path.join(out, "old_tree"))
    shutil.rmtree(os.path.join(out, "replaced"))
    os.mkdir(os.path.join(out, "replaced"))
    with open(os.path.join(out, "replaced", "new.txt"), "w") as handle:
        handle.write("new")
    os.makedirs(os.path.join(out, "new", "a", "b"))
    with open(os.path.join(out, "new", "a", "b", "deep.txt"), "w") as handle:
        handle.write("deep")
    os.symlink("keep.txt", os.path.join(out, "link"))
    os.mkfifo(os.path.join(out, "fifo"))
    with open(os.path.join(out, "suid.sh"), "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(os.path.join(out, "suid.sh"), 0o4755)
    os.unlink(os.path.join(out, "was_link"))
    with open(os.path.join(out, "was_link"), "w") as handle:
        handle.write("tool content")
    os.rename(os.path.join(out, "keep2.txt"), os.path.join(out, "renamed.txt"))
    return {}


def write_then_sleep(request: dict[str, Any]) -> dict[str, Any]:
    with open(os.path.join("out", "partial.txt"), "w") as handle:
        handle.write("half")
    time.sleep(3600)
    return {}


def apply_ops(request: dict[str, Any]) -> dict[str, Any]:
    """Apply ``request["ops"]`` under ``request["root"]`` (default: the ``out`` write path);
    each op's success or errno name is returned. Used in and outside the sandbox."""
    import errno
    import shutil

    root = os.path.abspath(request.get("root") or "out")
    done: list[str] = []
    for op, *args in request["ops"]:
        paths = [os.path.join(root, a) for a in args]
        try:
            if op == "write":
                with open(paths[0], "w") as handle:
                    handle.write(args[1])
            elif op == "append":
                with open(paths[0], "a") as handle:
                    handle.write("+")
            elif op == "mkdir":
                os.mkdir(paths[0])
            elif op == "rmtree":
                shutil.rmtree(paths[0])
            elif op == "remake":  # a folder replaced by an empty one of the same name
                shutil.rmtree(paths[0])
                os.mkdir(paths[0])
            elif op == "unlink":
                os.unlink(paths[0])
            elif op == "rename":
                os.rename(paths[0], paths[1])
            elif op == "symlink":
                os.symlink(args[1], paths[0])
            done.append("ok")
        except OSError as exc:
            done.append(errno.errorcode.get(exc.errno or 0, "error"))
    return {"done": done}


def write_staged(request: dict[str, Any]) -> dict[str, Any]:
    """Write a file in ``out`` (through the staging overlay) and answer."""
    with open(os.path.join("out", "staged.txt"), "w") as handle:
        handle.write("staged")
    return {}
