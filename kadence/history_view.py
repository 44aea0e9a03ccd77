"""A workflow history as text: one line per event, grouped by run (`kadence show`, the demo).

The one printer of a history as text: `print_history` for a list of events, `HistoryPrinter` for
events that arrive one by one (`kadence show --follow`)."""

from __future__ import annotations

from typing import Any


def format_event(event: dict[str, Any]) -> str:
    kind, attrs = event["attributes"]
    shown = {
        k: v
        for k, v in attrs.items()
        if v not in (None, "", 0, {}, []) and k not in ("decision_task_completed_event_id",)
    }
    for key in ("input", "result", "details"):
        if isinstance(shown.get(key), dict) and "data" in shown[key]:
            shown[key] = shown[key]["data"].decode(errors="replace")[:80]
    if isinstance(shown.get("failure"), dict):
        shown["failure"] = f"{shown['failure']['type']}: {shown['failure']['message']}"
    detail = " ".join(f"{k}={v}" for k, v in shown.items() if not isinstance(v, dict))
    return f"{event['event_id']:>5}  {kind:<45} {detail[:160]}"


class HistoryPrinter:
    """Prints events as they come: a `run` header whenever the run changes, then one line per event.

    `flush`: flush stdout after each line (for a reader that follows the history live)."""

    def __init__(self, *, flush: bool = False) -> None:
        self.flush = flush
        self.run: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if event["run_id"] != self.run:
            self.run = event["run_id"]
            print(f"  run {self.run}", flush=self.flush)
        print("  " + format_event(event), flush=self.flush)


def print_history(events: list[dict[str, Any]]) -> None:
    printer = HistoryPrinter()
    for event in events:
        printer(event)
