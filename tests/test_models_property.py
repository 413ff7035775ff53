"""Property tests of the boundary records and of the safe-name rules.

Every model in ``strongroom.models.export.EXPORTED`` survives JSON: dump, validate, equal.
``hypothesis.strategies.from_type`` cannot build these records (it knows nothing of the name
validators, patterns or bounds), so each model's strategy is derived here from its pydantic
fields: the validators of ``strongroom.ids`` map to generators of valid names, field
constraints (lengths, bounds, patterns) to bounded generators.
"""

from __future__ import annotations

import json
import re
import string
import time
import types
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum
from typing import Any, Literal, get_args, get_origin

import annotated_types
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from strongroom import ids
from strongroom.models import registry
from strongroom.models._base import JsonObject, JsonValue, SingleLineText, Text, UtcDatetime
from strongroom.models.execution import RunnerRequest
from strongroom.models.export import EXPORTED
from strongroom.models.retention import Hold, RetentionPolicy, RetentionRule
from strongroom.models.runs import RUN_STATS_MAX_DAYS, TERMINAL_STATUSES, MetricValue, RunStatsQuery

# -- generators of valid values --------------------------------------------------------------


def _charset_names(first: str, rest: str, max_rest: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda head, tail: head + tail,
        st.sampled_from(first),
        st.text(alphabet=rest, max_size=max_rest),
    ).filter(lambda name: ".." not in name)


ALNUM = string.ascii_letters + string.digits
SAFE_NAMES = _charset_names(ALNUM, ALNUM + "._-", 127)
ACTOR_NAMES = _charset_names(ALNUM, ALNUM + "._@:+-", 127)
TAGS = _charset_names(ALNUM, ALNUM + "._:=/-", 127)
FILE_NAMES = _charset_names(ALNUM, ALNUM + "._ ()+=,@-", 254)
HEX = "0123456789abcdef"
DIGESTS = st.text(alphabet=HEX, min_size=64, max_size=64).flatmap(
    lambda hexd: st.sampled_from([hexd, f"sha256:{hexd}"])
)
ULIDS = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)
ENTITY_IDS = st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.just(ids.new_id()), ULIDS
)
UTC_DATETIMES = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _validator_func(annotated: Any) -> Callable[..., Any]:
    (validator,) = get_args(annotated)[1:]
    func: Callable[..., Any] = validator.func
    return func


def _validator_of(annotated: Any) -> Callable[..., Any]:
    """The (one) before/after validator among an Annotated type's metadata."""
    (validator,) = [
        item
        for item in get_args(annotated)[1:]
        if isinstance(item, AfterValidator | BeforeValidator)
    ]
    func: Callable[..., Any] = validator.func
    return func


# Registry grammars: references, step inputs, sandbox paths, redaction patterns.
VERSION_LABELS = st.from_regex(
    registry.VERSION_LABEL_PATTERN.removeprefix("^").removesuffix("$"), fullmatch=True
).filter(lambda label: len(label) <= 64)
REFS = st.one_of(
    st.builds(registry.Ref, SAFE_NAMES),
    st.builds(lambda name, version: f"{name}@{version}", SAFE_NAMES, VERSION_LABELS),
    st.builds(
        lambda name, channel: f"{name}@{channel}", SAFE_NAMES, st.sampled_from(registry.Channel)
    ),
    st.builds(lambda name, digest: f"{name}@sha256:{digest[-64:]}", SAFE_NAMES, DIGESTS),
)
SANDBOX_PATHS = st.text(alphabet=ALNUM + "/._- ", min_size=1, max_size=40).filter(
    lambda path: ".." not in path.split("/")
)
REDACT_PATTERNS = st.sampled_from([r"secret=\S+", r"\b\d{4}-\d{4}\b", r"(?i)token:\s*\w+", "x"])

