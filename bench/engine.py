"""The shared benchmark harness: broker, engine processes, workers, a client, and measurement.

Layout (the fastest measured on the 2-core machine, see bench/README.md):
- the broker: the embedded Tansu (a fresh one per scenario), `--kafka apache` (Apache Kafka 4.4.0
  from `kadence.streams.apache_kafka`: one node per benchmark process, shared by its scenarios and
  warmed up with 300 hello workflows first, since a cold JVM is slower than a running broker) or
  `--bootstrap HOST:PORT`; Settings from the broker's profile (`embedded_broker_settings` /
  `kafka_broker_settings`, i.e. fetch_wait_max_ms 3 or 100) plus `--set`;
- the engine: the history processor and the derived processors, one OS process each, started with
  `streams.launch.spawn` like `kadence demo` (module `bench.engine`, so the Settings knobs that
  `spawn` does not forward - fetch_wait_max_ms, linger_ms, ... - reach the processors too);
- the workers: one OS process serving every benchmark task list (`--workers thread` runs them as
  threads of the client process instead);
- the client: this process; `Bench.run_closed_loop` keeps at most `concurrency` workflows in flight.

Every scenario prints one JSON line; `load` is os.getloadavg() at the end of the scenario and
`cpu_s` the CPU seconds each process spent in the timed phase (from /proc).

`--profile DIR` attaches `py-spy record --format raw` to every process during the timed phase
and writes DIR/<scenario>-<process>.txt plus a summary of the top functions per process.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from kadence.streams.broker import EmbeddedBroker
from kadence.streams.clients import make_consumer
from kadence.streams.serde import serde
from kadence.streams.settings import (
    EMBEDDED_BROKER_PROFILE,
    KAFKA_BROKER_PROFILE,
    Settings,
    kafka_config_from_env,
)
from kadence.streams.topics import ensure_core_topics

log = logging.getLogger("bench")

SETTING_NAMES = {f.name for f in fields(Settings)}
#: The repository (profile frames are shown relative to it).
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
#: What the harness changes from Settings' defaults on Tansu: fast group joins (docs/brokers.md §2.5).
#: Not on Apache Kafka: a stock broker refuses sessions under 6 s, and its joins do not wait on them.
BASE_OVERRIDES: dict[str, dict[str, Any]] = {
    "embedded": {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500},
    "apache": {},
}
#: --kafka: the broker each scenario runs on, and its Settings profile (streams/settings.py).
PROFILES: dict[str, dict[str, Any]] = {"embedded": EMBEDDED_BROKER_PROFILE, "apache": KAFKA_BROKER_PROFILE}

_APACHE: Any = None  # the Apache Kafka node shared by this process's scenarios (--kafka apache)


def shared_apache_broker() -> Any:
    """One Apache Kafka node for every scenario of this process, started (and warmed up) on first use."""
    global _APACHE
    if _APACHE is None:
        from kadence.streams.apache_kafka import ApacheKafkaBroker

        _APACHE = ApacheKafkaBroker().start()
        atexit.register(_APACHE.stop)
        log.warning(
            "Apache Kafka %s started in %.1fs; warming it up", _APACHE.bootstrap, _APACHE.startup_seconds
        )
        _warm_up(_APACHE.bootstrap)
    return _APACHE


def _warm_up(bootstrap: str) -> None:
    """300 hello workflows at 50 in flight, discarded: the JIT compiles the broker's hot paths."""
    from bench.workflows import HelloWorkflow

    with Bench("warm-up", bootstrap=bootstrap, kafka="apache", task_lists=["bench"]) as b:
        b.run_closed_loop(300, 50, lambda i: b.execute(HelloWorkflow.run, "warm", id=f"jit-{i}"))


# -- helpers ---------------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[i]


def r(x: float, nd: int = 1) -> float:
    return round(float(x), nd)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} cpu {model}; Python {platform.python_version()}"


