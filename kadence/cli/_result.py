"""Waiting for a workflow's result: the start confirmed first, then the result (or the failure)
printed, as `start --wait`, `execute` and `result` do."""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ._errors import EXIT_OK, CliError


def print_result(
    handle: Any, get: Callable[[], Any], output: str, task_list: str, extra: dict[str, Any] | None = None
) -> int:
    """Print what `get()` (a `handle.result(...)` call) gives; a workflow that did not complete: exit 1.

    json: one object with the workflow id, run, status and result or failure (after `extra`'s fields)."""
    extra = extra or {}
    from kadence.failures import WorkflowAlreadyStartedError, WorkflowFailureError

    try:
        value = get()
    except WorkflowFailureError as exc:
        cause = exc.cause
        failure = (
            None
            if cause is None
            else {
                "type": getattr(cause, "type", type(cause).__name__),
                "message": getattr(cause, "message", str(cause)),
            }
        )
        if output == "json":
            print(
                json.dumps(
                    {
                        **extra,
                        "workflow_id": handle.id,
                        "run_id": handle.run_id,
                        "status": exc.status,
                        "failure": failure,
                    },
                    default=str,
                )
            )
        raise CliError(str(exc)) from None
    except WorkflowAlreadyStartedError as exc:
        raise CliError(str(exc)) from None
    except builtins.TimeoutError as exc:
        raise CliError(
            f"{exc} (is a worker polling task list {task_list!r}, and the engine running?)"
        ) from None
    if output == "json":
        print(
            json.dumps(
                {
                    **extra,
                    "workflow_id": handle.id,
                    "run_id": handle.run_id,
                    "status": "COMPLETED",
                    "result": value,
                },
                default=str,
            )
        )
    else:
        print(json.dumps(value, default=str))
    return EXIT_OK


class ResultWaiter:
    """`handle.result(timeout)` on a thread, so that the start can be confirmed first: the handle's
    `run_id` appears once the engine has recorded the start, and a rejected start raises at once."""

    def __init__(self, handle: Any, timeout: float | None) -> None:
        self.handle = handle
        self.value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(timeout,), name="kadence-cli-result", daemon=True
        )
        self._thread.start()

    def _run(self, timeout: float | None) -> None:
        try:
            self.value = self.handle.result(timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            self.error = exc

    def run_id(self, timeout: float) -> str:
        """The run the start created; raises the rejection, or CliError if unconfirmed in time."""
        deadline = time.monotonic() + timeout
        while self.handle.run_id is None and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.handle.run_id is not None:
            return str(self.handle.run_id)
        if self.error is not None and not isinstance(self.error, builtins.TimeoutError):
            raise self.error
        handle = self.handle
        raise CliError(
            f"the start of {handle.id!r} was sent (request {handle.start_request_id}) but the "
            f"engine did not record it within {timeout:g}s: is `kadence server` running? "
            f"(retrying with --request-id {handle.start_request_id} cannot start a second run)"
        )

    def result(self) -> Any:
        while self._thread.is_alive():
            self._thread.join(0.2)  # in slices: Ctrl-C stays responsive
        if self.error is not None:
            raise self.error
        return self.value


def confirm_start(waiter: ResultWaiter, timeout: float) -> str:
    from kadence.failures import WorkflowAlreadyStartedError

    try:
        return waiter.run_id(timeout)
    except WorkflowAlreadyStartedError as exc:
        raise CliError(str(exc)) from None
