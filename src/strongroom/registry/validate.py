"""Publish-time checks of a definition beyond its fields, and the error shapes they produce.

`validate_definition` runs the document-level rules in stages; the first stage that finds
anything raises, reporting *every* problem of that stage in ``details.errors`` as
``{"path": "steps[2].depends_on[0]", "message": ...}``:

1. structure (`ValidationError`): duplicate tool/step ids, duplicate or unknown
   ``depends_on`` entries, ``from_step``/``from_artifact.step`` naming a missing step (or one
   that stores no output), an A3 tool without run logging, duplicate references, sandbox
   modes contradicting their path/host lists;
2. dependency cycles (`DependencyCycle`): ``details.cycles`` lists each cycle, e.g.
   ``["a", "b", "c", "a"]`` printed ``a → b → c → a``. Arrows follow execution order: each
   step feeds the next, and the first step depends on the last;
3. tool contracts (`InvalidContract`): every request/response/error schema must be a valid
   JSON Schema of its ``$schema`` dialect (default Draft 2020-12); the path reaches inside
   the schema (``tools[1].contract.request_schema.properties.text.type``).

A step's dependencies are its ``depends_on`` entries **plus** every step its inputs read from
(``from_step``, ``from_artifact.step``): reading a step's output implies depending on it, so
listing it in ``depends_on`` as well is allowed but not required (the file is stored as
written; `execution_order` and the cycle check use the implied edges).

`check_references` resolves references to other definitions through a callback, so the
registry service can plug its store in (`UnknownReference` for each missing one).
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import pydantic
from jsonschema import Draft4Validator, Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from pydantic_core import ErrorDetails

from strongroom.errors import (
    DependencyCycle,
    InvalidContract,
    UnknownReference,
    ValidationError,
)
from strongroom.models.registry import (
    PATTERN_MESSAGES,
    ArtifactFromStep,
    Definition,
    FilesystemMode,
    FromArtifact,
    GovernanceLevel,
    NetworkMode,
    Playbook,
    ProjectConfig,
    Ref,
    RefKind,
    SandboxPolicy,
    ToolManifest,
    field_path,
)

__all__ = [
    "Issue",
    "Resolver",
    "check_references",
    "contract_issues",
    "execution_order",
    "field_path",
    "find_cycles",
    "raise_issues",
    "validate_definition",
    "validation_issues",
]

Resolver = Callable[[RefKind, Ref], Awaitable[bool]]
"""``await resolve(RefKind.TOOL, Ref.parse("normalise_records@1.2.0"))`` -> does it exist?"""

_OPERATION = "registry.validate"
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class Issue:
    """One problem: where (a JSON-path-like string, ``""`` = the whole document) and what."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


# -- paths and messages ------------------------------------------------------------------------


def _join(prefix: str, loc: Iterable[int | str]) -> str:
    rest = field_path(loc)
    if not prefix:
        return rest
    if not rest:
        return prefix
    return f"{prefix}{rest}" if rest.startswith("[") else f"{prefix}.{rest}"


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def validation_issues(exc: pydantic.ValidationError) -> list[Issue]:
    """One `Issue` per pydantic error, with a readable message."""
    issues: list[Issue] = []
    for err in exc.errors(include_url=False):
        issues.append(Issue(field_path(err["loc"]), _one_line(_message(err))))
    return issues


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "string_pattern_mismatch":
        return PATTERN_MESSAGES.get(str(ctx.get("pattern")), str(err["msg"]))
    if kind == "string_type" and isinstance(err.get("input"), int | float):
        return "must be a string (in YAML, quote numbers such as versions: '1.10')"
    msg = str(err["msg"])
    return "must" + msg[len("Input should") :] if msg.startswith("Input should") else msg


