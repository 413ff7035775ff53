"""The sandboxed child's entry point: confine this process, then run one tool.

The runner starts ``python -I <this file> <control-fd> <tool-fd>`` in a new session with a
scrubbed environment, sends one JSON line on the control socket (the plan: layers, entry
point, input) and reads JSON lines back: on the control socket, which only the supervisor
(see `supervise`) keeps, the layers applied and the tool's resource usage; on the tool's
socket, its result and host requests, the only things the runner accepts from the tool.
This file uses the standard library only and runs as a plain script, so confining a tool
never imports strongroom itself.

Order of confinement (each step only narrows what the next one can do):

1. network and IPC namespaces (``unshare``; with a user namespace when not root): no
   interface but the loopback, so no route anywhere, and SysV IPC and POSIX message queues of
   the tool's own, gone with it. With a network allowlist the loopback comes up and an
   egress *relay* listens on 127.0.0.1 and ::1 at the proxy's port: each connection it
   accepts is passed (the descriptor itself, over a socket the runner handed down) to the
   runner's proxy, so the proxy is the only way out, whatever address the tool dials;
2. rlimits: CPU seconds, address space, file size, open files, processes, no core dumps;
3. when root: drop to the plan's unprivileged uid/gid (so ``RLIMIT_NPROC`` applies; root is
   exempt from it), keeping only CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH so the interpreter,
   which may live in a 0700 home, stays readable: Landlock, not Unix permissions, decides
   which paths are reachable;
4. Landlock: the file system is deny-by-default (read: the runtime and the policy's
   read_paths; write: the policy's write_paths and a private scratch directory), TCP connect
   only to the egress proxy's port, no signals or abstract sockets outside the sandbox;
5. seccomp: no sockets but TCP (allowlist) or none (deny-all), no ptrace, no namespaces, no
   setsid (the process group must stay killable), no mounts, no io_uring, no bpf; with an
   allowlist, every connect(2) waits for the supervisor's decision (`_connects`).

Before any of that, the process forks: the parent stays outside as the tool's supervisor
(it reports the tool's resource usage and, should the runner die, kills the tool's process
group and uid, see `supervise`), the child confines itself and runs the tool. Before the
fork, the supervisor sets up the write quota (`_staging`: a mount namespace of its own with
a limited tmpfs and overlays the child inherits); after the tool exits it reports what the
tool wrote, copies it out to the write paths, and reports the connections it refused.

Then the tool's module is imported and its function called with the input (`_invoke`).
Messages sent back: ``{"type": "host", ...}`` (a host-service request, answered by the
runner), ``{"type": "result", "output": ...}`` or ``{"type": "error", "code": ..., ...}``.
The sandbox's own modules are imported the way this file imports them (`_import_layer`),
and none of them imports ``json``, ``typing``, ``contextlib``, ``socket`` or ``threading``:
those would cost every invocation milliseconds of start-up (`_lean`).
"""

from __future__ import annotations

import os
import resource
import sys

try:  # the C module under ``signal``, which would import ``enum`` (milliseconds per start)
    import _signal as signal  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not CPython
    import signal

TYPE_CHECKING = False  # not typing's: importing typing costs every invocation milliseconds
if TYPE_CHECKING:
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))

PR_SET_PDEATHSIG = 1

MAX_MESSAGE = 256 * 1024 * 1024

# -- the control channel ---------------------------------------------------------------------


