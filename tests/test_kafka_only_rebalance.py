"""A consumer-group rebalance with two engine instances on Apache Kafka.

On the session broker; skips unless it is Apache Kafka (`pytest --kafka=apache`): a rebalance on
Tansu waits half the session timeout per join and its read_committed readers show aborted
records, which is covered, as harmless, by tests/test_loop_rebalance.py and the crash suites.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from kadence.client import Client
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from kadence.worker import Worker
from tests.support.crash import Component, Engine, closes
from tests.support.kafka_only import audit_topics, child_start_counts
from tests.support.kafka_only_workflows import CHILDREN, EoChild, EoParent, expected, step

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

TASK_LIST = "kafka-rebalance"
PARTITIONS = 8
PARENTS = 80
DERIVED_MODULES = ["children", "signals", "cancellations", "timers"]


@pytest.fixture(autouse=True)
def _apache_only(broker_kind: str) -> None:
    if broker_kind != "apache":
        pytest.skip(
            "runs on Apache Kafka only (--kafka=apache): its rebalances and read_committed "
            "readers are the ones the engine is held to here"
        )


def _start_all(client: Client, names: list[str], handles: dict, pause: float) -> None:
    for name in names:
        handles[name] = client.start_workflow(EoParent.run, name, id=name, task_list=TASK_LIST)
        time.sleep(pause)


def _wait(cond, what: str, engine: Engine, timeout: float = 120.0) -> float:
    t0 = time.monotonic()
    while not cond():
        engine.check()
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}\n{engine.logs()}"
        time.sleep(0.05)
    return time.monotonic() - t0


def _current(c: Component) -> set[int]:
    """The partitions c's current process holds: its last 'assigned' line after its last 'revoked'."""
    marker = f" {c.pid} kadence.streams.loop INFO "
    held: set[int] = set()
    for line in c.log_path.read_text(errors="replace").splitlines():
        if marker in line and " assigned " in line:
            held = {int(p) for p in re.findall(r"\[(\d+)\]@", line)}
        elif marker in line and " revoked " in line:
            held = set()
    return held


def test_second_engine_instance_takes_over_partitions_mid_run(settings: Settings, tmp_path: Path) -> None:
    """Two engine instances share 8 partitions: instance A (history processor slot 0 and derived
    processor slot 0, state in a/) runs alone while 80 parents (2 children each, one signalled by
    its parent, a durable timer, activities) are started; mid-run instance B (slot 1 of each, its
    own empty state in b/) starts, the groups rebalance and B restores the partitions it gets from
    `history` (the history processor from its changelog, the derived processor by refolding its
    input); later A stops (SIGTERM) and B takes every partition.

    Proves: every in-flight workflow completes with the right result and none runs or closes twice
    (one run and one close per parent and child, one outcome per run, each child id started once),
    and the transactional outputs read back read_committed hold no duplicate (outcomes, history,
    engine commands: B's restore re-sends no reply or outcome the group offset shows sent), with
    partitions moved both ways under load. Timer fires may repeat by design (B rebuilds the timer
    index from history, which may not show yet a fire A committed): each copy byte-identical, each
    timer fired once in history."""
    settings = settings.with_(partitions=PARTITIONS, fetch_wait_max_ms=100)
    ensure_core_topics(settings)
    a = settings.with_(state_dir=str(tmp_path / "a"))
    b = settings.with_(state_dir=str(tmp_path / "b"))
    components = {
        "history-a": Component("history-a", a, tmp_path, slot=0, batch_max_records=50),
        "derived-a": Component(
            "derived-a", a, tmp_path, modules=DERIVED_MODULES, slot=0, batch_max_records=50
        ),
        "history-b": Component("history-b", b, tmp_path, slot=1, batch_max_records=50),
        "derived-b": Component(
            "derived-b", b, tmp_path, modules=DERIVED_MODULES, slot=1, batch_max_records=50
        ),
    }
    first = Engine({k: v for k, v in components.items() if k.endswith("-a")})
    second = Engine({k: v for k, v in components.items() if k.endswith("-b")})
    engine = Engine(dict(components))
    client = Client(settings)
    worker = None
    handles: dict = {}
    moves: list[str] = []
    began = time.monotonic()
    try:
        first.start()
        worker = Worker(client, TASK_LIST, workflows=[EoParent, EoChild], activities=[step]).start()
        names = [f"p{i:03d}" for i in range(PARENTS)]
        starter = threading.Thread(target=_start_all, args=(client, names, handles, 0.25), daemon=True)
        starter.start()
        time.sleep(6.0)
        engine.components["history-b"].start()
        engine.components["derived-b"].start()
        for kind in ("history", "derived"):
            ca, cb = engine.components[f"{kind}-a"], engine.components[f"{kind}-b"]
            took = _wait(
                lambda ca=ca, cb=cb: (
                    bool(_current(cb))
                    and _current(ca) | _current(cb) == set(range(PARTITIONS))
                    and not _current(ca) & _current(cb)
                ),
                f"{kind} split between A and B",
                engine,
            )
            moves.append(
                f"{kind}: B took {sorted(_current(cb))}, A kept {sorted(_current(ca))} "
                f"({took:.1f}s after B started, at +{time.monotonic() - began:.1f}s)"
            )
        time.sleep(6.0)
        stopped_at = time.monotonic()
        for kind in ("history", "derived"):
            assert engine.components[f"{kind}-a"].stop() == 0, engine.logs()
        for kind in ("history", "derived"):
            cb = engine.components[f"{kind}-b"]
            took = _wait(lambda cb=cb: _current(cb) == set(range(PARTITIONS)), f"{kind}-b owning all", second)
            moves.append(f"{kind}: A stopped at +{stopped_at - began:.1f}s, B owns all {took:.1f}s later")
        starter.join(120)
        assert len(handles) == PARENTS
        results = {}
        deadline = time.monotonic() + 300
        for name, handle in handles.items():
            second.check()
            try:
                results[name] = handle.result(timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - reported with the processors' logs
                raise AssertionError(
                    f"{name}: no result ({exc!r}); {len(results)} done\n{engine.logs()}"
                ) from exc
        ran = time.monotonic() - began
        exits = second.stop()
        assert exits == {"history-b": 0, "derived-b": 0}, f"{exits}\n{engine.logs()}"
    finally:
        if worker is not None:
            worker.stop(5)
        client.close()
        engine.kill_all()

    restored = {k: sum(c.restores()) for k, c in components.items()}
    print(f"\n{PARENTS} parents x {CHILDREN} children done in {ran:.1f}s on {PARTITIONS} partitions")
    print("\n".join(moves))
    print(f"records restored: {restored}")
    assert results == {name: expected(name) for name in handles}
    audit = audit_topics(settings, [TASK_LIST])
    print(audit.summary())
    view = audit.history
    ids = set(handles) | {f"{p}-c{i}" for p in handles for i in range(CHILDREN)}
    assert set(view.runs_of_workflow) == ids
    assert {w: len(r) for w, r in view.runs_of_workflow.items() if len(r) != 1} == {}
    per_run = Counter(tuple(closes(view, run)) for run in view.events)
    assert per_run == Counter({("WorkflowExecutionCompleted",): len(ids)}), per_run
    assert audit.outcomes.distinct == len(ids)
    once = Counter({"StartChildWorkflowExecutionInitiated": 1, "ChildWorkflowExecutionStarted": 1, "runs": 1})
    bad = {w: dict(c) for w, c in child_start_counts(view).items() if c != once}
    assert bad == {}, bad
    assert restored["history-b"] > 0, "B restored nothing: the partitions did not move"
    audit.assert_transactional_outputs_exactly_once()