def python_loop_ms() -> float:
    """Milliseconds for a 5M-step Python loop, taken when a figure is printed: the machine is shared
    and its speed drifts by +-30%, so every JSON line carries it; compare figures only at similar
    values (130-160 ms on the 2-core machine when it is quiet)."""
    t0 = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return r((time.perf_counter() - t0) * 1000, 0)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`name=value` pairs of Settings fields (ints where the field is an int)."""
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in SETTING_NAMES:
            raise SystemExit(f"unknown setting {name!r}; known: {sorted(SETTING_NAMES)}")
        default = getattr(Settings(), name)
        out[name] = int(value) if isinstance(default, int) else value
    return out


def scenario_main(
    doc: str | None,
    run: Callable[[argparse.Namespace], Any],
    add_args: Callable[[argparse.ArgumentParser], None],
    argv: list[str] | None = None,
) -> None:
    """The `main` of every scenario module: its own options, the common ones, logging, run."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level)
    run(args)


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--kafka",
        choices=sorted(PROFILES),
        default=None,
        help="embedded: a fresh Tansu per scenario (default); apache: Apache Kafka 4.4.0 (jars "
        "fetched with Maven once), one node for the whole run. Also picks the Settings "
        "profile (with --bootstrap: the broker there is of this kind; default apache)",
    )
    ap.add_argument("--bootstrap", help="a running broker (default: a fresh embedded Tansu per scenario)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Settings override for every client and processor (e.g. fetch_wait_max_ms=2)",
    )
    ap.add_argument(
        "--workers",
        choices=("process", "thread"),
        default="process",
        help="workers in their own OS process (default) or as threads of the client process",
    )
    ap.add_argument("--profile", metavar="DIR", help="py-spy every process during the timed phase into DIR")
    ap.add_argument(
        "--no-eager",
        action="store_true",
        help="workers without eager activities (every activity task goes through tasks.<list>)",
    )
    ap.add_argument(
        "--hold-ms",
        type=float,
        default=None,
        help="the workers' eager_answer_hold_ms (default: the Worker's; 0 answers decisions at once)",
    )
    ap.add_argument(
        "--dispatch-in-txn",
        action="store_true",
        help="the history processor sends tasks in its transaction (before docs/deviations.md 19)",
    )
    ap.add_argument(
        "--instances",
        type=int,
        default=1,
        help="engine instances: each a history processor, a derived processor and a worker process "
        "(slot i, its own state dir); they share the partitions by consumer group",
    )
    ap.add_argument("--log-level", default="WARNING")


