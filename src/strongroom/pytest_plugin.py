"""The pytest plugin strongroom registers (entry point ``pytest11``, name ``strongroom``).

It makes the shipped conformance suites (`strongroom.testing`) run in any project, whatever
its pytest-asyncio configuration: each async test of a suite class (a class with
``__strongroom_conformance__``) is marked ``asyncio`` for pytest-asyncio, in strict mode as in
auto mode, and every test of a suite is marked ``strongroom_conformance`` (select them with
``-m strongroom_conformance``). It sits outside `strongroom.testing` and imports nothing of
strongroom (nor pytest-asyncio), so a project that merely has strongroom installed pays
nothing for it and starts even without the ``testing`` extra (tested). The suites' own
fixtures are pytest-asyncio fixtures (`strongroom.testing._base`), so the ``testing`` extra
installs pytest-asyncio.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

__all__ = ["CONFORMANCE_MARK"]

CONFORMANCE_MARK = "strongroom_conformance"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{CONFORMANCE_MARK}: a test of a strongroom conformance suite"
    )


def _is_async_test(obj: Any) -> bool:
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", None)  # @given
    return inspect.iscoroutinefunction(inner if inner is not None else obj)


def _has_mark(obj: Any, name: str) -> bool:
    return any(mark.name == name for mark in getattr(obj, "pytestmark", ()))


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    suite = getattr(collector, "obj", None)
    if not (inspect.isclass(suite) and getattr(suite, "__strongroom_conformance__", False)):
        return
    if not (name.startswith("test") and callable(obj)):
        return
    # The function is shared by every class inheriting the suite: mark it once.
    if not _has_mark(obj, CONFORMANCE_MARK):
        pytest.mark.strongroom_conformance(obj)
    if _is_async_test(obj) and not _has_mark(obj, "asyncio"):
        pytest.mark.asyncio(obj)
