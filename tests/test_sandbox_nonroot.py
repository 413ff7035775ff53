"""The sandbox as an unprivileged user. CI runs as root, where the runner drops each tool to a
fresh uid; a runner started by an ordinary user takes the other path (a user namespace
instead of the uid drop, no control groups). So when this suite runs as root, the escape and
network probes run again as a freshly created user with a virtualenv of its own (the system
Python: root's interpreter may live in a 0700 home), and must pass there too."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

USER = "strongroom-probe"
REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")
SUITES = ("tests/test_sandbox_escape.py", "tests/test_sandbox_network.py")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the non-root sandbox suite: {reason}")
    pytest.skip(reason)


def _ensure_user() -> Path:
    try:
        return Path(pwd.getpwnam(USER).pw_dir)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", USER],
            check=True,
            capture_output=True,
        )
        return Path(pwd.getpwnam(USER).pw_dir)


def _copy_repo(home: Path) -> Path:
    work = home / "repo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, work / name)
    for name in ("src", "tests", "examples"):
        shutil.copytree(REPO / name, work / name, ignore=ignore)
    entry = pwd.getpwnam(USER)
    for root, dirs, files in os.walk(work):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)
    return work


@pytest.mark.slow
def test_escape_and_network_probes_hold_for_an_unprivileged_runner() -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: this whole suite already runs as an unprivileged user")
    runuser = shutil.which("runuser")
    if shutil.which("useradd") is None or runuser is None:
        _unavailable("useradd and runuser are needed to create the unprivileged user")
        return
    if not SYSTEM_PYTHON.exists():
        _unavailable(f"{SYSTEM_PYTHON} is needed (with venv) for the user's virtualenv")
    home = _ensure_user()
    _copy_repo(home)
    script = (
        "set -e; cd ~/repo; "
        f"test -x ~/venv/bin/python || {SYSTEM_PYTHON} -m venv ~/venv; "
        "~/venv/bin/pip install --quiet --disable-pip-version-check '.[dev]'; "
        "~/venv/bin/python -m pytest -p no:cacheprovider -q -ra " + " ".join(SUITES)
    )
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "CI": os.environ.get("CI", ""),
    }
    done = subprocess.run(
        [runuser, "-u", USER, "--", "bash", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    passed = re.search(r"(\d+) passed", output)
    assert passed is not None, output[-3000:]
    assert int(passed.group(1)) >= 40, output[-3000:]
