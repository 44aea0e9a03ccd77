"""What the pages show, computed from history events and visibility rows (no web, no Kafka here).

- `list_query`: the list page's filters (status, type, time, free query) as one visibility query.
- `group_history`: a run's events grouped into activities, timers, children, decisions and
  workflow-level events, each with its span on the run's time axis (timeline and compact views).
- `relationship_tree`: a workflow's children and grandchildren from the visibility rows of its root.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: The status filter's choices (visibility's ExecutionStatus values).
STATUSES = ("Running", "Completed", "Failed", "Canceled", "Terminated", "TimedOut", "ContinuedAsNew")
#: The time filter's choices: label -> how far back StartTime may be.
SINCE = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
}


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def list_query(
    status: str = "", workflow_type: str = "", since: str = "", query: str = "", now: datetime | None = None
) -> str:
    """One query of the visibility language from the list page's filters (empty: everything).

    The free `query` may carry its own ORDER BY; the filters are ANDed in front of it."""
    parts = []
    if status:
        parts.append(f"ExecutionStatus = {_quote(status)}")
    if workflow_type:
        parts.append(f"WorkflowType = {_quote(workflow_type)}")
    if since in SINCE:
        start = (now or datetime.now(UTC)) - SINCE[since]
        parts.append(f"StartTime > {_quote(start.isoformat(timespec='seconds'))}")
    free, order = query.strip(), ""
    upper = free.upper()
    if "ORDER BY" in upper:
        at = upper.index("ORDER BY")
        free, order = free[:at].strip(), free[at:].strip()
    if free:
        parts.append(f"({free})" if parts else free)
    where = " AND ".join(parts)
    return " ".join(p for p in (where, order or "ORDER BY StartTime DESC") if p)


# -- history -----------------------------------------------------------------------------------------
#: Event type -> (group kind, the attribute that names its group: None = the event itself).
_ACTIVITY = ("activity", "scheduled_event_id")
_TIMER = ("timer", "started_event_id")
_CHILD = ("child", "initiated_event_id")
_DECISION = ("decision", "scheduled_event_id")
GROUPING: dict[str, tuple[str, str | None]] = {
    "ActivityTaskScheduled": ("activity", None),
    "ActivityTaskStarted": _ACTIVITY,
    "ActivityTaskCompleted": _ACTIVITY,
    "ActivityTaskFailed": _ACTIVITY,
    "ActivityTaskTimedOut": _ACTIVITY,
    "ActivityTaskCanceled": _ACTIVITY,
    "ActivityTaskRetrying": _ACTIVITY,
    "TimerStarted": ("timer", None),
    "TimerFired": _TIMER,
    "TimerCanceled": _TIMER,
    "StartChildWorkflowExecutionInitiated": ("child", None),
    "StartChildWorkflowExecutionFailed": _CHILD,
    "ChildWorkflowExecutionStarted": _CHILD,
    "ChildWorkflowExecutionCompleted": _CHILD,
    "ChildWorkflowExecutionFailed": _CHILD,
    "ChildWorkflowExecutionCanceled": _CHILD,
    "ChildWorkflowExecutionTimedOut": _CHILD,
    "ChildWorkflowExecutionTerminated": _CHILD,
    "DecisionTaskScheduled": ("decision", None),
    "DecisionTaskStarted": _DECISION,
    "DecisionTaskCompleted": _DECISION,
    "DecisionTaskFailed": _DECISION,
    "DecisionTaskTimedOut": _DECISION,
}
#: Last event type of a group -> its state, as the page colours it.
_STATE_OF_LAST = {
    "Completed": "completed",
    "Fired": "completed",
    "Failed": "failed",
    "TimedOut": "failed",
    "Canceled": "canceled",
    "Terminated": "failed",
    "Retrying": "retrying",
}


@dataclass
class EventGroup:
    """Events that belong together: one activity (all its attempts), timer, child or decision task,
    or one workflow-level event (started, signaled, closed, marker ...)."""

    kind: str
    key: int
    title: str
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Set by `group_history`: where the group sits on the run's time axis, in percent.
    left_pct: float = 0.0
    width_pct: float = 0.0

    @property
    def start_ms(self) -> int:
        return int(self.events[0]["timestamp"])

    @property
    def end_ms(self) -> int:
        return int(self.events[-1]["timestamp"])

    @property
    def last_type(self) -> str:
        return str(self.events[-1]["attributes"][0])

    @property
    def state(self) -> str:
        last = self.last_type
        for suffix, state in _STATE_OF_LAST.items():
            if last.endswith(suffix):
                return state
        return "open" if self.kind in ("activity", "timer", "child", "decision") else "event"

    @property
    def attempts(self) -> int:
        return 1 + sum(1 for e in self.events if e["attributes"][0] == "ActivityTaskRetrying")

    @property
    def last_failure(self) -> str | None:
        for e in reversed(self.events):
            failure = e["attributes"][1].get("failure") if isinstance(e["attributes"][1], dict) else None
            if failure:
                return failure_text(failure)
        return None

    @property
    def child_workflow_id(self) -> str | None:
        if self.kind != "child":
            return None
        return str(self.events[0]["attributes"][1].get("workflow_id") or "") or None


def failure_text(failure: Any) -> str:
    """`Type: message` of a Failure record (with its causes)."""
    if isinstance(failure, tuple):
        failure = failure[1]
    if not isinstance(failure, dict):
        return str(failure)
    text = f"{failure.get('type') or 'Error'}: {failure.get('message') or ''}".strip()
    cause = failure.get("cause")
    return f"{text} (cause: {failure_text(cause)})" if cause else text


def _title(event_type: str, attrs: dict[str, Any]) -> str:
    if event_type == "ActivityTaskScheduled":
        return f"activity {attrs.get('activity_type')} ({attrs.get('activity_id')})"
    if event_type == "TimerStarted":
        return f"timer {attrs.get('timer_id')} ({int(attrs.get('start_to_fire_timeout_ms') or 0) / 1000:g}s)"
    if event_type == "StartChildWorkflowExecutionInitiated":
        return f"child {attrs.get('workflow_type')} {attrs.get('workflow_id')}"
    if event_type == "DecisionTaskScheduled":
        return "decision task"
    if event_type == "WorkflowExecutionSignaled":
        return f"signal {attrs.get('signal_name')}"
    return event_type


def group_history(events: Sequence[dict[str, Any]]) -> list[EventGroup]:
    """The run's events in groups, ordered by their first event; each with its timeline position."""
    groups: list[EventGroup] = []
    by_key: dict[tuple[str, int], EventGroup] = {}
    for event in events:
        event_type, attrs = event["attributes"]
        attrs = attrs if isinstance(attrs, dict) else {}
        kind, link = GROUPING.get(event_type, ("workflow", None))
        key = int(attrs.get(link) or 0) if link else int(event["event_id"])
        group = by_key.get((kind, key)) if link else None
        if group is None:
            group = EventGroup(kind, key, _title(event_type, attrs))
            groups.append(group)
            if kind != "workflow":
                by_key[(kind, int(event["event_id"]))] = group
        group.events.append(event)
    if groups:
        t0 = min(g.start_ms for g in groups)
        span = max(1, max(g.end_ms for g in groups) - t0)
        for g in groups:
            g.left_pct = round(100.0 * (g.start_ms - t0) / span, 2)
            g.width_pct = round(max(0.6, 100.0 * (g.end_ms - g.start_ms) / span), 2)
    return groups