def raise_issues(
    cls: type[ValidationError],
    issues: list[Issue],
    *,
    what: str,
    file: str | None = None,
    **details: Any,
) -> NoReturn:
    """Raise ``cls`` with a one-line message naming the first issue and all of them in
    ``details.errors``."""
    first = issues[0]
    where = f" in {file}" if file else ""
    at = f"{first.path}: " if first.path else ""
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    raise cls(
        f"invalid {what}{where}: {at}{first.message}{more}",
        file=file,
        errors=[issue.as_dict() for issue in issues],
        **details,
    )


def _what(defn: Definition) -> str:
    return f"{defn.kind} {defn.definition_id}"


# -- the checks --------------------------------------------------------------------------------


def validate_definition(defn: Definition, *, file_name: str | None = None) -> None:
    """Run the document-level checks (see the module docstring); None when all pass."""
    context: dict[str, Any] = {
        "operation": _OPERATION,
        "kind": defn.kind,
        "definition_id": defn.definition_id,
    }
    structural = list(_structure_issues(defn))
    if structural:
        raise_issues(ValidationError, structural, what=_what(defn), file=file_name, **context)
    if isinstance(defn, Playbook):
        cycles = find_cycles(defn)
        if cycles:
            issues = [
                Issue(path, f"dependency cycle: {' → '.join(cycle)}") for cycle, path in cycles
            ]
            raise_issues(
                DependencyCycle,
                issues,
                what=_what(defn),
                file=file_name,
                cycles=[cycle for cycle, _ in cycles],
                **context,
            )
    if isinstance(defn, ToolManifest):
        contract = [
            issue
            for t, tool in enumerate(defn.tools)
            for name in ("request_schema", "response_schema", "error_schema")
            if (schema := getattr(tool.contract, name)) is not None
            for issue in contract_issues(schema, f"tools[{t}].contract.{name}")
        ]
        if contract:
            raise_issues(InvalidContract, contract, what=_what(defn), file=file_name, **context)


def _structure_issues(defn: Definition) -> Iterator[Issue]:
    if isinstance(defn, ToolManifest):
        yield from _manifest_issues(defn)
    elif isinstance(defn, Playbook):
        yield from _playbook_issues(defn)
    elif isinstance(defn, ProjectConfig):
        yield from _duplicate_refs(defn.playbooks, "playbooks", "playbook")
        yield from _duplicate_refs(defn.policies, "policies", "policy")
    elif isinstance(defn, SandboxPolicy):
        yield from _sandbox_issues(defn)


def _manifest_issues(manifest: ToolManifest) -> Iterator[Issue]:
    first: dict[str, int] = {}
    for t, tool in enumerate(manifest.tools):
        if tool.tool_id in first:
            yield Issue(
                f"tools[{t}].tool_id",
                f"duplicate tool_id {tool.tool_id!r} (also tools[{first[tool.tool_id]}])",
            )
        first.setdefault(tool.tool_id, t)
        if tool.governance.level is GovernanceLevel.A3 and not tool.governance.requires_run_logging:
            yield Issue(
                f"tools[{t}].governance.requires_run_logging",
                "an A3 tool (governed execution with strict audit) must log its runs",
            )
        yield from _duplicate_refs(tool.policy_refs, f"tools[{t}].policy_refs", "policy")


def _duplicate_refs(refs: list[Ref], path: str, what: str) -> Iterator[Issue]:
    first: dict[str, int] = {}
    for r, ref in enumerate(refs):
        if ref.id in first:
            yield Issue(
                f"{path}[{r}]", f"{what} {ref.id!r} is listed twice (also [{first[ref.id]}])"
            )
        first.setdefault(ref.id, r)


