"""A backend written as a third party would write it passes the shipped conformance suites
from a directory outside this repository, against strongroom installed from its wheel.

The backend and its test module are the ones docs/architecture.md shows under "Adding a
backend" (the ``python`` block starting ``# test_toy_backend.py``), run as written: no
conftest, no pytest configuration, so pytest-asyncio runs in its default strict mode and the
suites work only through strongroom's own pytest plugin (`strongroom.pytest_plugin`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import strongroom

REPO = Path(strongroom.__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
LOOP_SCOPE_NAG = 'The configuration option "asyncio_default_fixture_loop_scope" is unset'
BLOCK = re.compile(r"```python\n(# test_toy_backend\.py\n.*?)```", re.S)


def _documented_test() -> str:
    found = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(found) == 1, "docs/architecture.md must show exactly one toy backend test"
    return str(found[0])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """strongroom's wheel, built from this checkout and installed into a folder of its own."""
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("not a source checkout: nothing to build a wheel from")
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work), str(REPO)],
        check=True,
        timeout=600,
    )
    (wheel,) = work.glob("strongroom-*.whl")
    target = work / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=600,
    )
    return target


def test_the_documented_toy_backend_passes_the_suites_from_outside(
    installed: Path, tmp_path: Path
) -> None:
    project = tmp_path / "toy-backend"
    project.mkdir()
    (project / "test_toy_backend.py").write_text(_documented_test(), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHON"))},
        "PYTHONPATH": str(installed),  # before the dev install: the wheel is what runs
    }
    where = subprocess.run(
        [sys.executable, "-c", "import strongroom; print(strongroom.__file__)"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout
    assert (installed / "strongroom" / "py.typed").is_file()
    assert (installed / "strongroom" / "demo" / "_examples" / "registry").is_dir()
    done = subprocess.run(
        [
            *[sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-W", "error"],
            # pytest-asyncio's nag to every project that has not chosen a fixture loop scope:
            # the toy project, like a new one, has not; the suites do not depend on it.
            *["-W", f"ignore:{LOOP_SCOPE_NAG}:pytest.PytestDeprecationWarning"],
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed > 100, summary  # the suites ran, not an empty collection
    # The two optional parts the toy leaves out: rewriting a channel move behind the records
    # store's back (needs the store's internals), and blob write times (`_inventory`: without
    # them GC never plans unused blobs). Their tests say so and skip; nothing else does.
    allowed = ("cannot tamper with a channel move", "does not say when a blob was written")
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all(any(reason in line for reason in allowed) for line in skips), skips
    assert len(skips) <= 2, skips
