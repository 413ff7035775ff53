"""The Control Room's JSON API fuzzed with schemathesis against its own OpenAPI schema, over a
vault populated like tests/test_web.py's (`populate_sync`: the demo's runs, a failed, a
running and an XSS run, JSONL/CSV/PNG/text artifacts, registry definitions), on SQLite with
local blobs and on PostgreSQL with S3 (moto): no answer is a 5xx, and every answer has a
documented status and content type and matches its schema.

How it runs:

- The schema is the one the app serves (`openapi_schema`, the same document as
  ``/api/v1/openapi.json``); schemathesis generates cases per operation (its examples and
  coverage cases, then ``max_examples`` fuzzed ones, positive and negative) and calls the app
  in-process through its ASGI transport.
- The app is started with its lifespan (the vault is opened at start-up): schemathesis' ASGI
  client runs the lifespan on its own event-loop thread, where every later call is served, and
  `asgi.shutdown_lifespans` closes the vault when the fixture ends.
- Path parameters and some query values are, in about half of the cases, ids really stored
  (run, artifact and registry ids as the API itself lists them: `_discover`), so the fuzzer
  reaches the 200 answers rather than only 404s. `test_known_requests` then calls every
  operation with real ids (each must answer 200) and with the edge values that once broke it.
- Hypothesis is derandomized with a bounded number of examples per operation, so a run is
  reproducible and takes about a minute for both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import pytest
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from _pg_fixtures import fresh_database
from _s3_fixtures import module_bucket
from _web_fixtures import Population, populate_sync
from strongroom.web import create_app
from strongroom.web.openapi import openapi_schema

CHECKS: list[schemathesis.CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]

LOCAL_EXAMPLES = 100
PG_S3_EXAMPLES = 50


def _fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        # Generating from a whole OpenAPI document is slow and filters a lot by nature; what
        # matters here is what the app answers.
        suppress_health_check=list(HealthCheck),
    )


ApiCase = schemathesis.Case[Any]

SCHEMA = schemathesis.openapi.from_dict(openapi_schema(), config=schemathesis.Config())


# -- the records really stored ------------------------------------------------------------


@dataclass
class Known:
    """Ids really stored in the vault, as the API lists them."""

    run_ids: list[str] = field(default_factory=list)
    artifact_ids: list[str] = field(default_factory=list)
    definitions: list[dict[str, str]] = field(default_factory=list)
    """``{"kind", "definition_id", "selector"}``: each version, channel and digest."""
    selectors: list[str] = field(default_factory=list)
    cursors: list[str] = field(default_factory=list)


@dataclass
class Room:
    app: Any
    population: Population
    known: Known


def _discover(client: asgi.ASGIClient) -> Known:
    def get(path: str, **params: Any) -> Any:
        response = client.get(path, params=params)
        assert response.status_code == 200, (path, response.text[:300])
        return response.json()

    run_ids = [run["run_id"] for run in get("/api/v1/runs", limit=1000)["items"]]
    artifact_ids = [
        meta["artifact_id"]
        for run_id in run_ids
        for meta in get(f"/api/v1/runs/{run_id}/artifacts")
    ]
    definitions: list[dict[str, str]] = []
    for summary in get("/api/v1/registry"):
        kind, definition_id = summary["kind"], summary["definition_id"]
        history = get(f"/api/v1/registry/{kind}/{definition_id}")
        selectors = [v["version"] for v in history["versions"]] + list(history["channels"])
        selectors += [f"sha256:{v['digest']}" for v in history["versions"]]
        definitions += [
            {"kind": kind, "definition_id": definition_id, "selector": s} for s in selectors
        ]
    cursor = get("/api/v1/runs", limit=2)["next_cursor"]
    assert run_ids, "the population has runs"
    assert artifact_ids, "and artifacts"
    assert definitions, "and registry definitions"
    assert cursor, "and more than one page of runs"
    return Known(
        run_ids=run_ids,
        artifact_ids=artifact_ids,
        definitions=definitions,
        selectors=sorted({d["selector"] for d in definitions}),
        cursors=[cursor],
    )


class _Current:
    """The ids of the vault under test. The schema and its hooks are built once, at import;
    the fixture of each backend points this at its own vault before each test."""

    known = Known()


def _sometimes(
    generated: dict[str, Any], real: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """The generated values, or (as often) the same with some replaced by real ones."""
    return st.booleans().flatmap(
        lambda use: real.map(lambda values: {**generated, **values}) if use else st.just(generated)
    )


@SCHEMA.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    known = _Current.known
    if not path_parameters or not known.run_ids:
        return st.just(path_parameters)
    real: dict[str, st.SearchStrategy[Any]] = {}
    if "run_id" in path_parameters:
        real["run_id"] = st.sampled_from(known.run_ids)
    if "revision" in path_parameters:
        real["revision"] = st.integers(1, 4)  # the running run has revisions 1 to 3
    if "artifact_id" in path_parameters:
        real["artifact_id"] = st.sampled_from(known.artifact_ids)
    strategy: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(real)
    if "kind" in path_parameters:
        names = [n for n in ("kind", "definition_id", "selector") if n in path_parameters]
        strategy = st.tuples(strategy, st.sampled_from(known.definitions)).map(
            lambda pair: {**pair[0], **{n: pair[1][n] for n in names}}
        )
    return _sometimes(path_parameters, strategy)


@SCHEMA.hook
def flatmap_query(
    context: schemathesis.HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    known = _Current.known
    if query is None or context.operation is None or not known.run_ids:
        return st.just(query)
    path = context.operation.path
    real: dict[str, st.SearchStrategy[Any]] = {}
    if "run" in query:
        real["run"] = st.lists(st.sampled_from(known.run_ids), min_size=1, max_size=9)
    if path.endswith("/snapshots/diff"):
        real["a"] = st.integers(1, 4)
        real["b"] = st.integers(1, 4)
    if path.endswith("/{definition_id}/diff"):
        real["a"] = st.sampled_from(known.selectors)
        real["b"] = st.sampled_from(known.selectors)
    if "cursor" in query:
        real["cursor"] = st.sampled_from(known.cursors)
    if not real:
        return st.just(query)
    return _sometimes(query, st.fixed_dictionaries(real))


# -- the app over each backend ------------------------------------------------------------


def _serve(population: Population) -> Iterator[Room]:
    app = create_app(population.url, blobs_url=population.blobs_url)
    try:
        # Entering the client starts the lifespan, which lasts until `shutdown_lifespans`.
        with asgi.get_client(cast(Any, app)) as client:
            known = _discover(client)
        yield Room(app, population, known)
    finally:
        _Current.known = Known()
        # Ends every app lifespan schemathesis started (it has no per-app call): both
        # backends' fixtures are module-scoped, so this runs as the module ends.
        asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def local_room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    root = tmp_path_factory.mktemp("web-fuzz")
    yield from _serve(populate_sync(str(root / "vault"), root))


@pytest.fixture(scope="module")
def pg_s3_room(
    pg_server: str, s3_endpoint: str, s3_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Room]:
    """The app over PostgreSQL + S3, populated once for the module: what the function-scoped
    ``pg_url``, ``s3_env`` and ``s3_bucket`` fixtures do, for every operation's test at once
    (populating takes seconds; doing it per operation would take minutes)."""
    with fresh_database() as url, module_bucket(s3_endpoint, s3_client) as blobs:
        root = tmp_path_factory.mktemp("web-fuzz-pg")
        yield from _serve(populate_sync(url, root, blobs_url=blobs))


def _enter(room: Room) -> Any:
    _Current.known = room.known
    return room.app


@pytest.fixture
def local_app(local_room: Room) -> Any:
    return _enter(local_room)


@pytest.fixture
def pg_s3_app(pg_s3_room: Room) -> Any:
    return _enter(pg_s3_room)


# -- the fuzz tests -----------------------------------------------------------------------


@_fuzz(LOCAL_EXAMPLES)
@SCHEMA.parametrize()
def test_api_conforms_to_its_schema(case: ApiCase, local_app: Any) -> None:
    case.call_and_validate(app=local_app, checks=CHECKS)


@pytest.mark.postgres
@pytest.mark.s3
@_fuzz(PG_S3_EXAMPLES)
@SCHEMA.parametrize()
def test_api_conforms_to_its_schema_on_postgres_and_s3(case: ApiCase, pg_s3_app: Any) -> None:
    case.call_and_validate(app=pg_s3_app, checks=CHECKS)


# -- requests known to matter -------------------------------------------------------------

Request = tuple[str, dict[str, Any], dict[str, Any]]
"""An operation's path, its path parameters and its query."""