# -- the harness -----------------------------------------------------------------------------------
class Bench:
    """One scenario's deployment: broker, engine processes, workers, client."""

    def __init__(
        self,
        scenario: str,
        *,
        bootstrap: str | None = None,
        overrides: dict[str, Any] | None = None,
        workers: str = "process",
        task_lists: Sequence[str] | None = None,
        profile: str | None = None,
        decision_stats: bool = False,
        eager: bool = True,
        hold_ms: float | None = None,
        kafka: str | None = None,
        dispatch_in_txn: bool = False,
        instances: int = 1,
    ) -> None:
        from bench.workflows import TASK_LISTS

        self.scenario = scenario
        self.bootstrap = bootstrap
        #: the broker's kind: "embedded" (Tansu) or "apache"; a --bootstrap broker is taken for Kafka
        self.kafka = kafka or ("apache" if bootstrap else "embedded")
        self.dispatch_in_txn = dispatch_in_txn
        #: engine instances (`--instances`): processes "history", "derived", "worker" for slot 0,
        #: "history-2", "derived-2", "worker-2" for slot 1, and so on
        self.instances = instances
        self.broker_pid: int | None = None
        self.overrides = dict(overrides or {})
        self.workers_mode = workers
        self.task_lists = list(task_lists or TASK_LISTS)
        self.profile_dir = profile
        self.decision_stats = decision_stats
        self.eager = eager
        self.hold_ms = hold_ms
        self._stack = ExitStack()
        self.broker: EmbeddedBroker | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.thread_workers: list[Any] = []
        self.client: Any = None
        self.settings: Settings | None = None
        self._spies: list[tuple[str, subprocess.Popen, str]] = []
        self._cpu0: dict[str, float] = {}
        self._stats_path = ""

    @classmethod
    def from_args(cls, scenario: str, args: argparse.Namespace, **kwargs: Any) -> Bench:
        """A Bench configured by the common command-line options (`add_common_args`)."""
        return cls(
            scenario,
            bootstrap=args.bootstrap,
            overrides=parse_overrides(args.set),
            workers=args.workers,
            profile=args.profile,
            eager=not args.no_eager,
            hold_ms=args.hold_ms,
            kafka=args.kafka,
            dispatch_in_txn=args.dispatch_in_txn,
            instances=getattr(args, "instances", 1),
            **kwargs,
        )

    # lifecycle
    def __enter__(self) -> Bench:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Bench:
        from kadence import Client

        if self.bootstrap is not None:
            bootstrap = self.bootstrap
        elif self.kafka == "apache":
            apache = shared_apache_broker()
            bootstrap, self.broker_pid = apache.bootstrap, apache.pid
        else:
            self.broker = EmbeddedBroker().start()
            bootstrap = self.broker.bootstrap
            self.broker_pid = self.broker.process.pid if self.broker.process is not None else None
        state_dir = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="kadence-bench-"))
        # read_committed everywhere (Settings.isolation_level); the broker's profile, then --set
        self.settings = Settings(
            **{
                "bootstrap": bootstrap,
                "prefix": f"b{uuid.uuid4().hex[:8]}.",
                "state_dir": state_dir,
                # a secured cluster (--kafka HOST:PORT): KADENCE_KAFKA_* / KADENCE_KAFKA_CONFIG_FILE
                "kafka_config": kafka_config_from_env(),
                **PROFILES[self.kafka],
                **BASE_OVERRIDES[self.kafka],
                **self.overrides,
            }
        )
        ensure_core_topics(self.settings, self.task_lists)
        self._stats_path = os.path.join(state_dir, "worker-stats.json")
        env = {
            **os.environ,
            "BENCH_SETTINGS": json.dumps(asdict(self.settings)),
            "BENCH_DISPATCH_IN_TXN": "1" if self.dispatch_in_txn else "",
            "KADENCE_LOG_LEVEL": os.environ.get("KADENCE_LOG_LEVEL", "WARNING"),
        }
        from kadence.streams.launch import spawn

        for slot in range(self.instances):
            # one state dir per instance: a partition moving between them is restored, not shared
            settings = self.settings if slot == 0 else self.settings.with_(state_dir=f"{state_dir}/{slot}")
            slot_env = {**env, "BENCH_SETTINGS": json.dumps(asdict(settings))}
            suffix = "" if slot == 0 else f"-{slot + 1}"
            for role in ("history", "derived"):
                self.procs[role + suffix] = spawn(
                    "bench.engine",
                    settings,
                    slot,
                    env={**slot_env, "BENCH_ROLE": role},
                    batch_max_records=settings.batch_max_records,
                    batch_max_wait_ms=settings.batch_max_wait_ms,
                )
        self.client = Client(self.settings)
        if self.workers_mode == "process":
            for slot in range(self.instances):
                self.procs["worker" if slot == 0 else f"worker-{slot + 1}"] = subprocess.Popen(
                    [sys.executable, "-m", "bench.engine"],
                    env={
                        **env,
                        "BENCH_ROLE": "worker",
                        "BENCH_TASK_LISTS": ",".join(self.task_lists),
                        "BENCH_EAGER": "1" if self.eager else "",
                        "BENCH_HOLD_MS": "" if self.hold_ms is None else str(self.hold_ms),
                        "BENCH_STATS": self._stats_path if self.decision_stats and slot == 0 else "",
                    },
                )
        else:
            self.thread_workers = start_workers(
                self.client, self.task_lists, self.decision_stats, self.eager, self.hold_ms
            )
        reader = self.client.connection.reader(self.settings.completions_topic)
        reader.caught_up.wait(30)
        return self

    def stop(self) -> None:
        self._stop_spies()
        for w in self.thread_workers:
            w.stop(5)
        self.thread_workers = []
        if self.client is not None:
            self.client.close()
            self.client = None
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = {}
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        self._stack.close()

    # workers' decision statistics (decision_stats=True)
    def worker_decision_stats(self) -> list[list[float]]:
        """[(wall ms, worker CPU ms, events applied, workflow id), ...] per decision task, in order. Stops the worker."""
        if self.thread_workers:
            stats = list(_DECISIONS)
            return stats
        proc = self.procs.get("worker")
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        with open(self._stats_path) as f:
            return json.load(f)

    # timed phase: CPU per process and profiles
    def pids(self) -> dict[str, int]:
        pids = {name: p.pid for name, p in self.procs.items() if p.poll() is None}
        pids["client"] = os.getpid()
        if self.broker_pid is not None:
            pids["broker"] = self.broker_pid
        return pids

    def begin_timed(self) -> None:
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids().items()}
        if self.profile_dir:
            os.makedirs(self.profile_dir, exist_ok=True)
            for name, pid in self.pids().items():
                if name == "broker":
                    continue
                path = os.path.join(self.profile_dir, f"{self.scenario}-{name}.txt")
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "-p",
                        str(pid),
                        "-o",
                        path,
                        "--format",
                        "raw",
                        "-r",
                        "200",
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self._spies.append((name, spy, path))
            time.sleep(0.5)

    def end_timed(self) -> dict[str, float]:
        cpu = {name: r(cpu_seconds(pid) - self._cpu0.get(name, 0.0), 2) for name, pid in self.pids().items()}
        self._stop_spies()
        return cpu

    def _stop_spies(self) -> None:
        for _name, spy, _path in self._spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
        for name, spy, path in self._spies:
            try:
                spy.wait(20)
            except subprocess.TimeoutExpired:
                spy.kill()
            if os.path.exists(path):
                summary = summarize_profile(path)
                with open(path[:-4] + ".summary.txt", "w") as f:
                    f.write(summary)
                print(f"--- profile {self.scenario} / {name} ---\n{summary}", file=sys.stderr, flush=True)
        self._spies = []

    # workflows
    def start_workflow(self, workflow: Any, *args: Any, id: str, task_list: str = "bench") -> Any:  # noqa: A002
        return self.client.start_workflow(workflow, *args, id=id, task_list=task_list)

    def wait(self, handle: Any, timeout: float = 120.0) -> dict[str, Any]:
        """The final outcome of the chain a handle started, from the client's completions index.

        `handle.result()` is not used: when the outcome is not there yet it scans the workflow's
        history partition with a new consumer (kadence/client.py `_resolve_run`), which dominates a
        benchmark's client. `--sdk-result` measures it. Like `result()`, it sleeps on the id's own
        condition, so an outcome wakes only its waiter (before, all `concurrency` threads)."""
        comps = self.client.connection.completions
        domain = self.client.domain
        deadline = time.monotonic() + timeout
        cond = comps.condition(domain, handle.id)  # woken by this id's outcomes, as result() is
        with cond:
            outcome = comps.by_request(domain, handle.id, handle.start_request_id)
            while True:
                if outcome is not None and outcome["status"] == "CONTINUED_AS_NEW" and outcome["new_run_id"]:
                    outcome = comps.by_run(domain, handle.id, outcome["new_run_id"]) or dict(
                        outcome, _pending=outcome["new_run_id"]
                    )
                if outcome is not None and "_pending" in outcome:
                    nxt = comps.by_run(domain, handle.id, outcome["_pending"])
                    outcome = nxt if nxt is not None else outcome
                if (
                    outcome is not None
                    and "_pending" not in outcome
                    and outcome["status"] != "CONTINUED_AS_NEW"
                ):
                    return outcome
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"workflow {handle.id} did not finish in {timeout}s")
                cond.wait(min(left, 1.0))
                if outcome is None:
                    outcome = comps.by_request(domain, handle.id, handle.start_request_id)

    def start_many(
        self, workflow: Any, args_list: Sequence[Sequence[Any]], ids: Sequence[str], task_list: str = "bench"
    ) -> list[Any]:
        """Start many workflows with one flush: the same StartWorkflowExecution commands as
        `Client.start_workflow` (which flushes, i.e. waits for delivery, once per start)."""
        from kadence._names import workflow_type_name
        from kadence._runtime_defn import return_hint_of
        from kadence.client import WorkflowHandle
        from kadence.streams.clients import make_producer

        client, conv, codec = self.client, self.client.data_converter, serde()
        producer = make_producer(self.settings)
        headers = codec.headers("Command")
        handles = []
        for args, wid in zip(args_list, ids, strict=True):
            request_id = uuid.uuid4().hex
            start = {
                "workflow_type": workflow_type_name(workflow),
                "task_list": task_list,
                "input": conv.args_to_payload(args),
                "execution_timeout_ms": 0,
                "run_timeout_ms": 0,
                "task_timeout_ms": 10_000,
                "id_reuse_policy": "ALLOW_DUPLICATE_FAILED_ONLY",
                "retry_policy": None,
                "memo": {},
                "request_id": request_id,
                "identity": client.identity,
                "parent": None,
                "cron_schedule": "",
            }
            command = {
                "command_id": uuid.uuid4().hex,
                "domain": client.domain,
                "workflow_id": wid,
                "run_id": "",
                "timestamp": int(time.time() * 1000),
                "payload": ("StartWorkflowExecution", start),
            }
            while True:
                try:
                    producer.produce(
                        self.settings.commands_topic,
                        key=wid.encode(),
                        value=codec.encode("Command", command),
                        headers=headers,
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
            handles.append(
                WorkflowHandle(client, wid, start_request_id=request_id, result_type=return_hint_of(workflow))
            )
        if producer.flush(60):
            raise TimeoutError("start commands not delivered in 60 s")
        return handles

    def execute(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        task_list: str = "bench",
        sdk_result: bool = False,  # noqa: A002
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        handle = self.start_workflow(workflow, *args, id=id, task_list=task_list)
        if sdk_result:
            return {"status": "COMPLETED", "value": handle.result(timeout=timeout)}
        outcome = self.wait(handle, timeout)
        if outcome["status"] != "COMPLETED":
            raise RuntimeError(
                f"workflow {id} ended {outcome['status']}: {outcome.get('failure') or outcome.get('reason')}"
            )
        return outcome

    def run_closed_loop(
        self, n: int, concurrency: int, call: Callable[[int], Any]
    ) -> tuple[float, list[float]]:
        """Run call(i) for i in range(n) with at most `concurrency` at once; (elapsed s, latencies ms)."""
        latencies: list[float] = [0.0] * n
        errors: list[BaseException] = []
        counter = iter(range(n))
        lock = threading.Lock()

        def loop() -> None:
            while not errors:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    call(i)
                except BaseException as exc:  # noqa: BLE001 - reported after the run
                    errors.append(exc)
                    return
                latencies[i] = (time.perf_counter() - t0) * 1000

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(min(concurrency, n))]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        if errors:
            raise errors[0]
        return elapsed, latencies

    # reading topics back
    def read_topic(self, topic: str, timeout: float = 60.0) -> list[Any]:
        """Every record of `topic` (all partitions, from the beginning, up to the end seen now)."""
        consumer = make_consumer(
            self.settings,
            self.settings.group(f"bench-read-{uuid.uuid4().hex}"),
            **{"enable.partition.eof": True, "isolation.level": "read_uncommitted"},
        )
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(md.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Any] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        try:
            while len(eof) < len(parts) and time.monotonic() < deadline:
                for m in consumer.consume(5000, 0.2):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            eof.add(m.partition())
                        continue
                    eof.discard(m.partition())
                    out.append(m)
        finally:
            consumer.close()
        return out

    def history(self) -> dict[str, list[dict[str, Any]]]:
        """workflow id -> its events (every run, de-duplicated by (run id, event id), in order)."""
        codec = serde()
        by_wf: dict[str, dict[tuple[str, int], dict[str, Any]]] = collections.defaultdict(dict)
        for m in self.read_topic(self.settings.history_topic):
            _, tr = codec.decode(m.value(), "HistoryTransition")
            for ev in tr["events"]:
                by_wf[tr["workflow_id"]].setdefault((ev["run_id"], ev["event_id"]), ev)
        return {wid: list(evs.values()) for wid, evs in by_wf.items()}

    def tasks(self, task_list: str = "bench") -> list[tuple[int, int, str, dict[str, Any]]]:
        """(record timestamp ms, record bytes, kind, task) of every task sent to a task list."""
        codec = serde()
        out = []
        for m in self.read_topic(self.settings.tasks_topic(task_list)):
            _, rec = codec.decode(m.value(), "Task")
            kind, task = rec["task"]
            out.append((m.timestamp()[1], len(m.value()), kind, task))
        return out

    def line(self, **fields_: Any) -> dict[str, Any]:
        assert self.settings is not None
        broker = {"embedded": "tansu (embedded)", "apache": "apache-kafka 4.4.0"}[self.kafka]
        return {
            "scenario": self.scenario,
            "broker": broker + (" at " + self.bootstrap if self.bootstrap else ""),
            **fields_,
            "settings": self.overrides or "defaults",
            "fetch_wait_max_ms": self.settings.fetch_wait_max_ms,
            "workers": self.workers_mode,
            "eager_activities": self.eager,
            **({"dispatch_in_txn": True} if self.dispatch_in_txn else {}),
            "hold_ms": self.hold_ms,
            "load": [r(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            "python_loop_ms": python_loop_ms(),
        }


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


# -- profiles --------------------------------------------------------------------------------------
def summarize_profile(path: str, top: int = 12) -> str:
    """Top functions of a py-spy raw profile: self time and inclusive time, as shares of samples."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [_short(fr) for fr in stack.split(";")]
            frames = [fr for fr in frames if fr]
            if not frames:
                continue
            total += n
            self_t[frames[-1]] += n
            for fr in set(frames):
                incl[fr] += n
    if not total:
        return "(no samples)\n"
    lines = [f"{total} active samples (200/s)", "self:"]
    lines += [f"  {100 * c / total:5.1f}%  {fr}" for fr, c in self_t.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {100 * c / total:5.1f}%  {fr}" for fr, c in incl.most_common(top + 8)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    if frame.startswith("process ") or frame.startswith("thread "):
        return ""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file, _, _line = where.rpartition(":")
    for marker in (f"{REPO_ROOT}/", "site-packages/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{name}"


# -- workers (in this process or in a worker process) --------------------------------------------
_DECISIONS: list[list[float]] = []


def _instrument_decisions() -> None:
    """Time each decision task on the worker's poll thread: wall ms, that thread's CPU ms, events."""
    from kadence.worker._decisions import DecisionRunner

    original = DecisionRunner.on_task
    if getattr(original, "_bench", False):
        return

    def timed(self: Any, t: dict[str, Any], tp: Any, offset: int) -> None:
        w0, c0 = time.perf_counter(), time.thread_time()
        original(self, t, tp, offset)
        _DECISIONS.append(
            [
                r((time.perf_counter() - w0) * 1000, 3),
                r((time.thread_time() - c0) * 1000, 3),
                len(t["events"]),
                t["workflow_id"],
            ]
        )

    timed._bench = True  # type: ignore[attr-defined]  # noqa: SLF001 - a marker on our own wrapper
    DecisionRunner.on_task = timed  # type: ignore[method-assign]


def start_workers(
    client_or_settings: Any,
    task_lists: Sequence[str],
    decision_stats: bool = False,
    eager: bool = True,
    hold_ms: float | None = None,
) -> list[Any]:
    from bench.workflows import TASK_LISTS
    from kadence import Worker

    if decision_stats:
        _instrument_decisions()
    workers = []
    for tl in task_lists:
        wfs, acts = TASK_LISTS[tl]
        hold = {} if hold_ms is None else {"eager_answer_hold_ms": hold_ms}
        workers.append(
            Worker(
                client_or_settings, tl, workflows=wfs, activities=acts, eager_activities=eager, **hold
            ).start()
        )
    return workers


def _worker_main() -> int:
    settings = Settings(**json.loads(os.environ["BENCH_SETTINGS"]))
    stats_path = os.environ.get("BENCH_STATS", "")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers = start_workers(
        settings,
        os.environ["BENCH_TASK_LISTS"].split(","),
        bool(stats_path),
        bool(os.environ.get("BENCH_EAGER")),
        float(os.environ["BENCH_HOLD_MS"]) if os.environ.get("BENCH_HOLD_MS") else None,
    )
    stop.wait()
    for w in workers:
        w.stop(5)
    if stats_path:
        with open(stats_path, "w") as f:
            json.dump(_DECISIONS, f)
    return 0


def _processor_main(role: str) -> int:
    """`spawn("bench.engine", ...)`: a processor with the full Settings of the harness."""
    from kadence.processors.derived import DerivedProcessor
    from kadence.processors.history import HistoryProcessor
    from kadence.streams.launch import arg_parser as _parser
    from kadence.streams.launch import run_forever

    args = _parser(f"bench {role} processor").parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    settings = Settings(**json.loads(os.environ["BENCH_SETTINGS"]))
    # KADENCE_DERIVED_MODULES=children,signals,... runs a subset (e.g. without visibility, to
    # measure what a module costs), as `python -m kadence.processors.derived` does.
    modules = [m for m in os.environ.get("KADENCE_DERIVED_MODULES", "").split(",") if m]
    processor = (
        HistoryProcessor(settings)
        if role == "history"
        else DerivedProcessor(settings, modules)
        if modules
        else DerivedProcessor(settings)
    )
    if os.environ.get("BENCH_DISPATCH_IN_TXN"):
        _dispatch_in_transaction()
    return run_forever(
        settings,
        processor,
        args.slot,
        batch_max_records=args.batch_max_records,
        batch_max_wait_ms=args.batch_max_wait_ms,
    )


def _dispatch_in_transaction() -> None:
    """--dispatch-in-txn: dispatch records (tasks) go in the transaction, as before deviation 19."""
    from dataclasses import replace

    from kadence.streams.loop import ProcessorRunner
    from kadence.streams.transaction import Transactions

    class InTransaction(Transactions):
        def commit(self, out: Any, offsets: Any, group_metadata: Any) -> Any:
            return super().commit(
                [replace(o, dispatch=False) if o.dispatch else o for o in out], offsets, group_metadata
            )

    ProcessorRunner.transactions_class = InTransaction


if __name__ == "__main__":
    role = os.environ.get("BENCH_ROLE", "")
    if role == "worker":
        logging.basicConfig(level=os.environ.get("KADENCE_LOG_LEVEL", "WARNING"))
        sys.exit(_worker_main())
    if role in ("history", "derived"):
        sys.exit(_processor_main(role))
    sys.exit("bench.engine is the harness (BENCH_ROLE=history|derived|worker); run `python -m bench`")
