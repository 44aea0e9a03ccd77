"""Engine-only commands must carry the engine's signature (issue 12, item 5), through the broker.

Any producer that may write `commands` (every client and worker) once could send what only the
engine sends: a forged `FireTimer(workflow_timeout)` timed a running workflow out. The engine now
signs every command it writes (HMAC-SHA256 with the deployment's engine secret, `kadence-sig`
header) and the history processor dead-letters an engine-only command without a valid signature,
with the reason, while the workflow and the rest of the engine go on. The engine's own signed
commands (timer fires, child results) still work: tests/test_children.py, test_timers_timeouts.py
and test_crash_timers.py run that path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from kadence import workflow
from kadence.failures import WorkflowFailureError
from kadence.streams.clients import make_consumer
from kadence.streams.engine_secret import load_engine_secret
from kadence.streams.settings import Settings
from kadence.streams.signing import SIGNATURE_HEADER, RecordSigner
from kadence.streams.topics import ensure_core_topics
from tests.support.probe import assert_engine_alive
from tests.support.raw import SERDE, Raw, payload

pytestmark = pytest.mark.timeout(240)

TASK_LIST = "signed"


@workflow.defn
class Gate:
    """Runs until signalled."""

    def __init__(self) -> None:
        self.opened = False

    @workflow.signal
    def open(self) -> None:
        self.opened = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.opened)
        return "opened"


@workflow.defn
class GateParent:
    """Waits for its child Gate's result."""

    @workflow.run
    async def run(self) -> str:
        result = await workflow.execute_child_workflow(Gate.run, id=f"{workflow.info().workflow_id}-child")
        return f"child {result}"


@pytest.fixture
def raw(settings: Settings, engine: Any):
    r = Raw(settings)
    yield r
    r.close()


def _forge(
    raw: Raw,
    workflow_id: str,
    run_id: str,
    payload_type: str,
    attrs: dict[str, Any],
    secret: str | None = None,
) -> str:
    """Write one command to `commands` as any producer could; signed with `secret` if given."""
    command_id = f"forged-{uuid.uuid4().hex}"
    record = {
        "command_id": command_id,
        "domain": "default",
        "workflow_id": workflow_id,
        "run_id": run_id,
        "timestamp": int(time.time() * 1000),
        "payload": (payload_type, attrs),
    }
    key, value = workflow_id.encode(), SERDE.encode("Command", record)
    headers = list(SERDE.headers("Command"))
    if secret is not None:
        headers.append((SIGNATURE_HEADER, RecordSigner(secret.encode()).signature(key, value)))
    raw.producer.produce(raw.settings.commands_topic, key=key, value=value, headers=headers)
    raw.producer.flush(10)
    return command_id


def _dead_letter_of(raw: Raw, command_id: str) -> dict[str, Any]:
    return raw.wait_for(
        raw.settings.dead_letters_topic,
        lambda d: command_id.encode() in (d["value"] or b""),
        60,
        partitions=1,
    )


def _started_run(raw: Raw, workflow_id: str, event_type: str) -> tuple[str, dict[str, Any]]:
    """The run id of `workflow_id` and its first `event_type` event, once it is in history."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for event in raw.events(workflow_id):
            if event["attributes"][0] == event_type:
                return event["run_id"], event
        time.sleep(0.1)
    raise TimeoutError(f"{workflow_id} has no {event_type} event")


def _fire_workflow_timeout() -> dict[str, Any]:
    """The FireTimer of a run's execution timeout (what the timers processor sends when it is due)."""
    return {"kind": "workflow_timeout", "event_id": 1, "attempt": 0, "timer_id": ""}


