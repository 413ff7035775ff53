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
    │   ├── InvalidContract      (ValueError)         code "invalid_contract"
    │   ├── UnknownReference     (ValueError)         code "unknown_reference"
    │   ├── DependencyCycle      (ValueError)         code "dependency_cycle"
    │   └── SchemaValidationFailed (ValueError)       code "schema_validation_failed"
    ├── Conflict                                      code "conflict"
    │   ├── LabelConflict                             code "version_label_taken"
    │   ├── StaleChannel                              code "stale_channel"
    │   └── DigestDrift                               code "digest_drift"
    ├── UnsupportedFormat        (ValueError)         code "unsupported_format"
    ├── IntegrityError                                code "integrity_error"
    ├── PermissionDenied         (PermissionError)    code "permission_denied"
    │   ├── SelfApproval         (PermissionError)    code "self_approval"
    │   ├── SignatureRequired    (PermissionError)    code "signature_required"
    │   └── UnknownSigner        (PermissionError)    code "unknown_signer"
    ├── ApprovalRequired                              code "approval_required"
    ├── SandboxViolation                              code "sandbox_violation"
    ├── SandboxUnavailable                            code "sandbox_unavailable"
    ├── ToolFailed                                    code "tool_failed"
    │   ├── HandlerException                          code "handler_exception"
    │   └── MemoryExceeded                            code "memory_exceeded"
    └── OperationTimeout         (TimeoutError)       code "timeout"

The indented codes refine their parent's: ``except ValidationError`` also catches an
``InvalidContract``, and the CLI exits with the parent's exit code (`family_code`).
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
    "DependencyCycle",
    "DigestDrift",
    "ErrorInfo",
    "HandlerException",
    "IntegrityError",
    "InvalidContract",
    "LabelConflict",
    "MemoryExceeded",
    "NotFound",
    "OperationTimeout",
    "PermissionDenied",
    "SandboxUnavailable",
    "SandboxViolation",
    "SchemaValidationFailed",
    "SelfApproval",
    "SerializationError",
    "SignatureRequired",
    "StaleChannel",
    "StorageIOError",
    "StrongroomError",
    "ToolFailed",
    "UnknownReference",
    "UnknownSigner",
    "UnsupportedFormat",
    "ValidationError",
    "error_from_info",
    "family_code",
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


class SandboxUnavailable(StrongroomError):
    """The host cannot enforce what a sandbox policy asks (and degraded isolation was not
    accepted)."""

    code = "sandbox_unavailable"


class ToolFailed(StrongroomError):
    """A tool ran and failed (the execution lane's failures other than the ones above)."""

    code = "tool_failed"


class HandlerException(ToolFailed):
    """The tool's function raised (the traceback, redacted, is in the details)."""

    code = "handler_exception"


class MemoryExceeded(ToolFailed):
    """The tool went over its memory limit."""

    code = "memory_exceeded"


class OperationTimeout(StrongroomError, TimeoutError):
    code = "timeout"


# -- refined codes (registry) ------------------------------------------------------------------


class InvalidContract(ValidationError):
    """A tool contract (request/response/error schema) is not a valid JSON Schema."""

    code = "invalid_contract"


class UnknownReference(ValidationError):
    """A definition names a tool, playbook or policy (version/channel) the registry lacks."""

    code = "unknown_reference"


class DependencyCycle(ValidationError):
    """A playbook's step dependencies form a cycle."""

    code = "dependency_cycle"


class LabelConflict(Conflict):
    """The version label is already taken by other content of the same definition."""

    code = "version_label_taken"


class StaleChannel(Conflict):
    """A channel moved since the caller read it (compare-and-set on the pointer lost)."""

    code = "stale_channel"


class SchemaValidationFailed(ValidationError):
    """A tool's input or output does not match its contract's schema (``details.path`` is
    the JSON path of the first mismatch)."""

    code = "schema_validation_failed"


class DigestDrift(Conflict):
    """A definition a run started with (playbook, tool, project config) now resolves to
    different content; resuming needs ``--force``."""

    code = "digest_drift"


class SelfApproval(PermissionDenied):
    """An actor tried to approve their own publication or promotion."""

    code = "self_approval"


class SignatureRequired(PermissionDenied):
    """The vault's policy wants this act signed with a registered personal key."""

    code = "signature_required"


class UnknownSigner(PermissionDenied):
    """The act was signed with a key that is not registered in the vault, is revoked, or
    lacks the role the act needs."""

    code = "unknown_signer"


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
        SandboxUnavailable,
        ToolFailed,
        HandlerException,
        MemoryExceeded,
        OperationTimeout,
        InvalidContract,
        SchemaValidationFailed,
        UnknownReference,
        DependencyCycle,
        LabelConflict,
        StaleChannel,
        DigestDrift,
        SelfApproval,
        SignatureRequired,
        UnknownSigner,
    )
}


def family_code(code: str) -> str:
    """The code of the top-level family ``code`` belongs to: ``invalid_contract`` ->
    ``validation_error``; a top-level or unknown code is returned unchanged."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return code
    for base in cls.__mro__:
        if (
            isinstance(base, type)
            and issubclass(base, StrongroomError)
            and StrongroomError in base.__bases__
        ):
            return base.code
    return code


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
    except OSError as exc:
        # `strongroom._fs.FileRefused` (a sibling module this one cannot import): a path
        # strongroom will not read or write as a file is bad input, not an I/O failure.
        reason = getattr(exc, "strongroom_reason", None)
        if reason is None:
            raise _mapped(exc, operation, backend, path) from exc
        raise ValidationError(
            str(exc),
            operation=operation,
            path=getattr(exc, "path", None) or path,
            reason=reason,
            **getattr(exc, "details", {}),
        ) from exc


def _mapped(exc: OSError, operation: str, backend: str, path: str | None) -> StrongroomError:
    where = f" ({path})" if path else ""
    if isinstance(exc, FileNotFoundError):
        return NotFound(
            f"{operation}: no such file{where}", operation=operation, backend=backend, path=path
        )
    if isinstance(exc, PermissionError):
        return PermissionDenied(
            f"{operation}: permission denied{where}",
            operation=operation,
            backend=backend,
            path=path,
        )
    reason = errno.errorcode.get(exc.errno or 0, "EIO") if exc.errno else type(exc).__name__
    return StorageIOError(
        f"{operation}: {exc.strerror or exc}",
        operation=operation,
        backend=backend,
        path=path,
        reason=reason,
    )
