"""The one TimeoutError of the API: kadence's, a subclass of the builtin (pure, no broker)."""

from __future__ import annotations

import builtins

import kadence
from kadence.failures import FailureError, TimeoutError, to_failure


def test_one_timeout_error_catches_as_the_builtin_and_as_kadences() -> None:
    assert kadence.TimeoutError is TimeoutError
    assert issubclass(TimeoutError, builtins.TimeoutError) and issubclass(TimeoutError, FailureError)
    cause = ValueError("last attempt failed")
    err = TimeoutError("activity timed out (HEARTBEAT)", "HEARTBEAT", cause)
    assert (str(err), err.message, err.timeout_type, err.cause) == (
        "activity timed out (HEARTBEAT)",
        "activity timed out (HEARTBEAT)",
        "HEARTBEAT",
        cause,
    )
    try:
        raise TimeoutError("timed out waiting for run r1 of workflow 'w' to close", "")
    except builtins.TimeoutError as caught:  # what a `handle.result(timeout=...)` caller catches
        assert isinstance(caught, kadence.TimeoutError)


def test_its_wire_form_is_unchanged() -> None:
    failure = to_failure(TimeoutError("child workflow timed out (EXECUTION)", "EXECUTION"))
    assert (failure["type"], failure["message"], failure["non_retryable"], failure["cause"]) == (
        "TimeoutError",
        "child workflow timed out (EXECUTION)",
        False,
        None,
    )
