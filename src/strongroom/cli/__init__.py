"""The `strongroom` command line (Typer + Rich): runs, artifacts, logs, audit and verify.

Every command opens the vault named by ``--vault`` / ``STRONGROOM_URL``, does one thing in
one event loop, and prints text for people or, with ``--json``, one JSON document.
"""

from strongroom.cli.app import app, main

__all__ = ["app", "main"]