def _playbook_issues(playbook: Playbook) -> Iterator[Issue]:
    index: dict[str, int] = {}
    for s, step in enumerate(playbook.steps):
        if step.step_id in index:
            yield Issue(
                f"steps[{s}].step_id",
                f"duplicate step_id {step.step_id!r} (also steps[{index[step.step_id]}])",
            )
        else:
            index[step.step_id] = s
    for s, step in enumerate(playbook.steps):
        seen: set[str] = set()
        for d, dep in enumerate(step.depends_on):
            if dep in seen:
                yield Issue(f"steps[{s}].depends_on[{d}]", f"{dep!r} is listed twice")
            seen.add(dep)
            if dep not in index:
                yield Issue(f"steps[{s}].depends_on[{d}]", f"no step {dep!r} in this playbook")
        for key, source in step.inputs.items():
            where = _join(f"steps[{s}].inputs", [key])
            target = getattr(source, "from_step", None)
            if isinstance(target, str) and target not in index:
                yield Issue(f"{where}.from_step", f"no step {target!r} in this playbook")
            if isinstance(source, FromArtifact) and isinstance(
                source.from_artifact, ArtifactFromStep
            ):
                name = source.from_artifact.step
                if name not in index:
                    yield Issue(f"{where}.from_artifact.step", f"no step {name!r} in this playbook")
                elif not playbook.steps[index[name]].persistence.store_output:
                    yield Issue(
                        f"{where}.from_artifact.step",
                        f"step {name!r} stores no output artifact (persistence.store_output "
                        "is false)",
                    )


def _sandbox_issues(policy: SandboxPolicy) -> Iterator[Issue]:
    fs = policy.filesystem
    if fs.mode is FilesystemMode.DENY_ALL:
        if fs.read_paths:
            yield Issue("filesystem.read_paths", "must be empty when mode is deny-all")
        if fs.write_paths:
            yield Issue("filesystem.write_paths", "must be empty when mode is deny-all")
    elif fs.mode is FilesystemMode.READ_ONLY and fs.write_paths:
        yield Issue(
            "filesystem.write_paths",
            "must be empty when mode is read-only (use read-write to allow writing there)",
        )
    net = policy.network
    if net.mode is NetworkMode.DENY_ALL:
        if net.allow_hosts:
            yield Issue("network.allow_hosts", "must be empty when mode is deny-all")
        if net.allow_ports:
            yield Issue("network.allow_ports", "must be empty when mode is deny-all")
    elif not net.allow_hosts:
        yield Issue("network.allow_hosts", "an allowlist needs at least one host (or use deny-all)")


# -- dependency graph --------------------------------------------------------------------------


def _graph(playbook: Playbook) -> dict[str, dict[str, str]]:
    """step_id -> {upstream step_id: path of the field that creates the edge} (known steps)."""
    known = {step.step_id for step in playbook.steps}
    graph: dict[str, dict[str, str]] = {}
    for s, step in enumerate(playbook.steps):
        if step.step_id in graph:
            continue  # a duplicate id (reported elsewhere)
        graph[step.step_id] = {
            dep: f"steps[{s}].{where}" for dep, where in step.upstream().items() if dep in known
        }
    return graph


def find_cycles(playbook: Playbook) -> list[tuple[list[str], str]]:
    """Each dependency cycle as ``(["a", "b", "c", "a"], path)``: in execution order, starting
    at the cycle's earliest-declared step; ``path`` is the field that makes that step depend on
    the cycle's last step (the edge that closes the loop)."""
    graph = _graph(playbook)
    order = {step_id: i for i, step_id in enumerate(graph)}
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    found: list[tuple[list[str], str]] = []
    seen: set[tuple[str, ...]] = set()

    for start in graph:
        if colour[start] != white:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(graph[start]))]
        path = [start]
        colour[start] = grey
        while stack:
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                colour[node] = black
                stack.pop()
                path.pop()
            elif colour[dep] == white:
                colour[dep] = grey
                stack.append((dep, iter(graph[dep])))
                path.append(dep)
            elif colour[dep] == grey:
                # path[i:] depends-on chain dep -> ... -> node -> dep; execution order reversed
                loop = path[path.index(dep) :]
                flow = list(reversed(loop))
                first = min(range(len(flow)), key=lambda i: order[flow[i]])
                flow = flow[first:] + flow[:first]
                key = tuple(flow)
                if key not in seen:
                    seen.add(key)
                    head, last = flow[0], flow[-1]
                    found.append(([*flow, head], graph[head][last]))
    return found