def _real_requests(room: Room) -> Iterator[Request]:
    """Every operation, with ids that exist: each must answer 200."""
    pop, known = room.population, room.known
    definition = known.definitions[0]
    kind_id = {k: definition[k] for k in ("kind", "definition_id")}
    selectors = [d["selector"] for d in known.definitions if kind_id.items() <= d.items()]
    for run_id in [*pop.run_ids, pop.waiting_run]:
        yield "/api/v1/runs/{run_id}", {"run_id": run_id}, {}
        yield "/api/v1/runs/{run_id}/steps", {"run_id": run_id}, {}
        yield "/api/v1/runs/{run_id}/snapshots", {"run_id": run_id}, {}
        yield "/api/v1/runs/{run_id}/artifacts", {"run_id": run_id}, {}
        yield "/api/v1/runs/{run_id}/logs", {"run_id": run_id}, {"level": "debug"}
    running = {"run_id": pop.running_run}
    yield "/api/v1/runs/{run_id}/snapshots/{revision}", {**running, "revision": 3}, {}
    yield "/api/v1/runs/{run_id}/snapshots/diff", running, {"a": 1, "b": 3}
    yield "/api/v1/runs", {}, {"project": "web", "status": "failed,running", "limit": 2}
    yield "/api/v1/runs", {}, {"cursor": known.cursors[0], "label": "team=data"}
    yield "/api/v1/runs", {}, {"where": "metrics.rows > 0", "sort": "metrics.rows", "asc": True}
    yield "/api/v1/runs/counts", {}, {"since": "2020-01-01T00:00:00Z", "search": "run"}
    yield "/api/v1/compare", {}, {"run": [pop.playbook_run, pop.waiting_run, pop.pipeline_run]}
    for artifact_id in known.artifact_ids:
        yield "/api/v1/artifacts/{artifact_id}", {"artifact_id": artifact_id}, {}
        yield "/api/v1/artifacts/{artifact_id}/preview", {"artifact_id": artifact_id}, {}
        yield "/api/v1/artifacts/{artifact_id}/content", {"artifact_id": artifact_id}, {}
    png = {"artifact_id": pop.png_artifact}
    yield "/api/v1/artifacts/{artifact_id}/content", png, {"inline": True}  # image/png
    yield "/api/v1/registry", {}, {}
    yield "/api/v1/registry", {}, {"kind": definition["kind"]}
    yield "/api/v1/registry/approvals", {}, {}
    for d in known.definitions:
        yield "/api/v1/registry/{kind}/{definition_id}/{selector}", d, {}
    yield "/api/v1/registry/{kind}/{definition_id}", kind_id, {}
    yield (
        "/api/v1/registry/{kind}/{definition_id}/diff",
        kind_id,
        {"a": selectors[0], "b": selectors[-1]},
    )
    yield "/api/v1/audit", {}, {"after_seq": 1, "limit": 1000}
    yield "/api/v1/audit", {}, {"event": "run.", "run": pop.running_run, "limit": 5}
    yield "/api/v1/audit", {}, {"actor": "system", "before_seq": 3}
    yield "/api/v1/audit/verify", {}, {}
    yield "/api/v1/audit/checkpoints", {}, {}
    yield "/api/v1/overview", {}, {}
    yield "/api/v1/overview", {}, {"days": 366, "project": "web", "playbook": "x"}
    yield "/api/v1/runs", {}, {"previous": pop.failed_run}
    yield "/api/v1/host", {}, {}


