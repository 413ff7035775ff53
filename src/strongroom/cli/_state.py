"""The light half of what every command shares, imported before any command is chosen: the
exit codes, finding the vault, the root options (`CliState`) and reporting an error. It
imports nothing heavy at module level (no pydantic, Rich, SQLAlchemy or vault), so
``strongroom --help`` starts at once; `strongroom.cli._context` re-exports all of it with the
helpers the commands use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from strongroom._fs import DEFAULT_VAULT_URL

if TYPE_CHECKING:
    from strongroom.vault import Vault

__all__ = [
    "CEILING_ENV",
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "VAULT_DIRNAME",
    "CliState",
    "JsonFlag",
    "RunIdArg",
    "cli_state",
    "default_vault_url",
    "emit_error",
    "encodable",
    "exit_code_for",
    "find_vault",
    "reconfigure_output",
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
    from strongroom.errors import family_code

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

        from strongroom.errors import NotFound
        from strongroom.secrets import safe_url
        from strongroom.vault import Vault

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
    from rich.console import Console
    from rich.text import Text

    line = Text()
    line.append(f"error[{error['code']}]", style="bold red")
    line.append(f": {message}")
    Console(stderr=True, soft_wrap=True, highlight=False).print(line)


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


# -- parameters several commands share ----------------------------------------------------------

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (errors too) instead of text."),
]
RunIdArg = Annotated[str, typer.Argument(help="Run id (a UUID, as printed by `runs create`).")]