def execution_order(playbook: Playbook) -> list[str]:
    """The step ids in an order that respects every (declared and implied) dependency; ties
    keep declaration order. `DependencyCycle` if there is none. Meant for a validated
    playbook: dependencies on unknown steps are ignored here (`validate_definition` refuses
    them)."""
    cycles = find_cycles(playbook)
    if cycles:
        cycle, path = cycles[0]
        raise DependencyCycle(
            f"invalid playbook {playbook.playbook_id}: {path}: dependency cycle: "
            f"{' → '.join(cycle)}",
            operation=_OPERATION,
            kind=playbook.kind,
            definition_id=playbook.playbook_id,
            cycles=[c for c, _ in cycles],
            errors=[
                {"path": p, "message": f"dependency cycle: {' → '.join(c)}"} for c, p in cycles
            ],
        )
    graph = _graph(playbook)
    order = {step_id: i for i, step_id in enumerate(graph)}
    waiting = {step_id: len(deps) for step_id, deps in graph.items()}
    dependents: dict[str, list[str]] = {step_id: [] for step_id in graph}
    for step_id, deps in graph.items():
        for dep in deps:
            dependents[dep].append(step_id)
    ready = [(order[s], s) for s, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        _, step_id = heapq.heappop(ready)
        result.append(step_id)
        for after in dependents[step_id]:
            waiting[after] -= 1
            if waiting[after] == 0:
                heapq.heappush(ready, (order[after], after))
    return result


# -- tool contracts ----------------------------------------------------------------------------


def contract_issues(schema: dict[str, Any] | bool, path: str) -> list[Issue]:
    """Problems making ``schema`` an invalid JSON Schema, with paths inside it (``[]`` = valid).

    The dialect is the one ``$schema`` names (Draft 4 to 2020-12); without ``$schema``, Draft
    2020-12. An unknown ``$schema`` is itself a problem (never silently another dialect).
    """
    if isinstance(schema, bool):
        return []
    dialect = schema.get("$schema")
    if dialect is not None:
        if not isinstance(dialect, str):
            return [Issue(_join(path, ["$schema"]), "must be a string (a dialect URI)")]
        # validator_for falls back to its default for an unknown $schema: two different
        # defaults disagree exactly when the dialect is not known.
        if validator_for(schema, default=Draft202012Validator) is not validator_for(
            schema, default=Draft4Validator
        ):
            return [Issue(_join(path, ["$schema"]), f"unknown JSON Schema dialect {dialect!r}")]
    cls = validator_for(schema, default=Draft202012Validator)
    meta = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    issues: list[Issue] = []
    for error in sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.path]):
        best = best_match([error]) or error
        where = _join(path, [p if isinstance(p, int) else str(p) for p in best.absolute_path])
        issues.append(Issue(where, _one_line(f"not a valid JSON Schema: {best.message}")))
    return issues


# -- references to other definitions -----------------------------------------------------------


async def check_references(
    defn: Definition, resolve: Resolver, *, file_name: str | None = None
) -> None:
    """Ask ``resolve`` about every reference ``defn`` makes (tools of a playbook's steps,
    a project's playbooks and policies, a tool's policy refs); `UnknownReference` listing each
    one it does not know (``details.errors`` paths, ``details.references``). Each distinct
    reference is resolved once."""
    answers: dict[tuple[RefKind, Ref], bool] = {}
    issues: list[Issue] = []
    missing: list[str] = []
    for path, what, ref in defn.references():
        key = (what, ref)
        if key not in answers:
            answers[key] = bool(await resolve(what, ref))
        if not answers[key]:
            label = what.value.replace("_", " ")
            issues.append(Issue(path, f"no {label} {ref} in the registry"))
            if str(ref) not in missing:
                missing.append(str(ref))
    if issues:
        raise_issues(
            UnknownReference,
            issues,
            what=_what(defn),
            file=file_name,
            operation=_OPERATION,
            kind=defn.kind,
            definition_id=defn.definition_id,
            references=missing,
        )
