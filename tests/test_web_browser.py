"""The Control Room in a real browser: Debian's Chromium driven by Playwright, against a real
``strongroom serve`` subprocess over a vault populated by the demo (tests/_web_fixtures.py),
on SQLite and on PostgreSQL + S3.

A user's walk through every page: the run index (filters, status counts, paging), a run's
timeline and DAG, a run paused for an approval, artifact previews and a verified download, a
running run watched while it moves (status and log tail, without a reload), a snapshot diff,
two runs compared, the registry with a version diff, the audit trail, and pages full of stored
XSS payloads that stay text. Every page visited is checked for CSP violations, script errors,
console errors and dialogs (tests/_browser.py's `watched`), and screenshotted under
``build/screenshots/<backend>/`` (``STRONGROOM_DOCS_SCREENSHOTS=1`` refreshes
``docs/images/control-room-*.png`` from the SQLite pass).

Without Chromium these tests skip (they fail under ``CI=true``): ``apt-get install -y chromium``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from _browser import EXPECT_MS, Shots, off_loop, served, watched
from _pg_fixtures import fresh_database
from _s3_fixtures import module_bucket
from _web_fixtures import PNG, XSS, Population, populate_sync
from strongroom import SyncVault

T = TypeVar("T")

SECOND_PROJECT_VERSION = "1.1.0"
"""A second version of the demo's project config, published here: the demo publishes one
version of everything, and a definition page diffs two."""


@dataclass
class Site:
    backend: str
    population: Population
    base_url: str
    shots: Shots

    def vault(self, action: Callable[[SyncVault], T]) -> T:
        """``action(vault)`` on this site's vault, off the browser's thread."""
        pop = self.population

        def run() -> T:
            with SyncVault.open(pop.url, blobs_url=pop.blobs_url, create=False) as vault:
                return action(vault)

        return off_loop(run)

    def api(self, page: Page, path: str) -> Any:
        response = page.request.get(path)
        assert response.ok, (path, response.status, response.text()[:300])
        return response.json()


def _populate(url: str, workdir: Path, blobs_url: str | None) -> Population:
    population = populate_sync(url, workdir, blobs_url=blobs_url)
    source = Path(__file__).parents[1] / "examples" / "registry" / "data-quality-project.yaml"
    text = source.read_text()
    assert "version: 1.0.0" in text
    changed = text.replace("version: 1.0.0", f"version: {SECOND_PROJECT_VERSION}").replace(
        "Nightly checks", "Nightly and weekly checks"
    )
    with SyncVault.open(url, blobs_url=blobs_url, create=False) as vault:
        vault.registry.publish(changed.encode(), file_name="data-quality-project.yaml")
    return population


@contextlib.contextmanager
def _s3_blobs(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh bucket on the session's moto server and its test credentials in os.environ
    (where the serve subprocess inherits them) for the whole module: _s3_fixtures' bucket and
    environment fixtures are per test, and this module populates once per backend."""
    endpoint: str = request.getfixturevalue("s3_endpoint")
    client: Any = request.getfixturevalue("s3_client")
    with module_bucket(endpoint, client, prefix="sr-browser") as blobs:
        yield blobs


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite"),
        pytest.param("postgres+s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ],
)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The populated vault of one backend, served by ``strongroom serve`` for the module."""
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"browser-{backend.replace('+', '-')}")
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url, blobs_url = str(workdir / "vault"), None
        else:
            url = stack.enter_context(fresh_database())
            blobs_url = stack.enter_context(_s3_blobs(request))
        population = off_loop(lambda: _populate(url, workdir, blobs_url))
        base_url = stack.enter_context(served(url, blobs_url))
        yield Site(backend, population, base_url, Shots(backend))


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A fresh watched page: the test fails on any CSP violation, script error, console error
    or dialog on any page it visits."""
    with watched(browser, site.base_url) as (new_page, _):
        yield new_page


def _rows(page: Page) -> list[str]:
    return [
        str(row.get_attribute("data-run-id"))
        for row in page.locator("table.runs tbody tr[data-run-id]").all()
    ]


def _query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


# --- the run index ----------------------------------------------------------------------------


