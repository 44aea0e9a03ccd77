"""Durable timers, every timeout and retry policies (issue 5), end to end through the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kadence.failures import WorkflowFailureError
from tests.support import timeout_workflows as tw

REPO = Path(__file__).resolve().parent.parent


def events(client, workflow_id: str) -> list[dict]:
    return client.get_handle(workflow_id).history()


def kinds(client, workflow_id: str) -> list[str]:
    return [e["attributes"][0] for e in events(client, workflow_id)]


@pytest.fixture
def served(client, worker):
    worker(tw.TASK_LIST, tw.WORKFLOWS, tw.ACTIVITIES)
    return client


def start_worker_process(settings, tmp_path: Path, **env: str) -> subprocess.Popen:
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - the worker process writes it until it exits
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kadence.cli",
            "worker",
            "tests.support.timeout_workflows",
            "--bootstrap",
            settings.bootstrap,
            "--prefix",
            settings.prefix,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def test_workflow_sleeps_200ms(served) -> None:
    t0 = time.time()
    assert served.execute_workflow(tw.Sleeper.run, 0.2, id="sleep", task_list=tw.TASK_LIST) == "woke"
    assert time.time() - t0 >= 0.2
    evs = events(served, "sleep")
    started = next(e for e in evs if e["attributes"][0] == "TimerStarted")
    fired = next(e for e in evs if e["attributes"][0] == "TimerFired")
    lateness = fired["timestamp"] - (
        started["timestamp"] + started["attributes"][1]["start_to_fire_timeout_ms"]
    )
    print(f"200 ms timer fired {lateness} ms after its deadline")
    assert 0 <= lateness < 500  # issue target: < 100 ms on an idle machine (bench/timers measures it)


def test_wait_condition_with_timeout_both_ways(served) -> None:
    assert (
        served.execute_workflow(tw.ConditionWaiter.run, 0.3, id="wc-timeout", task_list=tw.TASK_LIST)
        == "timed out"
    )
    assert "TimerFired" in kinds(served, "wc-timeout")
    handle = served.start_workflow(tw.ConditionWaiter.run, 30, id="wc-met", task_list=tw.TASK_LIST)
    handle.signal(tw.ConditionWaiter.proceed)
    assert handle.result(timeout=30) == "condition met"
    met = kinds(served, "wc-met")
    assert "TimerCanceled" in met and "TimerFired" not in met  # cancelling the wait cancels the timer


def test_activity_start_to_close_timeout_then_success_on_retry(served, tmp_path) -> None:
    result = served.execute_workflow(tw.RetryingActivity.run, str(tmp_path), id="s2c", task_list=tw.TASK_LIST)
    assert result == "done on attempt 2"
    evs = events(served, "s2c")
    retrying = [e["attributes"][1] for e in evs if e["attributes"][0] == "ActivityTaskRetrying"]
    assert (
        len(retrying) == 1 and retrying[0]["timeout_type"] == "START_TO_CLOSE" and retrying[0]["attempt"] == 1
    )
    started = [e["attributes"][1] for e in evs if e["attributes"][0] == "ActivityTaskStarted"]
    assert [s["attempt"] for s in started] == [2]
    assert "ActivityTaskTimedOut" not in kinds(served, "s2c")


def test_heartbeat_timeout_after_worker_sigkill(client, worker, settings, tmp_path) -> None:
    doomed = start_worker_process(settings, tmp_path, KADENCE_TEST_DOOMED="1")
    try:
        handle = client.start_workflow(
            tw.HeartbeatWorkflow.run, str(tmp_path), id="hb", task_list=tw.TASK_LIST
        )
        wait_until(
            lambda: (tmp_path / "started").exists(), 60, "the first attempt to start on the doomed worker"
        )
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        worker(tw.TASK_LIST, tw.WORKFLOWS, tw.ACTIVITIES)  # the second worker takes over the task list
        result = handle.result(timeout=60)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert result.startswith("finished on attempt") and result.endswith(
        f"by pid {os.getpid()}"
    )  # the 2nd worker
    retrying = [
        e["attributes"][1] for e in events(client, "hb") if e["attributes"][0] == "ActivityTaskRetrying"
    ]
    assert retrying and retrying[0]["timeout_type"] == "HEARTBEAT" and retrying[0]["attempt"] == 1
    # (a redelivered stale attempt may finish first on the successor: its result is the one recorded
    # only if its attempt is current; otherwise it is dropped as stale)


def test_child_execution_timeout_reaches_the_parent(served) -> None:
    result = served.execute_workflow(tw.TimeoutParent.run, id="tp", task_list=tw.TASK_LIST)
    assert result == "ChildWorkflowError caused by TimeoutError"
    assert kinds(served, "tp-child")[-1] == "WorkflowExecutionTimedOut"
    assert "ChildWorkflowExecutionTimedOut" in kinds(served, "tp")


def test_child_retry_policy_parent_sees_one_success(served) -> None:
    assert (
        served.execute_workflow(tw.RetryParent.run, id="rp", task_list=tw.TASK_LIST)
        == "succeeded on attempt 3"
    )
    parent = kinds(served, "rp")
    assert (
        parent.count("ChildWorkflowExecutionStarted") == 1
        and parent.count("ChildWorkflowExecutionCompleted") == 1
    )
    assert "ChildWorkflowExecutionFailed" not in parent
    child = events(served, "rp-child")
    runs = [e for e in child if e["attributes"][0] == "WorkflowExecutionStarted"]
    assert [r["attributes"][1]["attempt"] for r in runs] == [1, 2, 3]  # one run per attempt, same workflow id
    continued = [e["attributes"][1] for e in child if e["attributes"][0] == "WorkflowExecutionContinuedAsNew"]
    assert [c["initiator"] for c in continued] == ["RETRY_POLICY", "RETRY_POLICY"]
    assert continued[0]["failure"]["type"] == "Flaky"


def test_decision_task_timeout_when_the_worker_dies_holding_it(client, worker, settings, tmp_path) -> None:
    doomed = start_worker_process(settings, tmp_path, KADENCE_TEST_HANG="1")
    try:
        handle = client.start_workflow(tw.HangOnce.run, id="dtt", task_list=tw.TASK_LIST, task_timeout=1)
        # The doomed worker holds the decision task (its workflow code wedges); kill it.
        wait_until(lambda: "DecisionTaskStarted" in kinds(client, "dtt"), 30, "the first decision task")
        time.sleep(1.0)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        worker(tw.TASK_LIST, tw.WORKFLOWS, tw.ACTIVITIES)
        assert handle.result(timeout=60) == "answered by a healthy worker"
    finally:
        if doomed.poll() is None:
            doomed.kill()
    evs = events(client, "dtt")
    timed_out = [e["attributes"][1] for e in evs if e["attributes"][0] == "DecisionTaskTimedOut"]
    assert timed_out and timed_out[0]["timeout_type"] == "START_TO_CLOSE"
    attempts = [e["attributes"][1]["attempt"] for e in evs if e["attributes"][0] == "DecisionTaskScheduled"]
    assert attempts[0] == 1 and max(attempts) >= 2


def test_workflow_execution_timeout(served) -> None:
    handle = served.start_workflow(
        tw.NeverEnding.run, id="wet", task_list=tw.TASK_LIST, execution_timeout=0.5
    )
    with pytest.raises(WorkflowFailureError) as err:
        handle.result(timeout=30)
    assert err.value.status == "TIMED_OUT"
    assert kinds(served, "wet")[-1] == "WorkflowExecutionTimedOut"