def _edge_requests(room: Room) -> Iterator[Request]:
    """Odd values, on real records: each must be answered (not a 5xx) as documented."""
    pop, known = room.population, room.known
    running = {"run_id": pop.running_run}
    kind_id = {k: known.definitions[0][k] for k in ("kind", "definition_id")}
    # Calendar ends: an offset carries these past year 1 or 9999 once in UTC.
    for name, value in [
        ("since", "9999-12-31T23:59:59-14:00"),
        ("until", "0001-01-01T00:00:00+14:00"),
        ("since", "0001-01-01T00:00:00Z"),
        ("until", "9999-12-31T23:59:59.999999Z"),
        ("since", "2020-01-01T00:00:00"),  # no offset
    ]:
        yield "/api/v1/runs", {}, {name: value}
        yield "/api/v1/runs/counts", {}, {name: value}
    # Not "/": even sent as %2F, an ASGI server decodes the path before routing, so a path
    # parameter holding one names another route (a limit of paths, not of the app).
    odd = [
        ".",
        "..",
        "\x00",
        "a\x00b",
        "\u202e\ufeff",
        "\U0001f600",
        "%",
        "_",
        "\\",
        "'",
        "é" * 200,
    ]
    for text in odd:
        for name in ("project", "playbook", "actor", "search", "cursor", "sort"):
            yield "/api/v1/runs", {}, {name: text}
        yield "/api/v1/runs", {}, {"label": f"k={text}"}
        yield "/api/v1/runs", {}, {"label": f"{text}=v"}
        yield "/api/v1/runs", {}, {"where": f"metrics.{text} > 1"}
        yield "/api/v1/runs", {}, {"sort": f"metrics.{text}"}
        yield "/api/v1/runs", {}, {"status": f"running,{text}"}
        yield "/api/v1/runs/{run_id}/logs", running, {"level": text, "event": text}
        yield "/api/v1/runs/{run_id}", {"run_id": text}, {}
        yield "/api/v1/artifacts/{artifact_id}/content", {"artifact_id": text}, {}
        yield (
            "/api/v1/registry/{kind}/{definition_id}/{selector}",
            {**kind_id, "selector": text},
            {},
        )
        yield "/api/v1/registry/{kind}/{definition_id}/diff", kind_id, {"a": text, "b": text}
        yield "/api/v1/compare", {}, {"run": [pop.running_run, text]}
    for number in ["1e400", "-1e400", "nan", "inf", "1e-400", "0x10", "1_000"]:
        yield "/api/v1/runs", {}, {"where": f"metrics.rows > {number}"}
    for cursor in ["W10=", "WyJ4IiwxXQ==", "eyJhIjoxfQ==", "bnVsbA==", "WzEsMiwzXQ=="]:
        yield "/api/v1/runs", {}, {"cursor": cursor}  # base64 JSON of the wrong shapes
    big = 2**62
    yield "/api/v1/runs/{run_id}/snapshots/{revision}", {**running, "revision": big}, {}
    yield "/api/v1/runs/{run_id}/snapshots/diff", running, {"a": big, "b": 1}
    yield "/api/v1/runs/{run_id}/snapshots/diff", running, {"a": 2, "b": 2}
    yield "/api/v1/runs/{run_id}/logs", running, {"after_seq": big, "limit": 1000}
    yield "/api/v1/audit", {}, {"after_seq": big}
    yield "/api/v1/compare", {}, {"run": known.run_ids[:9]}
    yield "/api/v1/compare", {}, {"run": [pop.running_run, pop.running_run]}
    for selector in ["latest", "sha256:", "sha256:" + "0" * 64, "0.0.0", "9" * 30 + ".0.0", "diff"]:
        yield (
            "/api/v1/registry/{kind}/{definition_id}/{selector}",
            {**kind_id, "selector": selector},
            {},
        )
    for definition_id in ["x", "a" * 128, "A B", "é"]:
        yield (
            "/api/v1/registry/{kind}/{definition_id}",
            {**kind_id, "definition_id": definition_id},
            {},
        )
    yield (
        "/api/v1/artifacts/{artifact_id}/content",
        {"artifact_id": pop.xss_artifact},
        {"inline": True},
    )


