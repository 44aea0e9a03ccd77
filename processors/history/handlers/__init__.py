"""Command handlers of the history processor: one function per command type (see HANDLERS)."""

from __future__ import annotations

from typing import Any, Callable

from ..transition import Transition
from .activities import handle_activity_canceled, handle_activity_completed, handle_activity_failed, handle_heartbeat
from .common import HandlerEnv
from .decisions import handle_decision_completed, handle_decision_failed
from .external import handle_cancel_request, handle_query, handle_signal, handle_terminate
from .notifications import handle_child_event, handle_external_result, handle_fire_timer
from .start import handle_start

Handler = Callable[[Transition, dict[str, Any], dict[str, Any], HandlerEnv], None]

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
}

__all__ = ["HANDLERS", "HandlerEnv", "Handler"]
