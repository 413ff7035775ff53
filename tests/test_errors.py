"""The error tree: stable machine codes, the wire form, rebuilding errors from it, the OS error
mapping, and the builtin each error also is (so ``except LookupError`` keeps working)."""

from __future__ import annotations

import errno
import json
import re

import pytest

from strongroom import errors
from strongroom.errors import (
    ApprovalRequired,
    Conflict,
    DependencyCycle,
    DigestDrift,
    ErrorInfo,
    HandlerException,
    IntegrityError,
    InvalidContract,
    LabelConflict,
    MemoryExceeded,
    NotFound,
    OperationTimeout,
    PermissionDenied,
    SandboxUnavailable,
    SandboxViolation,
    SchemaValidationFailed,
    SelfApproval,
    SerializationError,
    SignatureRequired,
    StaleChannel,
    StorageIOError,
    StrongroomError,
    ToolFailed,
    UnknownReference,
    UnknownSigner,
    UnsupportedFormat,
    ValidationError,
    error_from_info,
    family_code,
    map_os_errors,
)

# The codes are a public contract (CLI --json output, stored last_error): never renumber.
STABLE_CODES: dict[type[StrongroomError], str] = {
    NotFound: "not_found",
    StorageIOError: "io_error",
    SerializationError: "serialization_error",
    ValidationError: "validation_error",
    Conflict: "conflict",
    UnsupportedFormat: "unsupported_format",
    IntegrityError: "integrity_error",
    PermissionDenied: "permission_denied",
    ApprovalRequired: "approval_required",
    SandboxViolation: "sandbox_violation",
    SandboxUnavailable: "sandbox_unavailable",
    ToolFailed: "tool_failed",
    OperationTimeout: "timeout",
    # refined codes: subclasses of a family above
    InvalidContract: "invalid_contract",
    UnknownReference: "unknown_reference",
    DependencyCycle: "dependency_cycle",
    LabelConflict: "version_label_taken",
    StaleChannel: "stale_channel",
    SelfApproval: "self_approval",
    SignatureRequired: "signature_required",
    UnknownSigner: "unknown_signer",
    SchemaValidationFailed: "schema_validation_failed",
    DigestDrift: "digest_drift",
    HandlerException: "handler_exception",
    MemoryExceeded: "memory_exceeded",
}

# The builtin each error also inherits, as the module docstring's tree documents.
BUILTINS: dict[type[StrongroomError], type[Exception] | None] = {
    NotFound: LookupError,
    StorageIOError: OSError,
    SerializationError: ValueError,
    ValidationError: ValueError,
    Conflict: None,
    UnsupportedFormat: ValueError,
    IntegrityError: None,
    PermissionDenied: PermissionError,
    ApprovalRequired: None,
    SandboxViolation: None,
    OperationTimeout: TimeoutError,
    InvalidContract: ValueError,
    UnknownReference: ValueError,
    DependencyCycle: ValueError,
    LabelConflict: None,
    StaleChannel: None,
    SelfApproval: PermissionError,
    SignatureRequired: PermissionError,
    UnknownSigner: PermissionError,
    SandboxUnavailable: None,
    ToolFailed: None,
    HandlerException: None,
    MemoryExceeded: None,
    SchemaValidationFailed: ValueError,
    DigestDrift: None,
}

# The family each refined code belongs to (``except ValidationError`` catches an
# InvalidContract; the CLI exits with the family's exit code).
FAMILIES: dict[type[StrongroomError], type[StrongroomError]] = {
    InvalidContract: ValidationError,
    UnknownReference: ValidationError,
    DependencyCycle: ValidationError,
    LabelConflict: Conflict,
    StaleChannel: Conflict,
    SelfApproval: PermissionDenied,
    SignatureRequired: PermissionDenied,
    UnknownSigner: PermissionDenied,
    SchemaValidationFailed: ValidationError,
    DigestDrift: Conflict,
    HandlerException: ToolFailed,
    MemoryExceeded: ToolFailed,
}


