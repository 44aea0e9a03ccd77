"""Watching another workflow's close (issue #14 item 4, "Children, beyond Temporal"), end to end
through the broker: a child start with id_conflict_policy USE_EXISTING attaches to the open run
(temporal#6799, #7882), workflow code awaits any workflow's result
(`get_external_workflow_handle(id).result()`, temporal#680), and children kept across
continue-as-new get the chain's parent close policy at its end (temporal#2609, #3666, #373). Each
test asserts on the history of both workflows, the watcher's and the target's, and replays the
watcher's history."""

from __future__ import annotations

import asyncio
import time

import pytest

from kadence import Replayer, workflow
from kadence.failures import WorkflowFailureError, WorkflowNotFoundError
from kadence.workflow import IdConflictPolicy, ParentClosePolicy


@workflow.defn
class Held:
    """Runs until `release(value)`; fails when released with "fail"."""

    def __init__(self) -> None:
        self.value: str | None = None

    @workflow.signal
    def release(self, value: str) -> None:
        self.value = value

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.value is not None)
        assert self.value is not None
        if self.value == "fail":
            raise workflow_error("released to fail")
        return f"released: {self.value}"


def workflow_error(message: str) -> Exception:
    from kadence.failures import ApplicationError

    return ApplicationError(message, non_retryable=True)


@workflow.defn
class Chained:
    """Continues as new `n` times, then waits for `release`."""

    def __init__(self) -> None:
        self.value: str | None = None

    @workflow.signal
    def release(self, value: str) -> None:
        self.value = value

    @workflow.run
    async def run(self, n: int) -> str:
        if n > 0:
            workflow.continue_as_new(n - 1)
        await workflow.wait_condition(lambda: self.value is not None)
        return f"last run: {self.value}"


@workflow.defn
class AttachingParent:
    """Starts `child_id` as a child with USE_EXISTING; awaits its result when `wait`."""

    @workflow.run
    async def run(self, child_id: str, wait: bool) -> dict:
        handle = await workflow.start_child_workflow(
            Held.run,
            id=child_id,
            id_conflict_policy=IdConflictPolicy.USE_EXISTING,
            parent_close_policy=ParentClosePolicy.TERMINATE,
        )
        out = {"run_id": handle.run_id}
        if wait:
            out["result"] = await handle.result()
        return out


@workflow.defn
class Watcher:
    """Awaits another workflow's result from workflow code."""

    @workflow.run
    async def run(self, target: str) -> dict:
        try:
            return {"result": await workflow.get_external_workflow_handle(target).result()}
        except WorkflowFailureError as err:
            return {"error": "WorkflowFailureError", "status": err.status, "cause": str(err.cause)}
        except WorkflowNotFoundError as err:
            return {"error": "WorkflowNotFoundError", "message": str(err)}


@workflow.defn
class KeepingParent:
    """Run 1 starts a child and continues as new keeping it; run 2 releases and awaits it (`await_it`)
    or closes at once, leaving the chain's parent close policy to reach the kept child."""

    @workflow.run
    async def run(self, policy: str, await_it: bool, generation: int = 0) -> str:
        child_id = f"{workflow.info().workflow_id}-kid"
        if generation == 0:
            await workflow.start_child_workflow(
                Held.run, id=child_id, parent_close_policy=ParentClosePolicy(policy)
            )
            workflow.continue_as_new(policy, await_it, 1, keep_children=True)
        if not await_it:
            return "left it"
        kid = workflow.get_external_workflow_handle(child_id)
        # the watch is decided first, so the kid records it before the signal that ends it
        result, _ = await asyncio.gather(kid.result(), kid.signal(Held.release, "by run 2"))
        return str(result)


ALL = [Held, Chained, AttachingParent, Watcher, KeepingParent]


def events(client, workflow_id: str) -> list[dict]:
    return client.get_handle(workflow_id).history()


def of_kind(evs: list[dict], kind: str) -> list[dict]:
    return [e for e in evs if e["attributes"][0] == kind]


