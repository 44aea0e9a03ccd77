"""What a field of a command or decision may hold: the one definition of the protocol's input limits.

The history processor checks every command where it enters (a bad start is rejected with the
reason, a bad decision fails its decision task with the reason, any other bad command goes to the
dead letters with the reason); the client checks the same rules before it sends, for an early
error. docs/protocol.md, "Limits", lists them.

- Durations (`*_ms` fields: timeouts, intervals, backoffs) lie in [0, MAX_DURATION_MS]; 0 means
  "none" or "the default" where the field says so. A negative value or one near 2^63 would make a
  deadline overflow a long, or fire at once for ever. A decision task timeout (`task_timeout_ms`)
  is 0 or at least MIN_TASK_TIMEOUT_MS.
- Ids and names (domain, workflow id, types, task list, activity/timer ids, signal and query names)
  are at most MAX_NAME_CHARS characters and hold no control characters (U+0000-U+001F, U+007F-U+009F):
  state keys and log lines stay unambiguous. Domain, workflow id, workflow type and task list may
  not be empty.
- A task list name becomes part of a Kafka topic name (`<prefix>tasks.<task list>`): only ASCII
  letters, digits, `.`, `_` and `-`, at most MAX_TASK_LIST_CHARS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

#: The longest duration a field may hold: 100 years. Any timestamp plus it still fits a long.
MAX_DURATION_MS = 100 * 365 * 24 * 3600 * 1000
#: The shortest decision task timeout (0 = the default, 10 s): a shorter one times out before any
#: worker can answer, and each timeout schedules the next task, a loop of events until the history limit.
MIN_TASK_TIMEOUT_MS = 1000
#: The longest id or name, in characters (Temporal's limit for workflow ids).
MAX_NAME_CHARS = 1000
#: The longest task list name: Kafka topic names are at most 249 characters, and the topic is
#: `<prefix>tasks.<task list>`.
MAX_TASK_LIST_CHARS = 200
#: Fields that hold an id or a name (anywhere in a command or decision).
NAME_FIELDS = frozenset(
    {
        "domain",
        "workflow_id",
        "workflow_type",
        "task_list",
        "activity_id",
        "activity_type",
        "timer_id",
        "signal_name",
        "query_type",
        "request_id",
    }
)
#: Name fields that may not be empty where they appear.
REQUIRED_NAMES = frozenset({"domain", "workflow_id", "workflow_type", "task_list"})

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")


class InvalidField(ValueError):
    """A field holds a value outside its documented range; the message names the field and the rule."""


def check_duration(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DURATION_MS:
        raise InvalidField(f"{name} must be between 0 and {MAX_DURATION_MS} ms (100 years), got {value!r}")


def check_name(name: str, value: str, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidField(f"{name} must be a string, got {type(value).__name__}")
    if required and not value:
        raise InvalidField(f"{name} may not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidField(f"{name} is {len(value)} characters long, more than {MAX_NAME_CHARS}")
    found = _CONTROL.search(value)
    if found:
        raise InvalidField(
            f"{name} {value[:80]!r} holds the control character U+{ord(found.group()):04X} at {found.start()}"
        )


def check_task_list(name: str, value: str) -> None:
    check_name(name, value, required=True)
    if len(value) > MAX_TASK_LIST_CHARS or not _TOPIC_CHARS.fullmatch(value):
        raise InvalidField(
            f"{name} {value[:80]!r} is not a valid task list name: it becomes part of a Kafka topic "
            f"name, so only ASCII letters, digits, '.', '_' and '-', at most {MAX_TASK_LIST_CHARS} characters"
        )


def check_fields(record: Mapping[str, Any], path: str = "", *, skip: frozenset[str] = frozenset()) -> None:
    """Check every duration, id and name in `record` and the records it nests (not `skip`ped keys).
    Raises `InvalidField` naming the first bad field by its path."""
    for key, value in record.items():
        if key in skip:
            continue
        where = f"{path}{key}"
        if key.endswith("_ms") and key != "execution_deadline_ms":  # a deadline is computed, not given
            check_duration(where, value)
            if key == "task_timeout_ms" and 0 < value < MIN_TASK_TIMEOUT_MS:
                raise InvalidField(
                    f"{where} must be 0 (the default) or at least {MIN_TASK_TIMEOUT_MS} ms, got {value}"
                )
        elif key == "task_list":
            if value:  # empty: the parent's, or the default
                check_task_list(where, value)
        elif key in NAME_FIELDS:
            check_name(where, value)
        elif key == "backoff_coefficient" and value:
            if not math.isfinite(value) or not 1.0 <= value <= 1000.0:
                raise InvalidField(f"{where} must be between 1 and 1000, got {value!r}")
        elif key == "maximum_attempts" and value is not None and value < 0:
            raise InvalidField(f"{where} may not be negative, got {value!r}")
        elif isinstance(value, Mapping) and key not in ("memo", "search_attributes"):
            check_fields(value, f"{where}.", skip=skip)
        elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
            check_fields(value[1], f"{where}.{value[0]}.", skip=skip)  # a union branch (type, body)


def command_problem(command: Mapping[str, Any]) -> str | None:
    """Why a decoded Command may not enter, or None. The decisions of a RespondDecisionTaskCompleted
    are checked one by one (`decision_problem`): a bad one fails the decision task instead."""
    try:
        check_name("domain", command["domain"], required=True)
        check_name("workflow_id", command["workflow_id"], required=True)
        check_name("run_id", command["run_id"])
        payload_type, body = command["payload"]
        if payload_type == "StartWorkflowExecution":
            check_name("workflow_type", body["workflow_type"], required=True)
            check_task_list("task_list", body["task_list"])
        check_fields(body, f"{payload_type}.", skip=frozenset({"decisions"}))
    except InvalidField as exc:
        return str(exc)
    return None


def decision_problem(decision_type: str, attributes: Mapping[str, Any]) -> str | None:
    """Why a decision's attributes may not be recorded, or None."""
    try:
        check_fields(attributes, f"{decision_type}.")
        if decision_type == "WatchExternalWorkflowExecutionDecision":  # its command is keyed by the id
            check_name(f"{decision_type}.workflow_id", attributes["workflow_id"], required=True)
    except InvalidField as exc:
        return str(exc)
    return None


__all__ = [
    "MAX_DURATION_MS",
    "MAX_NAME_CHARS",
    "MAX_TASK_LIST_CHARS",
    "MIN_TASK_TIMEOUT_MS",
    "InvalidField",
    "check_duration",
    "check_fields",
    "check_name",
    "check_task_list",
    "command_problem",
    "decision_problem",
]
