"""Hostile tools: each tries one way out of the sandbox. None of them catches the error the
sandbox raises, so the runner sees (and audits) the denial; the tests then check that the
side effect did not happen."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import subprocess
import time
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)


def _denied(what: str) -> PermissionError:
    err = ctypes.get_errno()
    return PermissionError(err, f"{what}: {os.strerror(err)}")


def read_secret(request: dict[str, Any]) -> dict[str, Any]:
    with open(request["path"]) as handle:
        return {"leaked": handle.read()}


def write_outside(request: dict[str, Any]) -> dict[str, Any]:
    with open(request["path"], "w") as handle:
        handle.write("escaped")
    return {"wrote": request["path"]}


def write_via_symlink(request: dict[str, Any]) -> dict[str, Any]:
    link = os.path.join(request["write_dir"], "link")
    os.symlink(request["target"], link)
    with open(link, "w") as handle:
        handle.write("escaped")
    return {"wrote": request["target"]}


def write_dotdot(request: dict[str, Any]) -> dict[str, Any]:
    path = os.path.join(request["write_dir"], "..", request["name"])
    with open(path, "w") as handle:
        handle.write("escaped")
    return {"wrote": path}


def tcp_connect(request: dict[str, Any]) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", int(request["port"])), timeout=5) as conn:
        conn.sendall(b"hello")
        return {"received": conn.recv(100).decode()}


def udp_send(request: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"escaped", ("127.0.0.1", int(request["port"])))
    return {"sent": True}


def resolve_dns(request: dict[str, Any]) -> dict[str, Any]:
    infos = socket.getaddrinfo(request["host"], 443)
    return {"addresses": sorted({str(info[4][0]) for info in infos})}


def fork_bomb(request: dict[str, Any]) -> dict[str, Any]:
    children = 0
    try:
        for _ in range(int(request.get("max", 10_000))):
            pid = os.fork()
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            children += 1
    except BlockingIOError as exc:  # EAGAIN: the process limit
        return {"forked": children, "stopped_by": errno.errorcode[exc.errno or 0]}
    return {"forked": children, "stopped_by": None}


def allocate(request: dict[str, Any]) -> dict[str, Any]:
    block = bytearray(int(request.get("bytes", 4 << 30)))
    return {"allocated": len(block)}


def spin(request: dict[str, Any]) -> dict[str, Any]:
    while True:
        pass


def leave_child(request: dict[str, Any]) -> dict[str, Any]:
    child = subprocess.Popen(["/bin/sleep", "300"], start_new_session=False)
    escaped = None
    try:
        pid = os.fork()
        if pid == 0:
            with contextlib.suppress(PermissionError):
                os.setsid()  # try to leave the process group
            time.sleep(300)
            os._exit(0)
        escaped = pid
    except OSError:
        pass
    return {"pids": [child.pid, escaped]}


def dump_environment(request: dict[str, Any]) -> dict[str, Any]:
    return {"environ": dict(os.environ)}


def read_parent_environ(request: dict[str, Any]) -> dict[str, Any]:
    with open(f"/proc/{request['pid']}/environ", "rb") as handle:
        return {"leaked": handle.read().decode(errors="replace")}


def ptrace_sibling(request: dict[str, Any]) -> dict[str, Any]:
    ptrace_attach = 16
    if _libc.ptrace(ptrace_attach, int(request["pid"]), None, None) != 0:
        raise _denied("ptrace(PTRACE_ATTACH)")
    return {"attached": True}


def new_user_namespace(request: dict[str, Any]) -> dict[str, Any]:
    clone_newuser = 0x10000000
    if _libc.unshare(clone_newuser) != 0:
        raise _denied("unshare(CLONE_NEWUSER)")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"0 {os.getuid()} 1")
    return {"uid_in_namespace": os.getuid()}


def write_vault(request: dict[str, Any]) -> dict[str, Any]:
    with open(request["path"], "ab") as handle:
        handle.write(b"tampered")
    return {"wrote": request["path"]}


def signal_runner(request: dict[str, Any]) -> dict[str, Any]:
    os.kill(int(request["pid"]), 0)
    return {"reached": True}


def orphans(request: dict[str, Any]) -> dict[str, Any]:
    """Start descendants meant to outlive the runner: a double-forked grandchild (reparented
    away from the tool), one that also tries to leave the process group, and a plain child;
    write every pid (the tool's too) to ``request["pid_file"]``, then wait to be killed."""
    pids = [os.getpid()]
    reader, writer = os.pipe()
    for leave_group in (False, True):
        middle = os.fork()
        if middle == 0:
            grandchild = os.fork()
            if grandchild == 0:
                if leave_group:
                    with contextlib.suppress(PermissionError):
                        os.setsid()
                time.sleep(300)
                os._exit(0)
            os.write(writer, f"{grandchild}\n".encode())
            os._exit(0)  # the grandchild is an orphan from here on
        os.waitpid(middle, 0)
    pids += [int(line) for line in os.read(reader, 1024).decode().split()]
    pids.append(subprocess.Popen(["/bin/sleep", "300"]).pid)
    with open(request["pid_file"], "w") as handle:
        handle.write(" ".join(map(str, pids)))
    time.sleep(300)
    return {"pids": pids}


def dial_proxy_port(request: dict[str, Any]) -> dict[str, Any]:
    """Read the proxy's port from HTTP_PROXY and dial it at every address in
    ``request["addresses"]``, around the proxy: report, per address, the errno name of the
    failure or the first bytes answered to an HTTP request for ``request["target"]``."""
    port = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
    found: dict[str, str] = {}
    for address in request["addresses"]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as conn:
                conn.settimeout(10)
                conn.connect((address, port))
                conn.sendall(f"GET {request['target']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                found[address] = "answered: " + conn.recv(200).decode(errors="replace")
        except OSError as exc:
            found[address] = errno.errorcode.get(exc.errno or 0, str(exc))
    return {"port": port, "found": found}


def keep_sysv_segment(request: dict[str, Any]) -> dict[str, Any]:
    """Create a SysV shared-memory segment under ``request["key"]`` meant to outlive the
    tool, and try to attach an existing one (``request["victim"]``, a shmid) and read it."""
    ipc_creat, size = 0o1000, 1 << 20
    _libc.shmget.restype = ctypes.c_int
    _libc.shmat.restype = ctypes.c_void_p
    shmid = _libc.shmget(int(request["key"]), size, ipc_creat | 0o600)
    read = None
    victim = request.get("victim")
    if victim is not None:
        address = _libc.shmat(int(victim), None, 0)
        if address not in (None, ctypes.c_void_p(-1).value):
            read = ctypes.string_at(address, 16).decode(errors="replace")
    return {"shmid": shmid, "errno": ctypes.get_errno(), "victim_read": read}


def hostile_control(request: dict[str, Any]) -> dict[str, Any]:
    """Write a malformed or forged message straight to the tool's channel (the bootstrap's
    argv[2]), then answer normally: the runner must end the invocation, not crash or
    believe it. First, try the supervisor's control socket (argv[1]): it must be closed."""
    import sys

    shapes = {
        "deep_array": b"[" * 200_000 + b"\n",
        "deep_object": b'{"type":"result","output":' + b'{"a":' * 300 + b"1" + b"}" * 301 + b"\n",
        "not_an_object": b'["result", 1]\n',
        "not_json": b"\xff\xfe not json\n",
        "forged_usage": b'{"type":"usage","max_rss_kib":1}\n',
        "forged_layers": b'{"type":"confined","layers":{"netns":true,"forged":true}}\n',
        "nothing": b"",
    }
    try:
        os.write(int(sys.argv[1]), b'{"type":"usage","max_rss_kib":1}\n')
        control = "written"
    except OSError as exc:
        control = errno.errorcode.get(exc.errno or 0, str(exc))
    os.write(int(sys.argv[2]), shapes[request["shape"]])
    return {"answered": True, "control": control}


def deep_scratch(request: dict[str, Any]) -> dict[str, Any]:
    """Leave a tree ``request["depth"]`` directories deep (a file in each) in the scratch
    folder, deeper than PATH_MAX and than Python's recursion limit."""
    scratch = os.environ["TMPDIR"]
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(int(request["depth"])):
        os.mkdir("d", dir_fd=fd)
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
        down = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = down
    os.chmod(fd, 0)
    os.close(fd)
    return {"scratch": scratch}


def big_response(request: dict[str, Any]) -> dict[str, Any]:
    """Answer with ``request["mib"]`` MiB of JSON."""
    return {"blob": "x" * (int(request["mib"]) * 1024 * 1024)}


def allocate_in_children(request: dict[str, Any]) -> dict[str, Any]:
    """Fork ``request["children"]`` processes that each touch ``request["mib"]`` MiB (each
    under the per-process cap) and wait for them: together they exceed the policy's memory.
    A child that was killed is reported as running out of memory."""
    size = int(request["mib"]) * 1024 * 1024
    pids = []
    for _ in range(int(request["children"])):
        pid = os.fork()
        if pid == 0:
            block = bytearray(size)
            for offset in range(0, size, 4096):
                block[offset] = 1
            time.sleep(5)
            os._exit(0)
        pids.append(pid)
    killed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        killed += os.WIFSIGNALED(status)
    if killed:
        raise MemoryError(f"{killed} children were killed")
    return {"children": len(pids)}


def _folder(where: str) -> str:
    return os.environ["TMPDIR"] if where == "scratch" else os.path.abspath(where)


def write_volume(request: dict[str, Any]) -> dict[str, Any]:
    """Write ``request["mib"]`` MiB in files of 16 MiB (each under the per-file cap) to
    ``request["where"]`` (a write path, or ``scratch``); ENOSPC ends it with an error."""
    folder = _folder(request["where"])
    block = b"w" * (1024 * 1024)
    written = 0
    for index in range(int(request["mib"]) // 16):
        with open(os.path.join(folder, f"volume-{index}.bin"), "wb") as handle:
            for _ in range(16):
                handle.write(block)
                written += len(block)
    return {"written": written}


def many_files(request: dict[str, Any]) -> dict[str, Any]:
    """Create ``request["count"]`` empty files in ``request["where"]``."""
    fd = os.open(_folder(request["where"]), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index in range(int(request["count"])):
            os.close(os.open(f"f{index}", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    return {"created": int(request["count"])}


def sparse_files(request: dict[str, Any]) -> dict[str, Any]:
    """Create ``request["count"]`` files of ``request["mib"]`` MiB each in ``out``, every one
    a hole but for one byte: almost nothing on the tool's tmpfs, a lot if copied out whole."""
    size = int(request["mib"]) * 1024 * 1024
    for index in range(int(request["count"])):
        with open(os.path.join("out", f"sparse-{index}.bin"), "wb") as handle:
            handle.truncate(size)
            handle.seek(size // 2)
            handle.write(b"x")
    return {"created": int(request["count"])}


def tcp_tricks(request: dict[str, Any]) -> dict[str, Any]:
    """Ways to a TCP peer without connect(2) or outside Landlock's TCP rules: TCP Fast Open
    (``sendto`` with MSG_FASTOPEN) to ``request["address"]``:``request["port"]``, and an MPTCP
    stream socket. The errno name of each failure, or what was answered."""
    found: dict[str, str] = {}
    msg_fastopen, ipproto_mptcp = 0x20000000, 262
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.sendto(
                b"GET / HTTP/1.0\r\n\r\n", msg_fastopen, (request["address"], request["port"])
            )
            found["fastopen"] = "answered: " + conn.recv(100).decode(errors="replace")
    except OSError as exc:
        found["fastopen"] = errno.errorcode.get(exc.errno or 0, str(exc))
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, ipproto_mptcp).close()
        found["mptcp"] = "created"
    except OSError as exc:
        found["mptcp"] = errno.errorcode.get(exc.errno or 0, str(exc))
    return found


def hard_links(request: dict[str, Any]) -> dict[str, Any]:
    """One file of ``request["mib"]`` MiB in ``out`` and ``request["links"]`` hard links to
    it: the names cost the quota nothing, the bytes count once on the tool's tmpfs."""
    first = os.path.join("out", "linked-0.bin")
    with open(first, "wb") as handle:
        handle.write(b"h" * (int(request["mib"]) * 1024 * 1024))
    for index in range(1, int(request["links"]) + 1):
        os.link(first, os.path.join("out", f"linked-{index}.bin"))
    return {"links": int(request["links"])}


def answer_then_die(request: dict[str, Any]) -> dict[str, Any]:
    """Write a file in ``out``, send a success on the tool channel itself, then SIGKILL its
    own process before the bootstrap could: an answer whose outputs never exited."""
    import signal
    import sys

    with open(os.path.join("out", "answered.txt"), "w") as handle:
        handle.write("written before the answer")
    os.write(int(sys.argv[2]), b'{"type":"result","output":{"ok":true}}\n')
    os.kill(os.getpid(), signal.SIGKILL)
    return {}