def runs_of(events: Iterable[dict[str, Any]]) -> list[str]:
    """The run ids in the order the history shows them (the run chain)."""
    seen: list[str] = []
    for e in events:
        if e["run_id"] not in seen:
            seen.append(e["run_id"])
    return seen


# -- relationships ---------------------------------------------------------------------------------
@dataclass
class TreeNode:
    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    children: list[TreeNode] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("Failed", "TimedOut", "Terminated")


def relationship_tree(root_id: str, rows: Iterable[Any], depth: int = 3) -> list[TreeNode]:
    """The children (and their children, `depth` levels) of workflow `root_id`, from visibility
    rows (`WorkflowExecutionInfo`) of its root's tree; each child's latest run."""
    by_parent: dict[str, dict[str, Any]] = {}
    for info in rows:
        parent = info.parent_workflow_id
        if not parent:
            continue
        siblings = by_parent.setdefault(parent, {})
        known = siblings.get(info.workflow_id)
        if known is None or info.start_time >= known.start_time:
            siblings[info.workflow_id] = info

    def build(workflow_id: str, level: int) -> list[TreeNode]:
        if level > depth:
            return []
        infos = sorted(by_parent.get(workflow_id, {}).values(), key=lambda i: (i.start_time, i.workflow_id))
        return [
            TreeNode(i.workflow_id, i.run_id, i.workflow_type, i.status_name, build(i.workflow_id, level + 1))
            for i in infos
        ]

    return build(root_id, 1)


def time_text(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


__all__ = [
    "STATUSES",
    "SINCE",
    "EventGroup",
    "TreeNode",
    "failure_text",
    "group_history",
    "list_query",
    "relationship_tree",
    "runs_of",
    "time_text",
]
