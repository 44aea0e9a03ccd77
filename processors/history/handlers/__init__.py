"""Command handlers of the history processor: one function per command type (see HANDLERS).

A handler is called as `handler(transition, command, payload body, env)`: each declares the body
type of the command type(s) it is registered for (`RespondActivityTaskCompleted`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from kadence.schemas.records import Command

from ..transition import Transition
from .activities import (
    handle_activity_canceled,
    handle_activity_completed,
    handle_activity_failed,
    handle_heartbeat,
)
from .common import HandlerEnv
from .decisions import handle_decision_completed, handle_decision_failed
from .external import handle_cancel_request, handle_query, handle_signal, handle_terminate
from .notifications import handle_child_event, handle_external_result, handle_fire_timer
from .reset import handle_reset
from .start import handle_start
from .updates import handle_update
from .watches import handle_watch, handle_watch_result

#: (transition, the command, its payload's body, env). The body is typed `Any` here: `HANDLERS`
#: pairs each command type with the handler of its body.
Handler: TypeAlias = Callable[[Transition, Command, Any, HandlerEnv], None]

HANDLERS: dict[str, Handler] = {
    "StartWorkflowExecution": handle_start,
    "SignalWorkflowExecution": handle_signal,
    "RequestCancelWorkflowExecution": handle_cancel_request,
    "TerminateWorkflowExecution": handle_terminate,
    "RespondDecisionTaskCompleted": handle_decision_completed,
    "RespondDecisionTaskFailed": handle_decision_failed,
    "RespondActivityTaskCompleted": handle_activity_completed,
    "RespondActivityTaskFailed": handle_activity_failed,
    "RespondActivityTaskCanceled": handle_activity_canceled,
    "RecordActivityTaskHeartbeat": handle_heartbeat,
    "QueryWorkflow": handle_query,
    "FireTimer": handle_fire_timer,
    "StartChildWorkflowExecutionFailed": handle_child_event,
    "ChildWorkflowExecutionStarted": handle_child_event,
    "ChildWorkflowExecutionCompleted": handle_child_event,
    "ChildWorkflowExecutionFailed": handle_child_event,
    "ChildWorkflowExecutionCanceled": handle_child_event,
    "ChildWorkflowExecutionTimedOut": handle_child_event,
    "ChildWorkflowExecutionTerminated": handle_child_event,
    "SignalExternalWorkflowExecutionFailed": handle_external_result,
    "ExternalWorkflowExecutionSignaled": handle_external_result,
    "RequestCancelExternalWorkflowExecutionFailed": handle_external_result,
    "ExternalWorkflowExecutionCancelRequested": handle_external_result,
    "UpdateWorkflowExecution": handle_update,
    "ResetWorkflowExecution": handle_reset,
    "WatchWorkflowExecution": handle_watch,
    "WatchExternalWorkflowExecutionFailed": handle_watch_result,
    "ExternalWorkflowExecutionClosed": handle_watch_result,
}

__all__ = ["HANDLERS", "HandlerEnv", "Handler"]
