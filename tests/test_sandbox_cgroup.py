"""The control group of one invocation, on its own: the task cap holds for a process's
descendants, `kill_all` leaves nothing running in it, `remove` leaves no group behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.sandbox._cgroup import ToolCgroup, cgroup_support

FORKER = """
import os, sys
sys.stdin.readline()  # wait until the test has moved this process into the group
forked = 0
try:
    for _ in range(20):
        if os.fork() == 0:
            import time
            time.sleep(600)
            os._exit(0)
        forked += 1
except BlockingIOError:
    pass
print(forked, flush=True)
sys.stdin.readline()
"""


def test_tasks_are_capped_and_nothing_outlives_the_group() -> None:
    if cgroup_support() is None:
        pytest.skip("control groups are not writable by this process (a non-root runner)")
    group = ToolCgroup.create(256 * 1024 * 1024, max_tasks=5)
    dirs = list(group.dirs)
    with subprocess.Popen(
        [sys.executable, "-c", FORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdin is not None
            assert proc.stdout is not None
            group.add(proc.pid)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            forked = int(proc.stdout.readline())
            assert 0 < forked < 5  # the cap counts the parent too; the 20 forks were refused
            assert group.kill_all() is True
            proc.wait(timeout=60)
            assert group.kill_all() is False  # nothing left in it
        finally:
            if proc.poll() is None:
                proc.kill()
            group.kill_all()
            group.remove()
    assert not any(Path(d).exists() for d in dirs)