def wait_for(probe, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def replays(client, workflow_id: str, workflows=ALL) -> None:
    """The watcher's recorded history replays against its code (raises NondeterminismError)."""
    Replayer(workflows=workflows).replay(events(client, workflow_id))


@pytest.fixture
def watching(client, worker):
    worker("default", ALL)
    return client


# -- id_conflict_policy USE_EXISTING ---------------------------------------------------------------


def test_use_existing_child_attaches_to_the_open_run_and_gets_its_result(watching) -> None:
    client = watching
    target = client.start_workflow(Held.run, id="ue-target", task_list="default")
    target_run = wait_for(lambda: events(client, "ue-target"))[0]["run_id"]
    parent = client.start_workflow(
        AttachingParent.run, "ue-target", True, id="ue-parent", task_list="default"
    )
    # the parent attached: its history shows the existing run as its child, the target records the watcher
    started = wait_for(lambda: of_kind(events(client, "ue-parent"), "ChildWorkflowExecutionStarted"))
    assert started[0]["attributes"][1]["run_id"] == target_run
    assert started[0]["attributes"][1]["attached"] is True
    watched = of_kind(events(client, "ue-target"), "WorkflowExecutionWatched")
    assert len(watched) == 1
    w = watched[0]["attributes"][1]
    assert w["watcher"]["workflow_id"] == "ue-parent" and w["as_child"] is True
    assert w["watcher"]["initiated_event_id"] == started[0]["attributes"][1]["initiated_event_id"]
    assert of_kind(events(client, "ue-parent"), "StartChildWorkflowExecutionFailed") == []

    target.signal(Held.release, "shared")
    assert target.result(timeout=30) == "released: shared"
    closed_at = time.monotonic()  # the target's close is on completions
    assert parent.result(timeout=30) == {"run_id": target_run, "result": "released: shared"}
    print(f"attached parent closed {1000 * (time.monotonic() - closed_at):.0f} ms after the target")
    parent_events = events(client, "ue-parent")
    completed = of_kind(parent_events, "ChildWorkflowExecutionCompleted")
    assert len(completed) == 1 and completed[0]["attributes"][1]["run_id"] == target_run
    initiated = of_kind(parent_events, "StartChildWorkflowExecutionInitiated")[0]["attributes"][1]
    assert initiated["id_conflict_policy"] == "USE_EXISTING"
    replays(client, "ue-parent")


def test_use_existing_attached_child_is_not_owned_by_the_parent(watching) -> None:
    """The parent close policy (TERMINATE here) does not reach a run the parent attached to."""
    client = watching
    target = client.start_workflow(Held.run, id="ue-owned", task_list="default")
    wait_for(lambda: events(client, "ue-owned"))
    out = client.execute_workflow(AttachingParent.run, "ue-owned", False, id="ue-leaver", task_list="default")
    assert out["run_id"] == events(client, "ue-owned")[0]["run_id"]
    time.sleep(1.0)  # a terminate would have arrived by now
    assert of_kind(events(client, "ue-owned"), "WorkflowExecutionTerminated") == []
    target.signal(Held.release, "still mine")
    assert target.result(timeout=30) == "released: still mine"
    # the parent closed first: the close notification to it is dropped, nothing else happens
    assert of_kind(events(client, "ue-leaver"), "ChildWorkflowExecutionCompleted") == []
    replays(client, "ue-leaver")


def test_use_existing_without_an_open_run_starts_the_child(watching) -> None:
    client = watching
    parent = client.start_workflow(
        AttachingParent.run, "ue-fresh", True, id="ue-fresh-parent", task_list="default"
    )
    wait_for(lambda: events(client, "ue-fresh"))
    client.get_handle("ue-fresh").signal(Held.release, "new")
    out = parent.result(timeout=30)
    assert out["result"] == "released: new"
    started = of_kind(events(client, "ue-fresh-parent"), "ChildWorkflowExecutionStarted")
    assert started[0]["attributes"][1]["attached"] is False
    assert events(client, "ue-fresh")[0]["attributes"][1]["parent"]["workflow_id"] == "ue-fresh-parent"


# -- get_external_workflow_handle(id).result() ----------------------------------------------------


def test_external_result_of_a_running_workflow(watching) -> None:
    client = watching
    target = client.start_workflow(Held.run, id="ext-target", task_list="default")
    wait_for(lambda: events(client, "ext-target"))
    watcher = client.start_workflow(Watcher.run, "ext-target", id="ext-watcher", task_list="default")
    watched = wait_for(lambda: of_kind(events(client, "ext-target"), "WorkflowExecutionWatched"))
    assert watched[0]["attributes"][1]["watcher"]["workflow_id"] == "ext-watcher"
    assert watched[0]["attributes"][1]["as_child"] is False
    target.signal(Held.release, "x")
    assert target.result(timeout=30) == "released: x"
    closed_at = time.monotonic()  # the target's close is on completions
    assert watcher.result(timeout=30) == {"result": "released: x"}
    print(f"watcher closed {1000 * (time.monotonic() - closed_at):.0f} ms after the target")
    watcher_events = events(client, "ext-watcher")
    initiated = of_kind(watcher_events, "WatchExternalWorkflowExecutionInitiated")
    closed = of_kind(watcher_events, "ExternalWorkflowExecutionClosed")
    assert [e["attributes"][1]["workflow_id"] for e in initiated] == ["ext-target"]
    assert closed[0]["attributes"][1]["status"] == "COMPLETED"
    assert closed[0]["attributes"][1]["initiated_event_id"] == initiated[0]["event_id"]
    target_close = of_kind(events(client, "ext-target"), "WorkflowExecutionCompleted")[0]
    assert closed[0]["attributes"][1]["run_id"] == target_close["run_id"]
    replays(client, "ext-watcher")


def test_external_result_follows_continue_as_new_to_the_last_run(watching) -> None:
    client = watching
    # the watch reaches the first run only if it is still open; either way the chain's end is told
    target = client.start_workflow(Chained.run, 2, id="ext-chain", task_list="default")
    watcher = client.start_workflow(Watcher.run, "ext-chain", id="ext-chain-watcher", task_list="default")
    assert wait_for(lambda: of_kind(events(client, "ext-chain"), "WorkflowExecutionWatched"))
    assert wait_for(lambda: len(of_kind(events(client, "ext-chain"), "WorkflowExecutionContinuedAsNew")) == 2)
    target.signal(Chained.release, "y")
    assert watcher.result(timeout=30) == {"result": "last run: y"}
    chain = events(client, "ext-chain")
    last_run = chain[-1]["run_id"]
    closed = of_kind(events(client, "ext-chain-watcher"), "ExternalWorkflowExecutionClosed")
    assert closed[0]["attributes"][1]["run_id"] == last_run
    assert len(of_kind(chain, "WorkflowExecutionWatched")) == 1  # recorded once, carried by the reducer
    replays(client, "ext-chain-watcher")


def test_external_result_of_a_closed_workflow_answers_at_once(watching) -> None:
    client = watching
    failed = client.start_workflow(Held.run, id="ext-failed", task_list="default")
    failed.signal(Held.release, "fail")
    with pytest.raises(WorkflowFailureError):
        failed.result(timeout=30)
    out = client.execute_workflow(Watcher.run, "ext-failed", id="ext-late-watcher", task_list="default")
    assert out["error"] == "WorkflowFailureError" and out["status"] == "FAILED"
    assert "released to fail" in out["cause"]
    closed = of_kind(events(client, "ext-late-watcher"), "ExternalWorkflowExecutionClosed")
    assert closed[0]["attributes"][1]["status"] == "FAILED"
    # the target was closed: nothing is recorded in its history
    assert of_kind(events(client, "ext-failed"), "WorkflowExecutionWatched") == []
    replays(client, "ext-late-watcher")


def test_external_result_of_an_unknown_workflow_fails(watching) -> None:
    client = watching
    out = client.execute_workflow(Watcher.run, "ext-nobody", id="ext-lonely", task_list="default")
    assert out["error"] == "WorkflowNotFoundError"
    failed = of_kind(events(client, "ext-lonely"), "WatchExternalWorkflowExecutionFailed")
    assert failed[0]["attributes"][1]["workflow_id"] == "ext-nobody"
    assert "not found" in failed[0]["attributes"][1]["cause"]
    replays(client, "ext-lonely")


# -- keep_children ----------------------------------------------------------------------------------


def test_kept_child_is_awaited_by_a_later_run(watching) -> None:
    client = watching
    out = client.execute_workflow(KeepingParent.run, "TERMINATE", True, id="keep-await", task_list="default")
    assert out == "released: by run 2"
    kid = events(client, "keep-await-kid")
    assert kid[-1]["attributes"][0] == "WorkflowExecutionCompleted"
    parent = events(client, "keep-await")
    second_run = of_kind(parent, "WorkflowExecutionStarted")[1]["run_id"]
    watched = of_kind(kid, "WorkflowExecutionWatched")
    assert [w["attributes"][1]["watcher"]["run_id"] for w in watched] == [second_run]
    closed = of_kind(parent, "ExternalWorkflowExecutionClosed")
    assert closed[0]["run_id"] == second_run and closed[0]["attributes"][1]["status"] == "COMPLETED"
    replays(client, "keep-await")


@pytest.mark.parametrize("policy", ["TERMINATE", "REQUEST_CANCEL"])
def test_kept_child_gets_the_parent_close_policy_when_the_chain_ends(watching, policy: str) -> None:
    client = watching
    wid = f"keep-{policy.lower()}"
    assert client.execute_workflow(KeepingParent.run, policy, False, id=wid, task_list="default") == "left it"
    parent = events(client, wid)
    continued = of_kind(parent, "WorkflowExecutionContinuedAsNew")
    assert continued[0]["attributes"][1]["keep_children"] is True
    expected = "WorkflowExecutionTerminated" if policy == "TERMINATE" else "WorkflowExecutionCancelRequested"
    kid = wait_for(lambda: of_kind(events(client, f"{wid}-kid"), expected))
    assert kid, f"{wid}-kid got no {expected}"
    attrs = kid[0]["attributes"][1]
    why = attrs["reason"] if policy == "TERMINATE" else attrs["cause"]
    assert wid in why and "COMPLETED" in why  # the chain's last run closed, not the continue-as-new
    replays(client, wid)


# -- the target's record of its watchers, without a broker -----------------------------------------


def test_watchers_are_history_and_fold_back_to_the_live_state(monkeypatch) -> None:
    """The target's WorkflowExecutionWatched events rebuild the live state (a restore), a repeated
    watch is one record, and an unknown target answers with a failure (through the history
    processor in memory, signed as the engine signs)."""
    import kadence.processors.history.processor as history_processor
    from kadence.history import fold_transition
    from kadence.processors.history import HistoryProcessor
    from kadence.processors.store import ExecutionStore
    from kadence.streams.serde import serde
    from kadence.streams.settings import Settings
    from tests.support.memory_context import ENGINE_SECRET, MemoryContext, in_record

    monkeypatch.setattr(history_processor, "ensure_topics", lambda *a, **k: None)
    codec = serde()
    settings = Settings(partitions=1, engine_secret=ENGINE_SECRET)
    proc, ctx = HistoryProcessor(settings), MemoryContext()
    history, replies = [], []

    def send(n: int, workflow_id: str, payload: tuple) -> None:
        cmd = {
            "command_id": f"c{n}",
            "domain": "default",
            "workflow_id": workflow_id,
            "run_id": "",
            "timestamp": 0,
            "payload": payload,
        }
        proc.process(
            in_record(
                settings.commands_topic, workflow_id.encode(), codec.encode("Command", cmd), signed=True
            ),
            ctx,
        )
        for out in ctx.take():
            if out.topic == settings.history_topic:
                history.append(codec.decode(out.value)[1])
            elif out.topic == settings.commands_topic:
                replies.append(codec.decode(out.value)[1])

    start = {
        "workflow_type": "W",
        "task_list": "tl",
        "input": None,
        "execution_timeout_ms": 0,
        "run_timeout_ms": 0,
        "task_timeout_ms": 0,
        "id_reuse_policy": "ALLOW_DUPLICATE",
        "retry_policy": None,
        "memo": {},
        "request_id": "r1",
        "identity": "",
        "parent": None,
        "cron_schedule": "",
    }
    watcher = {"domain": "default", "workflow_id": "w", "run_id": "wrun", "initiated_event_id": 5}
    parent = {"domain": "default", "workflow_id": "p", "run_id": "prun", "initiated_event_id": 7}
    send(1, "t", ("StartWorkflowExecution", start))
    send(2, "t", ("WatchWorkflowExecution", {"watcher": watcher, "request_id": "watch:wrun:5"}))
    send(3, "t", ("WatchWorkflowExecution", {"watcher": watcher, "request_id": "watch:wrun:5"}))  # again
    attach = {
        **start,
        "request_id": "start-child:prun:7",
        "parent": parent,
        "id_conflict_policy": "USE_EXISTING",
    }
    send(4, "t", ("StartWorkflowExecution", attach))
    send(5, "nobody", ("WatchWorkflowExecution", {"watcher": watcher, "request_id": "watch:wrun:6"}))

    watched = [e for t in history for e in t["events"] if e["attributes"][0] == "WorkflowExecutionWatched"]
    assert [
        (e["attributes"][1]["watcher"]["workflow_id"], e["attributes"][1]["as_child"]) for e in watched
    ] == [
        ("w", False),
        ("p", True),
    ]
    assert [(r["workflow_id"], r["payload"][0]) for r in replies] == [
        ("p", "ChildWorkflowExecutionStarted"),
        ("w", "WatchExternalWorkflowExecutionFailed"),
    ]
    assert replies[0]["payload"][1]["attached"] is True
    rebuilt = None
    for transition in history:
        if transition["workflow_id"] == "t":
            rebuilt, _ = fold_transition(rebuilt, transition)
    live = ExecutionStore().load(ctx.state, "default", "t")
    assert rebuilt == live and live is not None and live.current is not None
    assert len(live.current.watchers) == 2
