"""Personal keys for CLI tests that publish, approve or move what the default policy wants
signed (A2+ definitions and their approvals, run approvals, production moves): `keys init`
writes one, `actors add` registers it as an admin (an admin may do every governed act): the
vault's first admin, or one registered by ``admin``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from strongroom.integrity import init_key


def registered_key(
    invoke: Callable[..., Any], folder: Path, name: str = "bob", *, admin: str | None = None
) -> str:
    """Create ``name``'s key in ``folder`` and register it through ``invoke`` (a function
    running `strongroom ...` arguments on the test's vault), signed by the key file
    ``admin`` (None: as the vault's first admin); returns the key file's path."""
    info = init_key(folder / f"{name}.pem")
    if admin is None:  # the first admin: the vault may not exist yet (`actors add` won't make it)
        created = invoke("init")
        assert created.exit_code == 0, (created.stdout, created.stderr)
    signed = ["--key", admin] if admin else []
    result = invoke(
        "actors", "add", name, "--public-key", str(info.public_key_path), "--role", "admin",
        *signed,
    )  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return str(info.path)