class Channel:
    """JSON lines over the control socket (the runner holds the other end). Plain ``os``
    reads and writes: the ``socket`` module would cost a few milliseconds per start."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        data = lean.dumps(message).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def receive(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError("the runner closed the control channel")
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE:
                raise ValueError("control message too large")
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = lean.loads(line)
        if not isinstance(message, dict):
            raise ValueError("control message is not an object")
        return message


# -- the layers ------------------------------------------------------------------------------


def _import_layer(name: str) -> Any:
    sys.path.insert(0, _HERE)
    try:
        return __import__(name)
    finally:
        sys.path.remove(_HERE)


lean = _import_layer("_lean")  # json and contextlib.suppress, without their imports
steps = _import_layer("_layers")  # the confinement steps, and the C library's calls
_c, _check = steps.libc, steps.check


def confine(plan: dict[str, Any]) -> dict[str, Any]:
    """Apply the plan's layers in order; return what each one did (for the audit)."""
    layers: dict[str, Any] = plan["layers"]
    done: dict[str, Any] = {}
    if plan.get("staging_error"):
        raise OSError(plan["staging_error"])
    if layers.get("write_quota"):
        done["write_quota"] = {
            k: layers["write_quota"][k] for k in ("bytes", "files", "write_paths")
        }
    as_root = os.geteuid() == 0
    # Import the layer modules before Landlock takes the right to read them away.
    landlock = _import_layer("_landlock") if layers.get("landlock") else None
    seccomp = _import_layer("_seccomp") if layers.get("seccomp") else None
    netns = layers.get("netns")
    relay: list[Any] = []
    if netns:
        steps.enter_network_namespace(as_root)
        done["netns"] = done["ipcns"] = True
        if isinstance(netns, dict) and netns.get("relay_port"):
            relay = steps.open_relay(int(netns["relay_port"]))
            done["egress_relay"] = {"port": int(netns["relay_port"]), "listeners": len(relay)}
    if layers.get("rlimits"):
        steps.apply_rlimits(layers["rlimits"])
        done["rlimits"] = layers["rlimits"]
    if layers.get("drop_uid") and as_root:
        target = layers["drop_uid"]
        steps.drop_privileges(int(target["uid"]), int(target["gid"]))
        done["drop_uid"] = target
    # Die with the supervisor (which itself takes everything down when the runner dies). Set
    # after the uid change, which clears it.
    _die_with_parent(signal.SIGKILL, plan["supervisor_pid"])
    os.chdir(plan["cwd"])
    if landlock is not None:
        spec = layers["landlock"]
        done["landlock"] = landlock.restrict_self(
            read_paths=spec["read_paths"],
            write_paths=spec["write_paths"],
            connect_tcp=spec.get("connect_tcp", []),
        )
    if seccomp is not None:
        spec = layers["seccomp"]
        deny_ipc = bool(spec.get("deny_ipc"))
        allow_inet = bool(spec["allow_inet_stream"])
        listener = None
        if spec.get("connect_to"):
            try:  # every connect(2) decided and recorded by the supervisor (_connects.py)
                listener = seccomp.install(
                    allow_inet_stream=allow_inet, deny_ipc=deny_ipc, notify_connect=True
                )
            except OSError:  # a kernel without seccomp user notification (< 5.7)
                listener = None
        if listener is None:
            seccomp.install(allow_inet_stream=allow_inet, deny_ipc=deny_ipc)
        else:
            plan["_connect_listener"] = listener
        denied = [*seccomp.DENIED, *(seccomp.IPC_DENIED if deny_ipc else ())]
        done["seccomp"] = {"denied": denied, **spec, "connect_watch": listener is not None}
    if relay and isinstance(netns, dict):
        steps.start_relay(relay, int(netns["relay_fd"]))
    return done


def probe() -> dict[str, Any]:
    """What this host lets a child do (run by the runner once per process, in a child, so
    nothing here touches the runner itself)."""
    found: dict[str, Any] = {"euid": os.geteuid(), "platform": sys.platform}
    # Tool runs use -B (nothing written next to the code): import every part here, where
    # compiled files may be written, so no invocation has to compile one (milliseconds each).
    for part in ("_layers", "_invoke", "_staging", "_connects", "_landlock", "_seccomp"):
        try:
            _import_layer(part)
        except Exception:
            continue
    try:
        landlock = _import_layer("_landlock")
        found["landlock_abi"] = landlock.abi_version()
    except Exception as exc:
        found["landlock_abi"] = 0
        found["landlock_error"] = str(exc)
    try:
        seccomp = _import_layer("_seccomp")
        ok, reason = seccomp.supported()
        found["seccomp"] = bool(ok)
        found["seccomp_reason"] = reason
    except Exception as exc:
        found["seccomp"] = False
        found["seccomp_reason"] = str(exc)
    pid = os.fork()
    if pid == 0:  # try the namespaces in a grandchild: they cannot be left again
        try:
            steps.enter_network_namespace(os.geteuid() == 0)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    found["netns"] = os.waitstatus_to_exitcode(status) == 0
    found["mountns"] = _import_layer("_staging").probe(_c())
    found["python_path"] = [p for p in sys.path if p and os.path.isabs(p)]
    found["prefixes"] = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix})
    return found


