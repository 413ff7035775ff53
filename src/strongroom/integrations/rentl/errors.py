"""rentl's storage errors, mirrored (``rentl_core.ports.storage``): `StorageError` carrying
``.info`` = {code, message, details{operation, run_id, artifact_id, backend, path, uri,
reason}}, `StorageBatchError` carrying ``.errors``, and the conversion of the info to rentl's
CLI error response (``ErrorResponse`` with the storage exit code, 23).

`storage_error` maps strongroom's error tree onto these codes (see the table there).
"""

from __future__ import annotations

from enum import StrEnum

import pydantic
from pydantic import Field

from strongroom.errors import (
    Conflict,
    NotFound,
    SerializationError,
    StorageIOError,
    StrongroomError,
    UnsupportedFormat,
)
from strongroom.errors import ValidationError as StrongroomValidationError
from strongroom.integrations.rentl.schemas import ArtifactId, BaseSchema, RunId, StorageBackend

__all__ = [
    "STORAGE_EXIT_CODE",
    "ErrorDetails",
    "ErrorResponse",
    "StorageBatchError",
    "StorageError",
    "StorageErrorCode",
    "StorageErrorDetails",
    "StorageErrorInfo",
    "parse_error_info",
    "storage_error",
]

#: rentl's ``ExitCode.STORAGE_ERROR``: the exit code of every ``storage.*`` error code.
STORAGE_EXIT_CODE = 23


class StorageErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    IO_ERROR = "io_error"
    SERIALIZATION_ERROR = "serialization_error"
    VALIDATION_ERROR = "validation_error"
    CONFLICT = "conflict"
    UNSUPPORTED_FORMAT = "unsupported_format"


class StorageErrorDetails(BaseSchema):
    operation: str | None = Field(None, description="Storage operation name")
    run_id: RunId | None = Field(None, description="Run identifier")
    artifact_id: ArtifactId | None = Field(None, description="Artifact identifier")
    backend: StorageBackend | None = Field(None, description="Storage backend identifier")
    path: str | None = Field(None, description="Filesystem path")
    uri: str | None = Field(None, description="Storage URI")
    reason: str | None = Field(None, description="Additional error context")


class ErrorDetails(BaseSchema):
    field: str | None = Field(None, description="Field name if applicable")
    provided: str | None = Field(None, description="Provided value")
    valid_options: list[str] | None = Field(None, description="Valid options if applicable")


class ErrorResponse(BaseSchema):
    code: str = Field(..., min_length=1, description="Error code")
    message: str = Field(..., min_length=1, description="Error message")
    details: ErrorDetails | None = Field(None, description="Optional error details")
    exit_code: int = Field(..., description="CLI exit code for this error")


class StorageErrorInfo(BaseSchema):
    code: StorageErrorCode = Field(..., description="Storage error code")
    message: str = Field(..., min_length=1, description="Error message")
    details: StorageErrorDetails | None = Field(None, description="Error details")

    def to_error_response(self) -> ErrorResponse:
        """rentl's standard error response for this error (as ``rentl`` prints it)."""
        details = None
        if self.details is not None:
            details = ErrorDetails(
                field=self.details.operation,
                provided=self.details.path or self.details.uri,
                valid_options=None,
            )
        return ErrorResponse(
            code=str(self.code), message=self.message, details=details, exit_code=STORAGE_EXIT_CODE
        )


class StorageError(Exception):
    """A storage failure with structured details in ``.info``."""

    def __init__(self, info: StorageErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


class StorageBatchError(Exception):
    """Several storage failures at once (``.errors``): nothing of the batch was stored."""

    def __init__(self, errors: list[StorageErrorInfo]) -> None:
        super().__init__(f"{len(errors)} storage errors")
        self.errors = errors


def _is_json_error(exc: pydantic.ValidationError) -> bool:
    return any(str(error.get("type", "")).startswith("json_") for error in exc.errors())


def parse_error_info(
    exc: pydantic.ValidationError | ValueError,
    *,
    entity: str,
    details: StorageErrorDetails,
    schema_entity: str | None = None,
) -> StorageErrorInfo:
    """rentl's classification of stored data that does not load: text that is not JSON is
    ``serialization_error`` ("<entity> JSON could not be parsed"), JSON that does not fit
    the schema ``validation_error`` ("<schema_entity> failed schema validation")."""
    code = StorageErrorCode.SERIALIZATION_ERROR
    message = f"{entity} JSON could not be parsed"
    if isinstance(exc, pydantic.ValidationError) and not _is_json_error(exc):
        code = StorageErrorCode.VALIDATION_ERROR
        message = f"{schema_entity or entity} failed schema validation"
    return StorageErrorInfo(
        code=code,
        message=message,
        details=details.model_copy(update={"reason": str(exc)}),
    )


# strongroom's error codes onto rentl's. IntegrityError (bytes that no longer match their
# digest, a record edited behind strongroom's back) has no rentl code: it is an io_error whose
# reason starts with "integrity_error".
_CODES: list[tuple[type[StrongroomError], StorageErrorCode]] = [
    (NotFound, StorageErrorCode.NOT_FOUND),
    (StorageIOError, StorageErrorCode.IO_ERROR),
    (SerializationError, StorageErrorCode.SERIALIZATION_ERROR),
    (UnsupportedFormat, StorageErrorCode.UNSUPPORTED_FORMAT),
    (StrongroomValidationError, StorageErrorCode.VALIDATION_ERROR),
    (Conflict, StorageErrorCode.CONFLICT),
]


def storage_error(exc: StrongroomError | OSError, details: StorageErrorDetails) -> StorageError:
    """The rentl `StorageError` for a strongroom error (or an OS error) raised during
    ``details.operation``: the code mapped, the message kept, and strongroom's own
    ``reason`` (else its code) in ``details.reason``."""
    if isinstance(exc, StrongroomError):
        code = next(
            (mapped for kind, mapped in _CODES if isinstance(exc, kind)),
            StorageErrorCode.IO_ERROR,
        )
        own = exc.details.get("reason")
        reason = exc.code if own is None else f"{exc.code}: {own}"
        message = exc.message or exc.code
        for key in ("path", "uri"):
            value = exc.details.get(key)
            if isinstance(value, str) and getattr(details, key) is None:
                details = details.model_copy(update={key: value})
    else:
        code = StorageErrorCode.IO_ERROR
        reason = type(exc).__name__
        message = str(exc) or type(exc).__name__
    extra = {"reason": reason if details.reason is None else f"{details.reason}: {reason}"}
    return StorageError(
        StorageErrorInfo(code=code, message=message, details=details.model_copy(update=extra))
    )
