"""What `describe` and `show` print: a workflow's state as fields (a table or JSON), and its history
(`kadence.history_view` for text, `kadence.replayer.events_to_json` for JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kadence.history_view import HistoryPrinter, print_history


def _time(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds") if ms else None


def _payload(payload: Any) -> Any:
    """A payload record's value (JSON payloads decoded; others shown as their encoding)."""
    from kadence.converter import default_converter

    if payload is None:
        return None
    try:
        return default_converter.from_payload(payload)
    except ValueError:
        return f"<{payload.get('encoding')} payload, {len(payload.get('data') or b'')} bytes>"


def _failure(failure: Any) -> dict[str, Any] | None:
    """A Failure record as {type, message, cause} (no stack: `show` has the events)."""
    if isinstance(failure, tuple):  # a union value as (type name, record)
        failure = failure[1]
    if not failure:
        return None
    return {
        "type": failure.get("type"),
        "message": failure.get("message"),
        "cause": _failure(failure.get("cause")),
    }


def _seconds_of(ms: int) -> float | None:
    return ms / 1000 if ms else None


def describe_fields(state: Any) -> dict[str, Any]:
    """What `describe` prints: the summary `WorkflowHandle.describe()` gives (`describe_state`:
    status, run chain, sizes, pending counts), plus the result or failure, the pending work in
    detail, timeouts and memo."""
    from kadence.history import describe_state

    run = state.current
    close = run.close or {}
    summary: dict[str, Any] = dict(describe_state(state) or {})
    summary.update(
        {
            "result": _payload(close.get("result")) if run.status == "COMPLETED" else None,
            "failure": _failure(close.get("failure")),
            "reason": close.get("reason") or None,
            "timeout_type": close.get("timeout_type") or None,
            "new_run_id": close.get("new_execution_run_id") or None,
            "previous_runs": [{"run_id": r, "status": s} for r, s in state.previous_runs],
            "start_time": _time(run.start_time),
            "close_time": _time(run.close_time),
            "timeouts": {
                "execution": _seconds_of(run.execution_timeout_ms),
                "run": _seconds_of(run.run_timeout_ms),
                "task": _seconds_of(run.task_timeout_ms),
            },
            "attempt": run.attempt,
            "memo": {k: _payload(v) for k, v in run.memo.items()},
            "activities": [
                {
                    "activity_id": a.activity_id,
                    "activity_type": a.activity_type,
                    "task_list": a.task_list,
                    "attempt": a.attempt,
                    "scheduled_event_id": a.scheduled_event_id,
                    "scheduled_time": _time(a.scheduled_time),
                    "cancel_requested": a.cancel_requested,
                }
                for a in run.activities.values()
            ],
            "timers": [
                {"timer_id": t.timer_id, "fire_time": _time(t.fire_at_ms)} for t in run.timers.values()
            ],
            "children": [
                {
                    "workflow_id": c.workflow_id,
                    "workflow_type": c.workflow_type,
                    "domain": c.domain,
                    "run_id": c.run_id or None,
                    "started": bool(c.started_event_id),
                    "parent_close_policy": c.parent_close_policy,
                }
                for c in run.children.values()
            ],
            "cancel_requested": run.cancel_requested,
        }
    )
    return summary


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))


def print_describe(d: dict[str, Any], output: str) -> None:
    """What `describe_fields` gave: json, or a table for people."""
    if output == "json":
        print(json.dumps(d, indent=2, default=str))
    else:
        _print_describe_table(d)


def _print_describe_table(d: dict[str, Any]) -> None:
    def line(key: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            print(f"{key:<20}{value}")

    line("workflow id", d["workflow_id"])
    line("domain", d["domain"])
    line("type", d["workflow_type"])
    line("task list", d["task_list"])
    cancel_requested = d["cancel_requested"] and d["status"] == "RUNNING"
    line("status", d["status"] + (" (cancel requested)" if cancel_requested else ""))
    line("run id", d["run_id"])
    if len(d["chain"]) > 1:
        statuses = {r["run_id"]: r["status"] for r in d["previous_runs"]}
        line("run chain", " -> ".join(f"{r} ({statuses.get(r, d['status'])})" for r in d["chain"]))
    line("started", d["start_time"])
    line("closed", d["close_time"])
    if d["status"] == "COMPLETED":
        print(f"{'result':<20}{_compact(d['result'])}")
    failure = d["failure"]
    while failure:
        label = "failure" if failure is d["failure"] else "  caused by"
        line(label, f"{failure['type']}: {failure['message']}")
        failure = failure["cause"]
    line("reason", d["reason"])
    line("timed out", d["timeout_type"])
    line("continued as", d["new_run_id"])
    timeouts = ", ".join(f"{k} {v:g}s" for k, v in d["timeouts"].items() if v)
    line("timeouts", timeouts)
    line("attempt", d["attempt"] if d["attempt"] > 1 else None)
    line("memo", _compact(d["memo"]) if d["memo"] else None)
    if d["parent"]:
        line("parent", f"{d['parent'].get('workflow_id')} run {d['parent'].get('run_id')}")
    line("history", f"{d['history_length']} events, {d['history_bytes']} bytes")
    line("decision pending", "yes" if d["decision_outstanding"] else None)
    decision_failure = d.get("decision_failure")
    attempt = f"attempt {d['decision_attempt']}"
    recorded = d.get("decision_attempt_recorded")  # the engine counted transient attempts
    if recorded is not None and recorded != d["decision_attempt"]:
        attempt += f" ({recorded} in history)"
    line(
        "decision failing",
        f"{attempt}: {decision_failure['cause']} {decision_failure['message']}".rstrip()
        if decision_failure
        else None,
    )
    running = d["status"] == "RUNNING"  # the reducer keeps what was open when a run closed
    sections: list[tuple[str, list[dict[str, Any]], Callable[[dict[str, Any]], str]]] = [
        ("activities", d["activities"], _activity_line),
        ("timers", d["timers"], _timer_line),
        ("children", d["children"], _child_line),
    ]
    for title, items, fmt in sections:
        if items:
            print(f"pending {title}:" if running else f"{title} open at close:")
            for item in items:
                print(f"  {fmt(item)}")


def _activity_line(a: dict[str, Any]) -> str:
    cancel = ", cancel requested" if a["cancel_requested"] else ""
    return (
        f"{a['activity_type']} (id {a['activity_id']}, attempt {a['attempt']}, "
        f"task list {a['task_list']}, scheduled {a['scheduled_time']}{cancel})"
    )


def _timer_line(t: dict[str, Any]) -> str:
    return f"{t['timer_id']} fires {t['fire_time']}"


def _child_line(c: dict[str, Any]) -> str:
    run = f"run {c['run_id']}" if c["started"] else "starting"
    return f"{c['workflow_id']} ({c['workflow_type']}, {run}, parent close policy {c['parent_close_policy']})"


def print_events(events: list[dict[str, Any]], output: str) -> None:
    """A history as `show` prints it: json, one array of events; table, one line per event by run."""
    from kadence.replayer import events_to_json

    if output == "json":
        print(json.dumps(events_to_json(events), indent=1))
    else:
        print_history(events)


def event_printer(output: str) -> Callable[[dict[str, Any]], None]:
    """How `show --follow` prints each new event, at once: json, one event per line; table, as
    `print_events` does."""
    if output == "json":
        return _print_json_event
    return HistoryPrinter(flush=True)


def _print_json_event(event: dict[str, Any]) -> None:
    from kadence.replayer import events_to_json

    print(json.dumps(events_to_json([event])[0]), flush=True)
