"""Running the tool, in the sandboxed child once it is confined: import its entry point,
call it with the input (and a `Host` when it declares a ``host`` parameter), and turn what
happened into the one message the runner accepts from the tool: ``{"type": "result", ...}``
or ``{"type": "error", "code": ..., ...}``.

Standard library only (imported by the bootstrap script before Landlock, so that reading
this file stays allowed).
"""

from __future__ import annotations

import errno
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs every invocation milliseconds
if TYPE_CHECKING:
    from typing import Any


class Host:
    """What a tool may ask the runner to do for it (the ``host`` parameter of a tool that
    declares one). Each call is one request/response on the control channel; the runner
    decides and audits. The sandbox itself never touches the vault."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._next = 0

    def call(self, op: str, **params: Any) -> Any:
        self._next += 1
        self._channel.send({"type": "host", "id": self._next, "op": op, "params": params})
        reply = self._channel.receive()
        if reply.get("type") != "host_result" or reply.get("id") != self._next:
            raise RuntimeError("unexpected reply from the runner")
        if "error" in reply:
            error = reply["error"]
            raise HostError(error.get("code", "error"), error.get("message", ""))
        return reply.get("result")


class HostError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _load(entrypoint: str) -> Any:
    module_name, _, attribute = entrypoint.partition(":")
    module = __import__(module_name, fromlist=["_"])
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def _wants_host(function: Any) -> bool:
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    return "host" in names


def _violation(exc: OSError) -> dict[str, Any]:
    return {
        "errno": errno.errorcode.get(exc.errno or 0, str(exc.errno)),
        "path": exc.filename if isinstance(exc.filename, str) else None,
        "reason": exc.strerror or str(exc),
    }


def run_tool(plan: dict[str, Any], channel: Any) -> dict[str, Any]:
    # After the runtime's own paths: a tool path can add modules, never replace one (the
    # runner also refuses a tool path that would shadow strongroom, the standard library
    # or an installed package).
    sys.path.extend(plan.get("sys_path", []))
    try:
        function = _load(plan["entrypoint"])
        if _wants_host(function):
            output = function(plan["input"], host=Host(channel))
        else:
            output = function(plan["input"])
    except MemoryError:
        return {"type": "error", "code": "memory_exceeded", "message": "out of memory"}
    except PermissionError as exc:
        return {
            "type": "error",
            "code": "sandbox_violation",
            "message": f"denied by the sandbox: {exc}",
            "details": _violation(exc),
            "traceback": _format_exc(),
        }
    except OSError as exc:
        if type(exc).__name__ != "gaierror":  # socket.gaierror, without importing socket
            return _exception(exc)
        # No resolver configuration is readable and no UDP socket can be opened: a name
        # lookup can only fail in here (allowlisted hosts are resolved by the runner's proxy).
        return {
            "type": "error",
            "code": "sandbox_violation",
            "message": f"name resolution is blocked by the sandbox: {exc}",
            "details": {"reason": "dns_blocked", "errno": str(exc.errno)},
            "traceback": _format_exc(),
        }
    except BaseException as exc:
        return _exception(exc)
    return {"type": "result", "output": output}


def _format_exc() -> str:
    import traceback  # only on failure: it costs milliseconds at start-up

    return traceback.format_exc()


def _exception(exc: BaseException) -> dict[str, Any]:
    return {
        "type": "error",
        "code": "handler_exception",
        "message": f"{type(exc).__name__}: {exc}",
        "details": {"exception": type(exc).__name__},
        "traceback": _format_exc(),
    }
