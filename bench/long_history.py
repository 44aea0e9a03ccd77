"""long-history: one workflow whose history holds ~50,000 events (no continue-as-new).

    python -m bench.long_history [--events 50000] [--kafka embedded|apache] [--set NAME=VALUE ...]

Long, deliberately (minutes, not seconds): not part of `python -m bench`. The engine terminates a
run past 51,200 events (processors/history/config.py `hard_history_events`), so 50,000 is close
to the largest history a run can have. The history is built from signals: the counter workflow
below counts `add` signals until `finish`; the client produces the signal commands in bulk
(at most `--window` not yet recorded), and the engine batches the signals that arrive while a
decision task is out into the next one, so a history is ~1 event per signal plus 3 per decision
task. Sending stops when the history plus the signals in flight reach `--events`.

The workflow runs on its own worker process (this module, `LONG_HISTORY_ROLE=worker`, in place
of the harness's worker), which times every decision task on its poll thread; a client-side tail
of the history, tasks, visibility and dead-letters topics (read_committed) sees when each event
and task arrives. Latencies are from the client sending a command to the tail seeing its effect
(a history record is seen once its transaction commits).

Lines:
1. `long-history-build`: signals, decision tasks, events, seconds, events/s to build the history.
2. `long-history-decision-warm`: `--probes` times one more signal at the full history, the
   worker's cache warm (the normal case: a decision task carries only the new events): ms from
   the signal until its decision completes (client view and engine timestamps), the DecisionTask
   record bytes and the worker's wall/CPU ms per decision.
3. `long-history-decision-cold`: the same after restarting the worker process (empty cache): the
   engine's incremental task is answered CACHE_MISS and resent with the full history; its record
   bytes, the engine's `history_size` estimate (what the 7 MiB cap, docs/deviations.md 20,
   compares), the record limit (8 MiB), the worker's replay wall/CPU ms, and the ms from the
   signal until the decision completes.
4. `long-history-restart`: SIGKILL the history processor (then the derived processor), respawn it
   (as `Bench.start` spawns it) and send one signal at once: ms from the respawn until the signal
   is recorded and its decision completes (history), or until the run's visibility row shows the
   new history length (derived; rows of a longer history are published at most once a second).
   Measured on the new run with a few events (`at_events` small) and again at the full history,
   so restore-time growth with history shows.
5. `long-history-cap` (`--cap-signals N`, 0 skips): what the engine does with a history whose
   full-history decision task would not fit in a record. The cap (`hard_history_bytes`, 7 MiB)
   compares `history_size`, an estimate (payload bytes + 64 per event) that leaves out each
   event's ids: a run with a 1,000-character workflow id (the longest allowed) and N signals is
   far below the cap by the estimate but its full history is not. Before 2963187 the run hung: the
   worker is restarted so the next decision needs the full history, and the line says what was seen
   in `--cap-wait` seconds (tasks, events, dead letters) and whether the decision completed. Since
   then the hard limit counts each event's ids and ends the run first: the line says `closed_as`
   (WorkflowExecutionTerminated), the events it reached and the largest decision task seen.

Building 50,000 events took 79 s on the embedded broker (2-core machine), so `--events` is
50,000 on both brokers. A whole run takes ~5 minutes; the decision timeouts of the cap workflow
go on in the background until the deployment stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from bench.engine import Bench, emit, pct, r, scenario_main
from kadence import workflow
from kadence._names import signal_name
from kadence.history.commands import command_record
from kadence.processors.derived.visibility import LENGTH_REFRESH_MS
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.serde import serde
from kadence.streams.settings import MAX_MESSAGE_BYTES, Settings
from kadence.streams.topics import ensure_core_topics

TASK_LIST = "long-history"
#: A run that ends while signals still arrive (the hard history limit terminates it).
CLOSED = {"WorkflowExecutionTerminated", "WorkflowExecutionCompleted", "WorkflowExecutionFailed"}


# -- the workflows (served by this module's worker process) ----------------------------------------
@workflow.defn(name="LongHistoryCounter")
class CounterWorkflow:
    def __init__(self) -> None:
        self.count = 0
        self.done = False

    @workflow.signal
    def add(self, n: int) -> None:
        self.count += n

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.count


@workflow.defn(name="LongHistoryPing")
class PingWorkflow:
    """Completes at once: a started worker has joined its task list once a ping completes."""

    @workflow.run
    async def run(self) -> str:
        return "pong"


# -- the worker process ----------------------------------------------------------------------------
def _worker_main() -> int:
    """Serve TASK_LIST; append [wall ms, CPU ms, events, full history, workflow id] per decision
    task to $LONG_HISTORY_STATS (one JSON list a line)."""
    from kadence import Worker
    from kadence.worker._decisions import DecisionRunner

    settings = Settings(**json.loads(os.environ["BENCH_SETTINGS"]))
    stats = open(os.environ["LONG_HISTORY_STATS"], "a")  # noqa: SIM115 - open for the process's life
    original = DecisionRunner.on_task

    def timed(self: DecisionRunner, t: dict[str, Any], tp: Any, offset: int) -> None:
        w0, c0 = time.perf_counter(), time.thread_time()
        original(self, t, tp, offset)
        wall, cpu = (time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000
        row = [r(wall, 3), r(cpu, 3), len(t["events"]), bool(t["full_history"]), t["workflow_id"][:40]]
        stats.write(json.dumps(row) + "\n")
        stats.flush()

    DecisionRunner.on_task = timed  # type: ignore[method-assign]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = Worker(settings, TASK_LIST, workflows=[CounterWorkflow, PingWorkflow]).start()
    stop.wait()
    worker.stop(5)
    stats.close()
    return 0


def _processor_env(b: Bench, role: str) -> dict[str, str]:
    """The environment `Bench.start` gives a spawned process of `role`."""
    assert b.settings is not None
    return {
        **os.environ,
        "BENCH_SETTINGS": json.dumps(asdict(b.settings)),
        "BENCH_DISPATCH_IN_TXN": "1" if b.dispatch_in_txn else "",
        "KADENCE_LOG_LEVEL": os.environ.get("KADENCE_LOG_LEVEL", "WARNING"),
        "BENCH_ROLE": role,
    }


def start_worker(b: Bench, stats_path: str) -> None:
    """(Re)start this module's worker as b.procs["worker"] and wait until it serves TASK_LIST."""
    old = b.procs.pop("worker", None)
    if old is not None and old.poll() is None:
        old.send_signal(signal.SIGTERM)
        old.wait(30)
    env = {**_processor_env(b, "worker"), "LONG_HISTORY_ROLE": "worker", "LONG_HISTORY_STATS": stats_path}
    b.procs["worker"] = subprocess.Popen([sys.executable, "-m", "bench.long_history"], env=env)
    b.execute(PingWorkflow.run, id=f"ping-{uuid.uuid4().hex[:8]}", task_list=TASK_LIST, timeout=120)


