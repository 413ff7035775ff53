"""Shared test options.

``--crash-kills N``: how many writer processes tests/test_crash.py SIGKILLs (default 200, about
a minute). For a longer soak: ``pytest tests/test_crash.py --crash-kills 2000`` (about ten
minutes; past ~3000 kills also raise pytest-timeout's limit, e.g. ``--timeout 3600``).
"""

from __future__ import annotations

import pytest

from _browser import browser  # noqa: F401
from _pg_fixtures import pg_server, pg_url  # noqa: F401
from _pg_roles import roles  # noqa: F401
from _s3_fixtures import s3_blob_url, s3_bucket, s3_client, s3_endpoint, s3_env, s3_store_factory  # noqa: F401

DEFAULT_CRASH_KILLS = 200


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--crash-kills",
        type=int,
        default=DEFAULT_CRASH_KILLS,
        metavar="N",
        help=f"SIGKILLs the crash test delivers to its writers (default {DEFAULT_CRASH_KILLS})",
    )


@pytest.fixture
def crash_kills(request: pytest.FixtureRequest) -> int:
    kills = request.config.getoption("--crash-kills")
    assert isinstance(kills, int)
    if kills < 1:
        raise pytest.UsageError("--crash-kills must be at least 1")
    return kills
