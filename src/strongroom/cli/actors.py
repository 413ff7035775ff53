"""`strongroom actors ...`: the people registered in the vault with their personal keys, who
sign governed acts (publish, approve...). The first key a vault gets is its first admin's;
every later registration and every revocation is signed by an admin's key (docs/security.md,
"Identity")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from strongroom.cli._context import JsonFlag, cli_state, reported_errors
from strongroom.cli._output import iso, plain_table, print_json, print_table, stdout_console
from strongroom.cli._registry_args import KeyOption, ReasonOption, SignFlag, personal_key
from strongroom.errors import ValidationError, map_os_errors
from strongroom.models import Actor, ActorRole

__all__ = ["app"]

app = typer.Typer(
    help="People and their keys: who may sign publications, approvals and other governed acts.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_MAX_PUBLIC_KEY_FILE = 4096


def _public_key(value: str) -> str:
    """A public key given as 64 hex digits or as a file holding them (``keys init`` writes
    ``<key>.pub``)."""
    text = value.strip().lower()
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text
    path = Path(value)
    with map_os_errors("actors.add", backend="local", path=str(path)):
        if not path.is_file():
            raise ValidationError(
                f"--public-key {value[:80]!r} is neither 64 hex digits nor a file",
                operation="actors.add",
                reason="bad_public_key",
            )
        if path.stat().st_size > _MAX_PUBLIC_KEY_FILE:
            raise ValidationError(
                f"{value[:80]} is too large to be a public key file",
                operation="actors.add",
                reason="bad_public_key",
            )
        return path.read_text(encoding="utf-8", errors="replace").strip().lower()


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The person's name (a label; the key is who).")],
    public_key: Annotated[
        str,
        typer.Option(
            "--public-key", help="Their public key: 64 hex digits, or the .pub file of keys init."
        ),
    ],
    role: Annotated[
        list[str],
        typer.Option("--role", help="publisher, approver, operator or admin (repeatable)."),
    ],
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Register a person's key. The vault's first key must be an admin's and needs no
    signature; every later one is signed by an admin (--key/--sign)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        allowed = {r.value for r in ActorRole}
        bad = [r for r in role if r not in allowed]
        if bad:
            raise ValidationError(
                f"--role must be one of {', '.join(sorted(allowed))}, got {bad[0][:40]!r}",
                operation="actors.add",
                reason="bad_role",
            )
        public = _public_key(public_key)
        signer = personal_key(key, sign)
        actor = state.run(lambda vault: vault.identity.add(name, public, role, signer=signer))
        if state.json:
            print_json(actor)
            return
        roles = ", ".join(r.value for r in actor.roles)
        stdout_console().print(Text(f"registered {actor.name}: key {actor.key_id} ({roles})"))


@app.command("list")
def list_(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Every registered key, oldest first, revoked ones included."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        actors: list[Actor] = state.run(lambda vault: vault.identity.actors())
        if state.json:
            print_json(actors)
            return
        console = stdout_console()
        if not actors:
            console.print(
                Text("No actors: `strongroom actors add NAME --public-key FILE --role admin`.")
            )
            return
        table = plain_table("KEY ID", "NAME", "ROLES", "ADDED (UTC)", "ADDED BY", "STATUS")
        for a in actors:
            status = f"revoked {iso(a.revoked_at)}" if a.revoked_at else "active"
            table.add_row(
                Text(a.key_id),
                Text(a.name),
                ", ".join(r.value for r in a.roles),
                iso(a.added_at),
                Text(a.added_by or "(first admin)"),
                status,
            )
        print_table(console, table, flexible="NAME")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key id to revoke (strongroom actors list).")],
    reason: ReasonOption,
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Revoke a key from now on (signed by an admin). Its earlier acts still verify."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        signer = personal_key(key, sign)
        if signer is None:
            raise ValidationError(
                "revoking a key needs an admin's signature: pass --key PATH or --sign",
                operation="actors.revoke",
                reason="admin_signature_required",
            )
        actor = state.run(lambda vault: vault.identity.revoke(key_id, reason=reason, signer=signer))
        if state.json:
            print_json(actor)
            return
        stdout_console().print(Text(f"key {actor.key_id} ({actor.name}) revoked"))
