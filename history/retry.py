"""Retry policy arithmetic (Cadence/Temporal semantics), pure and shared by activity and workflow retries.

delay(n) = min(initial_interval * backoff_coefficient ** (n - 1), maximum_interval), where n is
the attempt that just failed; maximum_interval 0 means 100 x initial; maximum_attempts 0 means
unlimited; a failure marked non_retryable, or whose type is listed in non_retryable_error_types,
is final; so is a retry that could not start before the deadline (schedule-to-close for
activities, the execution deadline for workflows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kadence.schemas.records import Failure, RetryPolicy


def retry_delay_ms(
    policy: RetryPolicy | None, attempt: int, failure: Failure | None, now_ms: int, deadline_ms: int = 0
) -> int | None:
    """Milliseconds until the next attempt, or None when the failure is final."""
    if policy is None:
        return None
    if failure is not None and (
        failure.get("non_retryable") or failure["type"] in policy["non_retryable_error_types"]
    ):
        return None
    if policy["maximum_attempts"] and attempt >= policy["maximum_attempts"]:
        return None
    initial = max(policy["initial_interval_ms"], 1)
    cap = policy["maximum_interval_ms"] or 100 * initial
    delay = int(min(initial * policy["backoff_coefficient"] ** (attempt - 1), cap))
    if deadline_ms and now_ms + delay >= deadline_ms:
        return None
    return delay


def timeout_failure(kind: str, timeout_type: str, message: str) -> Failure:
    """The Failure record of a timeout (what the workflow sees as the cause)."""
    return {
        "type": "TimeoutError",
        "message": f"{kind} {timeout_type} timeout: {message}",
        "stack": "",
        "non_retryable": False,
        "details": None,
        "cause": None,
    }