def _fill_filters(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        page.locator(f'#filters input[name="{name}"]').fill(value)
    page.locator('#filters button[type="submit"]').click()


def test_index_filter_form(page: Page, site: Site) -> None:
    pop = site.population
    page.goto("/")
    page.wait_for_url(re.compile(r"/runs$"))
    expect(page.locator("h1")).to_have_text("Runs")
    expect(page.locator(f'tr[data-run-id="{pop.playbook_run}"]')).to_be_visible()
    expect(page.locator('a[data-count="completed"] b')).not_to_have_text("…")  # totals in
    site.shots.take(page, "runs", docs=True)

    # The filter form: its values go into the URL, the rows follow. (sort and limit filled
    # in: submitted empty, they are refused, see test_index_filter_form_with_empty_fields.)
    _fill_filters(page, project="web", sort="created_at", limit="50")
    page.wait_for_url(re.compile(r"[?&]project=web(&|$)"))
    web = site.api(page, "/api/v1/runs?project=web&limit=100")
    web_ids = {r["run_id"] for r in web["items"]}
    assert len(web_ids) == web["total"] >= 4
    expect(page.locator("table.runs tbody tr[data-run-id]")).to_have_count(len(web_ids))
    assert set(_rows(page)) == web_ids
    expect(page.locator('#filters input[name="project"]')).to_have_value("web")
    page.locator('#filters select[name="status"]').select_option("failed")
    _fill_filters(page, search="running", sort="created_at", limit="50")
    expect(page.locator("table.runs tbody tr")).to_have_text("No run matches.")
    assert _query(page)["status"] == ["failed"]
    assert _query(page)["search"] == ["running"]


def test_index_filter_form_with_empty_fields(browser: Browser, site: Site) -> None:
    if site.backend != "sqlite":
        pytest.skip("a page layout or link check: once, on sqlite")
    with watched(browser, site.base_url) as (page, _):
        page.goto("/runs")
        _fill_filters(page, project="web")
        page.wait_for_url(re.compile(r"[?&]project=web(&|$)"))
        assert page.locator("main h1").inner_text() == "Runs"


def test_index_status_counts_and_pages(page: Page, site: Site) -> None:
    pop = site.population
    web = site.api(page, "/api/v1/runs?project=web&limit=100")
    page.goto("/runs?project=web")
    # The totals arrive after the page (app.js asks /api/v1/runs/counts).
    expect(page.locator("[data-total]")).to_have_text(str(len(web["items"])))
    # A status count is a link to that status (the other filters kept).
    failed = page.locator('a[data-count="failed"]')
    expect(failed.locator("b")).to_have_text("2")
    failed.click()
    page.wait_for_url(re.compile(r"[?&]status=failed(&|$)"))
    assert _query(page).get("project") == ["web"]
    expect(page.locator("table.runs tbody tr[data-run-id]")).to_have_count(2)
    assert set(_rows(page)) == {pop.failed_run, pop.xss_run}
    for badge in page.locator('table.runs [data-cell="status"] .badge').all():
        expect(badge).to_have_text("failed")
    site.shots.take(page, "runs-failed")

    # Paging: two at a time, every web run once, in the API's order.
    page.goto("/runs?project=web&limit=2")
    seen: list[str] = []
    for _ in range(10):
        rows = page.locator("table.runs tbody tr[data-run-id]")
        expect(rows.first).to_be_visible()
        shown = _rows(page)
        assert 1 <= len(shown) <= 2
        assert not set(shown) & set(seen), ("a row shown twice", shown, seen)
        seen += shown
        following = page.locator("#next-page")
        if following.count() == 0:
            break
        target = str(following.get_attribute("href"))
        following.click()
        page.wait_for_url(re.compile(re.escape(target) + "$"))
        assert _query(page).get("project") == ["web"]
        assert _query(page).get("limit") == ["2"]
    else:
        pytest.fail("the pager never ended")
    assert seen == [r["run_id"] for r in web["items"]]


# --- one run: timeline, graph, approval ---------------------------------------------------------


def test_run_page_draws_timeline_and_dag(page: Page, site: Site) -> None:
    pop = site.population
    page.goto("/runs")
    page.locator(f'tr[data-run-id="{pop.playbook_run}"] a[href="/runs/{pop.playbook_run}"]').click()
    page.wait_for_url(re.compile(f"/runs/{pop.playbook_run}$"))
    expect(page.locator('h1 [data-cell="status"] .badge')).to_have_text("completed")
    steps = site.api(page, f"/api/v1/runs/{pop.playbook_run}/steps")["steps"]
    assert len(steps) >= 2
    bars = page.locator("svg.gantt .bar rect")
    expect(bars).to_have_count(len(steps))
    for bar in bars.all():
        box = bar.bounding_box()
        assert box is not None
        assert box["width"] > 0
        assert box["height"] > 0
    nodes = page.locator("svg.dag .node")
    expect(nodes).to_have_count(len(steps))
    assert {n.get_attribute("data-step") for n in nodes.all()} == {s["step_id"] for s in steps}
    edges = sum(len(s["upstream"]) for s in steps)
    assert edges >= 1
    expect(page.locator("svg.dag path.edge")).to_have_count(edges)
    expect(page.locator("svg.dag .node.s-completed")).to_have_count(len(steps))
    expect(page.locator("table.steps tbody tr")).to_have_count(len(steps))
    site.shots.take(page, "run", docs=True)

    # The log's own filter: warnings and worse, in the URL.
    warnings = site.api(page, f"/api/v1/runs/{pop.playbook_run}/logs?level=warning")
    assert warnings
    log = page.locator("#log form")
    log.locator('select[name="level"]').select_option("warning")
    log.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"[?&]level=warning(&|$)"))
    expect(page.locator("table[data-log-tail] tbody tr")).to_have_count(len(warnings))
    expect(page.locator("table[data-log-tail] tbody tr.l-info")).to_have_count(0)

    page.goto(f"/runs/{pop.waiting_run}")
    expect(page.locator("section.approval h2")).to_have_text("Waiting for an approval")
    expect(page.locator("pre.command").first).to_contain_text(
        "strongroom registry approve --tool demo_tool@1.0.0"
    )
    expect(page.locator('svg.dag .node.s-waiting_approval[data-step="publish"]')).to_be_visible()
    expect(page.locator("svg.dag path.edge")).to_have_count(2)
    expect(page.locator("svg.gantt .bar")).to_have_count(3)
    site.shots.take(page, "run-waiting", docs=True)