def all_error_classes() -> set[type[StrongroomError]]:
    found: set[type[StrongroomError]] = set()
    pending = [StrongroomError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__ == errors.__name__:
                found.add(sub)
                pending.append(sub)
    return found


ERROR_CLASSES = sorted(STABLE_CODES, key=lambda cls: cls.__name__)


def test_every_error_class_is_pinned_by_this_test() -> None:
    assert all_error_classes() == set(STABLE_CODES)
    exported = {getattr(errors, name) for name in errors.__all__}
    assert set(STABLE_CODES) <= exported


def test_codes_are_stable_distinct_and_snake_case() -> None:
    codes = [cls.code for cls in ERROR_CLASSES]
    assert {cls: cls.code for cls in ERROR_CLASSES} == STABLE_CODES
    assert len(set(codes)) == len(codes)
    assert StrongroomError.code not in codes
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", code) for code in codes)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_each_error_is_also_its_documented_builtin(cls: type[StrongroomError]) -> None:
    error = cls("boom")
    assert isinstance(error, StrongroomError)
    builtin = BUILTINS[cls]
    if builtin is not None:
        assert isinstance(error, builtin)
    else:  # nothing beyond Exception: `except ValueError` must not swallow a conflict
        assert not isinstance(error, LookupError | OSError | ValueError | TimeoutError)


def test_the_docstring_tree_matches_the_classes() -> None:
    assert errors.__doc__ is not None
    rows = re.findall(r"── (\w+)\s+(?:\((\w+)\))?\s+code \"(\w+)\"", errors.__doc__)
    documented = {name: (builtin or None, code) for name, builtin, code in rows}
    actual = {
        cls.__name__: (getattr(BUILTINS[cls], "__name__", None), cls.code) for cls in ERROR_CLASSES
    }
    assert documented == actual


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_each_code_belongs_to_its_family(cls: type[StrongroomError]) -> None:
    family = FAMILIES.get(cls, cls)
    assert issubclass(cls, family)
    assert StrongroomError in family.__bases__
    assert family_code(cls.code) == family.code


def test_family_code_of_an_unknown_code_is_the_code_itself() -> None:
    assert family_code("from_the_future") == "from_the_future"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_to_dict_is_code_message_and_details(cls: type[StrongroomError]) -> None:
    error = cls("it broke", operation="runs.get", run_id="r1", path=None)

    as_dict = error.to_dict()

    assert as_dict == {
        "code": cls.code,
        "message": "it broke",
        "details": {"operation": "runs.get", "run_id": "r1"},  # None details are dropped
    }
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert str(error) == "it broke"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_an_error_survives_its_wire_form(cls: type[StrongroomError]) -> None:
    original = cls("lost in transit", operation="artifacts.get", items=["a", "b"], count=2)
    wire = original.to_info().model_dump_json()

    rebuilt = error_from_info(ErrorInfo.model_validate_json(wire))

    assert type(rebuilt) is cls
    assert (rebuilt.code, rebuilt.message, rebuilt.details) == (
        original.code,
        original.message,
        original.details,
    )


def test_an_unknown_code_rebuilds_as_the_root_error_keeping_everything() -> None:
    info = ErrorInfo(code="from_the_future", message="new kind", details={"x": 1})

    rebuilt = error_from_info(info)

    assert type(rebuilt) is StrongroomError
    assert (rebuilt.message, rebuilt.details) == ("new kind", {"x": 1})


@pytest.mark.parametrize(
    ("os_error", "expected", "reason"),
    [
        (OSError(errno.ENOENT, "No such file or directory"), NotFound, None),
        (FileNotFoundError(errno.ENOENT, "gone"), NotFound, None),
        (OSError(errno.EACCES, "Permission denied"), PermissionDenied, None),
        (OSError(errno.EPERM, "Operation not permitted"), PermissionDenied, None),
        (OSError(errno.ENOSPC, "No space left on device"), StorageIOError, "ENOSPC"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), StorageIOError, "EDQUOT"),
        (OSError(errno.EIO, "Input/output error"), StorageIOError, "EIO"),
        (OSError(errno.EROFS, "Read-only file system"), StorageIOError, "EROFS"),
        (OSError("no errno at all"), StorageIOError, "OSError"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_os_errors_map_to_the_tree_with_their_cause(
    os_error: OSError, expected: type[StrongroomError], reason: str | None
) -> None:
    with (
        pytest.raises(StrongroomError) as caught,
        map_os_errors("blobs.put", backend="local", path="sha256/ab/cd/abcd"),
    ):
        raise os_error

    error = caught.value
    assert type(error) is expected
    assert error.__cause__ is os_error
    assert error.details["operation"] == "blobs.put"
    assert error.details["backend"] == "local"
    assert error.details["path"] == "sha256/ab/cd/abcd"
    assert error.details.get("reason") == reason


def test_map_os_errors_lets_strongroom_and_other_errors_through_untouched() -> None:
    conflict = Conflict("already there")
    with pytest.raises(Conflict) as caught, map_os_errors("put", backend="local"):
        raise conflict
    assert caught.value is conflict

    with pytest.raises(KeyError), map_os_errors("put", backend="local"):
        raise KeyError("not an OS error")


def test_map_os_errors_omits_a_path_it_was_not_given() -> None:
    with pytest.raises(NotFound) as caught, map_os_errors("open", backend="local"):
        raise FileNotFoundError(errno.ENOENT, "gone")
    assert "path" not in caught.value.details
