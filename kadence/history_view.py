"""A workflow history as text: one line per event, grouped by run (`kadence history`, the demo)."""

from __future__ import annotations

from typing import Any


def format_event(event: dict[str, Any]) -> str:
    kind, attrs = event["attributes"]
    shown = {k: v for k, v in attrs.items() if v not in (None, "", 0, {}, []) and k not in ("decision_task_completed_event_id",)}
    for key in ("input", "result", "details"):
        if isinstance(shown.get(key), dict) and "data" in shown[key]:
            shown[key] = shown[key]["data"].decode(errors="replace")[:80]
    if isinstance(shown.get("failure"), dict):
        shown["failure"] = f"{shown['failure']['type']}: {shown['failure']['message']}"
    detail = " ".join(f"{k}={v}" for k, v in shown.items() if not isinstance(v, dict))
    return f"{event['event_id']:>5}  {kind:<45} {detail[:160]}"


def print_history(events: list[dict[str, Any]]) -> None:
    run = None
    for event in events:
        if event["run_id"] != run:
            run = event["run_id"]
            print(f"  run {run}")
        print("  " + format_event(event))