# --- artifacts ----------------------------------------------------------------------------------


def _download_sha256(page: Page) -> str:
    with page.expect_download() as event:
        page.locator("#download").click()
    download = event.value
    assert download.failure() is None
    return hashlib.sha256(Path(download.path()).read_bytes()).hexdigest()


def test_artifact_previews_and_verified_download(page: Page, site: Site) -> None:
    pop = site.population
    recorded = site.vault(
        lambda v: {a: v.artifacts.get(a).sha256 for a in (pop.jsonl_artifact, pop.png_artifact)}
    )

    page.goto(f"/runs/{pop.running_run}")
    page.locator("#artifacts a", has_text="rows.jsonl").click()
    page.wait_for_url(re.compile(f"/artifacts/{pop.jsonl_artifact}$"))
    expect(page.locator("h1 .name")).to_have_text("rows.jsonl")
    preview = page.locator("table.preview")
    expect(preview.locator("thead th")).to_have_text(["id", "name", "amount"])
    expect(preview.locator("tbody tr")).to_have_count(50)
    expect(preview.locator("tbody tr").nth(49).locator("td")).to_have_text(["49", "row 49", "490"])
    expect(page.locator("#sha256")).to_have_text(recorded[pop.jsonl_artifact])
    stored_at = page.locator('.facts dt:text-is("stored at") + dd')
    expect(stored_at).to_contain_text("s3://" if pop.blobs_url else "file://")
    site.shots.take(page, "artifact", docs=True)
    assert _download_sha256(page) == recorded[pop.jsonl_artifact]

    page.goto(f"/artifacts/{pop.csv_artifact}")
    csv = page.locator("table.preview")
    expect(csv.locator("thead th")).to_have_text(["id", "city"])
    expect(csv.locator("tbody tr").nth(2).locator("td")).to_have_text(["3", "Kyoto"])
    site.shots.take(page, "artifact-csv")

    page.goto(f"/artifacts/{pop.png_artifact}")
    image = page.locator("img.preview")
    expect(image).to_be_visible()
    page.wait_for_function(
        "document.querySelector('img.preview').complete"
        " && document.querySelector('img.preview').naturalWidth > 0"
    )
    expect(page.locator("#sha256")).to_have_text(recorded[pop.png_artifact])
    site.shots.take(page, "artifact-image")
    assert _download_sha256(page) == recorded[pop.png_artifact] == hashlib.sha256(PNG).hexdigest()


# --- a running run, live ------------------------------------------------------------------------


