"""Every id Kadence puts on the wire, in one place: what each one is made of, and why.

Deterministic ids are functions of their inputs (a command, an event), never of a clock or a
random source: the processors run exactly-once by re-running a batch after a crash, and a re-run
must produce byte-identical records so that receivers de-duplicate them by id (docs/protocol.md,
"Commands"; docs/processing-loop.md). Changing any format here changes the wire protocol: records
already in the topics (and recorded histories) carry the old ids.

The few random ids at the end are made outside a run (client commands, start requests, queries),
where a retry is the caller's to de-duplicate (a repeated start `request_id` is a no-op).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import NamedTuple

# -- runs -----------------------------------------------------------------------------------------


def derive_run_id(domain: str, workflow_id: str, command_id: str) -> str:
    """The run id a start command creates: a function of the command, so a redo makes the same run."""
    digest = hashlib.blake2b(f"{domain}\x00{workflow_id}\x00{command_id}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def continued_run_id(domain: str, workflow_id: str, run_id: str) -> str:
    """The run id of the run that continues `run_id` (continue-as-new, or a workflow retry):
    derived as if started by the pseudo command `continue:<run id>`, so it is known from the
    closing run alone."""
    return derive_run_id(domain, workflow_id, f"continue:{run_id}")


def reset_run_id(domain: str, workflow_id: str, base_run_id: str, command_id: str) -> str:
    """The run id of the run a reset command makes from `base_run_id`: the same command again
    (a client's retry) names the same run, so it is recognised as a duplicate."""
    return derive_run_id(domain, workflow_id, f"reset:{base_run_id}:{command_id}")


# -- task tokens and worker answers -----------------------------------------------------------------


class TaskToken(NamedTuple):
    kind: str  # "d" decision, "a" activity
    domain: str
    workflow_id: str
    run_id: str
    scheduled_event_id: int
    attempt: int


def task_token(
    kind: str, domain: str, workflow_id: str, run_id: str, scheduled_event_id: int, attempt: int
) -> str:
    """`<kind>/<domain>/<workflow id>/<run id>/<scheduled event id>/<attempt>`, kind "d" (decision
    task) or "a" (activity task): names one attempt of one task, so an answer to any other is stale."""
    return f"{kind}/{domain}/{workflow_id}/{run_id}/{scheduled_event_id}/{attempt}"


def parse_task_token(token: str) -> TaskToken:
    """Parse from both ends: workflow ids may contain '/'. Raises ValueError on garbage."""
    kind, domain, rest = token.split("/", 2)
    workflow_id, run_id, scheduled, attempt = rest.rsplit("/", 3)
    if kind not in ("d", "a"):
        raise ValueError(f"unknown task token kind {kind!r}")
    return TaskToken(kind, domain, workflow_id, run_id, int(scheduled), int(attempt))


def answer_command_id(task_token: str, kind: str, *, eager: bool = False) -> str:
    """Command id of a worker's answer to a task: `<task token>/<kind>` (kind "completed",
    "failed"), so a redelivered task is answered with the same id. An eager activity attempt's
    answer is `<task token>/eager-<kind>`: if the worker's prediction of the scheduled event id
    failed, the dispatched attempt of another activity may carry the same token."""
    return f"{task_token}/eager-{kind}" if eager else f"{task_token}/{kind}"


def heartbeat_command_id(task_token: str, n: int) -> str:
    """Command id of an activity attempt's `n`th heartbeat (1, 2, ...): `<task token>/heartbeat/<n>`."""
    return f"{task_token}/heartbeat/{n}"


def heartbeat_task_token(command_id: str) -> str | None:
    """The task token of a heartbeat's command id (`heartbeat_command_id`), or None for another id:
    a worker finds the attempt a heartbeat answer is about (docs/protocol.md, "Activity cancellation")."""
    token, sep, n = command_id.rpartition("/heartbeat/")
    return token if sep and n.isdigit() else None


# -- commands the engine sends itself -----------------------------------------------------------------


def timer_fire_command_id(kind: str, run_id: str, event_id: int, attempt: int) -> str:
    """FireTimer command id: `fire:<kind>:<run id>:<event id>:<attempt>` (kind "timer",
    "activity_timeout", "heartbeat_timeout", ...): the same deadline fired twice (by the timers
    processor after a crash, or by it and the history processor's liveness check) is one command."""
    return f"fire:{kind}:{run_id}:{event_id}:{attempt}"


def child_start_command_id(parent_run_id: str, initiated_event_id: int) -> str:
    """Command id (and request id) of a child's start: `start-child:<parent run id>:<initiated
    event id>`. The child's first run id derives from it (`derive_run_id`), so the parent knows it
    before the child starts."""
    return f"start-child:{parent_run_id}:{initiated_event_id}"


def child_started_command_id(child_run_id: str) -> str:
    """Command id of the ChildWorkflowExecutionStarted a child's first run reports to its parent."""
    return f"child-started:{child_run_id}"


def child_closed_command_id(child_run_id: str) -> str:
    """Command id of the ChildWorkflowExecution<Close> a child's last run reports to its parent."""
    return f"child-closed:{child_run_id}"


def signal_external_command_id(run_id: str, initiated_event_id: int) -> str:
    """Command id (and request id) of the signal a SignalExternalWorkflowExecutionInitiated event
    sends: `signal:<sender run id>:<initiated event id>`; the target drops a repeated request id."""
    return f"signal:{run_id}:{initiated_event_id}"


def cancel_external_command_id(run_id: str, initiated_event_id: int) -> str:
    """Command id (and request id) of the cancel request a
    RequestCancelExternalWorkflowExecutionInitiated event sends: `cancel:<sender run id>:<event id>`."""
    return f"cancel:{run_id}:{initiated_event_id}"


def parent_close_command_id(parent_run_id: str, initiated_event_id: int) -> str:
    """Command id of a parent close policy applied to one child (terminate or cancel request):
    `parent-close:<parent run id>:<the child's initiated event id>`."""
    return f"parent-close:{parent_run_id}:{initiated_event_id}"


def watch_command_id(watcher_run_id: str, initiated_event_id: int) -> str:
    """Command id (and request id) of the WatchWorkflowExecution a
    WatchExternalWorkflowExecutionInitiated event sends: `watch:<watcher run id>:<event id>`."""
    return f"watch:{watcher_run_id}:{initiated_event_id}"


def watch_closed_command_id(closed_run_id: str, watcher_run_id: str, initiated_event_id: int) -> str:
    """Command id of what a watched chain's last run tells one watcher at its close:
    `watch-closed:<closed run id>:<watcher run id>:<watcher's initiated event id>` (a run closes
    once, and each watcher is one (run, event))."""
    return f"watch-closed:{closed_run_id}:{watcher_run_id}:{initiated_event_id}"


def kept_child_close_command_id(parent_run_id: str, child_first_run_id: str) -> str:
    """Command id of the parent close policy applied, at a chain's end, to a child an earlier run
    kept (continue-as-new with keep_children): `parent-close-kept:<closing run id>:<child's first
    run id>` (initiated event ids of different runs may collide; a child's first run id cannot)."""
    return f"parent-close-kept:{parent_run_id}:{child_first_run_id}"


def start_failed_command_id(start_command_id: str) -> str:
    """Command id of the StartChildWorkflowExecutionFailed a rejected child start sends its parent."""
    return f"start-failed:{start_command_id}"


def reply_command_id(command_id: str) -> str:
    """Command id of the history processor's reply (signaled / cancel requested / failed) to the
    workflow that sent the command `command_id`."""
    return f"reply:{command_id}"


# -- ids workflow code gets by default (recorded in history: replay compares them) -------------------


def default_activity_id(seq: int) -> str:
    """The activity id of the run's `seq`th activity (1, 2, ...) when workflow code names none."""
    return str(seq)


def timer_id(seq: int) -> str:
    """The timer id of the run's `seq`th durable timer (1, 2, ...)."""
    return str(seq)


def default_child_workflow_id(parent_workflow_id: str, seq: int, parent_run_id: str) -> str:
    """The workflow id of the run's `seq`th child (1, 2, ...) when workflow code names none:
    `<parent id>/child-<seq>-<first 12 characters of the parent run id>` (unique per run)."""
    return f"{parent_workflow_id}/child-{seq}-{parent_run_id[:12]}"


# -- random ids, made outside a run --------------------------------------------------------------------


def new_command_id() -> str:
    """A client command's id: a fresh uuid4 hex (a client retry is de-duplicated by request id)."""
    return uuid.uuid4().hex


def new_request_id() -> str:
    """A start, signal or cancel request id when the caller gives none: a fresh uuid4 hex."""
    return uuid.uuid4().hex


def update_answer_id(update_id: str, stage: str) -> str:
    """Query id of the answers to an update (docs/updates.md): `update:<stage>:<update id>`, stage
    `validated` (the worker ran the validator), `accepted` or `completed` (the history processor)."""
    return f"update:{stage}:{update_id}"


def new_query_id() -> str:
    """A query's id (the key of its QueryResult): a fresh uuid4 hex."""
    return uuid.uuid4().hex