def respawn_processor(b: Bench, role: str) -> float:
    """SIGKILL the `role` processor and start it again as `Bench.start` does; the respawn time."""
    from kadence.streams.launch import spawn

    assert b.settings is not None
    proc = b.procs[role]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    t0 = time.perf_counter()
    b.procs[role] = spawn(
        "bench.engine",
        b.settings,
        env=_processor_env(b, role),
        batch_max_records=b.settings.batch_max_records,
        batch_max_wait_ms=b.settings.batch_max_wait_ms,
    )
    return t0


def read_stats(path: str) -> list[list[Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# -- sending signals -------------------------------------------------------------------------------
class Signaller:
    """Produces SignalWorkflowExecution commands to one workflow, many per flush."""

    def __init__(self, b: Bench, workflow_id: str) -> None:
        assert b.settings is not None
        self.settings = b.settings
        self.workflow_id = workflow_id
        self.client = b.client
        self.producer = make_producer(b.settings)
        self.codec = serde()
        self.headers = self.codec.headers("Command")

    def send(self, n: int, method: Any = CounterWorkflow.add, *args: Any) -> float:
        """Produce n signals (args default (1,)) and wait for their delivery; perf_counter() before."""
        t0 = time.perf_counter()
        payload = self.client.data_converter.args_to_payload(
            args or ((1,) if method is CounterWorkflow.add else ())
        )
        for _ in range(n):
            attrs = {
                "signal_name": signal_name(method),
                "input": payload,
                "identity": self.client.identity,
                "request_id": uuid.uuid4().hex,
                "external": None,
            }
            command = command_record(
                command_id=uuid.uuid4().hex,
                domain=self.client.domain,
                workflow_id=self.workflow_id,
                run_id="",
                timestamp=int(time.time() * 1000),
                payload_type="SignalWorkflowExecution",
                attrs=attrs,
            )
            value = self.codec.encode("Command", command)
            while True:
                try:
                    self.producer.produce(
                        self.settings.commands_topic,
                        key=self.workflow_id.encode(),
                        value=value,
                        headers=self.headers,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.01)
            self.producer.poll(0)
        if self.producer.flush(60):
            raise TimeoutError("signals not delivered in 60 s")
        return t0


# -- tailing the topics ----------------------------------------------------------------------------
@dataclass
class SeenTask:
    at: float  # perf_counter() when the tail received it
    bytes: int
    kind: str
    scheduled_event_id: int
    full_history: bool
    events: int
    history_length: int
    history_size: int  # the engine's estimate (what hard_history_bytes compares)


@dataclass
class Seen:
    """What the tail saw of one workflow id."""

    events: dict[int, tuple[str, int, float]] = field(default_factory=dict)  # id -> (type, ts ms, at)
    tasks: list[SeenTask] = field(default_factory=list)
    rows: list[tuple[float, int]] = field(default_factory=list)  # (at, history_length)
    max_event_id: int = 0
    signals: int = 0

    def last_type(self) -> str:
        return self.events[self.max_event_id][0] if self.max_event_id else ""

    def first_after(self, event_type: str, after: int) -> int | None:
        ids = [i for i, e in self.events.items() if i > after and e[0] == event_type]
        return min(ids) if ids else None


class Tail:
    """A read_committed consumer of history, tasks.<TASK_LIST>, visibility and dead-letters from
    their ends now, filing what it sees by workflow id."""

    def __init__(self, b: Bench) -> None:
        s = b.settings
        assert s is not None
        self.topics = {
            "history": s.history_topic,
            "task": s.tasks_topic(TASK_LIST),
            "row": s.visibility_topic,
            "dead": s.dead_letters_topic,
        }
        self.kind = {t: k for k, t in self.topics.items()}
        self.codec = serde()
        self.cond = threading.Condition()
        self.seen: dict[str, Seen] = {}
        self.dead: list[tuple[float, str]] = []  # (at, processor: reason)
        self.consumer = make_consumer(s, s.group(f"bench-tail-{uuid.uuid4().hex}"))
        assign = []
        for topic in self.topics.values():
            md = self.consumer.list_topics(topic, timeout=10).topics[topic]
            for p in md.partitions:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assign.append(TopicPartition(topic, p, high))
        self.consumer.assign(assign)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def of(self, workflow_id: str) -> Seen:
        return self.seen.setdefault(workflow_id, Seen())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            first = self.consumer.poll(0.05)  # returns as soon as a record is there
            at = time.perf_counter()
            if first is None:
                continue
            msgs = [first, *self.consumer.consume(1000, 0)]
            with self.cond:
                for m in msgs:
                    if m.error() is None:
                        self._file(self.kind[m.topic()], m.value(), at)
                self.cond.notify_all()

    def _file(self, kind: str, value: bytes, at: float) -> None:
        if kind == "history":
            _, tr = self.codec.decode(value, "HistoryTransition")
            seen = self.of(tr["workflow_id"])
            for ev in tr["events"]:
                etype = ev["attributes"][0]
                seen.events.setdefault(ev["event_id"], (etype, ev["timestamp"], at))
                seen.max_event_id = max(seen.max_event_id, ev["event_id"])
                seen.signals += etype == "WorkflowExecutionSignaled"
        elif kind == "task":
            _, rec = self.codec.decode(value, "Task")
            tkind, t = rec["task"]
            if tkind == "DecisionTask":
                self.of(t["workflow_id"]).tasks.append(
                    SeenTask(
                        at,
                        len(value),
                        tkind,
                        t["scheduled_event_id"],
                        t["full_history"],
                        len(t["events"]),
                        t["history_length"],
                        t["history_size_bytes"],
                    )
                )
        elif kind == "row":
            if value:  # a tombstone has none
                _, row = self.codec.decode(value, "VisibilityRecord")
                self.of(row["workflow_id"]).rows.append((at, row["history_length"]))
        else:
            _, dl = self.codec.decode(value, "DeadLetter")
            self.dead.append((at, f"{dl['processor']}: {dl['reason'][:300]}"))

    def wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)


# -- measurements ----------------------------------------------------------------------------------
def build(tail: Tail, sig: Signaller, target: int, window: int, timeout: float) -> dict[str, Any]:
    """Signal until the history plus the signals in flight reach `target` events; wait until idle."""
    seen = tail.of(sig.workflow_id)
    sent, t0 = 0, time.perf_counter()
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        with tail.cond:
            if seen.last_type() in CLOSED:
                break
            in_flight = sent - seen.signals
            remaining = target - seen.max_event_id - in_flight
            if remaining <= 0:
                break
            n = min(window - in_flight, remaining)
            if n <= 0:
                tail.cond.wait(0.05)
                continue
        sig.send(n)
        sent += n
    idle = tail.wait(
        lambda: (
            (seen.signals >= sent and seen.last_type() == "DecisionTaskCompleted")
            or seen.last_type() in CLOSED
        ),
        max(1.0, deadline - time.perf_counter()),
    )
    if not idle:
        raise TimeoutError(f"history not built in {timeout}s: {seen.max_event_id} events")
    with tail.cond:
        built = [seen.events[i] for i in sorted(seen.events) if seen.events[i][2] >= t0]
        ats = [e[2] for e in built]
        decisions = sum(1 for e in built if e[0] == "DecisionTaskCompleted")
    elapsed = max(ats) - t0
    tenth = max(1, len(ats) // 10)  # does the cost per event grow with the history?
    return {
        "signals": sent,
        "closed_as": seen.last_type() if seen.last_type() in CLOSED else None,
        "decision_tasks": decisions,
        "events": seen.max_event_id,
        "events_built": len(built),
        "seconds": r(elapsed, 2),
        "events_per_s": r(seen.max_event_id / elapsed),
        "events_per_s_first_tenth": r(tenth / max(1e-9, ats[tenth] - t0)),
        "events_per_s_last_tenth": r(tenth / max(1e-9, ats[-1] - ats[-1 - tenth])),
        "signals_per_s": r(sent / elapsed),
    }


def probe(tail: Tail, sig: Signaller, timeout: float, t_from: float | None = None) -> dict[str, Any]:
    """One signal, then wait for the next DecisionTaskCompleted: timings and the tasks it took.
    `t_from`: measure from that perf_counter() instead of the send (a respawn)."""
    seen = tail.of(sig.workflow_id)
    top = seen.max_event_id
    wall0 = time.time() - time.perf_counter()  # perf_counter() -> wall seconds
    t_send = sig.send(1)
    t0 = t_from if t_from is not None else t_send
    if not tail.wait(lambda: seen.first_after("DecisionTaskCompleted", top) is not None, timeout):
        raise TimeoutError(f"no decision completed {timeout}s after a signal (last event {seen.last_type()})")
    with tail.cond:
        done = seen.first_after("DecisionTaskCompleted", top)
        signaled = seen.first_after("WorkflowExecutionSignaled", top)
        assert done is not None and signaled is not None
        tasks = [t for t in seen.tasks if t.scheduled_event_id > top]
        return {
            "signal_recorded_ms": r((seen.events[signaled][2] - t0) * 1000),
            "decision_completed_ms": r((seen.events[done][2] - t0) * 1000),
            "engine_decision_completed_ms": r(seen.events[done][1] - (t0 + wall0) * 1000),
            "at_events": seen.max_event_id,
            "tasks": tasks,
        }


def worker_rows(stats_path: str, start: int, workflow_id: str) -> list[list[Any]]:
    return [row for row in read_stats(stats_path)[start:] if row[4] == workflow_id[:40]]


def restart_line(b: Bench, tail: Tail, sig: Signaller, timeout: float) -> dict[str, Any]:
    """Respawn history, then derived; a signal right after each: ms from the respawn."""
    out: dict[str, Any] = {}
    seen = tail.of(sig.workflow_id)
    t0 = respawn_processor(b, "history")
    p = probe(tail, sig, timeout, t_from=t0)
    out["history"] = {k: p[k] for k in ("at_events", "signal_recorded_ms", "decision_completed_ms")}
    # a row whose only change is a longer history waits LENGTH_REFRESH_MS after the last one
    time.sleep(LENGTH_REFRESH_MS / 1000 + 0.2)
    n_rows, top = len(seen.rows), seen.max_event_id
    t0 = respawn_processor(b, "derived")
    p = probe(tail, sig, timeout, t_from=t0)
    ok = tail.wait(lambda: any(h > top for _, h in seen.rows[n_rows:]), timeout)
    row_at = next((at for at, h in seen.rows[n_rows:] if h > top), None)
    out["derived"] = {
        "at_events": p["at_events"],
        "decision_completed_ms": p["decision_completed_ms"],
        "visibility_row_ms": r((row_at - t0) * 1000) if ok and row_at is not None else None,
    }
    return out


def task_summary(tasks: list[SeenTask]) -> list[dict[str, Any]]:
    return [
        {
            "bytes": t.bytes,
            "full_history": t.full_history,
            "events": t.events,
            "history_length": t.history_length,
            "history_size_estimate": t.history_size,
        }
        for t in tasks
    ]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    with (
        Bench.from_args("long-history", args, task_lists=["bench"]) as b,
        tempfile.TemporaryDirectory() as tmp,
    ):
        assert b.settings is not None
        target = args.events
        ensure_core_topics(b.settings, [TASK_LIST])
        stats = os.path.join(tmp, "decisions.jsonl")
        open(stats, "w").close()
        start_worker(b, stats)
        tail = Tail(b)
        wid = "long-history"
        sig = Signaller(b, wid)
        handle = b.start_workflow(CounterWorkflow.run, id=wid, task_list=TASK_LIST)
        seen = tail.of(wid)
        if not tail.wait(lambda: seen.last_type() == "DecisionTaskCompleted", 60):
            raise TimeoutError("the counter's first decision did not complete")
        probe(tail, sig, args.timeout)
        restart_small = restart_line(b, tail, sig, args.timeout)

        b.scenario = "long-history-build"
        b.begin_timed()
        built = build(tail, sig, target, args.window, args.build_timeout)
        line = b.line(target_events=target, window=args.window, **built, cpu_s=b.end_timed())
        emit(line)
        lines.append(line)

        b.scenario = "long-history-decision-warm"
        b.begin_timed()
        n0 = len(read_stats(stats))
        probes = [probe(tail, sig, args.timeout) for _ in range(args.probes)]
        rows = worker_rows(stats, n0, wid)
        ms = [p["decision_completed_ms"] for p in probes]
        line = b.line(
            at_events=probes[0]["at_events"],
            probes=args.probes,
            decision_completed_ms_p50=r(pct(ms, 50)),
            decision_completed_ms=ms,
            engine_decision_completed_ms=[p["engine_decision_completed_ms"] for p in probes],
            signal_recorded_ms=[p["signal_recorded_ms"] for p in probes],
            decision_task_bytes=[t.bytes for p in probes for t in p["tasks"]],
            decision_task_events=[t.events for p in probes for t in p["tasks"]],
            worker_wall_ms=[row[0] for row in rows],
            worker_cpu_ms=[row[1] for row in rows],
            cpu_s=b.end_timed(),
        )
        emit(line)
        lines.append(line)

        b.scenario = "long-history-decision-cold"
        t_restart = time.perf_counter()
        start_worker(b, stats)
        restart_s = time.perf_counter() - t_restart
        b.begin_timed()
        n0 = len(read_stats(stats))
        p = probe(tail, sig, args.timeout)
        rows = worker_rows(stats, n0, wid)
        full = [row for row in rows if row[3]]
        line = b.line(
            at_events=p["at_events"],
            worker_restart_s=r(restart_s, 2),
            decision_completed_ms=p["decision_completed_ms"],
            engine_decision_completed_ms=p["engine_decision_completed_ms"],
            tasks=task_summary(p["tasks"]),
            max_message_bytes=MAX_MESSAGE_BYTES,
            hard_history_bytes=MAX_MESSAGE_BYTES - 1024 * 1024,
            worker_decisions=[
                {"wall_ms": row[0], "cpu_ms": row[1], "events": row[2], "full_history": row[3]}
                for row in rows
            ],
            worker_replay_wall_ms=full[0][0] if full else None,
            worker_replay_cpu_ms=full[0][1] if full else None,
            cpu_s=b.end_timed(),
        )
        emit(line)
        lines.append(line)

        b.scenario = "long-history-restart"  # no cpu_s: the processors are new processes
        restart_full = restart_line(b, tail, sig, args.timeout)
        line = b.line(small=restart_small, full=restart_full)
        emit(line)
        lines.append(line)

        # finish: the counter completes with the number of `add` signals
        t0 = sig.send(1, CounterWorkflow.finish)
        outcome = b.wait(handle, args.timeout)
        finished_ms = (time.perf_counter() - t0) * 1000
        result = b.client.data_converter.from_payload(outcome["result"]) if "result" in outcome else None
        lines[-1]["finish"] = {"status": outcome["status"], "result": result, "ms": r(finished_ms)}
        emit({"scenario": "long-history-finish", **lines[-1]["finish"], "events": seen.max_event_id})

        if args.cap_signals:
            b.scenario = "long-history-cap"
            lines.append(cap_line(b, tail, stats, args))
            emit(lines[-1])
        tail.close()
    return lines


def cap_line(b: Bench, tail: Tail, stats: str, args: argparse.Namespace) -> dict[str, Any]:
    """A history whose full-history task outgrows the largest record while its estimate is far
    below the cap: what happens on a cache miss."""
    wid = "x" * 1000  # validation: ids of at most 1,000 characters
    sig = Signaller(b, wid)
    b.start_workflow(CounterWorkflow.run, id=wid, task_list=TASK_LIST)
    seen = tail.of(wid)
    tail.wait(lambda: seen.last_type() == "DecisionTaskCompleted", 60)
    built = build(tail, sig, args.cap_signals, args.window, args.build_timeout)
    common = {
        "workflow_id_chars": len(wid),
        **{f"build_{k}": v for k, v in built.items()},
        "hard_history_bytes": MAX_MESSAGE_BYTES - 1024 * 1024,
        "max_message_bytes": MAX_MESSAGE_BYTES,
    }
    if built["closed_as"] is not None:  # the hard byte limit ended the run before the build did
        return b.line(
            **common,
            history_size_estimate=seen.tasks[-1].history_size if seen.tasks else None,
            largest_task_bytes=max((t.bytes for t in seen.tasks), default=0),
            dead_letters=len(tail.dead),
        )
    start_worker(b, stats)
    n0, dead0 = len(read_stats(stats)), len(tail.dead)
    top = seen.max_event_id
    est = seen.tasks[-1].history_size if seen.tasks else None
    t0 = sig.send(1)
    tail.wait(lambda: seen.first_after("DecisionTaskCompleted", top) is not None, args.cap_wait)
    with tail.cond:
        after = sorted((i, e[0]) for i, e in seen.events.items() if i > top)
        tasks = [t for t in seen.tasks if t.scheduled_event_id > top]
        dead = [(r(at - t0, 1), why) for at, why in tail.dead[dead0:]]
    rows = worker_rows(stats, n0, wid)
    return b.line(
        **common,
        history_size_estimate=est,
        waited_s=args.cap_wait,
        decision_completed=any(t == "DecisionTaskCompleted" for _, t in after),
        events_after_signal=[t for _, t in after][:20],
        tasks=task_summary(tasks)[:10],
        worker_decisions=[{"wall_ms": row[0], "events": row[2], "full_history": row[3]} for row in rows][:10],
        dead_letters_s_reason=dead[:5],
        dead_letters=len(dead),
    )


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--events",
        type=int,
        default=50_000,
        help="history events to build (at most ~51,000: the engine terminates a run past 51,200)",
    )
    ap.add_argument("--window", type=int, default=5000, help="signals sent and not yet recorded, at most")
    ap.add_argument("--probes", type=int, default=5, help="warm-cache decisions timed at the full history")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one decision")
    ap.add_argument("--build-timeout", type=float, default=900.0, help="seconds to build the history")
    ap.add_argument(
        "--cap-signals",
        type=int,
        default=8000,
        help="signals to a workflow with a 1,000-character id (long-history-cap; 0 skips)",
    )
    ap.add_argument("--cap-wait", type=float, default=30.0, help="seconds to watch the cap workflow")


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    if os.environ.get("LONG_HISTORY_ROLE") == "worker":
        sys.exit(_worker_main())
    main()
