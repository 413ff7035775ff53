"""Argument types checked at the services' public doors: a value of the wrong type (an int
where a run id goes, a list where a query goes) is a `ValidationError` naming the parameter,
never an AttributeError or TypeError from deep inside.

`checked_arguments` wraps every public method of a service class once, at import: for each
parameter whose annotation resolves to plain runtime classes (``str``, ``int``, a model, a
``Mapping``, ``X | None``...), the argument must be an instance of one of them. Only
``isinstance`` checks run per call (values are checked by the models and ids as before);
annotations that are not plain classes (``Any``, type variables, callables, iterables of
something) are left alone. ``bool`` is refused where ``int`` is expected.
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from strongroom.errors import ValidationError
from strongroom.models import Ref

__all__ = ["checked_arguments", "enum_value", "parse_labels", "parse_ref", "parse_where"]

E = TypeVar("E", bound=enum.Enum)

C = TypeVar("C", bound=type)

_ABSTRACT = {
    Mapping: Mapping,
    Sequence: Sequence,
    Iterable: Iterable,
    typing.Mapping: Mapping,
    typing.Sequence: Sequence,
    typing.Iterable: Iterable,
}


def _runtime_types(annotation: Any) -> tuple[type, ...] | None:
    """The classes an argument of ``annotation`` may be an instance of, or None when the
    annotation is not made of plain classes (then nothing is checked)."""
    if annotation is Any or isinstance(annotation, TypeVar | str):
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _runtime_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[type] = []
        for arg in typing.get_args(annotation):
            inner = _runtime_types(arg)
            if inner is None:
                return None
            found.extend(inner)
        return tuple(found)
    if annotation is None or annotation is type(None):
        return (type(None),)
    if origin is typing.Literal:
        return tuple({type(value) for value in typing.get_args(annotation)})
    if origin is not None:
        if origin in _ABSTRACT:
            return (_ABSTRACT[origin],)
        return (origin,) if isinstance(origin, type) and origin is not type else None
    if annotation in _ABSTRACT:
        return (_ABSTRACT[annotation],)
    if annotation is float:
        return (float, int)
    if isinstance(annotation, type):
        return (annotation,)
    return None


def _describe(kinds: tuple[type, ...]) -> str:
    names = sorted({"None" if kind is type(None) else kind.__name__ for kind in kinds})
    return " or ".join(names)


def _checker(func: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], None]:
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # a name only imported for type checking: check what resolves
        hints = {}
    # (position in the call's args or -1 for keyword-only, name, allowed classes)
    checks: list[tuple[int, str, tuple[type, ...]]] = []
    for index, (name, param) in enumerate(signature.parameters.items()):
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        kinds = _runtime_types(hints.get(name, Any))
        if kinds:
            position = -1 if param.kind is param.KEYWORD_ONLY else index
            checks.append((position, name, kinds))
    operation = func.__qualname__
    no_bool = {name for _, name, kinds in checks if int in kinds and bool not in kinds}

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # Plain lookups (no Signature.bind): this runs on every call of a public method.
        for position, name, kinds in checks:
            if 0 <= position < len(args):
                value = args[position]
            elif name in kwargs:
                value = kwargs[name]
            else:
                continue
            if not isinstance(value, kinds) or (type(value) is bool and name in no_bool):
                raise ValidationError(
                    f"{name} must be {_describe(kinds)}, got {type(value).__name__}",
                    operation=operation,
                    reason="bad_type",
                    field=name,
                )

    return check


def _wrap(func: Callable[..., Any]) -> Callable[..., Any]:
    check = _checker(func)
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def stream(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            async for item in func(*args, **kwargs):
                yield item

        return stream
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def call(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return await func(*args, **kwargs)

        return call

    @functools.wraps(func)
    def plain(*args: Any, **kwargs: Any) -> Any:
        check(args, kwargs)
        return func(*args, **kwargs)

    return plain


def checked_arguments(cls: C) -> C:
    """Wrap the public methods ``cls`` defines (not its bases') with argument checks."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        setattr(cls, name, _wrap(member))
    return cls


def enum_value(kind: type[E], value: E | str, *, name: str, operation: str) -> E:
    """``value`` as a member of ``kind``; `ValidationError` naming the parameter and the
    allowed values otherwise (instead of the enum's bare ValueError)."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise ValidationError(
            f"{name} must be one of {allowed}, got {str(value)[:40]!r}",
            operation=operation,
            reason="bad_value",
            field=name,
        ) from None


def parse_ref(text: str, *, operation: str) -> Ref:
    """``ID[@VERSION|@CHANNEL|@sha256:HEX]`` a caller gave; `ValidationError` if malformed."""
    try:
        return Ref.parse(text)
    except ValueError as exc:
        raise ValidationError(
            str(exc), operation=operation, reason="bad_reference", field="ref"
        ) from None


_WHERE: Final = re.compile(
    r"^\s*metrics\.(?P<key>\S+?)\s*(?P<op><=|>=|==|!=|<|>|=)\s*(?P<value>\S+)\s*$"
)


def parse_labels(
    values: list[str] | None, *, option: str = "--label", operation: str = "runs.list"
) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--label`` options, ``?label=`` parameters) as a dict;
    `ValidationError` (reason ``bad_label``) otherwise."""
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(
                f"{option} {item!r}: expected KEY=VALUE",
                operation=operation,
                field=option,
                reason="bad_label",
            )
        labels[key] = value
    return labels


def parse_where(
    values: list[str] | None, *, option: str = "--where", operation: str = "runs.list"
) -> list[dict[str, Any]]:
    """``'metrics.KEY OP NUMBER'`` conditions (``--where`` options, ``?where=`` parameters)
    as `MetricFilter` fields (``=`` is ``==``); `ValidationError` (reason ``bad_where``) for
    anything else."""
    conditions: list[dict[str, Any]] = []
    for item in values or []:
        found = _WHERE.match(item)
        number: float | None = None
        if found is not None:
            try:
                number = float(found["value"])
            except ValueError:
                found = None
        if found is None or number is None:
            raise ValidationError(
                f"{option} {item!r}: expected 'metrics.KEY OP NUMBER' with OP one of "
                "< <= > >= == !=",
                operation=operation,
                field=option,
                reason="bad_where",
            )
        op = "==" if found["op"] == "=" else found["op"]
        conditions.append({"key": found["key"], "op": op, "value": number})
    return conditions
