"""A stand-in for Mass Relay's fetch_object_storage stub (reference_tools/fetch_object_storage.py):
deterministic, no I/O, the response its contract asks for."""

from __future__ import annotations

from typing import Any


def fetch_object_storage(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "uri": f"s3://{request['bucket']}/{request['key']}",
        "content_type": "application/json",
    }
