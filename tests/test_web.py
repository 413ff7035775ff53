"""The Control Room over HTTP (FastAPI's TestClient, the real app over a real vault populated
by the demo): every page renders, the API answers what the pages show in the CLI's shapes,
errors are the structured ones, stored strings are escaped, headers are strict, nothing is
changed by any request, and the token guards every route when it is set."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from _blob_tamper import flip_stored_byte
from _web_fixtures import PNG, XSS, Population, populate_sync
from strongroom import SyncVault
from strongroom.web import _views, create_app, pages
from strongroom.web._content import DownloadCut
from strongroom.web._security import CSP, check_bind, local_path

TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    root = tmp_path_factory.mktemp("web")
    return populate_sync(str(root / "vault"), root)


@pytest.fixture(scope="module")
def client(population: Population) -> Iterator[TestClient]:
    app = create_app(population.url, blobs_url=population.blobs_url)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _vault_fingerprint(url: str) -> tuple[int, int, str]:
    with SyncVault.open(url, create=False) as vault:
        head = vault.audit.head()
        page = vault.runs.list(limit=1, count_limit=None)
        return page.total, head.seq if head else 0, head.hash if head else ""


PAGES = [
    "/runs",
    "/runs?status=failed",
    "/runs?project=web&limit=2",
    "/runs?label=team%3Ddata",
    "/runs?search=running",
    "/runs?since=2020-01-01&until=2999-01-01",
    "/runs?status=&project=&playbook=&actor=&since=&until=&search=&label=&where=&sort=&limit=",
    "/runs?sort=updated_at&asc=1&limit=3",
    "/registry",
    "/registry?kind=tool_manifest",
    "/audit",
    "/host",
    "/overview",
    "/overview?days=7&project=web",
]


@pytest.mark.parametrize("path", PAGES)
def test_pages_render(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text


def test_run_pages_render_every_section(client: TestClient, population: Population) -> None:
    for run_id in [*population.run_ids, population.waiting_run]:
        response = client.get(f"/runs/{run_id}")
        assert response.status_code == 200, (run_id, response.text[:500])
        for section in ('id="steps"', 'id="snapshots"', 'id="artifacts"', 'id="log"'):
            assert section in response.text
    playbook = client.get(f"/runs/{population.playbook_run}").text
    assert 'class="gantt"' in playbook
    assert 'class="dag"' in playbook
    assert playbook.count('class="edge"') >= 1
    assert "s-completed" in playbook


def test_audit_page_filters_and_shows_the_last_verify(
    client: TestClient, population: Population
) -> None:
    page = client.get("/audit").text
    assert "Last verify" in page
    assert "intact" in page
    about = client.get(f"/audit?run={population.running_run}").text
    rows = [
        attrs for tag, attrs in _tags(about) if tag == "a" and "/runs/" in (attrs.get("href") or "")
    ]
    assert rows
    assert all(population.running_run in (a.get("href") or "") for a in rows[1:])
    created = client.get("/audit?event=run.created").text
    assert created.count(">run.created</a>") >= len(population.run_ids)
    assert "run.started" not in created
    assert client.get("/audit?run=not-a-run-id").status_code == 422
    first = client.get("/audit?event=run.").text
    older = re.search(r'href="(/audit\?[^"]*before=\d+[^"]*)" id="older"', first)
    if older is not None:  # more than a page of run entries: the older page is different
        assert client.get(older.group(1).replace("&amp;", "&")).status_code == 200


def test_a_run_links_its_previous_and_successor_runs(
    client: TestClient, population: Population
) -> None:
    failed = client.get(f"/runs/{population.failed_run}").text
    assert "successor runs" in failed
    assert f'/runs/{population.retry_run}"' in failed
    retry = client.get(f"/runs/{population.retry_run}").text
    assert f'/runs/{population.failed_run}"' in retry
    listed = client.get("/api/v1/runs", params={"previous": population.failed_run}).json()
    assert [r["run_id"] for r in listed["items"]] == [population.retry_run]
    page = client.get(f"/runs?previous={population.failed_run}").text
    assert population.retry_run in page
    assert population.running_run not in page


def test_overview_draws_runs_per_day_and_failures(client: TestClient) -> None:
    page = client.get("/overview?days=7").text
    assert 'class="days"' in page
    assert "s-completed" in page
    assert "s-failed" in page
    assert "data-quality-nightly" in page  # a duration row for the demo's playbook
    assert "(before any step)" in page  # the failed web runs stopped before any step
    assert client.get("/overview?days=0").status_code == 422
    assert client.get("/overview?days=367").status_code == 422


def test_a_waiting_run_shows_the_commands_to_approve(
    client: TestClient, population: Population
) -> None:
    page = client.get(f"/runs/{population.waiting_run}").text
    assert "Waiting for an approval" in page
    assert "strongroom registry approve --tool demo_tool@1.0.0" in page
    assert f"strongroom registry approve --run {population.waiting_run}" in page
    assert f"strongroom resume {population.waiting_run}" in page
    steps = client.get(f"/api/v1/runs/{population.waiting_run}/steps").json()
    assert [s["status"] for s in steps["steps"]] == ["completed", "completed", "waiting_approval"]
    assert steps["steps"][2]["upstream"] == ["clean"]


WORKER_FIELDS = {
    "step_id",
    "attempt",
    "worker",
    "state",
    "claimed_at",
    "heartbeat_at",
    "finished_at",
}


def test_the_steps_api_lists_the_workers_of_each_attempt(
    client: TestClient, population: Population
) -> None:
    steps = client.get(f"/api/v1/runs/{population.workers_run}/steps").json()
    assert [s["step_id"] for s in steps["steps"]] == ["fetch", "clean"]
    workers = steps["workers"]
    assert [(w["step_id"], w["attempt"], w["worker"], w["state"]) for w in workers] == [
        ("clean", 1, XSS["worker"], "lost"),
        ("clean", 2, "worker-b@host2", "running"),
        ("fetch", 1, "worker-a@host1", "finished"),
    ]  # by step then attempt, as the vault lists its claims
    assert steps["workers_truncated"] is False
    for worker in workers:
        assert set(worker) == WORKER_FIELDS  # the claim without its request id or response
        assert worker["heartbeat_at"] >= worker["claimed_at"]
        assert (worker["finished_at"] is None) == (worker["state"] == "running")
    # Runs whose steps ran in their own process have no claims.
    for run_id in (population.waiting_run, population.playbook_run, population.running_run):
        other = client.get(f"/api/v1/runs/{run_id}/steps").json()
        assert other["workers"] == []
        assert other["workers_truncated"] is False


def test_the_run_page_shows_the_workers(client: TestClient, population: Population) -> None:
    page = client.get(f"/runs/{population.workers_run}").text
    section = re.search(r'<section id="workers">(.*?)</section>', page, re.S)
    assert section is not None
    assert "<h2>Workers" in section.group(1)
    rows = re.findall(
        r"<tr><td>(.*?)</td><td>(\d+)</td><td[^>]*>(.*?)</td><td>(.*?)</td>", section.group(1)
    )
    assert [(step, attempt, worker) for step, attempt, worker, _ in rows] == [
        ("clean", "1", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("clean", "2", "worker-b@host2"),
        ("fetch", "1", "worker-a@host1"),
    ]
    assert ['class="badge s-lost"' in r[3] for r in rows] == [True, False, False]
    assert ['class="badge s-running"' in r[3] for r in rows] == [False, True, False]
    assert ['class="badge s-finished"' in r[3] for r in rows] == [False, False, True]
    assert XSS["worker"] not in page
    _inert(page)
    # The Workers section comes right after the steps, and only for a run with claims.
    assert page.index('id="steps"') < page.index('id="workers"') < page.index('id="snapshots"')
    for run_id in [*population.run_ids, population.waiting_run]:
        if run_id != population.workers_run:
            other = client.get(f"/runs/{run_id}").text
            assert 'id="workers"' not in other, run_id
            assert "<h2>Workers" not in other, run_id


def test_the_workers_listed_are_bounded(
    client: TestClient, population: Population, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_views, "MAX_STEP_WORKERS", 2)
    steps = client.get(f"/api/v1/runs/{population.workers_run}/steps").json()
    assert [(w["step_id"], w["attempt"]) for w in steps["workers"]] == [("clean", 1), ("clean", 2)]
    assert steps["workers_truncated"] is True
    page = client.get(f"/runs/{population.workers_run}").text
    assert f'href="/api/v1/runs/{population.workers_run}/steps">all</a>' in page
    monkeypatch.setattr(_views, "MAX_STEP_WORKERS", 10_000)
    monkeypatch.setattr(pages, "SHOWN_WORKERS", 1)
    page = client.get(f"/runs/{population.workers_run}").text
    assert "(1+, the first shown" in page
    assert "worker-b@host2" not in page


def test_runs_api_is_the_run_index(client: TestClient, population: Population) -> None:
    page = client.get("/api/v1/runs", params={"project": "web", "limit": 2}).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    rest = client.get(
        "/api/v1/runs", params={"project": "web", "limit": 50, "cursor": page["next_cursor"]}
    ).json()
    seen = [r["run_id"] for r in page["items"] + rest["items"]]
    assert len(seen) == len(set(seen)) == page["total"]
    failed = client.get("/api/v1/runs", params={"status": "failed", "project": "web"}).json()
    assert {r["run_id"] for r in failed["items"]} == {population.failed_run, population.xss_run}
    labelled = client.get("/api/v1/runs", params={"label": "team=data"}).json()
    assert [r["run_id"] for r in labelled["items"]] == [population.running_run]
    counts = client.get("/api/v1/runs/counts", params={"project": "web"}).json()
    assert counts["counts"]["failed"] == 2
    assert counts["counts"]["running"] == 2
    run = client.get(f"/api/v1/runs/{population.running_run}").json()
    assert run["status"] == "running"
    assert run["labels"] == {"team": "data"}


def test_snapshots_and_their_diff(client: TestClient, population: Population) -> None:
    history = client.get(f"/api/v1/runs/{population.running_run}/snapshots").json()
    assert [h["revision"] for h in history] == [1, 2, 3]
    diff = client.get(
        f"/api/v1/runs/{population.running_run}/snapshots/diff", params={"a": 1, "b": 3}
    ).json()
    assert '-    "cursor": 0,' in diff["lines"]
    assert '+    "cursor": 200,' in diff["lines"]
    page = client.get(f"/runs/{population.running_run}/diff?a=1&b=3").text
    assert 'class="d-add"' in page
    assert "batch-2" in page
    one = client.get(f"/api/v1/runs/{population.running_run}/snapshots/2").json()
    assert one["state"]["data"]["stage"] == "batch-1"


def test_previews(client: TestClient, population: Population) -> None:
    table = client.get(f"/api/v1/artifacts/{population.jsonl_artifact}/preview").json()
    assert table["kind"] == "table"
    assert table["columns"] == ["id", "name", "amount"]
    assert table["rows"][1] == ["1", "row 1", "10"]
    assert len(table["rows"]) == 50
    assert table["verified"] is True
    cities = client.get(f"/api/v1/artifacts/{population.csv_artifact}/preview").json()
    assert cities["columns"] == ["id", "city"]
    assert cities["rows"][2] == ["3", "Kyoto"]
    image = client.get(f"/api/v1/artifacts/{population.png_artifact}/preview").json()
    assert image["kind"] == "image"
    page = client.get(f"/artifacts/{population.jsonl_artifact}").text
    assert "<td>row 49</td>" in page


def test_downloads_are_verified_attachments(client: TestClient, population: Population) -> None:
    response = client.get(f"/api/v1/artifacts/{population.png_artifact}/content")
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-strongroom-sha256"] == hashlib.sha256(PNG).hexdigest()
    inline = client.get(f"/api/v1/artifacts/{population.png_artifact}/content?inline=true")
    assert inline.headers["content-type"] == "image/png"
    assert inline.headers["content-disposition"].startswith("inline;")
    # Inline is for raster images only: a text artifact stays an attachment.
    text = client.get(f"/api/v1/artifacts/{population.xss_artifact}/content?inline=true")
    assert text.headers["content-disposition"].startswith("attachment;")
    assert text.headers["content-type"] == "application/octet-stream"


def test_stored_strings_are_escaped(client: TestClient, population: Population) -> None:
    pages = [
        client.get(f"/runs/{population.xss_run}").text,
        client.get("/runs?project=web").text,
        client.get(f"/artifacts/{population.xss_artifact}").text,
        client.get(f"/compare?run={population.xss_run}&run={population.failed_run}").text,
        client.get(f"/runs/{population.workers_run}").text,
    ]
    for page in pages:
        for payload in XSS.values():
            assert payload not in page
        _inert(page)
    assert "&lt;script&gt;window.__xss = &#34;purpose&#34;&lt;/script&gt;" in pages[0]


def test_compare(client: TestClient, population: Population) -> None:
    cmp = client.get(
        "/api/v1/compare",
        params=[("run", population.playbook_run), ("run", population.waiting_run)],
    ).json()
    assert [r["run_id"] for r in cmp["runs"]] == [population.playbook_run, population.waiting_run]
    assert cmp["step_ids"]
    assert set(cmp["same_outputs"]) == set(cmp["step_ids"])
    one = client.get("/api/v1/compare", params={"run": population.playbook_run})
    assert one.status_code == 422
    assert one.json()["error"]["code"] == "validation_error"
    page = client.get(f"/compare?run={population.playbook_run}&run={population.pipeline_run}")
    assert page.status_code == 200
    assert "Compare 2 runs" in page.text


def test_registry_api(client: TestClient) -> None:
    summaries = client.get("/api/v1/registry").json()
    assert summaries, "the demo publishes definitions"
    first = summaries[0]
    history = client.get(f"/api/v1/registry/{first['kind']}/{first['definition_id']}").json()
    assert history["versions"]
    version = history["versions"][-1]["version"]
    got = client.get(f"/api/v1/registry/{first['kind']}/{first['definition_id']}/{version}")
    assert got.status_code == 200
    assert got.json()["version"]["version"] == version
    page = client.get(f"/registry/{first['kind']}/{first['definition_id']}")
    assert page.status_code == 200
    approvals = client.get("/api/v1/registry/approvals")
    assert approvals.status_code == 200
    assert isinstance(approvals.json(), list)


def test_logs_api_filters(client: TestClient, population: Population) -> None:
    entries = client.get(f"/api/v1/runs/{population.pipeline_run}/logs").json()
    assert entries
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    after = client.get(
        f"/api/v1/runs/{population.pipeline_run}/logs", params={"after_seq": entries[0]["seq"]}
    ).json()
    assert after == entries[1:]
    warnings = client.get(
        f"/api/v1/runs/{population.xss_run}/logs", params={"level": "warning"}
    ).json()
    assert [e["event"] for e in warnings] == ["xss"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/runs/00000000-0000-7000-8000-000000000000", 404, "not_found"),
        ("/api/v1/runs/not-an-id", 422, "validation_error"),
        ("/api/v1/runs?status=bogus", 422, "validation_error"),
        ("/api/v1/runs?limit=0", 422, "validation_error"),
        ("/api/v1/runs?cursor=%00garbage", 422, "validation_error"),
        ("/api/v1/runs?where=cost%3C2", 422, "validation_error"),
        ("/api/v1/runs?label=novalue", 422, "validation_error"),
        ("/api/v1/artifacts/00000000-0000-7000-8000-000000000000/content", 404, "not_found"),
        ("/api/v1/nothing-here", 404, "not_found"),
        ("/api/v1/registry/bogus_kind/x", 422, "validation_error"),
    ],
)
def test_api_errors_are_structured(client: TestClient, path: str, status: int, code: str) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text


def test_page_errors_are_pages(client: TestClient) -> None:
    response = client.get("/runs/00000000-0000-7000-8000-000000000000")
    assert response.status_code == 404
    assert "not_found" in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert client.get("/runs?limit=lots").status_code == 422
    assert client.get("/runs?limit=0").status_code == 422
    bad = client.get("/runs?since=yesterday")
    assert bad.status_code == 422
    assert "ISO-8601" in bad.text


def test_security_headers_on_every_answer(client: TestClient, population: Population) -> None:
    for path in ["/runs", "/api/v1/runs", "/api/v1/runs/nope", "/nothing", "/static/app.css"]:
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert "no-store" in client.get("/api/v1/runs").headers["cache-control"]


class _Tags(HTMLParser):
    """Every tag and attribute of a page, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.found


