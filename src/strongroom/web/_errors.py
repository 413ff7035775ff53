"""Errors as the Control Room answers them: the CLI's ``--json`` shape
(``{"error": {"code", "message", "details"}}``) with an HTTP status from the error's family;
a page gets the same error rendered as HTML. Nothing unexpected leaks a traceback: it is an
``internal`` error whose message went through `scrub_text`."""

from __future__ import annotations

import logging
from typing import Any

import pydantic
from pydantic import BaseModel, Field

from strongroom.errors import ErrorInfo, StrongroomError, family_code
from strongroom.secrets import env_secrets, scrub_text
from strongroom.services import validation_error

__all__ = ["ErrorBody", "error_info", "status_for"]

log = logging.getLogger("strongroom.web")

_STATUS = {
    "validation_error": 422,
    "unsupported_format": 422,
    "serialization_error": 422,
    "not_found": 404,
    "unauthorized": 401,
    "permission_denied": 403,
    "conflict": 409,
    "integrity_error": 409,
    "io_error": 503,
    "timeout": 503,
}


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: ErrorInfo = Field(description="What went wrong: a stable code, a message, details.")


def status_for(code: str) -> int:
    """The HTTP status of an error code (by its family: ``invalid_contract`` -> 422)."""
    return _STATUS.get(code, _STATUS.get(family_code(code), 500))


def error_info(exc: BaseException) -> ErrorInfo:
    """Any exception as the error the API returns."""
    if isinstance(exc, StrongroomError):
        return exc.to_info()
    if isinstance(exc, pydantic.ValidationError):
        return validation_error(exc, operation="web").to_info()
    log.exception("unexpected error in the Control Room")
    details: dict[str, Any] = {"type": f"{type(exc).__module__}.{type(exc).__qualname__}"}
    return ErrorInfo(
        code="internal",
        message=scrub_text(f"{type(exc).__name__}: {exc}", env_secrets())[:2000],
        details=details,
    )
