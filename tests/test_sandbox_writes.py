"""The write quota's copy-out: what a tool does to a write path (staged on a tmpfs overlay in
its own mount namespace) reaches the real folder exactly, planted links steer nothing, special
files and set-id bits are dropped, and a tool killed before it exits leaves the folder as it
was. The quota itself is probed in test_sandbox_escape.py."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _lane import TOOLS_DIR, Lane, manifest, open_lane, policy, require_sandbox, tool


def _lane_tools() -> Any:
    spec = importlib.util.spec_from_file_location("lane_tools", TOOLS_DIR / "lane_tools.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The tool's own code, run outside the sandbox to say what writing in place gives.
apply_ops: Callable[[dict[str, Any]], dict[str, Any]] = _lane_tools().apply_ops


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    lane = await open_lane(tmp_path)
    tools = [
        tool("rework_outputs", "lane_tools:rework_outputs"),
        tool("write_then_sleep", "lane_tools:write_then_sleep", timeout=2),
        tool("write_file", "lane_tools:write_file"),
        tool("apply_ops", "lane_tools:apply_ops"),
        tool("write_staged", "lane_tools:write_staged"),
    ]
    await lane.publish(policy(), manifest(tools))
    try:
        yield lane
    finally:
        await lane.vault.close()


async def _require_staged(lane: Lane, request_id: str) -> None:
    start = [e for e in await lane.audit(request_id) if e.event == "execution.start"][-1]
    if "write_quota" not in start.details["sandbox"]["enforced"]:
        message = "this host cannot stage writes (no mount namespace): written in place"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


async def test_every_change_to_a_write_path_is_copied_out(lane: Lane) -> None:
    out = lane.workdir / "out"
    victim = lane.root / "victim.txt"
    victim.write_text("untouched")
    (out / "keep.txt").write_text("host")
    (out / "keep2.txt").write_text("to rename")
    (out / "drop.txt").write_text("to delete")
    (out / "old_tree" / "x").mkdir(parents=True)
    (out / "old_tree" / "x" / "y.txt").write_text("old")
    (out / "replaced").mkdir()
    (out / "replaced" / "old.txt").write_text("old")
    (out / "was_link").symlink_to(victim)

    response = await lane.run("rework_outputs")
    assert response.ok, response.error
    await _require_staged(lane, response.request_id)

    assert (out / "keep.txt").read_text() == "host + tool"
    assert not (out / "drop.txt").exists()
    assert not (out / "old_tree").exists()
    assert sorted(p.name for p in (out / "replaced").iterdir()) == ["new.txt"]
    assert (out / "new" / "a" / "b" / "deep.txt").read_text() == "deep"
    assert os.readlink(out / "link") == "keep.txt"
    assert not (out / "fifo").exists()
    assert stat.S_IMODE((out / "suid.sh").stat().st_mode) == 0o755  # no set-uid bit
    assert not (out / "was_link").is_symlink()
    assert (out / "was_link").read_text() == "tool content"
    assert victim.read_text() == "untouched"
    assert (out / "renamed.txt").read_text() == "to rename"
    assert not (out / "keep2.txt").exists()
    end = await lane.end_record(response)
    copied = end["writes"]["copied_out"]
    assert copied["skipped"] == 1
    assert "fifo" in copied["skipped_examples"][0]
    assert copied["removed"] == 3  # whiteouts: drop.txt, old_tree, keep2.txt


async def test_no_staging_mount_reaches_the_host(lane: Lane) -> None:
    """The tmpfs and the overlays live in the supervisor's own mount namespace: none of
    them is left in (or was propagated to) the host's mount table."""
    mountinfo = Path("/proc/self/mountinfo")
    before = await asyncio.to_thread(mountinfo.read_text)
    response = await lane.run("write_staged")
    after = await asyncio.to_thread(mountinfo.read_text)
    await _require_staged(lane, response.request_id)
    assert response.ok, response.error
    assert "strongroom-sandbox-" not in before + after
    assert str(lane.workdir / "out") not in after


async def test_a_killed_tool_leaves_its_write_paths_as_they_were(lane: Lane) -> None:
    out = lane.workdir / "out"
    response = await lane.run("write_then_sleep")
    assert response.error is not None
    assert response.error.code == "timeout"
    await _require_staged(lane, response.request_id)
    assert not (out / "partial.txt").exists()


async def test_writes_outside_the_write_paths_stay_refused(lane: Lane) -> None:
    """The staging overlays change nothing about where a tool may write."""
    target = lane.workdir / "in" / "x.txt"
    response = await lane.run("write_file", {"path": str(target)})
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    assert not target.exists()
    staging = [e for e in await lane.audit(response.request_id) if e.event == "execution.start"]
    plan = staging[-1].details["sandbox"]
    assert str(lane.workdir / "in") not in plan["write_paths"]


_NAMES = st.sampled_from(["a", "b", "c", "a/b", "a/c", "b/a", "a/b/c"])
_OPS = st.one_of(
    st.tuples(st.just("write"), _NAMES, st.sampled_from(["x", "yy"])).map(list),
    st.tuples(st.sampled_from(["append", "mkdir", "rmtree", "remake", "unlink"]), _NAMES).map(list),
    st.tuples(st.just("rename"), _NAMES, _NAMES).map(list),
    st.tuples(st.just("symlink"), _NAMES, st.sampled_from(["a", "../x"])).map(list),
)


def _snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root``: a link's target, a file's text, or a folder."""
    found: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_dir():
                found[key] = "folder"
            else:
                found[key] = ("file", path.read_text())
    return found


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(setup=st.lists(_OPS, max_size=6), ops=st.lists(_OPS, min_size=1, max_size=8))
async def test_the_copy_out_equals_writing_in_place(
    lane: Lane,
    tmp_path_factory: pytest.TempPathFactory,
    setup: list[list[str]],
    ops: list[list[str]],
) -> None:
    """Whatever a tool does to a write path, the folder after the copy-out is the folder the
    same successful operations give when applied in place (hypothesis: random trees, random
    operations)."""
    out = lane.workdir / "out"
    for entry in list(out.iterdir()):
        _remove_host(entry)
    reference = tmp_path_factory.mktemp("reference")
    apply_ops({"root": str(out), "ops": setup})
    apply_ops({"root": str(reference), "ops": setup})
    response = await lane.run("apply_ops", {"ops": ops})
    assert response.ok, response.error
    await _require_staged(lane, response.request_id)
    succeeded = [
        op for op, result in zip(ops, response.output["done"], strict=True) if result == "ok"
    ]
    replay = apply_ops({"root": str(reference), "ops": succeeded})
    assert set(replay["done"]) <= {"ok"}, (succeeded, replay)
    assert _snapshot(out) == _snapshot(reference)


def _remove_host(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


async def test_a_tree_too_deep_to_copy_out_fails_the_invocation(lane: Lane) -> None:
    """A write-path tree deeper than the copy-out goes (256 folders) is not silently cut:
    the invocation fails and says where."""
    ops = [["mkdir", "/".join(["d"] * depth)] for depth in range(1, 300)]
    response = await lane.run("apply_ops", {"ops": ops})
    await _require_staged(lane, response.request_id)
    assert response.error is not None, response.output
    assert response.error.code == "sandbox_unavailable"
    assert response.error.details["reason"] == "copy_out_failed"
    assert "deeper than 256" in response.error.message
