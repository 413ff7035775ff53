"""`strongroom serve` as a user starts it: a real process bound to a real port, refused
binds, a missing vault and a busy port as clear errors (one line, non-zero exit), and the
server stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import SyncVault

DEADLINE = 60.0


def _strongroom(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strongroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    with SyncVault.open(path) as vault:
        run = vault.runs.create(project="serve", purpose="served")
        vault.runs.start(run.run_id)
    return path


def _started(process: subprocess.Popen[str]) -> str:
    """The URL the server printed once bound (read from its stderr, line by line)."""
    assert process.stderr is not None
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        found = re.search(r"on (http://\S+/) over", line)
        if found:
            return found.group(1)
    raise AssertionError(f"serve did not start (exit {process.poll()})")


@pytest.fixture
def served(vault_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "strongroom", "serve", "--port", "0", "--vault", str(vault_dir)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield _started(process), process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=DEADLINE)  # drains and closes the pipe


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        return response.status, dict(response.headers), response.read()


def test_serve_answers_on_the_printed_port_and_stops_on_sigterm(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = served
    assert url.startswith("http://127.0.0.1:")
    status, headers, body = _get(url + "api/v1/runs")
    assert status == 200
    assert json.loads(body)["items"][0]["project"] == "serve"
    status, headers, body = _get(url + "runs")
    assert status == 200
    assert b"serve" in body
    assert "script-src 'self'" in headers["content-security-policy"]
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=DEADLINE)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in rest


def test_serve_refuses_a_public_bind_without_a_token(vault_dir: Path, tmp_path: Path) -> None:
    env = {"STRONGROOM_SERVE_TOKEN": ""}
    result = _strongroom(
        "serve", "--host", "0.0.0.0", "--vault", str(vault_dir), cwd=tmp_path, env=env
    )
    assert result.returncode == 2
    assert "error[validation_error]" in result.stderr
    assert "token" in result.stderr
    assert "Traceback" not in result.stderr
    short = _strongroom(
        "serve", "--token", "short", "--vault", str(vault_dir), cwd=tmp_path, env=env
    )
    assert short.returncode == 2
    assert "at least 16" in short.stderr


def test_serve_of_a_missing_vault_is_not_found_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = _strongroom("serve", "--port", "0", "--vault", str(missing), cwd=tmp_path)
    assert result.returncode == 3
    assert "error[not_found]" in result.stderr
    assert not missing.exists()


def test_serve_on_a_busy_port_says_so(vault_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = _strongroom("serve", "--port", str(port), "--vault", str(vault_dir), cwd=tmp_path)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_json_errors_are_structured(tmp_path: Path) -> None:
    args = ("serve", "--host", "10.0.0.1", "--json", "--vault", str(tmp_path))
    result = _strongroom(*args, cwd=tmp_path, env={"STRONGROOM_SERVE_TOKEN": ""})
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["reason"] == "token_required"


def test_serve_json_prints_one_start_document_naming_the_bound_port(vault_dir: Path) -> None:
    """`serve --json --port 0`: one JSON document on stdout as soon as it listens, whose port
    answers (what a script needs to talk to a server on a port it did not choose)."""
    command = ["--vault", str(vault_dir), "serve", "--json", "--port", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "strongroom", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        while lines[-1] not in ("}\n", ""):  # an indented document, closed on its own line
            lines.append(process.stdout.readline())
        document = json.loads("".join(lines))
        assert document["host"] == "127.0.0.1"
        assert document["port"] > 0
        assert document["url"] == f"http://127.0.0.1:{document['port']}/"
        assert document["token_required"] is False
        status, _, body = _get(document["url"] + "api/v1/runs")
        assert status == 200
        assert json.loads(body)["items"][0]["project"] == "serve"
    finally:
        process.kill()
        process.communicate(timeout=DEADLINE)
