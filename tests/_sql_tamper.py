"""Edit registry rows of a SQL records store behind the vault's back (tamper tests)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from strongroom.adapters._sql import SqlMetadataStore
from strongroom.models import DefinitionKind
from strongroom.vault import Vault


async def forge_last_channel_move(vault: Vault, kind: DefinitionKind, ident: str) -> None:
    """Rewrite the reason in the body of the definition's channel moves to ``forged``."""
    store = vault.metadata
    assert isinstance(store, SqlMetadataStore)

    def op(conn: Connection) -> None:
        changed = conn.execute(
            text(
                'UPDATE channel_moves SET body = replace(body, \'"reason":"honest"\', '
                '\'"reason":"forged"\') WHERE kind = :kind AND definition_id = :ident'
            ),
            {"kind": kind.value, "ident": ident},
        ).rowcount
        assert changed >= 1

    await store._write("tamper", op)
