"""Export the Control Room API's OpenAPI schema: ``python -m strongroom.web.openapi DIR``
writes ``DIR/control-room-openapi.json``. The checked-in ``schemas/`` copy is compared with
the live schema by a test, so an API change without ``make schemas`` fails CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from strongroom.web.app import create_app

__all__ = ["FILE_NAME", "openapi_schema", "write"]

FILE_NAME = "control-room-openapi.json"


def openapi_schema() -> dict[str, Any]:
    """The schema, built without opening a vault (the routes are known without one)."""
    return create_app("memory://").openapi()


def write(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE_NAME
    path.write_text(json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover - exercised through `make schemas`
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")))
