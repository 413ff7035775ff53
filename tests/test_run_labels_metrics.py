"""Run labels and metrics (issue 17): set at create and later, logged as a series, filtered and
sorted in the run index, on every backend pair, and through the CLI."""

from __future__ import annotations

import json
import operator
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _three_backends import vault as three_backend_vault
from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.errors import Conflict, ValidationError
from strongroom.models import MAX_LABELS, Run
from strongroom.vault import Vault
from test_cli import Cli, error_of

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

vault = three_backend_vault  # the fixture, one vault per backend


async def _ids(vault: Vault, **query: Any) -> list[str]:
    """Every run id the query returns, walking all pages."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await vault.runs.list(**query, cursor=cursor)
        ids += [run.run_id for run in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids


async def test_labels_at_create_and_later(vault: Vault) -> None:
    run = await vault.runs.create(project="p", labels={"lang": "ja", "phase": "qa"})
    assert run.labels == {"lang": "ja", "phase": "qa"}
    other = await vault.runs.create(project="p", labels={"lang": "en"})
    plain = await vault.runs.create(project="p")
    assert await _ids(vault, labels={"lang": "ja"}) == [run.run_id]
    assert await _ids(vault, labels={"lang": "ja", "phase": "qa"}) == [run.run_id]
    assert await _ids(vault, labels={"lang": "ja", "phase": "x"}) == []

    changed = await vault.runs.set_labels(run.run_id, {"lang": "en", "phase": None, "t": "1"})
    assert changed.labels == {"lang": "en", "t": "1"}
    assert changed.version == run.version + 1
    assert (await vault.runs.get(run.run_id)).labels == {"lang": "en", "t": "1"}
    assert set(await _ids(vault, labels={"lang": "en"})) == {run.run_id, other.run_id}
    assert await _ids(vault, labels={"phase": "qa"}) == []
    await vault.runs.set_labels(plain.run_id, {"lang": "en"})
    assert len(await _ids(vault, labels={"lang": "en"})) == 3
    page = await vault.runs.list(labels={"lang": "en"}, limit=1)
    assert page.total == 3
    # Other updates keep the labels (and their index rows).
    await vault.runs.update(run.run_id, purpose="changed")
    assert (await vault.runs.get(run.run_id)).labels == {"lang": "en", "t": "1"}
    assert run.run_id in await _ids(vault, labels={"t": "1"})
    audit = [e.event for e in await vault.audit.entries() if e.subject_id == run.run_id]
    assert audit.count("run.updated") == 2
    report = await vault.verify()
    assert report.ok, report.problems


async def test_metrics_series_filters_and_sort(vault: Vault) -> None:
    costs = [3.5, 1.0, 2.0, 1.0, -4.25, 0.0, 7.0]
    runs = [await vault.runs.create(project="p") for _ in costs]
    for run, cost in zip(runs, costs, strict=True):
        await vault.runs.log_metric(run.run_id, "cost", cost + 100, step=0)
        await vault.runs.log_metric(run.run_id, "cost", cost, step=1)
    unmetered = await vault.runs.create(project="p")
    first = runs[0].run_id
    stored = await vault.runs.get(first)
    assert stored.metrics == {"cost": 3.5}
    history = await vault.runs.metric_history(first, "cost")
    assert [(p.value, p.step) for p in history] == [(103.5, 0), (3.5, 1)]
    assert history[0].seq < history[1].seq
    assert await vault.runs.metric_history(first, "other") == []

    by_id = {run.run_id: cost for run, cost in zip(runs, costs, strict=True)}
    for op, fn in OPS.items():
        found = await _ids(vault, where=[{"key": "cost", "op": op, "value": 1.0}])
        assert set(found) == {i for i, c in by_id.items() if fn(c, 1.0)}, op
        assert unmetered.run_id not in found
    both = await _ids(
        vault,
        where=[{"key": "cost", "op": ">", "value": 0}, {"key": "cost", "op": "<", "value": 3}],
    )
    assert set(both) == {i for i, c in by_id.items() if 0 < c < 3}

    # Sorted by the metric, paged two at a time: no duplicate, no gap, no unmetered run.
    for descending in (True, False):
        walked = await _ids(vault, sort="metrics.cost", descending=descending, limit=2)
        expected = sorted(by_id, key=lambda i: (by_id[i], i), reverse=descending)
        assert walked == expected
    page = await vault.runs.list(sort="metrics.cost", limit=2)
    assert page.total == len(costs)
    with pytest.raises(ValidationError) as caught:
        await vault.runs.list(sort="created_at", cursor=page.next_cursor)
    assert caught.value.details["reason"] == "bad_cursor"
    report = await vault.verify()
    assert report.ok, report.problems


async def test_label_filter_sorted_by_metric_and_by_time(vault: Vault) -> None:
    made: list[Run] = []
    for n in range(9):
        run = await vault.runs.create(project="p", labels={"lang": "ja" if n % 3 else "en"})
        await vault.runs.log_metric(run.run_id, "score", float(n % 4))
        made.append(run)
    ja = [r.run_id for r in made if r.labels["lang"] == "ja"]
    newest_first = [r.run_id for r in sorted(made, key=lambda r: (r.created_at, r.run_id))][::-1]
    assert await _ids(vault, labels={"lang": "ja"}, limit=2) == [i for i in newest_first if i in ja]
    scores = {r.run_id: float(n % 4) for n, r in enumerate(made)}
    walked = await _ids(
        vault, labels={"lang": "ja"}, sort="metrics.score", descending=False, limit=3
    )
    assert walked == sorted(ja, key=lambda i: (scores[i], i))


async def test_refusals_change_nothing(vault: Vault) -> None:
    run = await vault.runs.create(project="p", labels={"a": "1"})
    before = await vault.runs.get(run.run_id)
    entries = len(await vault.audit.entries())
    bad_calls: list[Callable[[], Any]] = [
        lambda: vault.runs.log_metric(run.run_id, "cost", float("nan")),
        lambda: vault.runs.log_metric(run.run_id, "cost", float("inf")),
        lambda: vault.runs.log_metric(run.run_id, "bad key", 1.0),
        lambda: vault.runs.set_labels(run.run_id, {"bad key": "x"}),
        lambda: vault.runs.set_labels(run.run_id, {"k": "line\nbreak"}),
        lambda: vault.runs.set_labels(run.run_id, {"k": "x" * 257}),
        lambda: vault.runs.set_labels(run.run_id, {f"k{n}": "v" for n in range(MAX_LABELS)}),
        lambda: vault.runs.list(where=[{"key": "cost", "op": "~", "value": 1}]),
        lambda: vault.runs.list(sort="metrics.bad key"),
    ]
    for call in bad_calls:
        with pytest.raises(ValidationError):
            await call()
    with pytest.raises(ValidationError) as caught:
        await vault.runs.log_metric(run.run_id, "cost", float("nan"))
    assert caught.value.details["reason"] == "not_a_number"
    with pytest.raises(Conflict):
        await vault.runs.set_labels(run.run_id, {"b": "2"}, expected_version=before.version + 5)
    assert await vault.runs.get(run.run_id) == before
    assert len(await vault.audit.entries()) == entries
    assert await _ids(vault, labels={"b": "2"}) == []
    # A finished run's log is sealed: no more metric values.
    await vault.runs.start(run.run_id)
    await vault.runs.complete(run.run_id)
    with pytest.raises(Conflict):
        await vault.runs.log_metric(run.run_id, "cost", 1.0)
    assert (await vault.runs.get(run.run_id)).metrics == {}


async def test_runs_without_labels_keep_their_digests(vault: Vault) -> None:
    """A run with neither labels nor metrics is stored exactly as before the fields existed,
    so old vaults keep verifying."""
    run = await vault.runs.create(project="p")
    body = run.model_dump(mode="json")
    assert "labels" not in body
    assert "metrics" not in body
    labelled = await vault.runs.set_labels(run.run_id, {"a": "b"})
    assert labelled.model_dump(mode="json")["labels"] == {"a": "b"}
    emptied = await vault.runs.set_labels(run.run_id, {"a": None})
    assert "labels" not in emptied.model_dump(mode="json")
    assert (await vault.verify()).ok


label_values = st.sampled_from(["a", "b", "c"])
run_specs = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(["x", "y"]), label_values, max_size=2),
        st.dictionaries(
            st.sampled_from(["m", "n"]),
            st.sampled_from([-1.5, 0.0, 1.0, 2.5]),
            max_size=2,
        ),
    ),
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=run_specs,
    wanted=st.dictionaries(st.sampled_from(["x", "y"]), label_values, max_size=2),
    op=st.sampled_from(sorted(OPS)),
    bound=st.sampled_from([0.0, 1.0]),
    descending=st.booleans(),
)
async def test_filters_match_a_python_reference(
    specs: list[tuple[dict[str, str], dict[str, float]]],
    wanted: dict[str, str],
    op: str,
    bound: float,
    descending: bool,
) -> None:
    """On the memory and SQLite pairs: filter + metric sort equal a Python reference."""
    for store in ("memory", "sqlite"):
        scratch = tempfile.TemporaryDirectory()
        vault = (
            Vault(MemoryMetadataStore(), MemoryBlobStore())
            if store == "memory"
            else await Vault.open(Path(scratch.name) / "vault")
        )
        try:
            expected: list[tuple[float, str]] = []
            for labels, metrics in specs:
                run = await vault.runs.create(project="p", labels=labels)
                for key, value in metrics.items():
                    await vault.runs.log_metric(run.run_id, key, value)
                if (
                    all(labels.get(k) == v for k, v in wanted.items())
                    and "n" in metrics
                    and OPS[op](metrics["n"], bound)
                    and "m" in metrics
                ):
                    expected.append((metrics["m"], run.run_id))
            found = await _ids(
                vault,
                labels=wanted or None,
                where=[{"key": "n", "op": op, "value": bound}],
                sort="metrics.m",
                descending=descending,
                limit=2,
            )
            assert found == [i for _, i in sorted(expected, reverse=descending)], store
        finally:
            await vault.close()
            scratch.cleanup()


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    bound = Cli(tmp_path / "vault")
    assert bound("init").exit_code == 0
    return bound


def test_cli_labels_and_metrics(cli: Cli) -> None:
    a = cli.new_run("docs", "--label", "lang=ja", "--label", "env=prod")
    b = cli.new_run("docs", "--label", "lang=en")
    cli.ok("runs", "metric", a, "cost", "1.5", "--step", "3")
    cli.ok("runs", "metric", b, "cost", "4")
    listed = cli.json("runs", "list", "--label", "lang=ja")
    assert [r["run_id"] for r in listed["items"]] == [a]
    assert listed["items"][0]["labels"] == {"lang": "ja", "env": "prod"}
    assert listed["items"][0]["metrics"] == {"cost": 1.5}
    cheap = cli.json("runs", "list", "--where", "metrics.cost < 2")
    assert [r["run_id"] for r in cheap["items"]] == [a]
    ordered = cli.json("runs", "list", "--sort", "metrics.cost", "--asc")
    assert [r["run_id"] for r in ordered["items"]] == [a, b]
    assert [r["run_id"] for r in cli.json("runs", "list", "--sort", "metrics.cost")["items"]] == [
        b,
        a,
    ]
    labelled = cli.json("runs", "label", a, "team=x", "--remove", "env")
    assert labelled["labels"] == {"lang": "ja", "team": "x"}
    shown = cli.ok("runs", "show", a).stdout
    assert "lang=ja team=x" in shown
    assert "cost=1.5" in shown
    details = cli.json("runs", "show", a)
    assert details["run"]["metrics"] == {"cost": 1.5}
    text = cli.ok("runs", "list", "--label", "team=x").stdout
    assert a in text
    assert b not in text
    assert cli.ok("verify").exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list", "--where", "metrics.cost <"),
        ("runs", "list", "--where", "cost < 2"),
        ("runs", "list", "--where", "metrics.cost ~ 2"),
        ("runs", "list", "--where", "metrics.cost < nan"),
        ("runs", "list", "--sort", "metrics."),
        ("runs", "list", "--label", "novalue"),
        ("runs", "metric", "RUN", "cost", "nan"),
        ("runs", "metric", "RUN", "cost", "many"),
        ("runs", "label", "RUN", "bad key=1"),
        ("runs", "label", "RUN"),
        ("runs", "label", "RUN", *(f"k{n}=v" for n in range(MAX_LABELS + 1))),
    ],
)
def test_cli_refusals(cli: Cli, args: tuple[str, ...]) -> None:
    run = cli.new_run("docs", "--label", "lang=ja")
    before = cli.json("runs", "show", run)["run"]
    audit = cli.ok("--json", "audit", "show", "--limit", "10000").stdout
    result = cli("--json", *(run if arg == "RUN" else arg for arg in args))
    assert result.exit_code == 2, result.stdout
    assert error_of(result)["code"] == "validation_error"
    assert cli.json("runs", "show", run)["run"] == before
    assert cli.ok("--json", "audit", "show", "--limit", "10000").stdout == audit


def test_cli_nan_metric_reason(cli: Cli) -> None:
    run = cli.new_run("docs")
    result = cli("--json", "runs", "metric", run, "cost", "NaN")
    assert error_of(result)["details"]["reason"] == "not_a_number"
    assert json.loads(cli.ok("--json", "runs", "show", run).stdout)["run"].get("metrics") is None