def test_forged_engine_commands_are_dead_lettered_and_the_workflows_go_on(
    settings: Settings, engine: Any, client: Any, worker: Any, raw: Raw
) -> None:
    worker(TASK_LIST, workflows=[Gate, GateParent])
    gate = client.start_workflow(Gate.run, id="gate", task_list=TASK_LIST, execution_timeout=600)
    parent = client.start_workflow(GateParent.run, id="parent", task_list=TASK_LIST)
    gate_run, _ = _started_run(raw, "gate", "DecisionTaskCompleted")
    parent_run, _ = _started_run(raw, "parent", "ChildWorkflowExecutionStarted")
    _, child_started = _started_run(raw, "parent", "ChildWorkflowExecutionStarted")
    started = child_started["attributes"][1]

    # 1. A forged timeout fire: unsigned, and signed with another secret.
    fire = _fire_workflow_timeout()
    unsigned = _forge(raw, "gate", gate_run, "FireTimer", fire)
    wrong_key = _forge(raw, "gate", gate_run, "FireTimer", fire, secret="not-this-engine-" + "x" * 16)
    # 2. A forged child result for the parent (it would complete the child call with "forged").
    child_done = {
        "domain": started["domain"],
        "workflow_id": started["workflow_id"],
        "run_id": started["run_id"],
        "workflow_type": started["workflow_type"],
        "initiated_event_id": started["initiated_event_id"],
        "started_event_id": child_started["event_id"],
        "result": payload(b'"forged"'),
    }
    forged_child = _forge(raw, "parent", parent_run, "ChildWorkflowExecutionCompleted", child_done)

    for command_id, payload_type in (
        (unsigned, "FireTimer"),
        (wrong_key, "FireTimer"),
        (forged_child, "ChildWorkflowExecutionCompleted"),
    ):
        dead = _dead_letter_of(raw, command_id)
        assert dead["processor"] == "history", dead
        assert f"{payload_type} is an engine-internal command" in dead["reason"], dead["reason"]
        assert f"no valid engine signature ({SIGNATURE_HEADER} header)" in dead["reason"], dead["reason"]

    # The workflows are untouched and complete normally.
    client.get_handle("gate").signal(Gate.open)
    client.get_handle("parent-child").signal(Gate.open)
    assert gate.result(timeout=60) == "opened"
    assert parent.result(timeout=60) == "child opened"
    gate_types = raw.event_types("gate")
    assert "WorkflowExecutionTimedOut" not in gate_types
    assert gate_types[0] == "WorkflowExecutionStarted" and gate_types[-1] == "WorkflowExecutionCompleted"
    assert "WorkflowExecutionSignaled" in gate_types
    parent_types = raw.event_types("parent")
    assert parent_types.count("ChildWorkflowExecutionCompleted") == 1
    assert parent_types[-1] == "WorkflowExecutionCompleted"
    closed = next(e for e in raw.events("parent") if e["attributes"][0] == "ChildWorkflowExecutionCompleted")
    assert b"forged" not in closed["attributes"][1]["result"]["data"]
    assert_engine_alive(engine)


def test_the_same_fire_signed_with_the_engine_secret_is_accepted(
    settings: Settings, engine: Any, client: Any, worker: Any, raw: Raw
) -> None:
    """The check is the signature and nothing else: the engine's own key makes the same bytes count
    (what the timers processor sends when the deadline is due)."""
    worker(TASK_LIST, workflows=[Gate])
    gate = client.start_workflow(Gate.run, id="gate-timed", task_list=TASK_LIST, execution_timeout=600)
    run_id, _ = _started_run(raw, "gate-timed", "DecisionTaskCompleted")
    _forge(raw, "gate-timed", run_id, "FireTimer", _fire_workflow_timeout(), engine.settings.engine_secret)
    outcome = raw.outcome("gate-timed", timeout=60)
    assert outcome["status"] == "TIMED_OUT", outcome
    assert raw.event_types("gate-timed")[-1] == "WorkflowExecutionTimedOut"
    with pytest.raises(WorkflowFailureError) as failed:
        gate.result(timeout=30)
    assert failed.value.status == "TIMED_OUT"


def test_two_engine_processes_started_at_once_share_one_secret(settings: Settings) -> None:
    """Each process provisions if it finds the topic empty; all of them take its first record."""
    ensure_core_topics(settings)
    at = time.time() + 3.0  # both processes call load_engine_secret at this instant
    probe = (
        "import sys, time, hashlib\n"
        "from kadence.streams.settings import Settings\n"
        "from kadence.streams.engine_secret import load_engine_secret\n"
        "s = Settings.from_env()\n"
        f"time.sleep(max(0.0, {at} - time.time()))\n"
        "print(hashlib.sha256(load_engine_secret(s).encode()).hexdigest())\n"
    )
    env = {**os.environ, **settings.to_env()}
    procs = [
        subprocess.Popen([sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    digests = {p.communicate(timeout=90)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(digests) == 1 and len(next(iter(digests))) == 64, digests

    # ...which is the topic's first record, and what a later process loads too.
    consumer = make_consumer(settings, settings.group("secret-check"))
    consumer.assign([TopicPartition(settings.engine_secret_topic, 0, 0)])
    first = None
    deadline = time.monotonic() + 30
    while first is None and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            first = m.value()
    consumer.close()
    assert first is not None
    assert {hashlib.sha256(first).hexdigest()} == digests
    assert load_engine_secret(settings) == first.decode()
    # A secret the operator gives wins, and is used as it is.
    given = "operator-managed-secret-0123456789"
    assert load_engine_secret(settings.with_(engine_secret=given)) == given
