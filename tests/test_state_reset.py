"""Restore refuses state of another incarnation of the topics (issue 12, item 4), through the broker.

The case from the issue: processors whose state folders survived while the topics were recreated
resumed `commands` at their old offset and ignored every new start in silence. Now each processor
refuses to start with an error that names `kadence server --reset-state`; after the reset the
engine serves new workflows again (history events asserted)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka.admin import AdminClient

from kadence import activity, workflow
from kadence.client import Client
from kadence.processors.derived import ALL_MODULES, DerivedProcessor
from kadence.processors.history import HistoryProcessor
from kadence.processors.reset_state import reset_state
from kadence.processors.server import InProcessEngine
from kadence.streams.checkpoint import TOPIC_ID_KEY, StateMismatchError
from kadence.streams.clients import admin_config
from kadence.streams.loop import ProcessorRunner
from kadence.streams.store import PartitionStore
from kadence.streams.topics import core_topics, ensure_core_topics
from kadence.worker import Worker


@activity.defn
def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Shout:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(shout, text, start_to_close_timeout=10)


def _run_workflows(settings, ids: list[str]) -> dict[str, list[str]]:
    """Start and finish `ids` on a fresh client and worker; returns each one's event types."""
    with Client(settings) as client:
        worker = Worker(client, "default", workflows=[Shout], activities=[shout]).start()
        try:
            handles = [client.start_workflow(Shout.run, wid, id=wid, task_list="default") for wid in ids]
            for wid, h in zip(ids, handles, strict=True):
                assert h.result(timeout=60) == wid.upper()
            return {h.id: [e["attributes"][0] for e in h.history()] for h in handles}
        finally:
            worker.stop(5)


def _recreate_topics(settings) -> None:
    admin = AdminClient(admin_config(settings))
    names = [spec.name for spec in core_topics(settings)] + [f"{settings.prefix}tasks.default"]
    existing = set(admin.list_topics(timeout=10).topics)
    for future in admin.delete_topics([n for n in names if n in existing], operation_timeout=30).values():
        future.result()
    deadline = time.monotonic() + 30
    while set(names) & set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, "topics were not deleted"
        time.sleep(0.2)
    ensure_core_topics(settings, ["default"])


def _refusal(runner: ProcessorRunner, timeout: float = 60.0) -> BaseException:
    errors: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    stop.set()
    thread.join(15)
    assert errors, f"{runner.processor.name} started on state of the deleted topics"
    return errors[0]


def _forget_topic_ids(settings) -> None:
    """Make every store look like one written before topic ids were recorded (or on a broker that
    gives none): only the offset check can then tell the topics were recreated."""
    for processor in ("history", "derived"):
        for p in range(settings.partitions):
            with PartitionStore(settings.state_dir, processor, settings.prefix, p) as store:
                for role in ("input", "changelog"):
                    store.meta_delete(TOPIC_ID_KEY.format(role=role).encode())


@pytest.mark.parametrize("check", ["topic id", "offsets"])
def test_recreated_topics_refuse_old_state_until_reset(settings, check) -> None:
    with InProcessEngine(settings):
        before = _run_workflows(settings, [f"first-{i}" for i in range(6)])
    assert all(kinds[-1] == "WorkflowExecutionCompleted" for kinds in before.values())

    _recreate_topics(settings)
    if check == "offsets":
        _forget_topic_ids(settings)

    for processor in (HistoryProcessor(settings), DerivedProcessor(settings, ALL_MODULES)):
        error = _refusal(ProcessorRunner(settings, processor))
        chain = [error, *([error.__cause__] if error.__cause__ else [])]
        mismatch = next((e for e in chain if isinstance(e, StateMismatchError)), None)
        assert mismatch is not None, repr(error)
        assert "kadence server --reset-state" in str(mismatch)
        assert ("topic id" in str(mismatch)) == (check == "topic id"), str(mismatch)

    done = reset_state(settings)
    assert any(line.startswith("deleted ") and "history" in line for line in done), done

    with InProcessEngine(settings):
        after = _run_workflows(settings, ["second-1"])
    assert after["second-1"] == [
        "WorkflowExecutionStarted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskCompleted",
        "ActivityTaskScheduled",
        "ActivityTaskStarted",
        "ActivityTaskCompleted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskCompleted",
        "WorkflowExecutionCompleted",
    ]


def test_state_of_the_same_topics_passes_the_check(settings) -> None:
    """A plain restart keeps its state: the check recognises the topics it recorded."""
    with InProcessEngine(settings):
        _run_workflows(settings, ["keep-1"])
    with InProcessEngine(settings):
        kinds = _run_workflows(settings, ["keep-2"])
    assert kinds["keep-2"][-1] == "WorkflowExecutionCompleted"


def test_a_short_end_behind_an_open_transaction_is_read_again_after_fencing(
    settings, broker_kind: str, tmp_path
) -> None:
    """The checkpoint check's end offset, when an open transaction of a dead instance of the slot
    stops read_committed reads short of the store's checkpoint (streams.checkpoint.proven_end):
    it fences the slot (`on_stuck`, as `Transactions.refence` does), reads the end again and so
    accepts the store; the plain end offset would have refused it. Apache Kafka only: its last
    stable offset stops at the first open transaction, while Tansu shows open transactions'
    records to read_committed readers (docs/brokers.md §2.1)."""
    if broker_kind == "tansu":
        pytest.skip("Tansu's read_committed reads do not stop at an open transaction")
    from confluent_kafka import Producer

    from kadence.streams.checkpoint import end_offset, proven_end
    from kadence.streams.clients import make_producer
    from kadence.streams.restore import PartitionReader
    from kadence.streams.topics import TopicSpec, ensure_topics

    topic, slot_id = f"{settings.prefix}short-end", f"{settings.prefix}slot-0"
    ensure_topics(settings, [TopicSpec(topic, 1, {})])

    def transactional(tid: str) -> Producer:
        producer = make_producer(settings, **{"transactional.id": tid, "linger.ms": 0})
        producer.init_transactions(30)
        return producer

    dead = transactional(slot_id)  # the slot's dead instance: a transaction left open at offset 0
    dead.begin_transaction()
    dead.produce(topic, b"open", partition=0)
    dead.flush(10)
    other = transactional(f"{settings.prefix}other")  # committed records after it: offsets 1-3
    other.begin_transaction()
    for value in (b"a", b"b", b"c"):
        other.produce(topic, value, partition=0)
    other.commit_transaction(30)
    checkpoint = 4  # the offset after the last committed record (markers occupy offsets: at least)

    fenced = []
    reader = PartitionReader(
        settings,
        f"{settings.prefix}short-end.restore",
        slot_id,
        on_stuck=lambda: fenced.append(transactional(slot_id)),
    )
    assert end_offset(reader, topic, 0, checkpoint) < checkpoint  # stopped at the open transaction
    assert proven_end(reader, topic, 0, checkpoint) >= checkpoint
    assert len(fenced) == 1  # one fence, by the slot's own transactional id
