"""The worker against the real embedded broker: tasks in, Commands / QueryResults out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from kadence import activity, workflow
from kadence.failures import ApplicationError
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from kadence.testing import HistoryBuilder
from kadence.worker import Worker

TL = "orders"


@activity.defn
def greet(name: str) -> str:
    info = activity.info()
    activity.heartbeat("working", info.attempt)
    return f"Hello, {name} (attempt {info.attempt})"


@activity.defn(name="agreet")
async def async_greet(name: str) -> str:
    await asyncio.sleep(0.01)
    return f"Hi, {name}"


@activity.defn
def explode(kind: str) -> None:
    raise ApplicationError("bad card", type="CardDeclined", non_retryable=kind == "final")


@workflow.defn
class Greeter:
    def __init__(self) -> None:
        self.greeting = ""

    @workflow.run
    async def run(self, name: str) -> str:
        self.greeting = await workflow.execute_activity(greet, name, start_to_close_timeout=5)
        return self.greeting

    @workflow.query
    def current(self) -> str:
        return self.greeting or "nothing yet"


NAPS_DONE: dict[str, float] = {}


@activity.defn
def nap(key: str, seconds: float) -> str:
    time.sleep(seconds)
    NAPS_DONE[key] = time.time()
    return key


@workflow.defn
class Napper:
    @workflow.run
    async def run(self, key: str, seconds: float) -> str:
        return await workflow.execute_activity(nap, key, seconds, start_to_close_timeout=5)


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = make_producer(settings)
        self.s = serde()
        self.commands = make_consumer(settings, settings.group(f"test-{uuid.uuid4().hex[:6]}"))
        self.commands.subscribe([settings.commands_topic, settings.query_results_topic])

    def send(self, kind: str, task: dict[str, Any]) -> None:
        self.producer.produce(
            self.settings.tasks_topic(TL),
            key=task["workflow_id"].encode(),
            value=self.s.encode("Task", {"task": (kind, task)}),
        )
        self.producer.flush(5)

    def receive(self, n: int, timeout: float = 30.0) -> list[tuple[str, dict[str, Any], str]]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            msg = self.commands.poll(0.05)
            if msg is None or msg.error():
                continue
            rtype, rec = self.s.decode(msg.value())
            out.append((rtype, rec, msg.key().decode()))
        assert len(out) == n, f"expected {n} records, got {out}"
        return out

    def close(self) -> None:
        self.commands.close()


def decision_task(b: HistoryBuilder, previous_started: int = 0, attempt: int = 1) -> dict[str, Any]:
    started = b.last_id
    events = b.events if previous_started == 0 else b.since(previous_started)
    return {
        "task_token": f"d/{b.domain}/{b.workflow_id}/{b.run_id}/{started - 1}/{attempt}",
        "domain": b.domain,
        "workflow_id": b.workflow_id,
        "run_id": b.run_id,
        "workflow_type": "Greeter",
        "task_list": TL,
        "scheduled_event_id": started - 1,
        "started_event_id": started,
        "attempt": attempt,
        "previous_started_event_id": previous_started,
        "full_history": previous_started == 0,
        "events": events,
    }


def activity_task(activity_type: str, arg: str, wf: str = "wf-a", attempt: int = 1) -> dict[str, Any]:
    return {
        "task_token": f"a/default/{wf}/run-1/5/{attempt}",
        "domain": "default",
        "workflow_id": wf,
        "run_id": "run-1",
        "workflow_type": "Greeter",
        "activity_id": "1",
        "activity_type": activity_type,
        "task_list": TL,
        "input": {"encoding": "json/plain", "data": json.dumps([arg]).encode()},
        "scheduled_event_id": 5,
        "attempt": attempt,
        "start_to_close_timeout_ms": 5000,
        "heartbeat_timeout_ms": 1000,
    }


def test_decision_tasks_cached_path_cache_miss_and_query(settings: Settings) -> None:
    ensure_core_topics(settings, [TL])
    h = Harness(settings)
    with Worker(settings, TL, workflows=[Greeter], activities=[greet], eager_activities=False) as worker:
        b = HistoryBuilder("Greeter", "bob", workflow_id="wf-1", run_id="run-1", task_list=TL)
        first = decision_task(b)
        h.send("DecisionTask", first)
        ((rtype, cmd, key),) = h.receive(1)
        assert (rtype, key, cmd["command_id"]) == ("Command", "wf-1", f"{first['task_token']}/completed")
        ptype, resp = cmd["payload"]
        assert ptype == "RespondDecisionTaskCompleted" and resp["task_token"] == first["task_token"]
        (decision,) = resp["decisions"]
        assert decision["attributes"][0] == "ScheduleActivityTaskDecision"
        assert decision["attributes"][1]["activity_type"] == "greet"

        # the next task carries only the new events: the cached instance takes them
        b.complete_decision_task(resp["decisions"])
        b.activity_completed("1", "Hello, bob")
        b.decision_task()
        second = decision_task(b, previous_started=3)
        assert second["events"][0]["event_id"] == 4
        h.send("DecisionTask", second)
        ((_, cmd, _),) = h.receive(1)
        ptype, resp = cmd["payload"]
        assert ptype == "RespondDecisionTaskCompleted"
        (close,) = resp["decisions"]
        assert close["attributes"][0] == "CompleteWorkflowExecutionDecision"
        assert json.loads(close["attributes"][1]["result"]["data"]) == "Hello, bob"

        # a run this worker never saw, sent without full history: CACHE_MISS
        other = HistoryBuilder("Greeter", "eve", workflow_id="wf-2", run_id="run-2", task_list=TL)
        other.complete_decision_task([])
        other.signal("nothing")
        other.decision_task()
        miss = decision_task(other, previous_started=3)
        h.send("DecisionTask", miss)
        ((_, cmd, key),) = h.receive(1)
        ptype, resp = cmd["payload"]
        assert (ptype, resp["cause"], key) == ("RespondDecisionTaskFailed", "CACHE_MISS", "wf-2")
        assert cmd["command_id"] == f"{miss['task_token']}/failed"

        # a query on a run that is not cached replays the task's history
        h.send(
            "QueryTask",
            {
                "query_id": "q-1",
                "domain": "default",
                "workflow_id": "wf-3",
                "run_id": "run-3",
                "workflow_type": "Greeter",
                "query_type": "current",
                "args": None,
                "reply_topic": settings.query_results_topic,
                "events": HistoryBuilder("Greeter", "x", workflow_id="wf-3", run_id="run-3").events,
            },
        )
        h.send(
            "QueryTask",
            {
                "query_id": "q-2",
                "domain": "default",
                "workflow_id": "wf-3",
                "run_id": "run-3",
                "workflow_type": "Greeter",
                "query_type": "nope",
                "args": None,
                "reply_topic": settings.query_results_topic,
                "events": b.events,
            },
        )
        results = {rec["query_id"]: (rec, key) for rtype, rec, key in h.receive(2) if rtype == "QueryResult"}
        assert json.loads(results["q-1"][0]["result"]["data"]) == "nothing yet" and results["q-1"][1] == "q-1"
        assert "no query 'nope'" in results["q-2"][0]["error"]["message"]

        # an unknown workflow type fails the decision task with UNKNOWN_TYPE
        unknown = decision_task(HistoryBuilder("Nobody", workflow_id="wf-4", run_id="run-4"))
        unknown["workflow_type"] = "Nobody"
        h.send("DecisionTask", unknown)
        ((_, cmd, _),) = h.receive(1)
        assert cmd["payload"][1]["cause"] == "UNKNOWN_TYPE"
        assert worker._error is None
    h.close()


def test_eager_activity_runs_on_the_deciding_worker_with_the_predicted_token(settings: Settings) -> None:
    """The decision names the event id ActivityTaskScheduled will get; the answer follows it, with
    that id's token, its own command id and the activity id (the server's guard on a wrong guess)."""
    ensure_core_topics(settings, [TL])
    h = Harness(settings)
    with Worker(settings, TL, workflows=[Greeter], activities=[greet]) as worker:
        b = HistoryBuilder("Greeter", "ann", workflow_id="wf-e", run_id="run-e", task_list=TL)
        first = decision_task(b)  # events 1-3: started, decision scheduled + started
        h.send("DecisionTask", first)
        records = [rec for _, rec, _ in h.receive(3)]  # decision, heartbeat (greet heartbeats), completion
        decision_cmd, *rest = records
        ptype, resp = decision_cmd["payload"]
        assert ptype == "RespondDecisionTaskCompleted"
        (decision,) = resp["decisions"]
        assert decision["attributes"][1]["eager_scheduled_event_id"] == 5  # 4 = DecisionTaskCompleted
        (done,) = [r for r in rest if r["payload"][0] == "RespondActivityTaskCompleted"]
        token = "a/default/wf-e/run-e/5/1"
        assert done["command_id"] == f"{token}/eager-completed"
        assert done["payload"][1]["task_token"] == token and done["payload"][1]["activity_id"] == "1"
        assert json.loads(done["payload"][1]["result"]["data"]) == "Hello, ann (attempt 1)"

        # a redelivered decision task gets the runtime's decisions again, without the eager mark
        h.send("DecisionTask", first)
        ((_, again, _),) = h.receive(1)
        assert again["command_id"] == decision_cmd["command_id"]
        assert again["payload"][1]["decisions"][0]["attributes"][1]["eager_scheduled_event_id"] == 0
        assert worker._error is None
    h.close()


def test_a_decision_with_an_eager_activity_is_held_until_the_attempt_answers(settings: Settings) -> None:
    """The decision answer waits for its eager attempt (both then reach the history processor in
    one fetch), but never longer than the hold, and it always goes first."""
    ensure_core_topics(settings, [TL])
    h = Harness(settings)

    def run(key: str, seconds: float, hold_ms: float) -> tuple[dict[str, Any], dict[str, Any]]:
        with Worker(
            settings,
            TL,
            workflows=[Napper],
            activities=[nap],
            eager_activities=True,
            eager_answer_hold_ms=hold_ms,
        ) as worker:
            task = decision_task(
                HistoryBuilder(
                    "Napper", key, seconds, workflow_id=f"wf-{key}", run_id=f"run-{key}", task_list=TL
                )
            )
            task["workflow_type"] = "Napper"
            h.send("DecisionTask", task)
            decision, done = (rec for _, rec, _ in h.receive(2))  # in this order on the topic
            assert worker._error is None
        assert decision["payload"][0] == "RespondDecisionTaskCompleted"
        assert decision["payload"][1]["decisions"][0]["attributes"][1]["eager_scheduled_event_id"] == 5
        assert done["payload"][0] == "RespondActivityTaskCompleted" and done["command_id"].endswith(
            "/eager-completed"
        )
        return decision, done

    # a 50 ms attempt inside a 2 s hold: the decision leaves only once the attempt has finished
    decision, done = run("short", 0.05, 2000)
    assert decision["timestamp"] >= int(NAPS_DONE["short"] * 1000)
    # a 3 s attempt past a 100 ms hold: the decision leaves when the hold ends, the answer later
    decision, done = run("long", 3.0, 100)
    assert decision["timestamp"] <= int(NAPS_DONE["long"] * 1000) - 500
    assert done["timestamp"] >= int(NAPS_DONE["long"] * 1000)
    h.close()


def test_activity_tasks_sync_async_failure_and_heartbeat(settings: Settings) -> None:
    ensure_core_topics(settings, [TL])
    h = Harness(settings)
    with Worker(settings, TL, activities=[greet, async_greet, explode], max_concurrent_activities=4):
        h.send("ActivityTask", activity_task("greet", "ann", "wf-a", attempt=2))
        h.send("ActivityTask", activity_task("agreet", "ben", "wf-b"))
        h.send("ActivityTask", activity_task("explode", "final", "wf-c"))
        h.send("ActivityTask", activity_task("missing", "x", "wf-d"))
        got = {(rec["workflow_id"], rec["payload"][0]): rec for _, rec, _ in h.receive(5)}
    h.close()
    heartbeat = got[("wf-a", "RecordActivityTaskHeartbeat")]
    assert json.loads(heartbeat["payload"][1]["details"]["data"]) == ["working", 2]
    done = got[("wf-a", "RespondActivityTaskCompleted")]
    assert json.loads(done["payload"][1]["result"]["data"]) == "Hello, ann (attempt 2)"
    assert done["command_id"] == "a/default/wf-a/run-1/5/2/completed"
    assert (
        json.loads(got[("wf-b", "RespondActivityTaskCompleted")]["payload"][1]["result"]["data"]) == "Hi, ben"
    )
    failure = got[("wf-c", "RespondActivityTaskFailed")]["payload"][1]["failure"]
    assert (failure["type"], failure["message"], failure["non_retryable"]) == (
        "CardDeclined",
        "bad card",
        True,
    )
    assert (
        got[("wf-d", "RespondActivityTaskFailed")]["payload"][1]["failure"]["type"] == "ActivityNotRegistered"
    )


def test_stop_commits_handled_tasks_only_once(settings: Settings) -> None:
    """After a graceful stop, a new worker in the group does not see the handled tasks again."""
    ensure_core_topics(settings, [TL])
    h = Harness(settings)
    with Worker(settings, TL, activities=[greet]):
        h.send("ActivityTask", activity_task("greet", "one", "wf-x"))
        h.receive(2)  # heartbeat + completion
    with Worker(settings, TL, activities=[greet]) as second:
        h.send("ActivityTask", activity_task("greet", "two", "wf-y"))
        records = h.receive(2)
        assert {rec["workflow_id"] for _, rec, _ in records} == {"wf-y"}
        assert second.assigned.is_set()
    h.close()
