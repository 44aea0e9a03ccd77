"""Errors of Kadence and their wire form, `Failure{type, message, stack, non_retryable, details, cause}`.

A user exception crossing a boundary (activity -> workflow, child -> parent, workflow -> client)
becomes a Failure record and comes back as an `ApplicationError` that keeps the original type
name, message, stack and cause chain, wrapped in the error saying where it happened
(`ActivityError`, `ChildWorkflowError`, `WorkflowFailureError`).
"""

from __future__ import annotations

import builtins
import enum
import traceback
from typing import Any


class KadenceError(Exception):
    """Base of every Kadence error."""


class ApplicationError(KadenceError):
    """A user-level failure. Raise it (or any exception) from workflows and activities."""

    def __init__(
        self,
        message: str,
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
        stack: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.type = type or "ApplicationError"
        self.non_retryable = non_retryable
        self.stack = stack

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.type != "ApplicationError" else self.message


class FailureError(KadenceError):
    """An error that wraps the failure of something else (`cause`)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


class ActivityError(FailureError):
    """An activity failed, timed out or was canceled; `cause` says how."""


class ChildWorkflowError(FailureError):
    """A child workflow failed, timed out, was canceled or terminated; `cause` says how."""


class WorkflowFailureError(FailureError):
    """The client's view of a workflow that did not complete successfully."""

    def __init__(self, message: str, cause: BaseException | None = None, status: str = "FAILED") -> None:
        super().__init__(message, cause)
        self.status = status


class TimeoutError(FailureError, builtins.TimeoutError):  # noqa: A001 - one TimeoutError: the builtin's
    """Something timed out: an activity or a child workflow (the `cause` of an `ActivityError` or
    `ChildWorkflowError`; `timeout_type` START_TO_CLOSE, SCHEDULE_TO_START, SCHEDULE_TO_CLOSE,
    HEARTBEAT, ...), or a client's wait (`handle.result(timeout=...)`; `timeout_type` "").

    The one TimeoutError of the API, and a subclass of the builtin `TimeoutError`: both
    `except kadence.TimeoutError` and `except TimeoutError` catch every one of them.
    """

    def __init__(
        self, message: str, timeout_type: str = "START_TO_CLOSE", cause: BaseException | None = None
    ) -> None:
        super().__init__(message, cause)
        self.timeout_type = timeout_type


class CanceledError(FailureError):
    """The work was canceled (the server-side record of a cancellation); `details`: the
    cancellation's details (a workflow's: the cancel request's reason), None without any."""

    def __init__(self, message: str, cause: BaseException | None = None, details: Any = None) -> None:
        super().__init__(message, cause)
        self.details = details


class TerminatedError(FailureError):
    """The workflow was terminated (by a client, or by a parent close policy)."""


class StartFailureCause(str, enum.Enum):
    """Why a start was refused: the Avro enum `StartFailureCause` (schemas/events.avsc)."""

    UNSPECIFIED = "UNSPECIFIED"
    #: A run of the id is open (and the id reuse policy is not TERMINATE_IF_RUNNING).
    WORKFLOW_ALREADY_RUNNING = "WORKFLOW_ALREADY_RUNNING"
    #: The id's last run closed and the id reuse policy refuses a new run (REJECT_DUPLICATE, or
    #: ALLOW_DUPLICATE_FAILED_ONLY after a completion).
    ID_REUSE_REJECTED = "ID_REUSE_REJECTED"
    #: The request itself is invalid (a timeout, type or task list; `reason` says which).
    INVALID_REQUEST = "INVALID_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INVALID_SEARCH_ATTRIBUTES = "INVALID_SEARCH_ATTRIBUTES"

    @classmethod
    def of(cls, value: str | None) -> StartFailureCause:
        """The member for a recorded symbol (UNSPECIFIED for none, or one this SDK does not know)."""
        try:
            return cls(value or "UNSPECIFIED")
        except ValueError:
            return cls.UNSPECIFIED


class WorkflowAlreadyStartedError(KadenceError):
    """A start was rejected: the id is running or the id reuse policy forbids a new run.

    `reason` says why in words, `cause_type` as a `StartFailureCause` to branch on."""

    def __init__(
        self,
        workflow_id: str,
        reason: str,
        cause_type: StartFailureCause | str = StartFailureCause.UNSPECIFIED,
    ) -> None:
        super().__init__(f"workflow {workflow_id!r} not started: {reason}")
        self.workflow_id = workflow_id
        self.reason = reason
        self.cause_type = StartFailureCause.of(cause_type)


class BrokerUnreachableError(KadenceError):
    """No Kafka broker answered at the client's bootstrap servers (kadence._command_producer)."""


class WorkflowNotFoundError(KadenceError):
    """No open run of the workflow id (or of the pinned run) to signal, cancel or terminate: the
    engine answered NOT_FOUND (Temporal's NotFound)."""

    def __init__(self, workflow_id: str, message: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


class UpdateRejectedError(FailureError):
    """An update was rejected before anything was recorded: its validator raised (`cause`), the
    workflow has no such update, or the run is not open (docs/updates.md)."""


class UpdateFailedError(FailureError):
    """An accepted update's handler raised (`cause`): the update failed, the workflow goes on."""


class NondeterminismError(KadenceError):
    """Replay produced a decision the history does not record (or vice versa)."""


class QueryError(KadenceError):
    """A query could not be answered (unknown workflow, unknown query type, no worker answered)."""


def to_failure(exc: BaseException) -> dict[str, Any]:
    """Exception -> Failure record (recursively through `__cause__`)."""
    if isinstance(exc, ApplicationError):
        type_name, non_retryable = exc.type, exc.non_retryable
        stack = exc.stack or "".join(traceback.format_exception(exc))
        message = exc.message
    elif isinstance(exc, FailureError):
        type_name, non_retryable, message = type(exc).__name__, False, exc.message
        stack = "".join(traceback.format_exception(exc, chain=False))
    else:
        type_name, non_retryable, message = type(exc).__name__, False, str(exc)
        stack = "".join(traceback.format_exception(exc, chain=False))
    cause = exc.__cause__
    return {
        "type": type_name,
        "message": message,
        "stack": stack,
        "non_retryable": non_retryable,
        "details": None,
        "cause": to_failure(cause) if cause is not None else None,
    }


def from_failure(failure: dict[str, Any] | None) -> ApplicationError | None:
    """Failure record -> ApplicationError carrying the original type name, stack and cause chain."""
    if failure is None:
        return None
    err = ApplicationError(
        failure["message"],
        type=failure["type"],
        non_retryable=failure.get("non_retryable", False),
        stack=failure.get("stack", ""),
    )
    err.__cause__ = from_failure(failure.get("cause"))
    return err