def test_a_running_run_moves_without_reload(browser: Browser, site: Site) -> None:
    run_id = site.vault(_started_run)
    with watched(browser, site.base_url) as (run_page, _):
        index = run_page.context.new_page()
        run_page.goto(f"/runs/{run_id}")
        index.goto("/runs?project=live")
        badge = run_page.locator('h1 [data-cell="status"] .badge')
        row_badge = index.locator(f'tr[data-run-id="{run_id}"] [data-cell="status"] .badge')
        expect(badge).to_have_text("running")
        expect(row_badge).to_have_text("running")
        tail = run_page.locator("table[data-log-tail] tbody tr")
        expect(tail).to_have_count(1)
        for one in (run_page, index):
            one.evaluate("window.__marker = 1")

        # Two log lines (one a stored XSS payload, which the tail must add as text), then
        # the end of the run: one poll of each page shows both.
        site.vault(lambda v: _log_and_complete(v, run_id, ["batch 1 written", XSS["log"]]))
        expect(tail).to_have_count(3, timeout=EXPECT_MS)
        expect(tail.nth(1).locator("td.message")).to_have_text("batch 1 written")
        expect(tail.nth(2).locator("td.message")).to_have_text(XSS["log"])
        expect(tail.nth(2).locator("td").nth(0)).to_have_text("3")
        expect(badge).to_have_text("completed", timeout=EXPECT_MS)
        expect(row_badge).to_have_text("completed", timeout=EXPECT_MS)
        expect(run_page.locator('[data-cell="outcome"]')).to_have_text("success")
        expect(badge).to_have_class(re.compile(r"\bs-completed\b"))
        for one in (run_page, index):
            assert one.evaluate("window.__marker") == 1, f"{one.url} was reloaded"
            assert one.evaluate("window.__xss") is None
        assert run_page.locator("table[data-log-tail] img").count() == 0
        site.shots.take(run_page, "run-live")
        site.shots.take(index, "runs-live")


def _started_run(vault: SyncVault) -> str:
    run = vault.runs.create(project="live", purpose="watched from a browser")
    vault.runs.start(run.run_id)
    vault.logs.append(run.run_id, {"event": "started", "message": "working"})
    return run.run_id


def _log_and_complete(vault: SyncVault, run_id: str, messages: list[str]) -> None:
    for message in messages:
        vault.logs.append(run_id, {"event": "progress", "message": message})
    vault.runs.complete(run_id)


# --- snapshots, compare -------------------------------------------------------------------------


def test_snapshot_diff_of_two_revisions(page: Page, site: Site) -> None:
    run_id = site.population.running_run
    page.goto(f"/runs/{run_id}")
    form = page.locator("#snapshots .diff-form")
    form.locator('select[name="a"]').select_option("1")
    form.locator('select[name="b"]').select_option("3")
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(f"/runs/{run_id}/diff\\?a=1&b=3$"))
    expect(page.locator("pre.diff .d-add")).to_have_text(
        ['+    "cursor": 200,', '+    "stage": "batch-2"']
    )
    expect(page.locator("pre.diff .d-del")).to_have_text(
        ['-    "cursor": 0,', '-    "stage": "batch-0"']
    )
    expect(page.locator('.diff-form select[name="a"]')).to_have_value("1")
    expect(page.locator('.diff-form select[name="b"]')).to_have_value("3")
    site.shots.take(page, "diff", docs=True)


def test_compare_two_selected_runs(page: Page, site: Site) -> None:
    pop = site.population
    page.goto("/runs")
    for run_id in (pop.playbook_run, pop.waiting_run):
        page.locator(f'tr[data-run-id="{run_id}"] input[type="checkbox"]').check()
    page.get_by_role("button", name="Compare selected").click()
    page.wait_for_url(re.compile(r"/compare\?"))
    assert sorted(_query(page)["run"]) == sorted([pop.playbook_run, pop.waiting_run])
    expect(page.locator("h1")).to_have_text("Compare 2 runs")
    for run_id in (pop.playbook_run, pop.waiting_run):
        expect(page.locator(f'table.compare thead a[href="/runs/{run_id}"]')).to_be_visible()
    cmp = site.api(page, f"/api/v1/compare?run={pop.playbook_run}&run={pop.waiting_run}")
    expect(page.locator("table.compare tr.step-row")).to_have_count(len(cmp["step_ids"]))
    expect(page.locator('tr.step-row[data-step="publish"] .badge')).to_have_text("waiting_approval")
    site.shots.take(page, "compare", docs=True)


# --- registry, audit ----------------------------------------------------------------------------


