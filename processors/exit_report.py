"""What the supervisor says about a processor that exited: the input offsets that stopped it.

A processor instance stopped by a record writes the offsets of its batch to the failed-input
ledger before it goes (`streams.failed_inputs`: `<state dir>/failed-inputs/<prefix><processor>.
<partition>.json`). The supervisor reads the entries written since the process started and names
them in its restart line, so the log says which input killed the process without reading the
child's own log; an exit with no entry was not caused by a record (killed from outside, the broker
or the disk: the child's log says which).
"""

from __future__ import annotations

import json
from pathlib import Path

from kadence.streams.settings import Settings


def processor_name(component: str) -> str:
    """The processor a `kadence server` component runs (its ledger files are named after it)."""
    return component if component in ("history", "derived") else f"derived-{component}"


def input_topic(settings: Settings, component: str) -> str:
    return settings.commands_topic if component == "history" else settings.history_topic


def failed_inputs_since(settings: Settings, component: str, since_epoch_s: float) -> list[str]:
    """'topic[p]@first-last (attempt n of the ledger): error' for each ledger entry of `component`
    written at or after `since_epoch_s`, most recent first."""
    owner = f"{settings.prefix}{processor_name(component)}."
    folder = Path(settings.state_dir) / "failed-inputs"
    found: list[tuple[float, str]] = []
    topic = input_topic(settings, component)
    for path in folder.glob("*.json") if folder.is_dir() else ():
        partition = path.name[len(owner) : -len(".json")]
        if not path.name.startswith(owner) or not partition.isdigit():
            continue
        try:
            modified = path.stat().st_mtime
            if modified < since_epoch_s:
                continue
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        first, last = entry.get("first"), entry.get("last")
        offsets = f"{first}" if first == last else f"{first}-{last}"
        found.append(
            (
                modified,
                f"{topic}[{partition}]@{offsets} (attempt {entry.get('attempts')}): {str(entry.get('error'))[:300]}",
            )
        )
    return [line for _, line in sorted(found, reverse=True)]


def exit_note(settings: Settings, component: str, since_epoch_s: float) -> str:
    """The clause the supervisor appends to its restart line."""
    failed = failed_inputs_since(settings, component, since_epoch_s)
    if failed:
        return "; it was stopped by input " + "; ".join(failed)
    return "; it recorded no input offset (not stopped by a record: see its own log)"


__all__ = ["exit_note", "failed_inputs_since"]
