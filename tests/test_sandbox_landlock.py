"""Landlock confinement, checked in real child processes (no mocks).

Each test runs ``python -I`` with the sandbox directory on ``sys.path`` (as the sandbox child
does), calls ``_landlock.restrict_self`` and then attempts actions, printing a JSON map of
action -> "ok" or the exception name. Landlock applies to root too, so these run as any user.

Without Landlock the tests skip, except under ``CI=true`` where they fail: CI must exercise
them. Features of newer ABIs (TCP rules: 4, scopes: 6) skip on older kernels even in CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.sandbox import _landlock

SANDBOX_DIR = Path(_landlock.__file__).resolve().parent

# Runs in the child before the test's own code: imports everything up front (the child may
# lose read access to the standard library) and defines `attempt`.
PRELUDE = """
import json, os, socket, sys
sys.path.insert(0, {sandbox_dir!r})
import _landlock
results = {{}}

def attempt(name, fn):
    try:
        value = fn()
    except OSError as exc:
        results[name] = type(exc).__name__
    else:
        results[name] = "ok" if value is None or not isinstance(value, (str, int)) else value

"""


def _require_abi(minimum: int = 1) -> int:
    abi = _landlock.abi_version()
    if abi == 0:
        if os.environ.get("CI") == "true":
            pytest.fail("Landlock is unavailable but CI=true requires these tests to run")
        pytest.skip("Landlock is unavailable on this kernel (abi_version() == 0)")
    if abi < minimum:
        pytest.skip(f"needs Landlock ABI >= {minimum}, kernel offers {abi}")
    return abi


def _run(code: str) -> dict[str, object]:
    script = PRELUDE.format(sandbox_dir=str(SANDBOX_DIR)) + textwrap.dedent(code)
    script += "\nprint(json.dumps(results))\n"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, str]:
    """A secret outside every rule, a read-only tree, a writable tree."""
    (tmp_path / "secret.txt").write_text("top secret")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "data.txt").write_text("readable")
    rw = tmp_path / "rw"
    rw.mkdir()
    (rw / "existing.txt").write_text("old")
    (rw / "link_out").symlink_to(tmp_path / "secret.txt")
    single = tmp_path / "single.txt"
    single.write_text("one file")
    return {
        "root": str(tmp_path),
        "ro": str(ro),
        "rw": str(rw),
        "single": str(single),
        "missing": str(tmp_path / "does-not-exist"),
    }


def test_abi_version_is_an_int() -> None:
    abi = _landlock.abi_version()
    assert isinstance(abi, int)
    assert abi >= 0


def test_filesystem_is_deny_by_default(tree: dict[str, str]) -> None:
    _require_abi()
    code = f"""
    t = {tree!r}
    report = _landlock.restrict_self(
        read_paths=[t["ro"], t["single"], t["missing"]],
        write_paths=[t["rw"], "/dev/null"],
    )
    results["report"] = report

    def read(p):
        with open(p) as f:
            return f.read()

    def write(p, mode="w"):
        with open(p, mode) as f:
            f.write("x")

    def mkdir_rmdir(p):
        os.mkdir(p)
        os.rmdir(p)

    attempt("read_secret", lambda: read(t["root"] + "/secret.txt"))
    attempt("list_root", lambda: os.listdir(t["root"]))
    attempt("read_ro", lambda: read(t["ro"] + "/data.txt"))
    attempt("list_ro", lambda: ",".join(sorted(os.listdir(t["ro"]))))
    attempt("read_single_file", lambda: read(t["single"]))
    attempt("write_single_file", lambda: write(t["single"]))
    attempt("write_ro", lambda: write(t["ro"] + "/data.txt"))
    attempt("create_in_ro", lambda: write(t["ro"] + "/new.txt"))
    attempt("write_outside", lambda: write(t["root"] + "/outside.txt"))
    attempt("create_in_rw", lambda: write(t["rw"] + "/new.txt"))
    attempt("append_in_rw", lambda: write(t["rw"] + "/existing.txt", "a"))
    attempt("read_back_rw", lambda: read(t["rw"] + "/new.txt"))
    attempt("truncate_in_rw", lambda: os.truncate(t["rw"] + "/existing.txt", 0))
    attempt("mkdir_in_rw", lambda: mkdir_rmdir(t["rw"] + "/sub"))
    attempt("rename_in_rw", lambda: os.rename(t["rw"] + "/new.txt", t["rw"] + "/moved.txt"))
    attempt("unlink_in_rw", lambda: os.unlink(t["rw"] + "/moved.txt"))
    attempt("rename_out_of_rw", lambda: os.rename(t["rw"] + "/existing.txt", t["root"] + "/e"))
    attempt("write_via_symlink", lambda: write(t["rw"] + "/link_out"))
    attempt("read_via_symlink", lambda: read(t["rw"] + "/link_out"))
    attempt("write_dotdot_escape", lambda: write(t["rw"] + "/../escaped.txt"))
    attempt("read_dotdot_escape", lambda: read(t["rw"] + "/../secret.txt"))
    attempt("write_dev_null", lambda: write("/dev/null"))
    attempt("read_etc_passwd", lambda: read("/etc/passwd"))
    """
    r = _run(code)
    assert r["report"] == {
        "abi": _landlock.abi_version(),
        "fs": True,
        "net": _landlock.abi_version() >= 4,
        "scoped": _landlock.abi_version() >= 6,
        "skipped_paths": [tree["missing"]],
    }
    # Denied: everything outside the granted trees, and writes to the read-only ones.
    for action in (
        "read_secret",
        "list_root",
        "write_single_file",
        "write_ro",
        "create_in_ro",
        "write_outside",
        "rename_out_of_rw",
        "write_via_symlink",
        "read_via_symlink",
        "write_dotdot_escape",
        "read_dotdot_escape",
        "read_etc_passwd",
    ):
        assert r[action] == "PermissionError", (action, r[action])
    # Allowed: reads in read_paths, full read/write in write_paths, the /dev/null device rule.
    assert r["read_ro"] == "readable"
    assert r["list_ro"] == "data.txt"
    assert r["read_single_file"] == "one file"
    assert r["read_back_rw"] == "x"
    for action in (
        "create_in_rw",
        "append_in_rw",
        "truncate_in_rw",
        "mkdir_in_rw",
        "rename_in_rw",
        "unlink_in_rw",
        "write_dev_null",
    ):
        assert r[action] == "ok", (action, r[action])
    # The parent still sees the secret untouched and nothing written outside.
    assert Path(tree["root"], "secret.txt").read_text() == "top secret"
    assert not Path(tree["root"], "outside.txt").exists()
    assert not Path(tree["root"], "escaped.txt").exists()


def test_execute_is_granted_by_read_paths(tree: dict[str, str]) -> None:
    _require_abi()
    # A script in the writable tree only runs because read_paths grant EXECUTE on the
    # interpreter's prefix and system libraries.
    code = f"""
    import subprocess
    t = {tree!r}
    prefixes = sorted({{sys.base_prefix, sys.prefix, sys.exec_prefix}})
    libs = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache"]
    _landlock.restrict_self(read_paths=[*prefixes, *libs], write_paths=[t["rw"]])
    attempt("exec_python", lambda: subprocess.run(
        [sys.executable, "-I", "-c", "print(7)"], capture_output=True, check=True
    ).stdout.decode().strip())
    """
    r = _run(code)
    assert r["exec_python"] == "7"


def test_restrict_self_rejects_bad_ports() -> None:
    with pytest.raises(ValueError, match="invalid TCP port"):
        _landlock.restrict_self(read_paths=[], write_paths=[], connect_tcp=[70000])


@pytest.fixture
def listeners() -> Iterator[tuple[int, int]]:
    """Two listening TCP sockets on 127.0.0.1 (connections wait in the backlog)."""
    socks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        socks.append(s)
    try:
        yield socks[0].getsockname()[1], socks[1].getsockname()[1]
    finally:
        for s in socks:
            s.close()


def test_tcp_connect_and_bind_limited_to_listed_ports(
    tree: dict[str, str], listeners: tuple[int, int]
) -> None:
    _require_abi(4)
    allowed, other = listeners
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    code = f"""
    report = _landlock.restrict_self(
        read_paths=[], write_paths=[], connect_tcp=[{allowed}], bind_tcp=[{free_port}]
    )
    results["net"] = report["net"]

    def connect(port):
        # A plain connect(2): create_connection would lazily import the idna codec,
        # which this read-nothing sandbox cannot load.
        with socket.socket() as s:
            s.settimeout(5)
            s.connect(("127.0.0.1", port))

    def bind(port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))

    attempt("connect_allowed", lambda: connect({allowed}))
    attempt("connect_other", lambda: connect({other}))
    attempt("bind_allowed", lambda: bind({free_port}))
    attempt("bind_other", lambda: bind({free_port} + 1 if {free_port} < 65535 else 1024))
    attempt("bind_ephemeral", lambda: bind(0))
    attempt("udp_untouched", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
    """
    r = _run(code)
    assert r["net"] is True
    assert r["connect_allowed"] == "ok"
    assert r["connect_other"] == "PermissionError"
    assert r["bind_allowed"] == "ok"
    assert r["bind_other"] == "PermissionError"
    assert r["bind_ephemeral"] == "PermissionError"
    assert r["udp_untouched"] == "ok"  # Landlock only governs TCP; seccomp covers the rest


def test_tcp_all_denied_without_ports(listeners: tuple[int, int]) -> None:
    _require_abi(4)
    port = listeners[0]
    code = f"""
    _landlock.restrict_self(read_paths=[], write_paths=[])
    sock = socket.socket()
    sock.settimeout(5)
    attempt("connect", lambda: sock.connect(("127.0.0.1", {port})))
    """
    assert _run(code)["connect"] == "PermissionError"


@pytest.fixture
def abstract_listener() -> Iterator[str]:
    name = f"\0strongroom-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(name)
    s.listen(4)
    try:
        yield name
    finally:
        s.close()


@pytest.mark.parametrize("scope", [True, False])
def test_scope_blocks_signals_and_abstract_sockets_outside(
    abstract_listener: str, *, scope: bool
) -> None:
    _require_abi(6)
    code = f"""
    report = _landlock.restrict_self(read_paths=[], write_paths=[], scope={scope!r})
    results["scoped"] = report["scoped"]

    def connect_abstract():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect({abstract_listener!r})

    attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
    attempt("kill_self", lambda: os.kill(os.getpid(), 0))
    attempt("abstract_unix", connect_abstract)
    """
    r = _run(code)
    assert r["scoped"] is scope
    assert r["kill_self"] == "ok"
    if scope:
        assert r["kill_parent"] == "PermissionError"
        assert r["abstract_unix"] == "PermissionError"
    else:
        assert r["kill_parent"] == "ok"
        assert r["abstract_unix"] == "ok"


def test_unavailable_landlock_reports_zero_or_version() -> None:
    # abi_version never raises; restrict_self raises OSError when Landlock is missing.
    if _landlock.abi_version() == 0:
        with pytest.raises(OSError, match="Landlock is unavailable"):
            _landlock.restrict_self(read_paths=[], write_paths=[])
    else:
        assert _landlock.abi_version() >= 1
