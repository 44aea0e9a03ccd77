"""Broker failures only a real Kafka can have: a broker restart with data on disk, and the loss of
a partition leader in a three-broker cluster (the embedded Tansu keeps everything in memory and
runs one node, brokers.md §2.11).

These tests start their own Apache Kafka 4.4.0 JVMs (`kadence.streams.apache_kafka`) whatever
`--kafka` says, so they run in the default suite; they skip only when Java (or the jars and Maven
to fetch them) is missing. The engine runs as `kadence server` does (`ServerProcesses`: one OS
process per processor, restarted when it exits), the workers and the client in the test process;
nothing is restarted or reconnected by the test: they must find the broker again themselves.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from kadence.client import Client
from kadence.failures import KadenceError
from kadence.processors.server import ServerProcesses, _module_and_env
from kadence.samples.order_processing import TASK_LISTS, Order, OrderProcessingWorkflow
from kadence.streams.apache_kafka import ApacheKafkaBroker, ApacheKafkaCluster
from kadence.streams.launch import spawn
from kadence.streams.settings import Settings
from kadence.streams.topics import core_topics, ensure_core_topics
from kadence.worker import Worker
from tests.support.crash import closes, tail
from tests.support.kafka_only import OutcomeClock, audit_topics, child_start_counts, java_missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHILDREN = ("payment", "inventory", "shipping")


@pytest.fixture(autouse=True)
def _needs_java() -> None:
    why = java_missing()
    if why is not None:
        pytest.skip(why)


@dataclass
class LoggedServer(ServerProcesses):
    """`kadence server`'s supervisor (restarts a processor process that exits), each process
    logging to its own file."""

    log_dir: Path = Path(".")
    spawned: Counter = field(default_factory=Counter)

    def _spawn(self, component: str) -> None:
        module, env = _module_and_env(component)
        with open(self.log_dir / f"{component}.log", "ab") as log:
            self.procs[component] = spawn(
                module,
                self.settings,
                self.slot,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.spawned[component] += 1

    def run_supervisor(self) -> threading.Thread:
        thread = threading.Thread(target=self.supervise, kwargs={"poll_s": 0.2}, daemon=True)
        thread.start()
        return thread

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"----- {c} -----\n{tail(self.log_dir / f'{c}.log', chars)}" for c in self.components
        )


def _settings(bootstrap: str, tmp_path: Path, **overrides: object) -> Settings:
    base: dict = dict(
        bootstrap=bootstrap,
        prefix=f"t{uuid.uuid4().hex[:10]}.",
        state_dir=str(tmp_path / "state"),
        partitions=4,
        task_partitions=2,
        fetch_wait_max_ms=100,
    )
    base.update(overrides)
    return Settings(**base)


def _order(i: int) -> Order:
    # Every seventh card is declined: the parent compensates (a failed child, a fourth activity).
    return Order(f"o{i:03d}", "book", 1 + i % 3, 10.0 + i, card="0000" if i % 7 == 3 else "4242")


def _expected(order: Order) -> dict:
    if order.card == "0000":
        return {
            "order": order.id,
            "status": "COMPENSATED",
            "failed": {"payment": f"CardDeclined: card 0000 declined for order {order.id}"},
            "compensations": [f"released reservation-{order.id}-{order.item}x{order.quantity}"],
        }
    return {
        "order": order.id,
        "status": "COMPLETED",
        "payment": f"payment-{order.id}",
        "reservation": f"reservation-{order.id}-{order.item}x{order.quantity}",
        "label": f"label-shipment-{order.id}",
    }


class Starter(threading.Thread):
    """Starts orders at a steady pace. A start the client could not deliver (the broker is down
    past the client's 30 s flush) is retried with the same request id, which the engine treats as
    the same start; each such failure is counted."""

    def __init__(self, client: Client, orders: list[Order], pause: float) -> None:
        super().__init__(daemon=True)
        self.client, self.orders, self.pause = client, orders, pause
        self.handles: dict = {}
        self.started_at: dict[str, float] = {}
        self.failures: list[str] = []

    def run(self) -> None:
        for order in self.orders:
            deadline = time.monotonic() + 180
            while True:
                try:
                    self.handles[order.id] = self.client.start_workflow(
                        OrderProcessingWorkflow.run,
                        order,
                        id=order.id,
                        task_list="orders",
                        request_id=f"start-{order.id}",
                    )
                    self.started_at[order.id] = time.monotonic()
                    break
                except KadenceError as exc:
                    self.failures.append(f"{order.id} at {time.monotonic():.1f}: {exc}")
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1.0)
            time.sleep(self.pause)


def _stop_all(workers: list[Worker], timeout: float = 30.0) -> None:
    """Stop the workers, each within `timeout` (a stop that hangs must not hang the test)."""
    for w in workers:
        t = threading.Thread(target=w.stop, args=(5,), daemon=True)
        t.start()
        t.join(timeout)


def _workers(client: Client) -> list[Worker]:
    return [
        Worker(client, task_list, workflows=wfs, activities=acts).start()
        for task_list, (wfs, acts) in TASK_LISTS.items()
    ]


def _results(starter: Starter, server: LoggedServer, timeout: float) -> dict:
    results: dict = {}
    deadline = time.monotonic() + timeout
    for oid, handle in list(starter.handles.items()):
        try:
            results[oid] = handle.result(timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - reported with the processors' logs
            raise AssertionError(
                f"{oid}: no result ({exc!r}); {len(results)} done; "
                f"processes spawned {dict(server.spawned)}\n{server.logs()}"
            ) from exc
    return results


def _assert_each_workflow_once(settings: Settings, orders: list[Order]) -> str:
    """Every order and each of its 3 children: exactly one run, closed once; each child started
    once (one StartChildWorkflowExecutionInitiated and one ChildWorkflowExecutionStarted naming its
    id); one outcome per run. Returns the audit's summary (duplicates by identity, read_committed)."""
    audit = audit_topics(settings, list(TASK_LISTS))
    view = audit.history
    ids = {o.id for o in orders} | {f"{o.id}-{c}" for o in orders for c in CHILDREN}
    assert set(view.runs_of_workflow) == ids
    assert {w: len(r) for w, r in view.runs_of_workflow.items() if len(r) != 1} == {}, "a workflow ran twice"
    per_run = Counter(len(closes(view, run)) for run in view.events)
    assert per_run == Counter({1: len(ids)}), per_run
    assert audit.outcomes.distinct == len(ids)
    starts = child_start_counts(view)
    once = Counter({"StartChildWorkflowExecutionInitiated": 1, "ChildWorkflowExecutionStarted": 1, "runs": 1})
    bad = {w: dict(c) for w, c in starts.items() if c != once}
    assert bad == {} and len(starts) == 3 * len(orders), f"children not started exactly once: {bad}"
    assert view.gaps() == {} and view.mismatches == []
    audit.assert_transactional_outputs_exactly_once()
    return audit.summary()


# -- 1. a single broker restarted under load ------------------------------------------------------
@pytest.fixture
def broker() -> Iterator[ApacheKafkaBroker]:
    with ApacheKafkaBroker() as b:
        yield b


RESTART_ORDERS = 60


def test_engine_workers_and_client_survive_a_broker_restart(
    broker: ApacheKafkaBroker, tmp_path: Path
) -> None:
    """One Apache Kafka node (data on disk) is stopped with SIGTERM while orders run and started
    again on the same data and port (`ApacheKafkaBroker.restart()`: a controlled shutdown, then
    KRaft start-up, ~10-20 s without a broker). The engine processes (supervised as by
    `kadence server`), the two workers and the client are left alone: they must reconnect by
    themselves. Starts continue before, during and after the outage (a start the client could not
    deliver within its 30 s flush is retried with the same request id: a no-op for the engine).

    Proves: every order (60, with 3 child workflows each) completes with the right result; each
    workflow ran and closed exactly once, each child was started once, and the transactional
    outputs hold no duplicate (read_committed); the client delivers starts again after the
    restart (orders started after it complete)."""
    settings = _settings(broker.bootstrap, tmp_path, session_timeout_ms=2000, heartbeat_interval_ms=500)
    ensure_core_topics(settings)
    server = LoggedServer(settings, log_dir=tmp_path)
    client = Client(settings)
    workers: list[Worker] = []
    clock = OutcomeClock(settings)
    orders = [_order(i) for i in range(RESTART_ORDERS)]
    starter = Starter(client, orders, pause=0.3)
    began = time.monotonic()
    try:
        server.start()
        server.run_supervisor()
        workers = _workers(client)
        starter.start()
        time.sleep(6.0)
        down_at = time.monotonic()
        broker.terminate()
        stopped = time.monotonic() - down_at
        broker.start()
        up_at = time.monotonic()
        starter.join(300)
        assert not starter.is_alive() and len(starter.handles) == RESTART_ORDERS, starter.failures
        results = _results(starter, server, 300)
        ran = time.monotonic() - began
    finally:
        _stop_all(workers)
        client.close()
        server.stop()
        clock.close()
    after = [oid for oid, t in starter.started_at.items() if t > up_at]
    first_after = min((t for t in clock.seen.values() if t > up_at), default=None)
    gap, gap_at = clock.longest_gap(down_at - 1.0, max(clock.seen.values()))
    print(
        f"\nbroker down {up_at - down_at:.1f}s (controlled shutdown {stopped:.1f}s, start-up "
        f"{broker.startup_seconds:.1f}s); first outcome {(first_after or float('nan')) - up_at:.1f}s "
        f"after it was back; longest gap between outcomes {gap:.1f}s (from +{gap_at - began:.1f}s)"
    )
    print(
        f"{len(results)} orders done in {ran:.1f}s; {len(after)} started after the restart; client start "
        f"failures: {len(starter.failures)} {starter.failures[:3]}; processes spawned: {dict(server.spawned)}"
    )
    assert results == {o.id: _expected(o) for o in orders}
    assert after, "no order was started after the broker came back: cannot tell whether the client reconnects"
    print(_assert_each_workflow_once(settings, orders))


# -- 2. a three-broker cluster loses the leader of commands[0] and history[0] -----------------------
@pytest.fixture
def cluster() -> Iterator[ApacheKafkaCluster]:
    with ApacheKafkaCluster() as c:
        print(f"\nthree-node cluster started in {c.startup_seconds:.1f}s")
        yield c


CLUSTER_ORDERS = 60
VICTIM = 2  # the node made preferred leader of commands[0] and history[0]


def _create_led_by(cluster: ApacheKafkaCluster, settings: Settings, leader: int) -> None:
    """Create `commands` and `history` (the engine's own specs) with `leader` first in partition 0's
    replica list, so one node leads both partitions 0: killing it moves both at once."""
    nodes = sorted(n.node_id for n in cluster)
    specs = {s.name: s for s in core_topics(settings)}
    topics = []
    for name in (settings.commands_topic, settings.history_topic):
        spec = specs[name]
        assignment = []
        for p in range(spec.partitions):
            first = nodes[(nodes.index(leader) + p) % len(nodes)]
            assignment.append([first] + [n for n in nodes if n != first])
        topics.append(NewTopic(name, spec.partitions, replica_assignment=assignment, config=spec.configs))
    admin = cluster.admin()
    for fut in admin.create_topics(topics, operation_timeout=30).values():
        fut.result(60)
    deadline = time.monotonic() + 60
    for name in (settings.commands_topic, settings.history_topic):
        while True:
            with contextlib.suppress(LookupError):  # not in this node's metadata yet
                if cluster.leader(name, 0, admin) == leader:
                    break
            assert time.monotonic() < deadline, f"{name}[0] is not led by node {leader}"
            time.sleep(0.1)


def test_cluster_leader_sigkill_loses_and_doubles_nothing(
    cluster: ApacheKafkaCluster, tmp_path: Path
) -> None:
    """Three Apache Kafka nodes; every topic has replication factor 3 and min.insync.replicas=2
    (`Settings.replication_factor`, `Settings.topic_configs`), so acks=all writes survive one node.
    OrderProcessing orders (parent + Payment, Inventory, Shipping children on two task lists; every
    seventh card declined, which fails a child and compensates) are started at a steady pace; the
    node leading partition 0 of `commands` and of `history` is SIGKILLed mid-run and started again
    ~15 s later.

    Proves: 0 orders lost (every one completes with the right result), 0 duplicated (one run and
    one close per parent and child, one outcome per run), 0 duplicate child starts (per child id:
    one StartChildWorkflowExecutionInitiated, one ChildWorkflowExecutionStarted, one run), no
    duplicate in the transactional outputs (read_committed). Prints the pause the failover caused:
    the longest gap between two outcomes after the kill (with the longest between the first outcome
    and the kill, for scale)."""
    settings = _settings(
        cluster.bootstrap, tmp_path, replication_factor=3, topic_configs={"min.insync.replicas": "2"}
    )
    _create_led_by(cluster, settings, VICTIM)
    ensure_core_topics(settings)  # the other topics; commands and history exist already
    server = LoggedServer(settings, log_dir=tmp_path)
    client = Client(settings)
    workers: list[Worker] = []
    clock = OutcomeClock(settings)
    orders = [_order(i) for i in range(CLUSTER_ORDERS)]
    starter = Starter(client, orders, pause=0.4)
    began = time.monotonic()
    try:
        server.start()
        server.run_supervisor()
        workers = _workers(client)
        starter.start()
        time.sleep(8.0)
        led = {t: cluster.leader(t, 0) for t in (settings.commands_topic, settings.history_topic)}
        assert set(led.values()) == {VICTIM}, led
        killed_at = time.monotonic()
        cluster.kill(VICTIM)
        moved = {t: cluster.wait_for_leader(t, 0, not_in=[VICTIM]) for t in led}
        moved_after = time.monotonic() - killed_at
        time.sleep(max(0.0, 15.0 - (time.monotonic() - killed_at)))
        back_at = time.monotonic()
        restarted = cluster.start_node(VICTIM)
        starter.join(300)
        assert not starter.is_alive() and len(starter.handles) == CLUSTER_ORDERS, starter.failures
        results = _results(starter, server, 300)
        ran = time.monotonic() - began
    finally:
        _stop_all(workers)
        client.close()
        server.stop()
        clock.close()
    last = max(clock.seen.values())
    first = min(clock.seen.values())
    before = clock.longest_gap(first, killed_at)[0] if first < killed_at else float("nan")
    pause, pause_at = clock.longest_gap(killed_at, last)
    print(
        f"node {VICTIM} (leader of {list(led)} partition 0) SIGKILLed at +{killed_at - began:.1f}s: "
        f"new leaders {moved} after {moved_after:.1f}s; node restarted at +{back_at - began:.1f}s "
        f"(ready in {restarted:.1f}s)"
    )
    print(
        f"pause: longest gap between outcomes after the kill {pause:.1f}s (from +{pause_at - began:.1f}s, "
        f"{pause_at - killed_at:+.1f}s from the kill); before the kill at most {before:.1f}s"
    )
    print(
        f"{len(results)} orders done in {ran:.1f}s; client start failures {len(starter.failures)}; "
        f"processes spawned {dict(server.spawned)}"
    )
    assert results == {o.id: _expected(o) for o in orders}
    print(_assert_each_workflow_once(settings, orders))