def _segment(value: object) -> str:
    """A path parameter as sent: percent-encoded, and "." or ".." as %2E (as schemathesis
    does), or the client would drop them as dot segments."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _call(app: Any, request: Request) -> tuple[int | None, str | None]:
    """The status of the answer to ``request`` and what the checks found (None: nothing)."""
    path, path_parameters, query = request
    case = SCHEMA[path]["GET"].Case(
        path_parameters={k: _segment(v) for k, v in path_parameters.items()} or None,
        query=query or None,
    )
    try:
        response = case.call(app=app)
    except Exception as exc:  # an error the app let through: it would be a 500
        return None, f"{type(exc).__name__}: {exc}"
    try:
        case.validate_response(response, checks=CHECKS)
    except Exception as exc:
        return response.status_code, str(exc)[:1500]
    return response.status_code, None


@pytest.mark.parametrize(
    "backend", ["local", pytest.param("pg_s3", marks=[pytest.mark.postgres, pytest.mark.s3])]
)
def test_known_requests(backend: str, request: pytest.FixtureRequest) -> None:
    room: Room = request.getfixturevalue(f"{backend}_room")
    problems: list[str] = []
    answered: set[str] = set()
    for real in _real_requests(room):
        status, found = _call(room.app, real)
        if status != 200 or found:
            problems.append(f"{real!r}: {status} (200 expected) {found or ''}")
        answered.add(real[0])
    untried = set(SCHEMA.raw_schema["paths"]) - answered
    assert not untried, f"give these operations a real request in _real_requests: {untried}"
    for edge in _edge_requests(room):
        status, found = _call(room.app, edge)
        if found:
            problems.append(f"{edge!r}: {status} {found}")
    assert not problems, "\n\n".join(problems)
