"""The one error tree of strongroom: every failure a user can see is a `StrongroomError`.

Each error carries a stable machine ``code``, a readable ``message`` and JSON ``details``
(operation, run_id, artifact_id, backend, path, uri, reason, items...). Adapters translate
driver and OS errors into this tree at one place each (see ``map_os_errors`` and the SQL
adapter's ``map_db_errors``), re-raising ``from exc`` so the cause stays inspectable.

    StrongroomError
    ├── NotFound                 (LookupError)        code "not_found"
    ├── StorageIOError           (OSError)            code "io_error"
    ├── SerializationError       (ValueError)         code "serialization_error"
    ├── ValidationError          (ValueError)         code "validation_error"
    ├── Conflict                                      code "conflict"
    ├── UnsupportedFormat        (ValueError)         code "unsupported_format"
    ├── IntegrityError                                code "integrity_error"
    ├── PermissionDenied         (PermissionError)    code "permission_denied"
    ├── ApprovalRequired                              code "approval_required"
    ├── SandboxViolation                              code "sandbox_violation"
    └── OperationTimeout         (TimeoutError)       code "timeout"
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApprovalRequired",
    "Conflict",
    "ErrorInfo",
    "IntegrityError",
    "NotFound",
    "OperationTimeout",
    "PermissionDenied",
    "SandboxViolation",
    "SerializationError",
    "StorageIOError",
    "StrongroomError",
    "UnsupportedFormat",
    "ValidationError",
    "error_from_info",
    "map_os_errors",
]


class ErrorInfo(BaseModel):
    """The wire form of an error: what `--json` prints and what a run's last_error stores."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable machine code, e.g. 'not_found'.")
    message: str = Field(description="One readable sentence.")
    details: dict[str, Any] = Field(default_factory=dict, description="Structured context.")


class StrongroomError(Exception):
    """Root of every error strongroom raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message, details=self.details)

    def to_dict(self) -> dict[str, Any]:
        return self.to_info().model_dump(mode="json")

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class NotFound(StrongroomError, LookupError):
    code = "not_found"


class StorageIOError(StrongroomError, OSError):
    code = "io_error"


class SerializationError(StrongroomError, ValueError):
    code = "serialization_error"


class ValidationError(StrongroomError, ValueError):
    code = "validation_error"


class Conflict(StrongroomError):
    code = "conflict"


class UnsupportedFormat(StrongroomError, ValueError):
    code = "unsupported_format"


class IntegrityError(StrongroomError):
    code = "integrity_error"


class PermissionDenied(StrongroomError, PermissionError):
    code = "permission_denied"


class ApprovalRequired(StrongroomError):
    code = "approval_required"


class SandboxViolation(StrongroomError):
    code = "sandbox_violation"


class OperationTimeout(StrongroomError, TimeoutError):
    code = "timeout"


_BY_CODE: dict[str, type[StrongroomError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        StorageIOError,
        SerializationError,
        ValidationError,
        Conflict,
        UnsupportedFormat,
        IntegrityError,
        PermissionDenied,
        ApprovalRequired,
        SandboxViolation,
        OperationTimeout,
    )
}


def error_from_info(info: ErrorInfo) -> StrongroomError:
    """Rebuild an error from its wire form (used across process boundaries)."""
    cls = _BY_CODE.get(info.code, StrongroomError)
    return cls(info.message, **info.details)


@contextmanager
def map_os_errors(operation: str, *, backend: str, path: str | None = None) -> Iterator[None]:
    """Translate OSError raised in the block into the strongroom tree (one place per adapter)."""
    try:
        yield
    except StrongroomError:
        raise
    except FileNotFoundError as exc:
        raise NotFound(
            f"{operation}: no such file", operation=operation, backend=backend, path=path
        ) from exc
    except PermissionError as exc:
        raise PermissionDenied(
            f"{operation}: permission denied", operation=operation, backend=backend, path=path
        ) from exc
    except OSError as exc:
        reason = errno.errorcode.get(exc.errno or 0, "EIO") if exc.errno else type(exc).__name__
        raise StorageIOError(
            f"{operation}: {exc.strerror or exc}",
            operation=operation,
            backend=backend,
            path=path,
            reason=reason,
        ) from exc
