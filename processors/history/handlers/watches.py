"""Watching another workflow's close (docs/protocol.md, "Watching another workflow's close").

On the target's side: a `WatchWorkflowExecution` (engine-only; sent for a watcher's
WatchExternalWorkflowExecutionInitiated) records the watcher in the open run's history
(`WorkflowExecutionWatched`, folded into `RunState.watchers`), or is answered at once when the
workflow's chain has already ended or is not found. A child start with id_conflict_policy
USE_EXISTING that finds the id's run open attaches its parent the same way (`attach_child`). The
derived `watches` module tells every watcher when the chain's last run closes.

On the watcher's side: the answer (`ExternalWorkflowExecutionClosed` or
`WatchExternalWorkflowExecutionFailed`) is recorded as itself while the watch is pending.
"""

from __future__ import annotations

from kadence.history import RunState
from kadence.history.commands import watch_closed_payload
from kadence.history.ids import reply_command_id
from kadence.schemas.records import (
    ChildWorkflowExecutionStarted,
    Command,
    CommandPayload,
    ExternalWorkflowExecutionClosed,
    ParentExecution,
    StartWorkflowExecution,
    WatchExternalWorkflowExecutionFailed,
    WatchWorkflowExecution,
    WorkflowExecutionWatched,
)

from ..transition import Transition
from .common import HandlerEnv, log, open_run, reply_command, stale


def _chain_run(tr: Transition, run_id: str) -> tuple[RunState | None, str]:
    """The run that holds the end of the chain `run_id` names (empty: the id's current run), or
    (None, why not). A run that continued as new is followed through `previous_runs` to the
    current run; a chain that ended before a later start of the id is no longer known."""
    state = tr.state
    cur = state.current if state is not None else None
    if state is None or cur is None:
        return None, "workflow execution not found"
    if not run_id or run_id in (cur.run_id, cur.first_run_id):
        return cur, ""
    runs = [r for r, _ in state.previous_runs]
    if run_id not in runs:
        return None, f"run {run_id} not found"
    later = state.previous_runs[runs.index(run_id) :]
    if all(status == "CONTINUED_AS_NEW" for _, status in later):
        return cur, ""  # continued as new, run after run, up to the current run
    return None, f"run {run_id} closed, and a later start of the id replaced its close"


def _watched(watcher: ParentExecution, as_child: bool, request_id: str) -> WorkflowExecutionWatched:
    return {"watcher": watcher, "as_child": as_child, "request_id": request_id}


def _already_watching(run: RunState, watcher: ParentExecution) -> bool:
    return any(
        w["watcher"]["run_id"] == watcher["run_id"]
        and w["watcher"]["initiated_event_id"] == watcher["initiated_event_id"]
        and w["watcher"]["workflow_id"] == watcher["workflow_id"]
        for w in run.watchers
    )


def handle_watch(tr: Transition, cmd: Command, a: WatchWorkflowExecution, env: HandlerEnv) -> None:
    watcher = a["watcher"]
    run, why = _chain_run(tr, cmd["run_id"])
    if run is None:
        failed: WatchExternalWorkflowExecutionFailed = {
            "domain": tr.domain,
            "workflow_id": tr.workflow_id,
            "run_id": cmd["run_id"],
            "initiated_event_id": watcher["initiated_event_id"],
            "cause": why,
            "decision_task_completed_event_id": 0,
            "control": "",
        }
        return _reply(tr, cmd, watcher, ("WatchExternalWorkflowExecutionFailed", failed))
    if run.is_open:
        if not _already_watching(run, watcher):
            tr.add(("WorkflowExecutionWatched", _watched(watcher, False, a["request_id"])))
        return
    # the chain has ended: its last run's close is in the state, answer with it now
    payload = _closed_now(tr, run, _watched(watcher, False, a["request_id"]))
    if payload is not None:
        _reply(tr, cmd, watcher, payload)


def attach_child(tr: Transition, cmd: Command, a: StartWorkflowExecution, run: RunState) -> None:
    """A child start with id_conflict_policy USE_EXISTING found `run` open: the parent watches it
    (told ChildWorkflowExecution<Close> at the chain's end) and hears ChildWorkflowExecutionStarted
    (`attached`) with the run's id now. The run is not the parent's own: no parent close policy."""
    parent = a["parent"]
    assert parent is not None
    if _already_watching(run, parent):
        return  # the same start again (a redone command): recorded and answered already
    tr.add(("WorkflowExecutionWatched", _watched(parent, True, a["request_id"])))
    started: ChildWorkflowExecutionStarted = {
        "domain": tr.domain,
        "workflow_id": tr.workflow_id,
        "run_id": run.run_id,
        "workflow_type": run.workflow_type,
        "initiated_event_id": parent["initiated_event_id"],
        "started_event_id": 0,
        "attached": True,
    }
    _reply(tr, cmd, parent, ("ChildWorkflowExecutionStarted", started))


def _closed_now(tr: Transition, run: RunState, watched: WorkflowExecutionWatched) -> CommandPayload | None:
    if run.close is None:
        log.warning("closed run %s of %s keeps no close attributes", run.run_id, tr.workflow_id)
        return None
    return watch_closed_payload(
        watched,
        domain=tr.domain,
        workflow_id=tr.workflow_id,
        run_id=run.run_id,
        workflow_type=run.workflow_type,
        close_type=run.close_type,
        close=run.close,
    )


def handle_watch_result(
    tr: Transition,
    cmd: Command,
    a: ExternalWorkflowExecutionClosed | WatchExternalWorkflowExecutionFailed,
    env: HandlerEnv,
) -> None:
    result = cmd["payload"]
    event_type = result[0]
    run = open_run(tr, cmd["run_id"])
    if run is None:
        return stale(tr, event_type, f"run {cmd['run_id']} is not open")
    if a["initiated_event_id"] not in run.watches_out:
        return stale(tr, event_type, f"no pending watch initiated at event {a['initiated_event_id']}")
    match result:
        case ("ExternalWorkflowExecutionClosed" | "WatchExternalWorkflowExecutionFailed", _) as answer:
            tr.add(answer)
    tr.schedule_decision_if_needed()


def _reply(tr: Transition, cmd: Command, to: ParentExecution, payload: CommandPayload) -> None:
    reply_command(
        tr,
        command_id=reply_command_id(cmd["command_id"]),
        domain=to["domain"],
        workflow_id=to["workflow_id"],
        run_id=to["run_id"],
        payload=payload,
    )
