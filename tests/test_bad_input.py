"""Issue 12: no single record can stop a processor. Each bad input that once put a processor into a
crash loop is written to `commands` by an ordinary producer (no client-side checks) on a running
engine; the test asserts what the engine did with it (rejected with a reason, dead-lettered with a
reason, or the workflow terminated with a reason naming the limit), that no processor stopped, and
that a probe workflow on every partition completes afterwards. Each test prints one row of the
table in the issue's closing note: input, what happened, seconds until every partition served a
probe again (from the moment the bad input was sent)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any

import pytest

from kadence import workflow
from kadence.failures import WorkflowFailureError, WorkflowNotFoundError
from kadence.history.validation import InvalidField
from kadence.processors.history.config import HistoryConfig
from kadence.processors.store import state_key
from kadence.streams.settings import DEAD_LETTER_COPY_BYTES, MAX_MESSAGE_BYTES, Settings
from tests.support.probe import (
    PROBE_TASK_LIST,
    ProbeWorkflow,
    assert_engine_alive,
    probe_every_partition,
    produce_raw,
)
from tests.support.raw import Raw, payload

pytestmark = pytest.mark.timeout(240)

LONG_MAX = 2**63 - 1


@workflow.defn
class CollectSignalsWorkflow:
    """Waits for signals; keeps only their sizes (the payloads stay in history)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    @workflow.signal
    def blob(self, data: str) -> None:
        self.sizes.append(len(data))

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: len(self.sizes) >= 100)
        return self.sizes


def _row(case: str, happened: str, since: float, broker_kind: str) -> None:
    print(f"\nTABLE | {broker_kind} | {case} | {happened} | {time.monotonic() - since:.2f} s")


def _dead_letter(raw: Raw, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
    return raw.wait_for(raw.settings.dead_letters_topic, predicate, timeout, partitions=1)


def _served_again(client: Any, settings: Settings, engine: Any) -> None:
    probe_every_partition(client, settings)
    assert_engine_alive(engine)


@pytest.fixture
def raw(settings: Settings, engine: Any):
    r = Raw(settings)
    yield r
    r.close()


@pytest.fixture
def probe_worker(worker: Any) -> Any:
    return worker(PROBE_TASK_LIST, [ProbeWorkflow])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("execution_timeout_ms", LONG_MAX),
        ("run_timeout_ms", LONG_MAX),
        ("task_timeout_ms", LONG_MAX),
        ("task_timeout_ms", -1),
    ],
)
def test_a_start_with_an_out_of_range_timeout_is_rejected(
    field: str,
    value: int,
    settings: Settings,
    engine: Any,
    client: Any,
    probe_worker: Any,
    raw: Raw,
    broker_kind: str,
) -> None:
    wid = f"bad-timeout-{uuid.uuid4().hex[:6]}"
    since = time.monotonic()
    raw.start(wid, **{field: value})
    outcome = raw.outcome(wid, timeout=60)
    assert outcome["status"] == "START_REJECTED"
    assert field in outcome["reason"] and "between 0 and" in outcome["reason"], outcome["reason"]
    _served_again(client, settings, engine)
    _row(f"start, {field} = {value}", "START_REJECTED: " + outcome["reason"][:60], since, broker_kind)
    assert raw.events(wid) == []  # nothing entered history (no overflow, no hot loop)


def test_ten_mib_of_random_bytes_are_dead_lettered_with_a_bounded_copy(
    settings: Settings, engine: Any, client: Any, probe_worker: Any, raw: Raw, broker_kind: str
) -> None:
    junk = os.urandom(10 * 1024 * 1024)
    since = time.monotonic()
    try:
        produce_raw(settings, b"junk", junk)
    except RuntimeError:  # a broker that enforces the topic's max.message.bytes (Apache Kafka)
        junk = os.urandom(MAX_MESSAGE_BYTES - 4096)
        produce_raw(settings, b"junk", junk)
    digest = hashlib.sha256(junk).hexdigest()
    dead = _dead_letter(raw, lambda d: d["value_sha256"] == digest)
    assert dead["processor"] == "history" and dead["topic"] == settings.commands_topic
    assert dead["reason"].startswith("undecodable command"), dead["reason"]
    assert f"the first {DEAD_LETTER_COPY_BYTES} of {len(junk)} bytes" in dead["reason"]
    assert dead["value"] == junk[:DEAD_LETTER_COPY_BYTES] and dead["value_size"] == len(junk)
    assert dead["key"] == b"junk" and dead["key_size"] == 4
    _served_again(client, settings, engine)
    _row(
        f"{len(junk) / 2**20:.1f} MiB of random bytes",
        "dead letter, 64 KiB copy + SHA-256",
        since,
        broker_kind,
    )


def test_large_signals_end_the_run_with_a_reason_naming_the_limit(
    settings: Settings, engine: Any, client: Any, worker: Any, probe_worker: Any, broker_kind: str
) -> None:
    worker("signals", [CollectSignalsWorkflow])
    handle = client.start_workflow(
        CollectSignalsWorkflow.run, id=f"big-{uuid.uuid4().hex[:6]}", task_list="signals"
    )
    blob = "x" * int(1.9 * 1024 * 1024)
    since = time.monotonic()
    for sent in range(5):
        try:
            handle.signal(CollectSignalsWorkflow.blob, blob)
        except WorkflowNotFoundError:  # the run was terminated at the limit: signals are refused
            assert sent >= 3
            break
    with pytest.raises(WorkflowFailureError) as failed:
        handle.result(timeout=120)
    assert failed.value.status == "TERMINATED"
    _served_again(client, settings, engine)
    limit = HistoryConfig().hard_history_bytes
    assert limit < MAX_MESSAGE_BYTES  # a full history always fits in one decision task
    history = handle.history()
    types = [e["attributes"][0] for e in history]
    assert types[-1] == "WorkflowExecutionTerminated"
    reason = history[-1]["attributes"][1]["reason"]
    assert "history limit exceeded" in reason and f"{limit} bytes" in reason, reason
    signaled = types.count("WorkflowExecutionSignaled")
    assert 3 <= signaled <= 4, types  # the one past the limit is recorded, then the run ends
    _row("five 1.9 MiB signals", f"terminated after {signaled}: {reason[:50]}", since, broker_kind)


