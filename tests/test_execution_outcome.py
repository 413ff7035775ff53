"""How the write quota's report changes an invocation's outcome (`account_writes`)."""

from __future__ import annotations

from strongroom.execution.outcome import Outcome, account_connects, account_writes

LIMITS = {"bytes_limit": 64 * 1024 * 1024, "files_limit": 1000}


def test_no_report_or_a_quiet_one_changes_nothing() -> None:
    ok = Outcome(ok=True, output={"a": 1})
    assert account_writes(ok, None) is ok
    assert account_writes(ok, {"bytes": 10, "files": 1, "full": False, **LIMITS}) is ok


def test_a_tool_that_failed_at_its_full_quota_is_a_quota_violation() -> None:
    failed = Outcome(ok=False, code="handler_exception", message="OSError: No space left")
    writes = {"bytes": 64 * 1024 * 1024, "files": 3, "full": True, **LIMITS}
    outcome = account_writes(failed, writes)
    assert outcome.code == "sandbox_violation"
    assert outcome.details["reason"] == "write_quota_exceeded"
    assert outcome.details["writes"] == writes
    assert "64 MiB / 1000 files" in outcome.message
    assert "No space left" in outcome.message


def test_a_full_quota_does_not_undo_a_success_or_another_failure() -> None:
    writes = {"bytes": 64 * 1024 * 1024, "files": 3, "full": True, **LIMITS}
    ok = Outcome(ok=True, output={})
    assert account_writes(ok, writes) is ok  # the tool handled ENOSPC itself
    timeout = Outcome(ok=False, code="timeout")
    assert account_writes(timeout, writes) is timeout


def test_writes_that_could_not_be_copied_out_fail_even_a_success() -> None:
    writes = {"bytes": 5, "files": 1, "full": False, **LIMITS}
    for report in (
        {**writes, "copied_out": {"error": "could not copy out: /a: No space left on device"}},
        {**writes, "error": "OSError: unmount failed"},
    ):
        outcome = account_writes(Outcome(ok=True, output={}), report)
        assert not outcome.ok
        assert outcome.code == "sandbox_unavailable"
        assert outcome.details["reason"] == "copy_out_failed"


def test_a_success_whose_writes_were_discarded_or_unreported_fails() -> None:
    ok = Outcome(ok=True, output={})
    discarded = account_writes(ok, {"bytes": 0, "files": 0, "full": False, "discarded": True})
    assert discarded.code == "sandbox_unavailable"
    assert discarded.details["reason"] == "writes_discarded"
    missing = account_writes(ok, None, staged=True)
    assert missing.code == "sandbox_unavailable"
    assert account_writes(ok, None, staged=False) is ok
    failed = Outcome(ok=False, code="timeout")
    assert account_writes(failed, None, staged=True) is failed  # already a failure


def test_a_missing_connect_record_fails_a_success() -> None:
    ok = Outcome(ok=True, output={})
    assert account_connects(ok, None, watched=True).code == "sandbox_violation"
    assert account_connects(ok, {"denied": []}, watched=True) is ok
    assert account_connects(ok, None, watched=False) is ok
