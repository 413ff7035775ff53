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