def _inert(html: str) -> None:
    for tag, attrs in _tags(html):
        assert tag != "style", attrs
        assert "style" not in attrs, (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "script":
            assert attrs.get("src") == "/static/app.js", attrs
        for name in ("href", "src", "action"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:text")), (tag, attrs)


def test_no_inline_script_or_style(client: TestClient, population: Population) -> None:
    for path in [
        "/runs",
        f"/runs/{population.playbook_run}",
        f"/runs/{population.xss_run}",
        f"/runs/{population.workers_run}",
        f"/artifacts/{population.csv_artifact}",
        f"/artifacts/{population.xss_artifact}",
        "/registry",
        "/audit",
    ]:
        _inert(client.get(path).text)


def test_requests_change_nothing(client: TestClient, population: Population) -> None:
    before = _vault_fingerprint(population.url)
    for path in PAGES + [f"/runs/{r}" for r in population.run_ids]:
        client.get(path)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = client.request(method, f"/api/v1/runs/{population.running_run}")
        assert response.status_code == 405
    assert _vault_fingerprint(population.url) == before


def test_token_guards_everything(population: Population) -> None:
    app = create_app(population.url, blobs_url=population.blobs_url, token=TOKEN)
    with TestClient(app, follow_redirects=False) as client:
        denied = client.get("/api/v1/runs")
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "unauthorized"
        wrong = client.get("/api/v1/runs", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = client.get("/api/v1/runs", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        page = client.get("/runs?project=web")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fruns%3Fproject%3Dweb"
        assert client.get("/static/app.css").status_code == 200
        form = {"content-type": "application/x-www-form-urlencoded"}
        bad = client.post("/login", content="token=wrong&next=/runs", headers=form)
        assert bad.status_code == 401
        assert "not the right one" in bad.text
        assert "set-cookie" not in bad.headers
        good = client.post(
            "/login",
            content=f"token={TOKEN}&next=//evil.example/x",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert good.status_code == 303
        assert good.headers["location"] == "/"
        cookie = good.headers["set-cookie"]
        assert TOKEN not in cookie
        assert "httponly" in cookie.lower()
        assert "samesite=strict" in cookie.lower()
        assert client.get("/runs").status_code == 200  # the cookie is kept by the client


def test_bind_rules() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", TOKEN)
    for host in ("0.0.0.0", "192.168.1.4", "::", "example.org"):
        with pytest.raises(Exception, match="token"):
            check_bind(host, None)
    with pytest.raises(Exception, match="at least 16"):
        check_bind("127.0.0.1", "short")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/runs?x=1", "/runs?x=1"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
        ("runs", "/"),
        ("/ok\r\nSet-Cookie: x", "/"),
        ("", "/"),
    ],
)
def test_login_redirects_stay_here(given: str, kept: str) -> None:
    assert local_path(given) == kept


def test_openapi_schema_is_current(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    exported = Path(__file__).parents[1] / "schemas" / "control-room-openapi.json"
    assert exported.exists(), "run: python -m strongroom.web.openapi schemas"
    assert json.loads(exported.read_text()) == schema, (
        "the API changed: run `python -m strongroom.web.openapi schemas` and commit"
    )


def test_mounted_in_another_app_under_a_prefix(population: Population) -> None:
    """Embedding: the parent app opens the vault; every link, form and script URL of the
    mounted Control Room carries the mount point."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from strongroom import Vault

    holder: dict[str, Vault] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        vault = await Vault.open(population.url, create=False, bootstrap=False)
        holder["vault"] = vault
        app.mount("/strongroom", create_app(vault=vault))
        try:
            yield
        finally:
            await vault.close()

    parent = FastAPI(lifespan=lifespan)
    with TestClient(parent, follow_redirects=False) as client:
        home = client.get("/strongroom/")
        assert home.status_code == 307
        assert home.headers["location"] == "/strongroom/runs"
        page = client.get("/strongroom/runs")
        assert page.status_code == 200
        urls = [
            value
            for _, attrs in _tags(page.text)
            for name, value in attrs.items()
            if name in ("href", "src", "action") and value and value.startswith("/")
        ]
        assert urls
        assert all(url.startswith("/strongroom/") for url in urls), urls
        assert 'data-root="/strongroom"' in page.text
        api = client.get("/strongroom/api/v1/runs", params={"limit": 1})
        assert api.status_code == 200
        assert api.json()["items"]
        missing = client.get("/strongroom/api/v1/runs/00000000-0000-7000-8000-000000000000")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
    assert "vault" in holder


@pytest.mark.postgres
def test_no_secret_of_the_vault_url_is_shown(pg_url: str, tmp_path: Path) -> None:
    """A password in the PostgreSQL URL (the test server trusts, so any password opens it)
    never reaches a page, a hint or an API answer."""
    from sqlalchemy.engine import make_url

    secret = "hunter2-Sup3rS3cret"
    url = make_url(pg_url).set(password=secret).render_as_string(hide_password=False)
    blobs = str(tmp_path / "blobs")
    with SyncVault.open(url, blobs_url=blobs) as vault:
        run = vault.runs.create(project="secret", purpose="look for the password")
        vault.runs.start(run.run_id)
        vault.artifacts.put_bytes(run.run_id, b"x", name="x.txt", format="txt")
        vault.snapshots.save(
            run.run_id,
            {"data": {"orchestrator": {
                "playbook_ref": "p@1", "playbook_id": "p", "playbook_version": "1",
                "playbook_digest": "sha256:" + "1" * 64, "order": ["s"],
                "steps": {"s": {
                    "step_id": "s", "status": "waiting_approval", "tool_id": "t",
                    "tool_version": "1", "manifest_digest": "sha256:" + "0" * 64,
                    "tool_ref": "t@1",
                }},
            }}},
            expected_revision=0,
        )  # fmt: skip
        artifact = vault.artifacts.list(run_id=run.run_id)[0].artifact_id
    app = create_app(url, blobs_url=blobs)
    with TestClient(app) as client:
        answers = [
            client.get(path)
            for path in [
                "/runs",
                f"/runs/{run.run_id}",
                f"/artifacts/{artifact}",
                "/audit",
                "/api/v1/runs",
                f"/api/v1/artifacts/{artifact}",
                "/api/v1/runs/nope",
                "/no-such-page",
            ]
        ]
    for answer in answers:
        assert secret not in answer.text, answer.url
    run_page = answers[1].text
    assert "strongroom resume" in run_page  # the hint is there, without a --vault to copy
    assert "--vault" not in run_page
    assert "REDACTED" in answers[0].text  # the header names the vault, redacted


def _corrupt(vault_dir: Path, sha256: str) -> None:
    """Flip one byte of a blob behind the vault's back (a row or a read-only file)."""
    flip_stored_byte(vault_dir, sha256)


def test_a_download_that_no_longer_matches_its_digest_is_refused(tmp_path: Path) -> None:
    """Small: verified before the first byte, an integrity_error answer. Large: streamed with
    the last chunk held back, so the client never gets the whole (wrong) content."""
    path = tmp_path / "vault"
    big = bytes(range(256)) * (9 * 1024 * 1024 // 256 + 1)  # over the 8 MiB verify-first size
    with SyncVault.open(path) as vault:
        run = vault.runs.create(project="rot")
        small = vault.artifacts.put_bytes(run.run_id, b"some rows\n" * 100, format="txt")
        large = vault.artifacts.put_bytes(run.run_id, big, format="binary")
    _corrupt(path, small.sha256)
    _corrupt(path, large.sha256)
    with TestClient(create_app(str(path)), raise_server_exceptions=False) as client:
        refused = client.get(f"/api/v1/artifacts/{small.artifact_id}/content")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "integrity_error"
    received = bytearray()
    cut_by: BaseException | None = None
    with TestClient(create_app(str(path))) as client:  # re-raises what the server raised
        try:
            with client.stream("GET", f"/api/v1/artifacts/{large.artifact_id}/content") as cut:
                assert cut.status_code == 200  # the headers went out before the end was read
                assert cut.headers["content-length"] == str(len(big))
                for chunk in cut.iter_bytes():
                    received += chunk
        except DownloadCut as exc:
            cut_by = exc
    assert isinstance(cut_by, DownloadCut)
    assert "download cut" in str(cut_by)
    assert 0 < len(received) < len(big)
    assert hashlib.sha256(received).hexdigest() != large.sha256.removeprefix("sha256:")
