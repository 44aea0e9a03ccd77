"""Child workflows (issue 4), end to end through the broker: each test asserts the outcome and the
history events of parent and child."""

from __future__ import annotations

import asyncio

import pytest

from kadence import activity, workflow
from kadence.failures import (
    ApplicationError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
)
from kadence.workflow import ChildWorkflowCancellationType as CT
from kadence.workflow import ParentClosePolicy


@activity.defn
def note(text: str) -> str:
    return text


@workflow.defn
class Echo:
    @workflow.run
    async def run(self, value: str) -> str:
        return value


@workflow.defn
class Waiter:
    """Waits for `release` (a signal) or cancellation; records what happened via an activity."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.released = False

    @workflow.signal
    def update_name(self, name: str) -> None:
        self.names.append(name)

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.query
    def seen(self) -> list[str]:
        return self.names

    @workflow.run
    async def run(self) -> list[str]:
        try:
            await workflow.wait_condition(lambda: self.released)
        except asyncio.CancelledError:
            await workflow.execute_activity(note, "cleaned up", start_to_close_timeout=10)
            raise
        return self.names


@workflow.defn
class StartThenResult:
    @workflow.run
    async def run(self) -> dict:
        handle = await workflow.start_child_workflow(Echo.run, "hi", id=f"{workflow.info().workflow_id}-c")
        started_run = handle.run_id  # known once started
        return {"run_id": started_run, "result": await handle.result()}


@workflow.defn
class StartDuplicate:
    @workflow.run
    async def run(self, child_id: str) -> str:
        try:
            await workflow.start_child_workflow(Waiter.run, id=child_id)
        except WorkflowAlreadyStartedError as err:
            return f"rejected: {err.reason}"
        return "started"


@workflow.defn
class SignalChild:
    @workflow.run
    async def run(self) -> list[str]:
        child = await workflow.start_child_workflow(Waiter.run, id=f"{workflow.info().workflow_id}-c")
        await child.signal(Waiter.update_name, "Cadence")
        await child.signal("release")
        try:
            child.query(Waiter.seen)
        except RuntimeError as err:
            assert "use the client" in str(err) or "client" in str(err)
        try:
            await workflow.get_external_workflow_handle("no-such-workflow").signal("release")
        except ApplicationError as err:
            return [*(await child.result()), f"external failed: {err.type}"]
        return await child.result()


@workflow.defn
class ParentWithPolicy:
    @workflow.run
    async def run(self, policy: str) -> str:
        await workflow.start_child_workflow(
            Waiter.run, id=f"{workflow.info().workflow_id}-c", parent_close_policy=ParentClosePolicy(policy)
        )
        return "parent done"


@workflow.defn
class CancelByType:
    @workflow.run
    async def run(self, cancellation_type: str) -> str:
        child = await workflow.start_child_workflow(
            Waiter.run, id=f"{workflow.info().workflow_id}-c", cancellation_type=CT(cancellation_type)
        )
        task = asyncio.ensure_future(child.result())
        await workflow.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "not cancelled"


@workflow.defn
class ScopeParent:
    @workflow.run
    async def run(self) -> str:
        scope = workflow.CancellationScope()
        with scope:
            first = await workflow.start_child_workflow(Waiter.run, id=f"{workflow.info().workflow_id}-a")
            second = await workflow.start_child_workflow(Waiter.run, id=f"{workflow.info().workflow_id}-b")
        results = asyncio.gather(first.result(), second.result(), return_exceptions=True)
        scope.cancel()
        outcomes = await results
        return ",".join(type(o).__name__ for o in outcomes)


@workflow.defn
class OptionsParent:
    @workflow.run
    async def run(self) -> list[str]:
        return list(
            await asyncio.gather(
                workflow.execute_child_workflow(Echo.run, "other-list", id="opt-list", task_list="special"),
                workflow.execute_child_workflow(Echo.run, "other-domain", id="shared-id", domain="other"),
                workflow.execute_child_workflow(
                    Echo.run, "same-domain", id="shared-id", memo={"team": "core"}
                ),
            )
        )


@workflow.defn
class ManyChildren:
    @workflow.run
    async def run(self, n: int) -> int:
        results = await asyncio.gather(*(workflow.execute_child_workflow(Echo.run, str(i)) for i in range(n)))
        return len(results)


ALL = [
    Echo,
    Waiter,
    StartThenResult,
    StartDuplicate,
    SignalChild,
    ParentWithPolicy,
    CancelByType,
    ScopeParent,
    OptionsParent,
    ManyChildren,
]


def kinds(client, workflow_id: str, domain: str | None = None) -> list[str]:
    return [e["attributes"][0] for e in client.get_handle(workflow_id).history()]


def attrs_of(client, workflow_id: str, kind: str) -> list[dict]:
    return [
        e["attributes"][1] for e in client.get_handle(workflow_id).history() if e["attributes"][0] == kind
    ]


@pytest.fixture
def kids(client, worker):
    worker("default", ALL, [note])
    return client


def test_start_returns_once_started_then_result(kids) -> None:
    out = kids.execute_workflow(StartThenResult.run, id="sr", task_list="default")
    child_start = kids.get_handle("sr-c").history()[0]
    assert out == {"run_id": child_start["run_id"], "result": "hi"}
    parent = kinds(kids, "sr")
    assert (
        parent.index("StartChildWorkflowExecutionInitiated")
        < parent.index("ChildWorkflowExecutionStarted")
        < parent.index("ChildWorkflowExecutionCompleted")
    )
    # The child's start command id derives from (parent run, initiated event): its run id is known in advance.
    assert attrs_of(kids, "sr", "ChildWorkflowExecutionStarted")[0]["run_id"] == child_start["run_id"]


def test_start_failure_is_a_typed_error(kids) -> None:
    blocker = kids.start_workflow(Waiter.run, id="taken", task_list="default")
    assert kids.execute_workflow(StartDuplicate.run, "taken", id="sd", task_list="default").startswith(
        "rejected: workflow execution already running"
    )
    failed = attrs_of(kids, "sd", "StartChildWorkflowExecutionFailed")
    assert failed and failed[0]["workflow_id"] == "taken"
    assert kinds(kids, "taken").count("WorkflowExecutionStarted") == 1  # the running one was not touched
    blocker.terminate("test over")


def test_signal_child_and_external_failure(kids) -> None:
    result = kids.execute_workflow(SignalChild.run, id="sig", task_list="default")
    assert result == ["Cadence", "external failed: SignalExternalWorkflowExecutionFailed"]
    child_signals = [a["signal_name"] for a in attrs_of(kids, "sig-c", "WorkflowExecutionSignaled")]
    assert child_signals == ["update_name", "release"]
    parent = kinds(kids, "sig")
    assert parent.count("SignalExternalWorkflowExecutionInitiated") == 3
    assert parent.count("ExternalWorkflowExecutionSignaled") == 2
    assert parent.count("SignalExternalWorkflowExecutionFailed") == 1


def test_client_can_query_a_child(kids) -> None:
    kids.start_workflow(ParentWithPolicy.run, "ABANDON", id="q", task_list="default").result(timeout=30)
    child = kids.get_handle("q-c")
    child.signal(Waiter.update_name, "x")
    for _ in range(50):
        if child.query(Waiter.seen) == ["x"]:
            break
    assert child.query(Waiter.seen) == ["x"]
    child.signal(Waiter.release)
    assert child.result(timeout=30) == ["x"]


@pytest.mark.parametrize(
    "policy,child_end",
    [
        ("TERMINATE", "WorkflowExecutionTerminated"),
        ("REQUEST_CANCEL", "WorkflowExecutionCanceled"),
        ("ABANDON", None),
    ],
)
def test_parent_close_policies(kids, policy: str, child_end: str | None) -> None:
    wid = f"pcp-{policy.lower()}"
    assert kids.execute_workflow(ParentWithPolicy.run, policy, id=wid, task_list="default") == "parent done"
    child = kids.get_handle(f"{wid}-c")
    if child_end is None:  # ABANDON: still running, still answering
        child.signal(Waiter.release)
        assert child.result(timeout=30) == []
        assert "WorkflowExecutionTerminated" not in kinds(kids, f"{wid}-c")
    else:
        with pytest.raises(WorkflowFailureError):  # canceled or terminated
            child.result(timeout=30)
        child_kinds = kinds(kids, f"{wid}-c")
        assert child_kinds[-1] == child_end
        if policy == "REQUEST_CANCEL":  # the child could clean up
            assert (
                "WorkflowExecutionCancelRequested" in child_kinds and "ActivityTaskCompleted" in child_kinds
            )


@pytest.mark.parametrize(
    "cancellation_type",
    ["WAIT_CANCELLATION_COMPLETED", "WAIT_CANCELLATION_REQUESTED", "TRY_CANCEL", "ABANDON"],
)
def test_cancellation_types(kids, cancellation_type: str) -> None:
    wid = f"ct-{cancellation_type.lower()}"
    assert (
        kids.execute_workflow(CancelByType.run, cancellation_type, id=wid, task_list="default") == "cancelled"
    )
    parent = kinds(kids, wid)
    child = kids.get_handle(f"{wid}-c")
    if cancellation_type == "ABANDON":
        assert "RequestCancelExternalWorkflowExecutionInitiated" not in parent
        try:
            child.signal(Waiter.release)  # the abandoned child is untouched (until the parent close policy)
        except WorkflowNotFoundError:  # the parent close policy (TERMINATE) got there first
            assert kinds(kids, f"{wid}-c")[-1] == "WorkflowExecutionTerminated"
    else:
        assert "RequestCancelExternalWorkflowExecutionInitiated" in parent
        with pytest.raises(WorkflowFailureError):  # canceled or terminated
            child.result(timeout=30)
        assert kinds(kids, f"{wid}-c")[-1] in ("WorkflowExecutionCanceled", "WorkflowExecutionTerminated")
    if cancellation_type == "WAIT_CANCELLATION_COMPLETED":
        assert "ChildWorkflowExecutionCanceled" in parent


def test_cancellation_scope_cancels_children_started_in_it(kids) -> None:
    assert (
        kids.execute_workflow(ScopeParent.run, id="scope", task_list="default")
        == "CancelledError,CancelledError"
    )
    for child in ("scope-a", "scope-b"):
        assert "WorkflowExecutionCancelRequested" in kinds(kids, child)


def test_child_options_task_list_domain_memo_timeouts(kids, worker, client) -> None:
    worker("special", [Echo])  # only workers of "special" run the first child
    # "other" domain: a worker is the same; domains isolate ids, not code.
    assert kids.execute_workflow(OptionsParent.run, id="opts", task_list="default") == [
        "other-list",
        "other-domain",
        "same-domain",
    ]
    initiated = attrs_of(kids, "opts", "StartChildWorkflowExecutionInitiated")
    assert [i["task_list"] for i in initiated] == ["special", "default", "default"]  # inherited when unset
    assert [i["domain"] for i in initiated] == ["default", "other", "default"]
    assert all(i["task_timeout_ms"] == 10_000 for i in initiated)  # inherited from the parent: default 10 s
    assert initiated[2]["memo"]["team"]["data"] == b'"core"'
    # The same id in two domains: two separate executions, each seen only from its own domain.
    from kadence import Client

    with Client(client.settings, domain="other") as other:
        for c, domain in ((kids, "default"), (other, "other")):
            events = c.get_handle("shared-id").history()
            assert {e["domain"] for e in events} == {domain}
            assert [e["attributes"][0] for e in events].count("WorkflowExecutionStarted") == 1
            assert events[-1]["attributes"][0] == "WorkflowExecutionCompleted"


def test_parallel_children(kids) -> None:
    assert kids.execute_workflow(ManyChildren.run, 20, id="many", task_list="default") == 20
    parent = kinds(kids, "many")
    assert parent.count("ChildWorkflowExecutionCompleted") == 20


def test_pending_children_limit_fails_the_decision_with_a_clear_cause(settings) -> None:
    from kadence import Client, Worker
    from kadence.processors.history import HistoryConfig
    from kadence.processors.server import InProcessEngine

    with (
        InProcessEngine(settings, config=HistoryConfig(max_pending_children=5)),
        Client(settings) as client,
        Worker(client, "default", ALL, [note]),
    ):
        handle = client.start_workflow(ManyChildren.run, 6, id="too-many", task_list="default")
        import time

        deadline = time.monotonic() + 30
        failed: list[dict] = []
        while time.monotonic() < deadline and not failed:
            failed = [
                e["attributes"][1] for e in handle.history() if e["attributes"][0] == "DecisionTaskFailed"
            ]
            time.sleep(0.1)
        assert failed and failed[0]["cause"] == "PENDING_CHILDREN_LIMIT_EXCEEDED"
        assert "more than 5 pending child workflows" in failed[0]["failure"]["message"]
        assert "StartChildWorkflowExecutionInitiated" not in [e["attributes"][0] for e in handle.history()]
        handle.terminate("limit test over")


@workflow.defn
class HoppingChild:
    """Continues as new twice, then waits (so its current run is not its first)."""

    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.run
    async def run(self, hops: int) -> str:
        if hops > 0:
            workflow.continue_as_new(hops - 1)
        await workflow.wait_condition(lambda: self.released)
        return "released"


@workflow.defn
class ParentOfHopper:
    @workflow.run
    async def run(self) -> str:
        await workflow.start_child_workflow(HoppingChild.run, 2, id=f"{workflow.info().workflow_id}-c")
        await workflow.sleep(1.0)  # let the child continue as new twice
        return "parent done"


@workflow.defn
class ParentOfShortChild:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def finish(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> str:
        await workflow.execute_child_workflow(Echo.run, "quick", id=f"{workflow.info().workflow_id}-c")
        # Keep a second child pending under TERMINATE, whose id the test then hands to a stranger.
        workflow.start_child_workflow(Waiter.run, id=f"{workflow.info().workflow_id}-pending")
        await workflow.wait_condition(lambda: self.go)
        return "parent done"


def test_parent_close_policy_reaches_a_child_that_continued_as_new(client, worker) -> None:
    worker("default", ALL + [HoppingChild, ParentOfHopper], [note])
    assert client.execute_workflow(ParentOfHopper.run, id="hop", task_list="default") == "parent done"
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = client.get_handle("hop-c").history()
        if events[-1]["attributes"][0] == "WorkflowExecutionTerminated":
            break
        time.sleep(0.1)
    runs = {e["run_id"] for e in events}
    assert len(runs) == 3 and events[-1]["attributes"][0] == "WorkflowExecutionTerminated"
    assert events[-1]["run_id"] != events[0]["run_id"]  # the third run was reached through the first run id


def test_parent_close_policy_never_touches_an_unrelated_workflow_reusing_the_id(client, worker) -> None:
    worker("default", ALL + [ParentOfShortChild], [note])
    parent = client.start_workflow(ParentOfShortChild.run, id="owner", task_list="default")
    import time

    deadline = time.monotonic() + 20
    while "owner-pending" not in {e["workflow_id"] for e in client.get_handle("owner-pending").history()}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.get_handle("owner-pending").terminate("make room for a stranger")
    stranger = client.start_workflow(
        Waiter.run, id="owner-pending", task_list="default", id_reuse_policy="ALLOW_DUPLICATE"
    )
    deadline = time.monotonic() + 20
    while len({e["run_id"] for e in client.get_handle("owner-pending").history()}) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.signal(ParentOfShortChild.finish)
    assert parent.result(timeout=30) == "parent done"
    time.sleep(1.0)  # the parent close policy has had time to act
    events = client.get_handle("owner-pending").history()
    latest_run = events[-1]["run_id"]
    assert [e["attributes"][0] for e in events if e["run_id"] == latest_run][
        -1
    ] != "WorkflowExecutionTerminated"
    stranger.signal(Waiter.release)
    assert stranger.result(timeout=30) == []