# The validator functions of the name/id/time types, and what produces valid input for each.
VALIDATED: dict[Callable[..., Any], st.SearchStrategy[Any]] = {
    ids.check_name: SAFE_NAMES,
    _validator_func(ids.ActorName): ACTOR_NAMES,
    _validator_func(ids.Tag): TAGS,
    ids.check_file_name: FILE_NAMES,
    ids.check_entity_id: ENTITY_IDS,
    ids.check_digest: DIGESTS,
    _validator_func(UtcDatetime): UTC_DATETIMES,
    _validator_of(registry.RefField): REFS,
    _validator_of(registry.SandboxPath): SANDBOX_PATHS,
    _validator_of(registry.RedactPattern): REDACT_PATTERNS,
    _validator_of(registry.StepInput): st.deferred(
        lambda: st.one_of(
            *(
                model_strategy(model)
                for model in (
                    registry.FromInput,
                    registry.FromStep,
                    registry.FromArtifact,
                    registry.LiteralValue,
                )
            )
        )
    ),
    _validator_of(registry.ArtifactSource): st.deferred(
        lambda: model_strategy(registry.ArtifactFromStep) | model_strategy(registry.ArtifactById)
    ),
}

# Text types: any text of the field's length without the control characters they refuse in
# input. JSON values: the JSON_VALUES the annotated type already yields (finite, shallow).
_NO_CONTROL = st.characters(exclude_categories=["Cc", "Cs"])
TEXT_ALPHABETS: dict[Callable[..., Any], st.SearchStrategy[str]] = {
    _validator_func(Text): _NO_CONTROL | st.sampled_from("\t\n\r"),
    _validator_func(SingleLineText): _NO_CONTROL,
}
CHECKED_AS_IS = {
    _validator_func(JsonObject),
    _validator_func(JsonValue),
    _validator_func(MetricValue),  # floats below are finite already
    # the runner request's shape coercions (a bare level, a strongroom Trace): the model
    # they coerce to is generated as it is
    *(
        item.func
        for name in ("governance", "trace")
        for item in RunnerRequest.model_fields[name].metadata
        if isinstance(item, BeforeValidator)
    ),
}


# -- deriving a model's strategy from its fields ----------------------------------------------


def strategy_for(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    """Valid values of one (possibly nested) field type with its pydantic constraints."""
    if get_origin(annotation) is typing.Annotated:
        inner, *extra = get_args(annotation)
        # a nested ``Annotated[str, Field(...)]`` carries its constraints in a FieldInfo
        flat = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return strategy_for(inner, [*flat, *metadata])
    for item in metadata:
        if isinstance(item, AfterValidator | BeforeValidator):
            if item.func in CHECKED_AS_IS:
                continue
            if item.func in TEXT_ALPHABETS:
                return _text(metadata, TEXT_ALPHABETS[item.func])
            if item.func not in VALIDATED:
                raise NotImplementedError(f"teach this test to generate {item.func.__name__}")
            return VALIDATED[item.func]

    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy_for(arg, metadata) for arg in args))
    if annotation is type(None):
        return st.none()
    if origin is list:
        least = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), 0)
        return st.lists(strategy_for(args[0], []), min_size=least, max_size=max(3, least))
    if origin is dict:
        plain_text = args[0] is str
        keys = st.text(max_size=12) if plain_text else strategy_for(args[0], [])
        return st.dictionaries(keys, strategy_for(args[1], []), max_size=3)
    if origin is Literal:
        return st.sampled_from(args)
    if annotation is Any:
        return JSON_VALUES
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_strategy(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if annotation is bool:
        return st.booleans()
    if annotation is date:
        return st.dates()
    if annotation is int:
        low = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), -(2**63))
        high = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), 2**63 - 1)
        assert isinstance(low, int)
        assert isinstance(high, int)
        return st.integers(low, high)
    if annotation is float:
        low_f = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
        high_f = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
        assert low_f is None or isinstance(low_f, int | float)
        assert high_f is None or isinstance(high_f, int | float)
        return st.floats(low_f, high_f, allow_nan=False, allow_infinity=False)
    if annotation is str:
        return _text(metadata)
    raise NotImplementedError(f"teach this test to generate {annotation!r}")