def test_registry_and_a_version_diff(page: Page, site: Site) -> None:
    page.goto("/")
    page.locator("header nav a", has_text="Registry").click()
    page.wait_for_url(re.compile(r"/registry$"))
    summaries = site.api(page, "/api/v1/registry")
    expect(page.locator("table.registry tbody tr")).to_have_count(len(summaries))
    site.shots.take(page, "registry", docs=True)

    page.locator("table.registry a", has_text="customer-data-quality").click()
    page.wait_for_url(re.compile(r"/registry/project_config/customer-data-quality$"))
    expect(page.locator("table.versions tbody tr")).to_have_count(2)
    form = page.locator(".diff-form")
    form.locator('select[name="a"]').select_option("1.0.0")
    form.locator('select[name="b"]').select_option(SECOND_PROJECT_VERSION)
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(rf"\?a=1\.0\.0&b={re.escape(SECOND_PROJECT_VERSION)}$"))
    added = page.locator("pre.diff .d-add")
    expect(added.filter(has_text=SECOND_PROJECT_VERSION)).to_have_count(1)
    expect(added.filter(has_text="Nightly and weekly checks")).to_have_count(1)
    expect(page.locator("pre.diff .d-del").filter(has_text="1.0.0")).to_have_count(1)
    site.shots.take(page, "definition", docs=True)


def test_audit_trail_pages(page: Page, site: Site) -> None:
    page.goto("/runs")
    page.locator("header nav a", has_text="Audit").click()
    page.wait_for_url(re.compile(r"/audit$"))
    expect(page.locator("h1")).to_have_text("Audit trail")
    head = page.locator("main > p").first
    expect(head).to_contain_text("Head: entry ")
    match = re.search(r"entry (\d+)", head.inner_text())
    assert match
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_be_visible()
    expect(rows.first.locator("td").first).to_have_text(match.group(1))
    first_page = [int(s) for s in rows.locator("td:first-child").all_inner_texts()]
    assert first_page == sorted(first_page, reverse=True)
    site.shots.take(page, "audit", docs=True)

    # An entry about a run links to it.
    page.locator('table.audit a[href^="/runs/"]').first.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    expect(page.locator("#log")).to_be_visible()


def test_audit_older_entries(browser: Browser, site: Site) -> None:
    if site.backend != "sqlite":
        pytest.skip("a page layout or link check: once, on sqlite")
    with watched(browser, site.base_url) as (page, _):
        page.goto("/audit")
        rows = page.locator("table.audit tbody tr")
        expect(rows.first).to_be_visible()
        newest = [int(s) for s in rows.locator("td:first-child").all_inner_texts()]
        assert min(newest) > 1, "the demo writes more than one page of audit entries"
        page.locator(".pager a", has_text="older").click()
        page.wait_for_url(re.compile(r"/audit\?"))
        older = [int(s) for s in rows.locator("td:first-child").all_inner_texts()]
        assert older
        assert max(older) < min(newest)
        assert older[-1] == 1


# --- stored XSS ---------------------------------------------------------------------------------


def test_stored_xss_payloads_stay_text(page: Page, site: Site) -> None:
    pop = site.population

    def inert() -> None:
        assert page.evaluate("window.__xss") is None, page.url
        assert page.locator("script").count() == 1  # /static/app.js
        assert page.locator("main img, main svg[onload], main [onerror]").count() == 0

    page.goto(f"/runs/{pop.xss_run}")
    expect(page.locator("p.purpose")).to_have_text(XSS["purpose"])
    expect(page.locator(".facts .label")).to_have_text(f"note={XSS['label']}")
    expect(page.locator("table[data-log-tail] td.message")).to_have_text([XSS["log"]])
    expect(page.locator("#artifacts a", has_text=XSS["name"])).to_be_visible()
    expect(page.locator(".error-message")).to_have_text(XSS["error"])
    inert()
    site.shots.take(page, "xss-run")

    page.goto("/runs?project=web")
    row = page.locator(f'tr[data-run-id="{pop.xss_run}"]')
    expect(row.locator("td.purpose")).to_have_text(XSS["purpose"])
    expect(row.locator(".label")).to_have_text(f"note={XSS['label']}")
    inert()
    site.shots.take(page, "xss-runs")

    page.goto(f"/artifacts/{pop.xss_artifact}")
    expect(page.locator("h1 .name")).to_have_text(XSS["name"])
    expect(page.locator(".facts dd", has_text="window.__xss = ")).to_have_text(XSS["purpose"])
    expect(page.locator("pre.preview")).to_have_text(XSS["log"])
    inert()
    site.shots.take(page, "xss-artifact")

    page.goto(f"/compare?run={pop.xss_run}&run={pop.failed_run}")
    expect(page.locator("h1")).to_have_text("Compare 2 runs")
    label_row = page.locator("table.compare tr", has=page.locator("th", has_text="label note"))
    expect(label_row.locator("td").first).to_have_text(XSS["label"])
    inert()
    site.shots.take(page, "xss-compare")


