"""`strongroom keys ...`: an Ed25519 key kept outside the vault (the user's config directory,
or the file ``STRONGROOM_SIGNING_KEY`` names): it signs audit checkpoints and anchored heads,
so whoever can rewrite the vault cannot re-sign its history, and, registered with `strongroom
actors add`, it is its owner's personal key for signed governed acts (publish, approve)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from strongroom.cli._context import JsonFlag, cli_state, reported_errors
from strongroom.cli._output import print_json, stdout_console
from strongroom.errors import ValidationError
from strongroom.integrity import default_key_path, init_key, load_signing_key, public_key_path

__all__ = ["app"]

app = typer.Typer(
    help="Your Ed25519 key (kept outside the vault): signs audit checkpoints and, once "
    "registered (strongroom actors add), your governed acts.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

PathOption = Annotated[
    str | None,
    typer.Option(
        "--path",
        help="The key file (default: $STRONGROOM_SIGNING_KEY, else "
        "~/.config/strongroom/signing-key.pem).",
    ),
]


def _key_file(text: str | None) -> Path | None:
    """``--path`` as a file path: empty, a folder (a trailing ``/``), ``.`` or ``..`` are
    refused before anything is written."""
    if text is None:
        return None
    path = Path(text)
    if not text or text.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise ValidationError(
            f"--path {text[:200]!r}: expected a key file, e.g. "
            "~/.config/strongroom/signing-key.pem",
            operation="keys",
            field="--path",
        )
    return path


@app.command("init")
def init(
    ctx: typer.Context,
    path: PathOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing key (old signatures stay valid).")
    ] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Create the signing key (0600) and its public key beside it; refuses to overwrite."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        info = init_key(_key_file(path), overwrite=force)
        if state.json:
            print_json(info)
            return
        console = stdout_console()
        console.print(Text(f"signing key {info.key_id} written to {info.path}"))
        console.print(Text(f"public key (give it to auditors): {info.public_key_path}"))


@app.command("show")
def show(ctx: typer.Context, path: PathOption = None, json_flag: JsonFlag = False) -> None:
    """Print the key id and public key of the signing key (never the private key)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        where = _key_file(path) or default_key_path()
        key = load_signing_key(where, required=True)
        assert key is not None
        view = {
            "path": str(where),
            "public_key_path": str(public_key_path(where)),
            "key_id": key.key_id,
            "public_key": key.public_key_hex,
        }
        if state.json:
            print_json(view)
            return
        console = stdout_console()
        for name, value in view.items():
            console.print(Text(f"{name}: {value}"))