def _text(
    metadata: list[Any], alphabet: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[str]:
    low = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), 0)
    high = next((m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)), 200)
    pattern = next((m.pattern for m in metadata if getattr(m, "pattern", None)), None)
    if pattern is None:
        if alphabet is not None:
            return st.text(alphabet, min_size=low, max_size=min(high, 200))
        return st.text(min_size=low, max_size=min(high, 200))
    # Field patterns are anchored; pydantic's regex engine reads '$' as the end of the text.
    bare = pattern.removeprefix("^").removesuffix("$")
    return st.from_regex(bare, fullmatch=True).filter(lambda s: low <= len(s) <= high)


# Models whose fields constrain one another, drawn whole (a stats window is at most
# RUN_STATS_MAX_DAYS long and ends after it starts).
WHOLE_MODELS: dict[type[BaseModel], st.SearchStrategy[Any]] = {
    RunStatsQuery: st.builds(
        lambda since, span, project, playbook_id: RunStatsQuery(
            since=since, until=since + span, project=project, playbook_id=playbook_id
        ),
        UTC_DATETIMES,
        st.timedeltas(timedelta(microseconds=1), timedelta(days=RUN_STATS_MAX_DAYS)),
        st.none() | SAFE_NAMES,
        st.none() | SAFE_NAMES,
    ),
    # A rule keeps by days, by count or both, over ended statuses only.
    RetentionRule: st.builds(
        lambda project, statuses, days, last: RetentionRule(
            project=project,
            statuses=statuses,
            keep_days=days if days is not None or last is not None else 1,
            keep_last=last,
        ),
        st.none() | SAFE_NAMES,
        st.lists(st.sampled_from(sorted(TERMINAL_STATUSES)), min_size=1, max_size=3),
        st.none() | st.integers(0, 36_500),
        st.none() | st.integers(0, 1_000_000),
    ),
    # A hold names a run or a project; released fields go together.
    Hold: st.builds(
        lambda run, project, use_run, released, reason: Hold(
            hold_id="h1",
            run_id=run if use_run else None,
            project=None if use_run else project,
            reason=reason,
            actor="alice",
            created_at=released,
            **(
                {}
                if released.year % 2
                else {"released_at": released, "released_by": "bob", "release_reason": reason}
            ),
        ),
        st.uuids().map(str),
        SAFE_NAMES,
        st.booleans(),
        UTC_DATETIMES,
        st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=50),
    ),
}


# Fields drawn by hand because they depend on a sibling field: a project config's retention
# rules cover its own project only (`project` absent, filled in by `gc plan`).
FIELD_OVERRIDES: dict[tuple[type[BaseModel], str], st.SearchStrategy[Any]] = {
    (registry.ProjectConfig, "retention"): st.none()
    | st.lists(WHOLE_MODELS[RetentionRule], max_size=3).map(
        lambda rules: RetentionPolicy(rules=[r.model_copy(update={"project": None}) for r in rules])
    ),
}


