"""Execution state and the one pure reducer that folds history events into it.

Imported by the processors (history processor state, derived processors' indexes), by the SDK
(`describe`) and by the audit replayer: one definition of what a history means.
Deviation from DESIGN.md section 1: DESIGN puts `apply` nowhere in particular while forbidding
the SDK to import `processors`; this neutral package is where both may import it.
"""

from .ids import derive_run_id, task_token, parse_task_token, TaskToken
from .reducer import UnknownEventError, apply, fold, fold_transition
from .state import (ActivityInfo, ChildInfo, DecisionInfo, ExecutionState, RunState, TimerInfo,
                    CLOSE_EVENTS, CLOSED_STATUSES, DECISION_TRIGGERING_EVENTS)

__all__ = [
    "apply", "fold", "fold_transition", "UnknownEventError", "ExecutionState", "RunState", "ActivityInfo",
    "ChildInfo", "DecisionInfo", "TimerInfo", "CLOSE_EVENTS", "CLOSED_STATUSES", "DECISION_TRIGGERING_EVENTS",
    "derive_run_id", "task_token", "parse_task_token", "TaskToken",
]
