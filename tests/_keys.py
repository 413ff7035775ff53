"""A personal key for CLI tests that approve A2+ tools or production promotions (the default
policy wants those signed): `keys init` writes it, `actors add` registers it as the vault's
first admin (an admin may approve)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from strongroom.integrity import init_key


def registered_key(invoke: Callable[..., Any], folder: Path, name: str = "bob") -> str:
    """Create ``name``'s key in ``folder`` and register it through ``invoke`` (a function
    running `strongroom ...` arguments on the test's vault); returns the key file's path."""
    info = init_key(folder / f"{name}.pem")
    result = invoke(
        "actors", "add", name, "--public-key", str(info.public_key_path), "--role", "admin"
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return str(info.path)