# --- every page, at 1280 px ---------------------------------------------------------------------

FITTING = ["runs", "run", "artifact", "image", "diff", "compare", "definition", "host"]


def _paths(pop: Population) -> dict[str, str]:
    return {
        "runs": "/runs",
        "run": f"/runs/{pop.playbook_run}",
        "artifact": f"/artifacts/{pop.jsonl_artifact}",
        "image": f"/artifacts/{pop.png_artifact}",
        "diff": f"/runs/{pop.running_run}/diff?a=1&b=3",
        "compare": f"/compare?run={pop.playbook_run}&run={pop.waiting_run}",
        "definition": "/registry/project_config/customer-data-quality?a=1.0.0&b=1.1.0",
        "host": "/host",
        "registry": "/registry",
        "audit": "/audit",
    }


def _overflowing(page: Page, site: Site, names: list[str]) -> dict[str, int]:
    wide: dict[str, int] = {}
    for name in names:
        page.goto(_paths(site.population)[name])
        expect(page.locator("main h1")).to_be_visible()
        width = int(page.evaluate("document.documentElement.scrollWidth"))
        if width > 1280:
            wide[name] = width
    return wide


def test_pages_fit_1280_pixels(page: Page, site: Site) -> None:
    assert _overflowing(page, site, FITTING) == {}
    site.shots.take(page, "host")


def test_registry_and_audit_fit_1280_pixels(browser: Browser, site: Site) -> None:
    if site.backend != "sqlite":
        pytest.skip("a page layout or link check: once, on sqlite")
    with watched(browser, site.base_url) as (page, _):
        assert _overflowing(page, site, ["registry", "audit"]) == {}


def test_every_header_link_opens_a_page(browser: Browser, site: Site) -> None:
    if site.backend != "sqlite":
        pytest.skip("a page layout or link check: once, on sqlite")
    with watched(browser, site.base_url) as (page, _):
        page.goto("/runs")
        links = [str(a.get_attribute("href")) for a in page.locator("header a").all()]
        assert "/runs" in links
        broken = {}
        for href in links:
            response = page.goto(href)
            assert response is not None
            if response.status != 200:
                broken[href] = response.status
        assert broken == {}


def test_audit_filters_and_the_last_verify(page: Page, site: Site) -> None:
    pop = site.population
    page.goto("/audit")
    expect(page.locator("#last-verify .badge")).to_have_text("intact")
    form = page.locator("#audit-filters")
    form.locator('input[name="event"]').fill("run.")
    form.locator('input[name="run"]').fill(pop.running_run)
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/audit\?event=run\.&"))
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_be_visible()
    events = rows.locator("td:nth-child(3)").all_inner_texts()
    assert events
    assert all(e.startswith("run.") for e in events), events
    subjects = rows.locator("td:nth-child(5) a").evaluate_all("els => els.map(e => e.href)")
    assert all(href.endswith(f"/runs/{pop.running_run}") for href in subjects), subjects
    site.shots.take(page, "audit-filtered")


def test_overview_charts(page: Page, site: Site) -> None:
    page.goto("/runs")
    page.locator("header nav a", has_text="Overview").click()
    page.wait_for_url(re.compile(r"/overview$"))
    bars = page.locator("svg.days g.bar rect")
    expect(bars.first).to_be_visible()
    assert bars.count() >= 2  # completed and failed runs today, at least
    expect(page.locator("table.durations")).to_contain_text("data-quality-nightly")
    expect(page.locator("table.failures")).to_contain_text("(before any step)")
    page.locator("#overview-filters select").select_option("7")
    page.locator("#overview-filters button").click()
    page.wait_for_url(re.compile(r"/overview\?days=7"))
    expect(page.locator("h1")).to_contain_text("last 7 days")
    site.shots.take(page, "overview", docs=True)


def test_a_failed_run_links_its_retry(page: Page, site: Site) -> None:
    pop = site.population
    page.goto(f"/runs/{pop.failed_run}")
    link = page.locator(f'.facts a[href="/runs/{pop.retry_run}"]')
    expect(link).to_be_visible()
    link.click()
    page.wait_for_url(re.compile(rf"/runs/{pop.retry_run}$"))
    expect(page.locator(f'.facts a[href="/runs/{pop.failed_run}"]')).to_be_visible()