def model_strategy(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Instances of ``model``: every required field, each optional field present or not."""
    if model in WHOLE_MODELS:
        return WHOLE_MODELS[model]
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        target = required if info.is_required() else optional
        override = FIELD_OVERRIDES.get((model, name))
        target[name] = override if override is not None else field_strategy(info)
    return st.fixed_dictionaries(required, optional=optional).map(model.model_validate)


def field_strategy(info: FieldInfo) -> st.SearchStrategy[Any]:
    return strategy_for(info.annotation, list(info.metadata))


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", EXPORTED, ids=lambda model: model.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_exported_model_round_trips_through_json(
    model: type[BaseModel], data: st.DataObject
) -> None:
    record = data.draw(model_strategy(model), label=model.__name__)
    text = record.model_dump_json()

    again = model.model_validate_json(text)

    assert again == record
    assert again.model_dump_json() == text  # the JSON form is stable, not just equivalent
    assert model.model_validate(json.loads(text)) == record  # JSON parsed by anyone else


def test_the_strategies_cover_every_exported_model() -> None:
    for model in EXPORTED:
        for info in model.model_fields.values():
            field_strategy(info)  # raises for a type this test cannot generate yet


# -- safe names --------------------------------------------------------------------------------

NAME_CHECKS = [ids.check_name, ids.check_actor, ids.check_file_name]
# A tag may hold '/' ("team/ml"): tags are labels, never path segments.
ALL_CHECKS = [*NAME_CHECKS, ids.check_tag, ids.check_entity_id]

NON_ASCII = st.characters(min_codepoint=0x80, exclude_categories=["Cs"])
PATH_HAZARDS = st.sampled_from(["/", "\\", "\x00", ".."])


def containing(fragment: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Any text with ``fragment`` somewhere inside (often an otherwise valid name)."""
    around = st.text(alphabet=ALNUM + "._-", max_size=20) | st.text(max_size=20)
    return st.builds(lambda a, f, b: a + f + b, around, fragment, around)


def rejects(check: Callable[[str], str], value: str) -> bool:
    try:
        check(value)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("check", NAME_CHECKS, ids=lambda check: check.__name__)
@given(value=containing(PATH_HAZARDS))
def test_names_with_path_separators_nul_or_dot_dot_are_rejected(
    check: Callable[[str], str], value: str
) -> None:
    assert rejects(check, value)


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
@given(value=containing(NON_ASCII) | containing(st.sampled_from(["\\", "\x00", ".."])))
def test_names_with_non_ascii_backslash_nul_or_dot_dot_are_rejected(
    check: Callable[[str], str], value: str
) -> None:
    assert rejects(check, value)


@pytest.mark.parametrize(
    ("check", "charset"),
    [
        (ids.check_name, r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
        (ids.check_actor, r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}"),
        (ids.check_tag, r"[A-Za-z0-9][A-Za-z0-9._:=/-]{0,127}"),
        (ids.check_file_name, r"[A-Za-z0-9][A-Za-z0-9._ ()+=,@-]{0,254}"),
    ],
    ids=lambda value: getattr(value, "__name__", "charset"),
)
@given(value=st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
@example(value="run\n")  # '$' in a Python regex also matches before a final newline
@example(value="a..b")
def test_accepted_names_use_only_the_documented_characters(
    check: Callable[[str], str], charset: str, value: str
) -> None:
    if not rejects(check, value):
        assert re.fullmatch(charset, value), repr(value)
        assert ".." not in value
        assert check(value) == value


@pytest.mark.parametrize(
    ("check", "valid"),
    [
        (ids.check_name, SAFE_NAMES),
        (ids.check_actor, ACTOR_NAMES),
        (ids.check_tag, TAGS),
        (ids.check_file_name, FILE_NAMES),
    ],
    ids=lambda value: getattr(value, "__name__", "valid"),
)
@given(data=st.data())
def test_valid_names_are_accepted_unchanged(
    check: Callable[[str], str], valid: st.SearchStrategy[str], data: st.DataObject
) -> None:
    value = data.draw(valid)
    assert check(value) == value


@given(value=st.uuids())
def test_any_uuid_is_accepted_in_canonical_lowercase_form(value: uuid.UUID) -> None:
    assert ids.check_entity_id(str(value).upper()) == str(value)


@given(value=st.text(alphabet=HEX, min_size=64, max_size=64))
def test_digests_are_accepted_bare_or_prefixed_and_returned_bare(value: str) -> None:
    assert ids.check_digest(value) == ids.check_digest(f"sha256:{value}") == value
    assert rejects(ids.check_digest, value.upper()) or value.upper() == value
    assert rejects(ids.check_digest, value + "\n")


# -- ids ---------------------------------------------------------------------------------------


def uuid7_millis(value: str) -> int:
    return uuid.UUID(value).int >> 80


def test_new_ids_are_canonical_uuid7() -> None:
    for value in (ids.new_id() for _ in range(1000)):
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value  # lowercase, hyphenated
        assert ids.check_entity_id(value) == value


@settings(deadline=None)
@given(pauses=st.lists(st.sampled_from([0.0, 0.0, 0.0005, 0.002]), min_size=2, max_size=30))
def test_new_ids_sort_in_creation_order(pauses: list[float]) -> None:
    created = []
    for pause in pauses:
        time.sleep(pause)
        before = time.time_ns() // 1_000_000
        created.append(ids.new_id())
        assert uuid7_millis(created[-1]) >= before  # never stamped before it was made
    assert created == sorted(created)
    assert len(set(created)) == len(created)