def _enter_staging(plan: dict[str, Any]) -> Any:
    """The write quota's mounts, in this (the supervisor's) mount namespace, which the tool
    inherits. A failure is kept in the plan: the child then refuses to run the tool."""
    spec = plan["layers"].get("write_quota")
    if not spec:
        return None
    try:
        staging = _import_layer("_staging")
        return staging, staging.enter(spec, _c(), os.geteuid() == 0)
    except BaseException as exc:
        plan["staging_error"] = f"could not stage the tool's writes: {exc}"
        return None


def _confine_merge(uppers: list[str], targets: list[str]) -> None:
    """The copy-out's own confinement: read the upper layers, write the write paths."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with lean.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    landlock = _import_layer("_landlock")
    if landlock.abi_version() >= 1:
        landlock.restrict_self(read_paths=uppers, write_paths=targets)


def supervise(plan: dict[str, Any], control: Channel, tool_fd: int) -> int:
    """Fork: the child goes on to confine itself and run the tool; this process stays
    outside the confinement, waits for it and reports on the control channel, which only it
    holds: the layers the child applied (sent to it on a pipe the child closes before the
    tool's code is imported) and the tool's resource usage (``wait4``). Returns, in the
    child only, the write end of that pipe.

    Why a supervisor: the kernel carries a process's peak RSS across ``fork`` + ``exec``,
    so the runner's ``wait4`` would report the runner's own (large) RSS as the tool's peak.
    A child forked from this small interpreter starts near its real size. The child's
    status is mirrored (same exit code, or death by the same signal) so the runner sees
    what the tool did. And the tool never holds the control socket, so it cannot forge
    what the runner records about it.
    """
    target = plan["layers"].get("drop_uid") or {}
    tool_uid = int(target["uid"]) if "uid" in target and os.geteuid() == 0 else None

    def die_with_the_runner(signum: int, frame: Any) -> None:
        _take_down(tool_uid)

    # When the runner dies (SIGKILLed orchestrator), the tool dies with this process (its
    # PDEATHSIG), but what the tool started would be left running, orphaned. So this
    # process gets a catchable signal instead and takes everything down first.
    signal.signal(signal.SIGTERM, die_with_the_runner)
    _die_with_parent(signal.SIGTERM, plan.get("runner_pid"))
    plan["supervisor_pid"] = os.getpid()
    staged = _enter_staging(plan)
    watch_to = (plan["layers"].get("seccomp") or {}).get("connect_to")
    if watch_to:  # a socket, not a pipe: the connect listener comes back with the layers
        import _socket

        ends = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        layers_read, layers_write = ends[0].detach(), ends[1].detach()
    else:
        layers_read, layers_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.close(layers_read)
        os.close(control.fd)  # the tool's process never holds the control socket
        return layers_write
    os.close(layers_write)
    os.close(tool_fd)  # only the tool talks on its channel
    netns = plan["layers"].get("netns")
    if isinstance(netns, dict) and "relay_fd" in netns:
        with lean.suppress(OSError):
            os.close(int(netns["relay_fd"]))
    listener = _forward_layers(layers_read, control, receive_fd=bool(watch_to))
    watch = None
    if listener is not None and watch_to:
        connects = _import_layer("_connects")
        watch = connects.ConnectWatch(listener, [tuple(a) for a in watch_to], _c())
        with lean.suppress(OSError):
            watch.serve(pid)
        os.close(listener)  # what the tool left behind can no longer connect (ENOSYS)
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    if staged is not None:
        staging, stage = staged
        writes = staging.finish(stage, _c(), _confine_merge, exited=os.WIFEXITED(status))
        with lean.suppress(OSError, ValueError):
            control.send({"type": "writes", "writes": writes})
    if watch is not None:
        with lean.suppress(OSError):
            control.send({"type": "connects", "connects": watch.report()})
    with lean.suppress(OSError):  # (CPU time: the runner's wait4 of this process)
        control.send({"type": "usage", "max_rss_kib": usage.ru_maxrss})
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), number)
    os._exit(os.WEXITSTATUS(status))


_MAX_LAYERS_REPORT = 1 << 20


def _forward_layers(fd: int, control: Channel, *, receive_fd: bool = False) -> int | None:
    """The child's one report of its layers (read until it closes its end, bounded), on
    the control channel. Nothing, or something that is not a JSON object, is not
    forwarded: the runner then records no layer as applied. With ``receive_fd`` the
    report arrives on a socket, with the seccomp connect listener attached: returned."""
    data = b""
    listener = None
    with lean.suppress(OSError):
        if receive_fd:
            import _socket
            import struct

            sock = _socket.socket(fileno=fd)
            try:
                while len(data) <= _MAX_LAYERS_REPORT:
                    chunk, ancillary, _, _ = sock.recvmsg(65536, _socket.CMSG_SPACE(4))
                    for level, kind, payload in ancillary:
                        if level != _socket.SOL_SOCKET or kind != _socket.SCM_RIGHTS:
                            continue
                        usable = len(payload) - len(payload) % 4
                        for (received,) in struct.iter_unpack("i", payload[:usable]):
                            if listener is None:
                                listener = received
                            else:
                                os.close(received)
                    if not chunk:
                        break
                    data += chunk
            finally:
                fd = sock.detach()
        else:
            while len(data) <= _MAX_LAYERS_REPORT and (chunk := os.read(fd, 65536)):
                data += chunk
    os.close(fd)
    try:
        layers = lean.loads(data) if len(data) <= _MAX_LAYERS_REPORT else None
    except ValueError:
        layers = None
    if isinstance(layers, dict):
        with lean.suppress(OSError):
            control.send({"type": "confined", "layers": layers})
    return listener


def _report_layers(fd: int, report: bytes, listener: int | None) -> None:
    """The child's side of `_forward_layers`: the report, and the connect listener handed
    over (then closed here: the tool must never hold it)."""
    view = memoryview(report)
    if listener is not None:
        import _socket

        sock = _socket.socket(fileno=fd)
        try:
            view = view[steps.send_fd(sock, view, listener) :]
        finally:
            sock.detach()
            os.close(listener)
    while view:
        view = view[os.write(fd, view) :]


def _die_with_parent(sig: int, parent_pid: int | None) -> None:
    """Get ``sig`` when the parent dies (``PR_SET_PDEATHSIG``); then exit at once if it died
    already, before the setting took effect (``parent_pid`` None: no check)."""
    _check(_c().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), "PR_SET_PDEATHSIG")
    if parent_pid is not None and os.getppid() != int(parent_pid):
        os._exit(137)


def _take_down(tool_uid: int | None) -> None:
    """SIGKILL every process the tool may have started, then this one: the process group
    (seccomp keeps a tool from leaving it) and, as root, every process of the tool's own
    uid (one per invocation, so nothing else runs as it). The uid scan is the twin of
    `strongroom.sandbox.launch.kill_uid`: this script may import nothing of strongroom."""
    if tool_uid is not None:
        with lean.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                with lean.suppress(OSError):
                    if entry.stat().st_uid == tool_uid:
                        os.kill(int(entry.name), signal.SIGKILL)
    with lean.suppress(OSError):
        os.killpg(0, signal.SIGKILL)  # our own group, this process included
    os._exit(137)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--probe"]:
        sys.stdout.write(lean.dumps(probe()) + "\n")
        return 0
    control = Channel(int(argv[1]))  # the runner <-> this supervisor: plan, layers, usage
    tool_fd = int(argv[2])  # the runner <-> the tool: its result and host requests
    plan = control.receive()
    layers_fd = supervise(plan, control, tool_fd)  # returns in the child only
    channel = Channel(tool_fd)
    try:
        invoke = _import_layer("_invoke")  # before Landlock takes the right to read it
        enforced = confine(plan)
    except BaseException as exc:
        os.close(layers_fd)
        channel.send(
            {
                "type": "error",
                "code": "sandbox_unavailable",
                "message": f"could not confine the tool: {exc}",
                "details": {"exception": type(exc).__name__},
            }
        )
        return 3
    report = lean.dumps(enforced).encode()
    with lean.suppress(OSError):
        _report_layers(layers_fd, report, plan.pop("_connect_listener", None))
    os.close(layers_fd)  # before any of the tool's code runs
    message = invoke.run_tool(plan, channel)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        channel.send(message)  # encoding the output here is also what checks it is JSON
    except (TypeError, ValueError, RecursionError) as exc:
        channel.send(
            {
                "type": "error",
                "code": "handler_exception",
                "message": f"the tool's output is not JSON: {exc}",
            }
        )
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