@pytest.mark.parametrize("target", ["", "history", "elsewhere"])
def test_a_query_may_only_reply_on_the_client_reply_topic(
    target: str, settings: Settings, engine: Any, client: Any, probe_worker: Any, raw: Raw, broker_kind: str
) -> None:
    reply_topic = settings.history_topic if target == "history" else target and "some.other.topic"
    query_id = uuid.uuid4().hex
    since = time.monotonic()
    raw.send(
        "any-workflow",
        "QueryWorkflow",
        {"query_id": query_id, "query_type": "q", "args": None, "reply_topic": reply_topic},
    )
    dead = _dead_letter(raw, lambda d: query_id.encode() in (d["value"] or b""))
    assert "reply_topic" in dead["reason"] and settings.query_results_topic in dead["reason"], dead["reason"]
    _served_again(client, settings, engine)
    _row(f"query, reply_topic {reply_topic!r}", "dead letter: not a client reply topic", since, broker_kind)
    # nothing but history transitions in history (the transition records decode; a QueryResult would not)
    assert all("events" in t for t in raw.read(settings.history_topic))


def test_ids_with_control_characters_are_refused_and_state_keys_are_unambiguous(
    settings: Settings, engine: Any, client: Any, probe_worker: Any, raw: Raw, broker_kind: str
) -> None:
    assert state_key("t1\x00xc2", "y") != state_key("t1", "xc2\x00y")
    assert state_key("default", "wf") == b"xdefault\x00wf"  # valid ids keep the key they had
    victim = f"xc2-{uuid.uuid4().hex[:6]}"
    raw.start(victim, domain="t1")
    raw.wait_for(settings.history_topic, lambda t: t["workflow_id"] == victim, 60)
    since = time.monotonic()
    terminate = {"reason": "forged", "details": None, "identity": "x", "first_execution_run_id": ""}
    raw.send("y", "TerminateWorkflowExecution", terminate, domain="t1\x00xc2")  # the forged terminate
    raw.start("xc2\x00y", domain="t1")
    deadline = time.monotonic() + 60
    while True:
        dead = [d for d in raw.read(settings.dead_letters_topic, 1) if "control character" in d["reason"]]
        if len(dead) >= 2:
            break
        assert time.monotonic() < deadline, raw.read(settings.dead_letters_topic, 1)
        time.sleep(0.1)
    assert all("U+0000" in d["reason"] for d in dead), dead
    assert {d["reason"].split(" command")[0] for d in dead} == {
        "invalid TerminateWorkflowExecution",
        "invalid StartWorkflowExecution",
    }
    _served_again(client, settings, engine)
    _row("NUL in domain / workflow id", "dead letter: control character", since, broker_kind)
    assert "WorkflowExecutionTerminated" not in raw.event_types(victim)
    # the client refuses them before sending
    for bad in ({"id": "a\x00b"}, {"id": "ok", "task_list": "not a topic!"}):
        with pytest.raises(InvalidField):
            client.start_workflow(ProbeWorkflow.run, 1, **{"id": "ok", "task_list": PROBE_TASK_LIST, **bad})
    with pytest.raises(InvalidField, match="execution_timeout_ms"):
        client.start_workflow(
            ProbeWorkflow.run, 1, id="ok", task_list=PROBE_TASK_LIST, execution_timeout=1e15
        )


def test_a_decision_with_an_out_of_range_timer_fails_its_decision_task(
    settings: Settings, engine: Any, client: Any, probe_worker: Any, raw: Raw, broker_kind: str
) -> None:
    """A worker (here the test) answering with a timer of 2^63-1 ms: the decision task fails with
    the reason; the run goes on (the next decision task is scheduled)."""
    from tests.support.raw import decide

    wid = f"bad-timer-{uuid.uuid4().hex[:6]}"
    raw.start(wid, task_list="raw-tl")
    task = raw.task("raw-tl", "DecisionTask", wid, timeout=60)
    since = time.monotonic()
    decide(raw, task, ("StartTimerDecision", {"timer_id": "t", "start_to_fire_timeout_ms": LONG_MAX}))
    failed = raw.wait_for(
        settings.history_topic,
        lambda t: any(
            e["attributes"][0] == "DecisionTaskFailed" for e in t["events"] if e["workflow_id"] == wid
        ),
        60,
    )
    event = next(e for e in failed["events"] if e["attributes"][0] == "DecisionTaskFailed")
    attrs = event["attributes"][1]
    assert (
        attrs["cause"] == "BAD_DECISION_ATTRIBUTES"
        and "start_to_fire_timeout_ms" in attrs["failure"]["message"]
    )
    _served_again(client, settings, engine)
    _row("decision: timer of 2^63-1 ms", "DecisionTaskFailed BAD_DECISION_ATTRIBUTES", since, broker_kind)
    assert "TimerStarted" not in raw.event_types(wid)
    assert payload(b"[]")  # the raw helpers' payload shape
