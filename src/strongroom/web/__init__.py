"""The Control Room: a read-only web UI and JSON API (``/api/v1``) over any vault
(`strongroom serve`, or `create_app` to embed it in your own ASGI application).

Read-only: no route changes the vault, which is opened without creating or bootstrapping
anything. Safe to open: a strict CSP with no inline script, every stored string escaped,
artifacts served as ``nosniff`` attachments, a token required for any bind but loopback
(see docs/control-room.md and docs/security.md)."""

from strongroom.web._security import TOKEN_ENV, check_bind
from strongroom.web.app import ControlRoom, create_app

__all__ = ["TOKEN_ENV", "ControlRoom", "check_bind", "create_app"]
