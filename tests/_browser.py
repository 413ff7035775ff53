"""Browser tests' plumbing: Debian's Chromium driven by Playwright, over a real `strongroom serve`.

- ``browser``: one headless Chromium (``/usr/bin/chromium``, or ``$STRONGROOM_TEST_CHROMIUM``;
  Playwright's own downloads are never used). Missing, the browser tests skip saying how to
  install it, or fail under ``CI=true``. Module-scoped, not session-scoped: while Playwright's
  sync API runs, its thread counts as running an event loop, so ``asyncio.run``, `SyncVault`
  and every pytest-asyncio test after it would fail in that thread until Playwright stops.
- `off_loop`: run blocking code that drives an event loop (`SyncVault`, ``populate_sync``) in
  a worker thread, as a test must while the browser is up.
- `served`: ``strongroom serve --port 0`` as a subprocess (the environment inherited, so S3
  credentials set by a fixture reach it), its URL read from the line it prints once bound.
- `watched`: a fresh browser context and page whose console, page errors and dialogs are
  recorded; leaving it fails the test on any CSP violation, script error, console error or
  dialog, whatever the page.
- `Shots`: screenshots of the pages, under ``build/screenshots/<backend>/``; with
  ``STRONGROOM_DOCS_SCREENSHOTS=1``, the main ones also become
  ``docs/images/control-room-<name>.png`` (1280 px wide, the top 1400 px at most).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Error, Page, ViewportSize

__all__ = [
    "CHROMIUM",
    "VIEWPORT",
    "PageWatch",
    "Shots",
    "browser",
    "off_loop",
    "require_chromium",
    "served",
    "watched",
]

CHROMIUM = Path(os.environ.get("STRONGROOM_TEST_CHROMIUM") or "/usr/bin/chromium")
INSTALL_HINT = "install Chromium: apt-get install -y chromium (`make tools` does it as root)"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
START_DEADLINE = 90.0
"""Seconds a server may take to bind and answer (generous: a loaded CI machine)."""
EXPECT_MS = 30_000
"""How long a page condition may take to hold (live updates poll every 2 s)."""

REPO = Path(__file__).resolve().parents[1]
SHOTS_DIR = REPO / "build" / "screenshots"
DOCS_IMAGES = REPO / "docs" / "images"
DOCS_ENV = "STRONGROOM_DOCS_SCREENSHOTS"

T = TypeVar("T")


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} under CI: {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"{message}: {INSTALL_HINT}")


def require_chromium() -> None:
    """Skip (fail under CI) the calling test when Chromium or Playwright is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _unavailable(f"Playwright is not importable ({exc}; pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_MS)

    # Root (a CI container) cannot use Chromium's user-namespace sandbox.
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield launched
        finally:
            launched.close()


def off_loop(function: Callable[[], T]) -> T:
    """``function()`` in a worker thread (no event loop marked running there), its result or
    its exception here."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


# --- the server ---------------------------------------------------------------------------

_BOUND = re.compile(r"Control Room on (http://\S+?)/? over ")


def _pump(stream: IO[str], lines: queue.Queue[str | None], kept: list[str]) -> None:
    """Read the server's stderr to its end (so that it never blocks on a full pipe)."""
    for line in stream:
        kept.append(line)
        lines.put(line)
    lines.put(None)


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/api/v1/runs?limit=1", timeout=10) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextlib.contextmanager
def served(vault_url: str, blobs_url: str | None = None) -> Iterator[str]:
    """A ``strongroom serve --port 0`` over the vault, until the block ends; yields its base
    URL (``http://127.0.0.1:PORT``) once ``/api/v1/runs`` answers."""
    command = [sys.executable, "-m", "strongroom", "serve", "--port", "0", "--vault", vault_url]
    if blobs_url:
        command += ["--blobs", blobs_url]
    env = {k: v for k, v in os.environ.items() if k != "STRONGROOM_SERVE_TOKEN"}
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    kept: list[str] = []
    pump = threading.Thread(target=_pump, args=(process.stderr, lines, kept), daemon=True)
    pump.start()
    try:
        url = _wait_bound(process, lines, kept)
        yield url
    finally:
        _stop(process)
        pump.join(timeout=15)
        process.stderr.close()


def _wait_bound(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], kept: list[str]
) -> str:
    deadline = time.monotonic() + START_DEADLINE

    def failed(why: str) -> str:
        return f"strongroom serve {why}; its stderr:\n{''.join(kept)[-2000:]}"

    url: str | None = None
    while url is None:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(failed(f"printed no URL within {START_DEADLINE:.0f} s"), pytrace=False)
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            process.wait(timeout=15)
            pytest.fail(failed(f"exited ({process.returncode}) before binding"), pytrace=False)
        found = _BOUND.search(line)
        if found:
            url = found.group(1).rstrip("/")
    while not _answers(url):
        if process.poll() is not None:
            pytest.fail(failed(f"exited ({process.returncode}) after binding"), pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(failed(f"bound {url} but did not answer"), pytrace=False)
        time.sleep(0.1)  # a poll interval: the loop waits on the condition above
    return url


# --- pages ----------------------------------------------------------------------------------

_CSP = ("Content Security Policy", "Content-Security-Policy", "Refused to")


@dataclass
class PageWatch:
    """What the pages of one browser context said: console messages, script errors and
    dialogs (each dialog is dismissed at once)."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._error)
        page.on("dialog", self._dialog)
        page.on("framenavigated", lambda frame: self._navigated(page, frame.url))

    def _navigated(self, page: Page, url: str) -> None:
        if url != "about:blank" and url not in self.visited:
            self.visited.append(url)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text} ({message.location.get('url')})")

    def _error(self, error: Error) -> None:
        self.errors.append(f"{error.name}: {error.message}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def problems(self) -> list[str]:
        csp = [m for m in self.console if any(mark in m for mark in _CSP)]
        errors = [m for m in self.console if m.startswith("error:")]
        return (
            [f"CSP violation: {m}" for m in csp]
            + [f"console {m}" for m in errors if m not in csp]
            + [f"page error: {e}" for e in self.errors]
            + [f"dialog opened: {d}" for d in self.dialogs]
        )

    def check(self) -> None:
        problems = self.problems()
        assert not problems, f"on {self.visited}:\n" + "\n".join(problems)


@contextlib.contextmanager
def watched(browser: Browser, base_url: str) -> Iterator[tuple[Page, PageWatch]]:
    """A new context (1280x800, downloads accepted, ``base_url`` for relative ``goto``) and a
    page in it, watched; on leaving, `PageWatch.check` (unless the block already failed)."""
    context = browser.new_context(
        base_url=base_url, viewport=VIEWPORT, accept_downloads=True, service_workers="block"
    )
    context.set_default_timeout(EXPECT_MS)
    context.set_default_navigation_timeout(EXPECT_MS)
    watch = PageWatch()
    context.on("page", watch.attach)
    # A page that ran a stored payload would set this (tests/_web_fixtures.py's XSS).
    context.add_init_script("window.__xss = undefined;")
    try:
        page = context.new_page()
        yield page, watch
        watch.check()
    finally:
        context.close()


@dataclass
class Shots:
    """Screenshots of one backend's pages: the whole page under ``build/screenshots/``, and
    with ``STRONGROOM_DOCS_SCREENSHOTS=1`` (sqlite only) the top of the main pages (1280 px
    wide, at most 1400 px high) as ``docs/images/control-room-<name>.png``."""

    backend: str
    taken: list[Path] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return SHOTS_DIR / self.backend.replace("+", "-")

    def take(self, page: Page, name: str, *, docs: bool = False) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        self.taken.append(path)
        if docs and self.backend == "sqlite" and os.environ.get(DOCS_ENV) == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            height = int(page.evaluate("document.documentElement.scrollHeight"))
            page.screenshot(
                path=str(DOCS_IMAGES / f"control-room-{name}.png"),
                full_page=True,
                clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": min(height, 1400)},
                animations="disabled",
            )
        return path
