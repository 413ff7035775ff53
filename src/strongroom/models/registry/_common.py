"""Shared pieces of the registry models: the enums, the grammars (patterns and the annotated
string types built on them), the parsed reference type `Ref`, `field_path` and
`DefinitionBase`, the common shape of the four definition kinds."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from strongroom.ids import check_digest, check_name
from strongroom.models._base import JsonValue, Record

# -- enums -------------------------------------------------------------------------------------


class DefinitionKind(StrEnum):
    TOOL_MANIFEST = "tool_manifest"
    PLAYBOOK = "playbook"
    PROJECT_CONFIG = "project_config"
    SANDBOX_POLICY = "sandbox_policy"


DEFINITION_KINDS: tuple[str, ...] = tuple(kind.value for kind in DefinitionKind)


class Channel(StrEnum):
    """Named pointers at a definition's versions, in promotion order."""

    DRAFT = "draft"
    STAGING = "staging"
    PRODUCTION = "production"


CHANNEL_NAMES: tuple[str, ...] = tuple(channel.value for channel in Channel)


class ChannelAction(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class GovernanceLevel(StrEnum):
    """A0 read-only; A1 draft, needs human review; A2 approval required before execution;
    A3 governed execution with strict audit. Ordered: ``A0 < A1 < A2 < A3``."""

    A0 = "A0"
    A1 = "A1"
    A2 = "A2"
    A3 = "A3"

    @property
    def rank(self) -> int:
        return int(self.value[1])


class RefKind(StrEnum):
    """What a reference points at (the resolver's first argument)."""

    TOOL = "tool"
    PLAYBOOK = "playbook"
    SANDBOX_POLICY = "sandbox_policy"


class FilesystemMode(StrEnum):
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"
    DENY_ALL = "deny-all"


class NetworkMode(StrEnum):
    ALLOWLIST = "allowlist"
    DENY_ALL = "deny-all"


class ApprovalScope(StrEnum):
    TOOL_VERSION = "tool_version"
    PROMOTION = "promotion"
    RUN = "run"


class PersistenceSubject(StrEnum):
    RUN = "run"
    PLAYBOOK = "playbook"
    PROJECT_CONFIG = "project_config"
    TOOL_MANIFEST = "tool_manifest"
    SANDBOX_POLICY = "sandbox_policy"


# -- grammars ----------------------------------------------------------------------------------

VERSION_LABEL_PATTERN = r"^[0-9][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*$"
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
JSON_POINTER_PATTERN = r"^(?:/(?:[^~/]|~[01])*)*$"
_SAFE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
REF_PATTERN = (
    rf"^{_SAFE_NAME_PATTERN}(?:@(?:{'|'.join(CHANNEL_NAMES)}|"
    r"[0-9][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*|sha256:[0-9a-f]{64}))?$"
)
_LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}$"
_ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_PATTERN = rf"^(?:\*\.)?{_HOST_LABEL}(?:\.{_HOST_LABEL}){{0,8}}$"

_VERSION_RE = re.compile(VERSION_LABEL_PATTERN)

PATTERN_MESSAGES: dict[str, str] = {
    VERSION_LABEL_PATTERN: (
        "a version label starts with a digit and uses letters and digits separated by single "
        "'.', '_' or '-' (e.g. 1.4.0, 2026-12-02.1)"
    ),
    ENTRYPOINT_PATTERN: (
        "an entrypoint is 'package.module:function' (dotted Python identifiers, a colon, "
        "one function name)"
    ),
    JSON_POINTER_PATTERN: (
        "a pointer is an RFC 6901 JSON pointer: '' or '/key/0/...' ('~' only as ~0 or ~1)"
    ),
    _LANGUAGE_PATTERN: "a language is a BCP 47 tag such as en, de-CH or pt-BR",
    _ENV_VAR_PATTERN: "an environment variable name is letters, digits and '_', not a digit first",
    _HOST_PATTERN: "a host is a DNS name or IPv4 address, optionally '*.'-prefixed (*.example.com)",
}
"""Readable messages for the grammars above, keyed by pattern (used to explain a mismatch)."""


VersionLabel = Annotated[
    str,
    Field(
        max_length=64,
        pattern=VERSION_LABEL_PATTERN,
        description="Human version label, unique per definition (e.g. 1.4.0, 2026-12-02.1).",
    ),
]
Entrypoint = Annotated[
    str, Field(max_length=256, pattern=ENTRYPOINT_PATTERN, description="package.module:function")
]
JsonPointer = Annotated[
    str,
    Field(max_length=1024, pattern=JSON_POINTER_PATTERN, description="RFC 6901 JSON pointer."),
]
JsonSchemaDoc = dict[str, Any] | bool
Text = Annotated[str, Field(max_length=4000)]
Title = Annotated[str, Field(min_length=1, max_length=200)]


