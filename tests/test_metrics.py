"""Prometheus endpoints of the engine's processes and of a worker, scraped during a real run.

The engine runs as `kadence server` runs it (one supervised process per component, each with its
own metrics port); the worker serves its metrics from this process. The values are checked
against what the run did: workflows started, completed and failed, history lengths (compared with
the histories themselves), task latencies counted per task, a dead letter, a restart.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kadence import Client, activity, workflow
from kadence.failures import ApplicationError, WorkflowFailureError
from kadence.processors.server import InProcessEngine, ServerProcesses
from kadence.streams.clients import make_producer
from kadence.streams.settings import Settings
from kadence.worker import Worker

#: (metric sample name, labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@activity.defn
def greet(name: str) -> str:
    if name == "bad":
        raise ApplicationError("no greeting for bad", type="Refused", non_retryable=True)
    return f"hello {name}"


@workflow.defn
class MetricsHello:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=10)


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def series(samples: Samples, name: str, **labels: str) -> list[dict[str, str]]:
    want = set(labels.items())
    return [dict(ls) for (n, ls), _ in samples.items() if n == name and want <= ls]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def free_port_base(count: int) -> int:
    """A port P with P .. P+count-1 free (checked by binding each)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def test_engine_and_worker_endpoints_count_what_happened(settings: Settings) -> None:
    base = free_port_base(3)
    server = ServerProcesses(settings, ["history", "derived"], metrics_port=base).start()
    supervisor = threading.Thread(target=server.supervise, daemon=True)
    supervisor.start()
    history_port = server.component_metrics_port("history")
    derived_port = server.component_metrics_port("derived")
    assert (history_port, derived_port) == (base + 1, base + 2)
    task_list = f"metrics-{uuid.uuid4().hex[:6]}"
    client = Client(settings)
    worker = Worker(client, task_list, workflows=[MetricsHello], activities=[greet], metrics_port=0)
    try:
        worker.start()
        assert worker.metrics_port
        names = ["ada", "bob", "cy", "di", "ed"]
        handles = [
            client.start_workflow(
                MetricsHello.run, n, id=f"hello-{n}-{uuid.uuid4().hex[:6]}", task_list=task_list
            )
            for n in [*names, "bad"]
        ]
        for h in handles[:-1]:
            assert h.result(timeout=120).startswith("hello ")
        with pytest.raises(WorkflowFailureError):
            handles[-1].result(timeout=120)

        # engine: started, closed by status, open, history lengths (as recorded in history)
        lengths = sorted(len(h.history()) for h in handles)
        wtype = "MetricsHello"
        engine = scrape(history_port)
        assert value(engine, "kadence_workflow_started_total", workflow_type=wtype) == 6
        assert value(engine, "kadence_workflow_completed_total", workflow_type=wtype) == 5
        assert value(engine, "kadence_workflow_failed_total", workflow_type=wtype) == 1
        assert value(engine, "kadence_workflow_open") == 0
        assert len(series(engine, "kadence_workflow_open")) == settings.partitions
        assert value(engine, "kadence_workflow_history_length_events_count", workflow_type=wtype) == 6
        assert value(engine, "kadence_workflow_history_length_events_sum", workflow_type=wtype) == sum(
            lengths
        )
        assert value(engine, "kadence_activity_task_failed_total") == 1
        # the loop: every transaction timed, every batch counted, lag per input partition
        assert value(engine, "kadence_transaction_commit_latency_seconds_count", processor="history") >= 1
        processed = value(engine, "kadence_records_processed_total", processor="history")
        assert processed >= 6 * 3  # a start, two decision answers and an activity answer each, at least
        assert value(engine, "kadence_batch_size_records_sum", processor="history") >= processed

        def lag_partitions(port: int, processor: str) -> list[int]:
            lag = series(scrape(port), "kadence_consumer_lag_records", processor=processor)
            return sorted(int(s["partition"]) for s in lag)

        partitions = list(range(settings.partitions))
        wait_for(
            lambda: lag_partitions(history_port, "history") == partitions,
            "lag gauges (refreshed each second)",
        )
        wait_for(
            lambda: value(scrape(history_port), "kadence_consumer_lag_records", processor="history") == 0,
            "the history processor's lag to drain",
        )
        derived = scrape(derived_port)
        assert value(derived, "kadence_records_processed_total", processor="derived") > 0
        wait_for(  # (the derived processor's gauges are refreshed each second too: seen missing once on Kafka)
            lambda: lag_partitions(derived_port, "derived") == partitions,
            "the derived processor's lag gauges",
        )

        # worker: one schedule-to-start and one execution per task, failures by type
        w = scrape(worker.metrics_port)
        labels = {"task_list": task_list}
        decisions = value(w, "kadence_workflow_task_execution_latency_seconds_count", **labels)
        assert decisions >= 12  # each run: the first decision, then the one after its activity
        assert (
            value(w, "kadence_workflow_task_schedule_to_start_latency_seconds_count", **labels) == decisions
        )
        assert (
            value(w, "kadence_activity_execution_latency_seconds_count", activity_type="greet", **labels) == 6
        )
        assert value(w, "kadence_activity_execution_failed_total", activity_type="greet", **labels) == 1
        assert value(w, "kadence_workflow_task_execution_failed_total", **labels) == 0
        # the worker's schedule-to-start histogram has every observation in some bucket
        assert (
            value(w, "kadence_workflow_task_schedule_to_start_latency_seconds_bucket", le="+Inf", **labels)
            == decisions
        )

        # a dead letter: a record on `commands` that is no Command
        producer = make_producer(settings)
        producer.produce(settings.commands_topic, key=b"junk", value=b"not avro")
        producer.flush(10)
        wait_for(
            lambda: value(scrape(history_port), "kadence_dead_letters_total", processor="history") == 1,
            "the dead letter to be counted",
        )

        # a restart: the supervisor counts it, the restarted process serves on the same port. (The
        # counter lives in this pytest process, which earlier tests' supervisors may have counted in.)
        restarts_before = value(scrape(base), "kadence_processor_restarts_total", component="derived")
        derived_proc = server.procs["derived"]
        derived_proc.send_signal(signal.SIGKILL)
        derived_proc.wait(10)
        wait_for(
            lambda: (
                value(scrape(base), "kadence_processor_restarts_total", component="derived")
                == restarts_before + 1
            ),
            "the supervisor to count the restart",
        )

        def derived_serves_again() -> bool:
            try:
                return value(
                    scrape(derived_port), "kadence_consumer_lag_records", processor="derived"
                ) == 0 and bool(series(scrape(derived_port), "kadence_consumer_lag_records"))
            except OSError:
                return False

        wait_for(derived_serves_again, "the restarted derived process's endpoint")
    finally:
        worker.stop(5)
        client.close()
        server.stop()
        supervisor.join(5)


