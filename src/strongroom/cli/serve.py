"""`strongroom serve`: the Control Room (read-only web UI + JSON API) over the vault."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from typing import Annotated

import typer
from rich.console import Console

from strongroom.cli._context import JsonFlag, cli_state, reported_errors
from strongroom.cli._output import print_json
from strongroom.errors import NotFound, StorageIOError, ValidationError
from strongroom.secrets import safe_url
from strongroom.vault import Vault

TOKEN_ENV = "STRONGROOM_SERVE_TOKEN"
"""strongroom.web.TOKEN_ENV (named here so that other commands need not import the web stack)."""

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; anything but loopback needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="Require this token (at least 16 characters): 'Authorization: Bearer' for "
            "the API, a login form for the pages.",
        ),
    ] = None,
    root_path: Annotated[
        str,
        typer.Option(
            "--root-path",
            help="The path prefix a reverse proxy serves the Control Room under (e.g. "
            "/strongroom); links and scripts follow it.",
        ),
    ] = "",
    json_flag: JsonFlag = False,
) -> None:
    """Serve the Control Room: a read-only web UI and JSON API (/api/v1) over the vault."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if not 0 <= port <= 65535:
            raise ValidationError(
                f"--port {port}: expected 0-65535", operation="serve", field="--port"
            )
        from strongroom.web import check_bind, create_app  # the web stack, only for serve

        check_bind(host, token or None)
        if root_path and (not root_path.startswith("/") or any(c in root_path for c in "?#\\ ")):
            raise ValidationError(
                f"--root-path {root_path[:80]!r}: expected a path such as /strongroom",
                operation="serve",
                field="--root-path",
            )

        async def probe() -> None:  # a missing vault is refused before the port is bound
            vault = await Vault.open(
                state.vault_url, blobs_url=state.blobs_url, create=False, bootstrap=False
            )
            await vault.close()

        try:
            asyncio.run(probe())
        except NotFound:
            raise NotFound(
                f"no vault at {safe_url(state.vault_url)}: create one with `strongroom init` "
                "(or point --vault at it)",
                operation="serve",
            ) from None
        import uvicorn

        sock = _bind(host, port)
        port = sock.getsockname()[1]
        app = create_app(state.vault_url, blobs_url=state.blobs_url, token=token or None)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=os.environ.get("STRONGROOM_SERVE_LOG", "warning"),
            access_log=False,
            server_header=False,
            proxy_headers=False,
            root_path=root_path.rstrip("/"),
        )
        server = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        if state.json:  # one document, at once, so a script learns the port (--port 0)
            print_json(
                {
                    "url": url,
                    "host": host,
                    "port": port,
                    "vault": safe_url(state.vault_url),
                    "token_required": bool(token),
                }
            )
        Console(stderr=True, highlight=False).print(
            f"strongroom Control Room on {url} over "
            f"{safe_url(state.vault_url)} (read-only; Ctrl-C stops it)",
            markup=False,
            soft_wrap=True,
        )
        # What is alive now (modules, the app, its templates) lives as long as the server:
        # out of the collector's way, a full collection no longer walks it (in the 1,000-step
        # run page benchmark, collections took half the page's time).
        gc.freeze()
        server.run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is a clear error and port 0
    is told as the port it became."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValidationError(
            f"--host {host!r}: {exc.strerror}", operation="serve", field="--host"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StorageIOError(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}",
            operation="serve",
            host=host,
            port=port,
        ) from None
    sock.set_inheritable(True)
    return sock