# -- references --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference: ``id``, ``id@version``, ``id@channel`` or ``id@sha256:<hex>``.

    At most one of ``version``, ``channel``, ``digest`` is set; none means "unpinned". The
    text form (``str(ref)``) is the canonical spelling and what models serialise to.
    """

    id: str
    version: str | None = None
    channel: Channel | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        check_name(self.id)
        if sum(part is not None for part in (self.version, self.channel, self.digest)) > 1:
            raise ValueError("a reference pins at most one of version, channel or digest")
        if self.version is not None and (
            len(self.version) > 64 or not _VERSION_RE.fullmatch(self.version)
        ):
            raise ValueError(PATTERN_MESSAGES[VERSION_LABEL_PATTERN])
        if self.channel is not None:
            object.__setattr__(self, "channel", Channel(self.channel))
        if self.digest is not None:
            object.__setattr__(self, "digest", check_digest(self.digest))

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse ``ID[@VERSION|@CHANNEL|@sha256:HEX]``; ValueError with a readable reason."""
        if not isinstance(text, str):
            raise ValueError("a reference is a string: ID, ID@VERSION, ID@CHANNEL or ID@sha256:HEX")
        ident, at, selector = text.partition("@")
        try:
            check_name(ident)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a reference: the id before '@' must be 1-128 ASCII letters, "
                "digits, '.', '_' or '-' starting with a letter or digit"
            ) from None
        if not at:
            return cls(ident)
        if selector in CHANNEL_NAMES:
            return cls(ident, channel=Channel(selector))
        if selector.startswith("sha256:"):
            try:
                return cls(ident, digest=check_digest(selector))
            except ValueError:
                raise ValueError(
                    f"{text!r} is not a reference: a digest is sha256: and 64 lowercase hex digits"
                ) from None
        if _VERSION_RE.fullmatch(selector) and len(selector) <= 64:
            return cls(ident, version=selector)
        raise ValueError(
            f"{text!r} is not a reference: after '@' comes a version label (starting with a "
            f"digit, e.g. 1.4.0), a channel ({', '.join(CHANNEL_NAMES)}) or sha256:<hex>"
        )

    @property
    def selector(self) -> str | None:
        """What follows the ``@`` (None when unpinned)."""
        if self.version is not None:
            return self.version
        if self.channel is not None:
            return self.channel.value
        if self.digest is not None:
            return f"sha256:{self.digest}"
        return None

    @property
    def pinned(self) -> bool:
        """True when the reference names one immutable version (by label or digest)."""
        return self.version is not None or self.digest is not None

    def __str__(self) -> str:
        selector = self.selector
        return self.id if selector is None else f"{self.id}@{selector}"


def _coerce_ref(value: Any) -> Ref:
    if isinstance(value, Ref):
        return value
    return Ref.parse(value)


RefField = Annotated[
    Ref,
    BeforeValidator(_coerce_ref),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": REF_PATTERN,
            "description": "ID, ID@VERSION, ID@CHANNEL (draft|staging|production) or "
            "ID@sha256:<hex>.",
        }
    ),
]


# -- definitions: the shared base --------------------------------------------------------------


def _require_kind(schema: dict[str, Any]) -> None:
    """In the exported JSON Schema ``kind`` is required (Python callers may omit it)."""
    required = schema.setdefault("required", [])
    if "kind" not in required:
        required.insert(0, "kind")


class DefinitionBase(Record):
    """Common shape of the four definition kinds.

    Subclasses declare ``kind`` (a literal with a default, so Python callers may omit it),
    their id field and ``version``. `definition_id` and `references` give generic access.
    """

    model_config = ConfigDict(json_schema_extra=_require_kind)

    ID_FIELD: ClassVar[str]
    KIND: ClassVar[DefinitionKind]

    extensions: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], JsonValue] = Field(
        default_factory=dict,
        max_length=16,
        description="What another system's document held that strongroom keeps without "
        "using: its origin (e.g. mass_relay) -> anything JSON. A definition imported from "
        "another system keeps its original document here, verbatim "
        "(`strongroom.integrations.mass_relay`); left out of the canonical form when empty.",
    )

    @property
    def imported(self) -> bool:
        """Whether the definition came from another system (its ``extensions`` hold an
        original document): its references may name what is not in the registry yet."""
        return bool(self.extensions)

    @property
    def definition_id(self) -> str:
        value = getattr(self, self.ID_FIELD)
        assert isinstance(value, str)
        return value

    def references(self) -> Iterator[tuple[str, RefKind, Ref]]:
        """Every reference to another definition: ``(json_path, what, ref)``."""
        return iter(())


def field_path(loc: Iterable[int | str]) -> str:
    """A location as a JSON-path-like string: ``("steps", 2, "inputs", "text", "pointer")`` ->
    ``steps[2].inputs.text.pointer``; a key that is not identifier-like (ASCII letter or ``_``
    first, then letters, digits, ``_``, ``-``) is quoted: ``settings.paths["out dir"]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out.removeprefix(".")


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
