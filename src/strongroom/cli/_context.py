"""What every command shares: the global options, running an async body against the vault,
and turning any failure into one line on stderr (or one JSON document on stdout) plus a
documented exit code (see docs/cli.md). The part the root command needs before a command is
chosen lives in `strongroom.cli._state` (light imports) and is re-exported here."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import typer

from strongroom._fs import read_regular_file
from strongroom.cli._state import (
    CEILING_ENV,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    VAULT_DIRNAME,
    CliState,
    JsonFlag,
    RunIdArg,
    cli_state,
    default_vault_url,
    emit_error,
    encodable,
    exit_code_for,
    find_vault,
    reconfigure_output,
)
from strongroom.errors import (
    NotFound,
    StorageIOError,
    StrongroomError,
    ValidationError,
    map_os_errors,
)
from strongroom.models import load_json_text
from strongroom.secrets import env_secrets, scrub_text
from strongroom.services import validation_error

__all__ = [
    "CEILING_ENV",
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "TOOL_PATH_ENV",
    "VAULT_DIRNAME",
    "CliState",
    "JsonFlag",
    "RunIdArg",
    "check_limit",
    "cli_state",
    "default_vault_url",
    "emit_error",
    "encodable",
    "exit_code_for",
    "find_vault",
    "parse_json_object",
    "parse_seq_cursor",
    "parse_timestamp",
    "read_json_value",
    "reconfigure_output",
    "reported_errors",
    "tool_paths",
]

T = TypeVar("T")


@contextmanager
def reported_errors(state: CliState) -> Iterator[None]:
    """Report what the block raises the CLI way and exit with the matching code.

    A `StrongroomError` is expected (bad input, missing thing, tampering); anything else is a
    bug: one ``error[internal]`` line, exit 70, and the traceback only with STRONGROOM_DEBUG=1
    (both through `strongroom.secrets.scrub_text`: a driver's message may echo a credential).
    """
    try:
        try:
            yield
        except pydantic.ValidationError as exc:  # a model built from input past the doors
            raise validation_error(exc, operation="cli") from None
        except OSError as exc:  # a path the user gave that the OS refuses (too long...)
            if isinstance(exc, BrokenPipeError | StrongroomError):  # StorageIOError is one
                raise
            raise _os_error(exc) from None
    except (typer.Exit, typer.Abort, BrokenPipeError):
        raise
    except StrongroomError as exc:
        emit_error(state.json, exc.to_dict())
        raise typer.Exit(exit_code_for(exc.code)) from None
    except Exception as exc:
        if os.environ.get("STRONGROOM_DEBUG", "") not in ("", "0"):
            sys.stderr.write(scrub_text(traceback.format_exc(), env_secrets()))
        emit_error(
            state.json,
            {
                "code": "internal",
                "message": scrub_text(f"{type(exc).__name__}: {exc}", env_secrets()),
                "details": {"type": f"{type(exc).__module__}.{type(exc).__qualname__}"},
            },
        )
        raise typer.Exit(EXIT_INTERNAL) from None


_USER_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.EINVAL, errno.ENOTDIR, errno.ELOOP, errno.EISDIR}


def _os_error(exc: OSError) -> StrongroomError:
    """An `OSError` no door mapped: on a path the user named (too long, not a directory, a
    loop of links) it is bad input, else an I/O failure; never an internal error."""
    path = os.fsdecode(exc.filename) if exc.filename is not None else None
    if exc.errno in _USER_PATH_ERRNOS:
        return ValidationError(
            f"{path if path is not None else 'a path'}"[:200] + f": {exc.strerror or exc}",
            operation="cli",
            reason=errno.errorcode.get(exc.errno or 0, "bad_path").lower(),
            path=path[:4096] if path is not None else None,
        )
    with contextlib.suppress(StrongroomError), map_os_errors("cli", backend="local", path=path):
        raise exc
    return StorageIOError(f"cli: {exc.strerror or exc}", operation="cli", path=path)


# -- parsing command-line values into structured errors -----------------------------------------


TOOL_PATH_ENV = "STRONGROOM_TOOL_PATH"


def tool_paths(given: list[Path] | None) -> tuple[Path, ...]:
    """The --tool-path folders, then $STRONGROOM_TOOL_PATH's; each must be a directory."""
    paths = list(given or [])
    paths += [Path(p) for p in os.environ.get(TOOL_PATH_ENV, "").split(os.pathsep) if p]
    for path in paths:
        if not path.is_dir():
            raise ValidationError(
                f"tool path {path} is not a directory",
                operation="cli.tools.run",
                reason="bad_tool_path",
                path=str(path),
            )
    return tuple(path.resolve() for path in paths)


MAX_JSON_INPUT_BYTES = 64 * 1024 * 1024
"""An ``@file`` JSON input larger than this is refused (`read_json_value`)."""


def read_json_value(raw: str, *, option: str) -> Any:
    """An option's JSON value, given inline or as ``@file.json``, parsed strictly
    (`strongroom.models.load_json_text`): malformed JSON, NaN, Infinity or 1e999 is
    `ValidationError`, nesting deeper than 128 levels `SerializationError` (``too_deep``). The
    file must be a regular file (a FIFO or device is refused, never blocked on) of at most
    64 MiB."""
    where: str = option
    text: str | bytes = raw
    if raw.startswith("@"):
        path = Path(raw[1:])
        where = str(path)
        with map_os_errors("cli", backend="local", path=where):
            try:
                text = read_regular_file(path, max_bytes=MAX_JSON_INPUT_BYTES)
            except FileNotFoundError:
                raise NotFound(
                    f"cannot read {path}: no such file", operation="cli", path=where
                ) from None
    return load_json_text(text, source=where, operation="cli")


def parse_json_object(text: str, *, option: str) -> dict[str, Any]:
    """Parse an option holding a JSON object (strictly, as `read_json_value` does);
    `ValidationError` naming the option otherwise."""
    value = load_json_text(text, source=option, operation="cli")
    if not isinstance(value, dict):
        raise ValidationError(
            f"{option} must be a JSON object, got {type(value).__name__}",
            operation="cli",
            reason="not_an_object",
        )
    return value


_DATE_ONLY = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")


def parse_timestamp(text: str, *, option: str, end_of_day: bool = False) -> datetime:
    """ISO-8601 date or date-time; a naive value is taken as UTC.

    With ``end_of_day`` a bare date means the end of that day, so ``--until 2025-01-31``
    includes runs created on the 31st.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(
            f"{option} must be an ISO-8601 date or date-time (e.g. 2025-01-31 or "
            f"2025-01-31T12:00:00Z), got {text!r}",
            operation="cli",
            reason="bad_timestamp",
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        if end_of_day and _DATE_ONLY.match(text.strip()):
            try:
                value += timedelta(days=1)
            except OverflowError:  # --until 9999-12-31: to the end of time
                return datetime.max.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31 + 1 day, 0001-01-01T00:00+14:00 in UTC...
        raise ValidationError(
            f"{option} is outside the dates strongroom can hold (years 1-9999 in UTC), got "
            f"{text!r}",
            operation="cli",
            reason="bad_timestamp",
        ) from None


MAX_SEQ = 2**63 - 1
"""The largest sequence number a store holds (a signed 64-bit integer)."""


def parse_seq_cursor(text: str, *, option: str = "--cursor") -> int:
    """A ``--cursor`` of a sequence-numbered listing (audit entries, log lines): the number
    after which the page starts, as the previous page's footer printed it."""
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= MAX_SEQ):
        raise ValidationError(
            f"{option} must be a cursor printed by the previous page (a sequence number from 0 "
            f"to {MAX_SEQ}), got {text[:40]!r}",
            operation="cli",
            reason="bad_cursor",
            option=option,
        )
    return int(value)


def check_limit(value: int, *, option: str = "--limit", high: int) -> int:
    """A page size option, 1..``high``."""
    if not 1 <= value <= high:
        raise ValidationError(
            f"{option} must be between 1 and {high}, got {value}",
            operation="cli",
            reason="out_of_range",
            option=option,
        )
    return value
