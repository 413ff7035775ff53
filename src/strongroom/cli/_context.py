"""What every command shares: the global options, running an async body against the vault,
and turning any failure into one line on stderr (or one JSON document on stdout) plus a
documented exit code (see docs/cli.md)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import shlex
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pydantic
import typer
from rich.console import Console
from rich.text import Text

from strongroom._fs import read_regular_file
from strongroom.errors import (
    NotFound,
    StorageIOError,
    StrongroomError,
    ValidationError,
    family_code,
    map_os_errors,
)
from strongroom.models import load_json_text
from strongroom.secrets import env_secrets, safe_url, scrub_text
from strongroom.services import validation_error
from strongroom.vault import DEFAULT_VAULT_URL, Vault

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

EXIT_PROBLEMS = 1
"""`verify` found problems; also any strongroom error code without its own exit code."""
EXIT_USAGE = 2
"""Bad command line (Typer's usage errors) and ``validation_error``."""
EXIT_INTERNAL = 70
"""An unexpected exception: a bug (EX_SOFTWARE from sysexits.h)."""

EXIT_CODES: dict[str, int] = {
    "validation_error": EXIT_USAGE,
    "not_found": 3,
    "conflict": 4,
    "integrity_error": 5,
    "io_error": 6,
    "permission_denied": 7,
    "serialization_error": 8,
    "unsupported_format": 9,
    "approval_required": 10,
    "sandbox_violation": 11,
    "timeout": 12,
    "sandbox_unavailable": 13,
    "tool_failed": 14,
    "internal": EXIT_INTERNAL,
}


def exit_code_for(code: str) -> int:
    """The exit code of an error code. A refined code (``invalid_contract``,
    ``version_label_taken``, ``self_approval``...) exits like its family (`family_code`):
    2, 4, 7...; the JSON error keeps the precise code."""
    if code in EXIT_CODES:
        return EXIT_CODES[code]
    return EXIT_CODES.get(family_code(code), EXIT_PROBLEMS)


VAULT_DIRNAME = ".strongroom"
"""The directory name `find_vault` looks for, as git looks for ``.git``."""
CEILING_ENV = "STRONGROOM_CEILING_DIRECTORIES"
"""Like ``GIT_CEILING_DIRECTORIES``: ``os.pathsep``-separated directories `find_vault` does
not reach (it looks below them only)."""


def find_vault(start: Path | None = None) -> Path | None:
    """The nearest ``.strongroom`` directory in ``start`` (default: the current directory) or
    one of its parents, stopping before any directory named in $STRONGROOM_CEILING_DIRECTORIES
    and at the filesystem root; None if there is none."""
    here = (start or Path.cwd()).absolute()
    ceilings = {
        Path(os.path.abspath(p)) for p in os.environ.get(CEILING_ENV, "").split(os.pathsep) if p
    }
    for directory in (here, *here.parents):
        if directory in ceilings:
            return None
        candidate = directory / VAULT_DIRNAME
        try:
            if candidate.is_dir():
                return candidate
        except OSError:  # unreadable parent: stop looking, as git does
            return None
    return None


def default_vault_url(start: Path | None = None) -> tuple[str, bool]:
    """The vault a command uses when neither --vault nor $STRONGROOM_URL names one: the
    nearest ``.strongroom`` (`find_vault`), shown as ``./.strongroom`` when it is the current
    directory's; else ``./.strongroom``, which only the commands that create a vault create.
    The flag says whether one was found."""
    found = find_vault(start)
    if found is None:
        return DEFAULT_VAULT_URL, False
    here = (start or Path.cwd()).absolute()
    return (DEFAULT_VAULT_URL if found.parent == here else str(found)), True


@dataclass(frozen=True)
class CliState:
    """The root options, as every command sees them. ``vault_named``: the vault came from
    --vault or $STRONGROOM_URL (else it was looked for up the directory tree)."""

    vault_url: str = DEFAULT_VAULT_URL
    json: bool = False
    blobs_url: str | None = None
    vault_named: bool = True
    typed: tuple[str, ...] = ()
    """The global options given on the command line (not from the environment), as words to
    add to a printed hint so that it runs against the same vault (passwords redacted)."""

    def hint(self, command: str) -> str:
        """``command`` (a `strongroom ...` line to paste) with this invocation's --vault and
        --blobs, which work after the command name too."""
        return command if not self.typed else f"{command} {shlex.join(self.typed)}"

    def run(
        self,
        work: Callable[[Vault], Awaitable[T]],
        *,
        create: bool = False,
        bootstrap: bool = True,
    ) -> T:
        """Open the vault, await ``work(vault)``, close the vault: one event loop per command.

        Only commands that start something (``init``, ``runs create``) create a missing vault;
        the rest report `not_found`, so a mistyped ``--vault`` never makes an empty vault.
        ``bootstrap=False`` opens without adding the default catalog entries a vault lacks
        (`verify` must not repair what it is checking).
        """

        async def main() -> T:
            async with await Vault.open(
                self.vault_url, blobs_url=self.blobs_url, create=create, bootstrap=bootstrap
            ) as vault:
                return await work(vault)

        try:
            return asyncio.run(main())
        except NotFound as exc:
            if exc.details.get("operation") != "open_vault":
                raise
            if self.vault_named:
                shown = safe_url(self.vault_url)
                raise NotFound(
                    f"no strongroom vault at {shown}: create it with `strongroom init --vault "
                    f"{shlex.quote(shown)}`, or check --vault / $STRONGROOM_URL",
                    **{**exc.details, "reason": "no_vault", "url": shown},
                ) from None
            raise NotFound(
                f"no vault found in {Path.cwd()} or any parent directory: create one here "
                "with `strongroom init`, or name one with --vault URL (or $STRONGROOM_URL)",
                operation="open_vault",
                reason="no_vault",
                searched_from=str(Path.cwd()),
            ) from None


def cli_state(ctx: typer.Context, json_flag: bool = False) -> CliState:
    """The root options, with a command's own ``--json`` folded in."""
    state = ctx.find_object(CliState) or CliState()
    return replace(state, json=state.json or json_flag)


def encodable(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of a path or id the user typed,
    echoed back) as ``\\udcxx`` escapes: valid JSON inside a string, printable anywhere."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def emit_error(as_json: bool, error: dict[str, Any]) -> None:
    """One JSON document on stdout with ``--json``; otherwise one line on stderr."""
    error = {
        "code": error.get("code", "error"),
        "message": error.get("message", ""),
        "details": error.get("details") or {},
    }
    if as_json:
        text = json.dumps({"error": error}, indent=2, ensure_ascii=False)
        sys.stdout.write(encodable(text) + "\n")
        sys.stdout.flush()
        return
    message = encodable(" ".join(str(error.get("message", "")).split()))
    line = Text()
    line.append(f"error[{error['code']}]", style="bold red")
    line.append(f": {message}")
    Console(stderr=True, soft_wrap=True, highlight=False).print(line)


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


def reconfigure_output() -> None:
    """Write text that cannot be encoded (a path or id holding undecodable bytes, which
    Python keeps as lone surrogates) as backslash escapes instead of failing mid-output, and
    read text from stdin (`logs append -m -`, `--lines`) with undecodable bytes as U+FFFD
    (binary stdin, `artifacts put -`, is read as bytes and kept as it is)."""
    for stream, errors in ((sys.stdout, "backslashreplace"), (sys.stderr, "backslashreplace")):
        _reconfigure(stream, errors)
    _reconfigure(sys.stdin, "replace")


def _reconfigure(stream: object, errors: str) -> None:
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, TypeError, AttributeError, OSError):
            reconfigure(errors=errors)


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


# -- parameters several commands share ----------------------------------------------------------

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (errors too) instead of text."),
]
RunIdArg = Annotated[str, typer.Argument(help="Run id (a UUID, as printed by `runs create`).")]