def test_in_process_engine_serves_both_processors_on_one_endpoint(settings: Settings) -> None:
    with InProcessEngine(settings, metrics_port=0) as engine:
        assert engine.metrics_port
        client = Client(settings)
        try:
            task_list = f"metrics-{uuid.uuid4().hex[:6]}"
            with Worker(client, task_list, workflows=[MetricsHello], activities=[greet]):
                handle = client.start_workflow(
                    MetricsHello.run, "zed", id=f"hello-zed-{uuid.uuid4().hex[:6]}", task_list=task_list
                )
                assert handle.result(timeout=120) == "hello zed"
            samples = scrape(engine.metrics_port)
        finally:
            client.close()
    for processor in ("history", "derived"):
        assert value(samples, "kadence_records_processed_total", processor=processor) > 0
    assert value(samples, "kadence_workflow_completed_total", workflow_type="MetricsHello") >= 1


def test_dashboard_and_docs_name_only_metrics_that_exist() -> None:
    import json
    import re
    from pathlib import Path

    from prometheus_client import REGISTRY

    import kadence.processors.history.metrics
    import kadence.streams.metrics
    import kadence.worker._metrics  # noqa: F401 - registers the worker's metrics

    known = {
        s.name for family in REGISTRY.collect() for s in family.samples if s.name.startswith("kadence_")
    } | {family.name for family in REGISTRY.collect() if family.name.startswith("kadence_")}
    docs = Path(__file__).parent.parent / "docs"
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = set(re.findall(r"kadence_[a-z_]+", exprs))
    documented = set(re.findall(r"`(kadence_[a-z_]+)`", (docs / "metrics.md").read_text()))

    def defined(name: str) -> bool:
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        return name in known or base in known or f"{base}_total" in known

    assert used and all(defined(n) for n in used), sorted(n for n in used if not defined(n))
    assert all(defined(n) for n in documented), sorted(n for n in documented if not defined(n))
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("kadence_")}
    undocumented = {
        f for f in families if not any(d == f or d.startswith(f) or f.startswith(d) for d in documented)
    }
    assert not undocumented, sorted(undocumented)
