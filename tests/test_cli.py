"""The `kadence` CLI verbs against a real broker, the engine and a worker (tests/support/cli_workflows.py).

Most calls run `kadence.cli.main([...])` in this process and read stdout/stderr with capsys;
where the process matters (exit status, timing, librdkafka writing to fd 2, streaming) a
subprocess runs `python -m kadence.cli`. Commands are written as shell command lines.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kadence.cli import main
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from tests.support import cli_workflows

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent
TL = cli_workflows.TASK_LIST
IDLE = cli_workflows.IDLE_TASK_LIST
MODULE = "tests.support.cli_workflows"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Ran]


def _connection(settings: Settings) -> list[str]:
    return [
        "--bootstrap",
        settings.bootstrap,
        "--prefix",
        settings.prefix,
        "--partitions",
        str(settings.partitions),
    ]


@pytest.fixture
def cli(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("describe wf-1 -o json")`: the CLI, in this process, against the test's topics."""

    def run(command: str, *more: str) -> Ran:
        capsys.readouterr()
        code = main([*shlex.split(command), *more, *_connection(settings)])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return Ran(code, out, err)

    return run


def _cli_process(*argv: str) -> list[str]:
    return [sys.executable, "-m", "kadence.cli", *argv]


@pytest.fixture
def cli_worker(worker: Callable[..., Any]) -> Any:
    w = worker(TL, workflows=cli_workflows.WORKFLOWS, activities=cli_workflows.ACTIVITIES)
    w.assigned.wait(30)
    return w


@pytest.fixture(autouse=True)
def _librdkafka_log_back() -> Iterator[None]:
    """The CLI turns `kadence.librdkafka` off for its verbs; later tests in this process get it back."""
    yield
    logging.getLogger("kadence.librdkafka").setLevel(logging.NOTSET)


def _one_error_line(ran: Ran, *fragments: str) -> None:
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kadence: "), ran.err
    for fragment in fragments:
        assert fragment in lines[0], ran.err


def _eventually(probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KADENCE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _payload(payload: dict[str, Any]) -> Any:
    """A JSON payload as `show --output json` writes it (Avro bytes as {"$bytes": base64})."""
    return json.loads(base64.b64decode(payload["data"]["$bytes"]))


# -- start and its options ---------------------------------------------------------------------------
def test_start_options_reach_the_recorded_start(cli: Cli, engine: Any, tmp_path: Path) -> None:
    started = cli(
        f"""start Greeter --id opt-1 --task-list {IDLE} --input '"cli"' --input 3 --execution-timeout 60 """
        """--run-timeout 30 --task-timeout 5 --memo 'owner="ops"' --memo 'tags=[1, 2]' """
        """--request-id req-opt-1"""
    )
    assert started.code == 0, started.err
    assert started.out.startswith("started opt-1 run ") and "(request req-opt-1)" in started.out

    events = cli("show opt-1 --output json").json()
    kind, attrs = events[0]["attributes"]
    assert kind == "WorkflowExecutionStarted"
    assert _payload(attrs["input"]) == ["cli", 3]  # one argument per --input
    assert attrs["request_id"] == "req-opt-1"
    timeouts = (attrs["execution_timeout_ms"], attrs["run_timeout_ms"], attrs["task_timeout_ms"])
    assert timeouts == (60_000, 30_000, 5000)

    described = cli("describe opt-1 --output json").json()
    assert described["status"] == "RUNNING" and described["workflow_type"] == "Greeter"
    assert described["timeouts"] == {"execution": 60.0, "run": 30.0, "task": 5.0}
    assert described["memo"] == {"owner": "ops", "tags": [1, 2]}
    first_run = described["run_id"]

    # The same request id again: the engine starts nothing new and the CLI reports the same run.
    again = cli(
        f"""start Greeter --id opt-1 --task-list {IDLE} --input '"cli"' --input 3 --request-id req-opt-1"""
    )
    assert again.code == 0 and f"run {first_run} " in again.out

    # A second start of a running id is rejected: one line on stderr, nothing claimed on stdout.
    conflict = cli(f"start Greeter --id opt-1 --task-list {IDLE}")
    assert conflict.code == 1 and conflict.out == ""
    _one_error_line(conflict, "opt-1", "already running")

    # TERMINATE_IF_RUNNING replaces it; the arguments come from --input-file this time.
    args_file = tmp_path / "args.json"
    args_file.write_text('["file", 0]')
    replaced = cli(
        f"start Greeter --id opt-1 --task-list {IDLE} --id-reuse-policy TERMINATE_IF_RUNNING --input-file",
        str(args_file),
    )
    assert replaced.code == 0, replaced.err
    described = cli("describe opt-1 --output json").json()
    assert described["run_id"] != first_run and described["chain"] == [first_run, described["run_id"]]
    assert described["previous_runs"] == [{"run_id": first_run, "status": "TERMINATED"}]
    latest = [e for e in cli("show opt-1 -o json").json() if e["run_id"] == described["run_id"]]
    assert _payload(latest[0]["attributes"][1]["input"]) == ["file", 0]


def test_usage_errors_exit_2_without_a_traceback(cli: Cli, tmp_path: Path) -> None:
    start = f"start Greeter --id u-1 --task-list {TL}"
    not_json = cli(f"{start} --input cli")
    assert not_json.code == 2
    _one_error_line(not_json, "--input 'cli' is not JSON", """a string needs quotes: --input '"cli"'""")
    listed = tmp_path / "object.json"
    listed.write_text('{"a": 1}')
    _one_error_line(cli(f"{start} --input-file", str(listed)), "must hold a JSON array")
    _one_error_line(cli(f"{start} --input-file", str(tmp_path / "missing.json")), "missing.json")
    _one_error_line(cli(f"{start} --input 1 --input-file", str(listed)), "not both")
    _one_error_line(cli(f"{start} --memo owner"), "--memo takes KEY=JSON")
    _one_error_line(cli(f"{start} --memo owner=ops"), "not JSON")
    assert cli(f"{start} --id-reuse-policy SOMETIMES").code == 2  # argparse: usage + one error line
    assert cli(f"{start} --execution-timeout -1").code == 2
    assert cli(f"replay --module {MODULE}").code == 2  # neither an id nor --file
    assert cli("frobnicate").code == 2
    assert cli("describe x --kafka-config transactional.id=mine").code == 2
    assert main(["--help"]) == 0


# -- execute, signal, query, result ------------------------------------------------------------------
def test_execute_signal_query_and_result(cli: Cli, engine: Any, cli_worker: Any) -> None:
    executed = cli(f"""execute Greeter --id ex-1 --task-list {TL} --input '"hi"' --input 0 --timeout 60""")
    assert executed.code == 0, executed.err
    assert json.loads(executed.out) == "HI:"

    assert cli(f"""start Greeter --id sig-1 --task-list {TL} --input '"hello"' --input 2""").code == 0
    assert cli("query sig-1 greeted").json() == ""
    sent = cli("""signal sig-1 greet --input '"ada"'""")
    assert sent.code == 0 and sent.out.startswith("signal greet sent to sig-1 run "), sent.err
    _eventually(lambda: cli("""query sig-1 greeted --input '"+"'""").out.strip() == '"ada"')
    assert cli("""signal sig-1 greet --input '"bob"' --request-id sig-bob""").code == 0

    done = cli("result sig-1 --timeout 60")
    assert done.code == 0 and json.loads(done.out) == "HELLO: ADA BOB"
    as_json = cli("result sig-1 --output json").json()
    assert as_json["status"] == "COMPLETED" and as_json["result"] == "HELLO: ADA BOB" and as_json["run_id"]
    answered = cli("""query sig-1 greeted --input '" & "' --output json""").json()
    assert answered == {"workflow_id": "sig-1", "query": "greeted", "result": "ada & bob"}

    described = cli("describe sig-1 --output json").json()
    assert described["status"] == "COMPLETED" and described["result"] == "HELLO: ADA BOB"
    assert described["failure"] is None and described["activities"] == [] and described["close_time"]
    table = cli("describe sig-1")
    assert table.code == 0 and "COMPLETED" in table.out and '"HELLO: ADA BOB"' in table.out

    # A closed workflow takes no signal: the engine would drop it silently.
    closed = cli("""signal sig-1 greet --input '"late"'""")
    assert closed.code == 1
    _one_error_line(closed, "not running", "COMPLETED")
    unknown_query = cli("query sig-1 no-such-query")
    assert unknown_query.code == 1
    _one_error_line(unknown_query, "no-such-query")


def test_waiting_without_a_worker_times_out(cli: Cli, engine: Any) -> None:
    executed = cli(f"""execute Greeter --id slow-1 --task-list {IDLE} --input '"x"' --input 0 --timeout 3""")
    assert executed.code == 1
    _one_error_line(executed, "timed out", f"task list '{IDLE}'")
    waited = cli(f"start Greeter --id slow-2 --task-list {IDLE} --wait --timeout 3")
    assert waited.code == 1 and waited.out.startswith("started slow-2 run ")
    _one_error_line(waited, "timed out")
    assert cli("result slow-2 --timeout 1").code == 1


def test_a_failed_workflow(cli: Cli, engine: Any, cli_worker: Any) -> None:
    failed = cli(f"""execute Failing --id fail-1 --task-list {TL} --input '"boom"' --timeout 60""")
    assert failed.code == 1 and failed.out == ""
    _one_error_line(failed, "fail-1", "failed", "CliBoom: boom")
    as_json = cli("result fail-1 --output json")
    assert as_json.code == 1
    assert as_json.json()["status"] == "FAILED"
    assert as_json.json()["failure"] == {"type": "CliBoom", "message": "boom"}
    described = cli("describe fail-1 --output json").json()
    assert described["status"] == "FAILED" and described["result"] is None
    assert described["failure"]["type"] == "CliBoom" and described["failure"]["message"] == "boom"
    assert "CliBoom: boom" in cli("describe fail-1").out


def test_describe_lists_pending_activities_and_children(cli: Cli, engine: Any, cli_worker: Any) -> None:
    assert cli(f"start Parked --id park-1 --task-list {TL}").code == 0

    def parked() -> dict[str, Any] | None:
        d = cli("describe park-1 --output json").json()
        return d if d["activities"] and d["children"] and d["children"][0]["started"] else None

    described = _eventually(parked)
    (act,) = described["activities"]
    assert act["activity_type"] == "never-run" and act["task_list"] == IDLE
    assert act["attempt"] == 1 and described["pending_activities"] == 1
    (child,) = described["children"]
    assert child["workflow_id"] == "park-1-child" and child["workflow_type"] == "Idle" and child["run_id"]
    assert described["pending_children"] == ["park-1-child"]
    table = cli("describe park-1").out
    assert "pending activities:" in table and "never-run" in table and "park-1-child (Idle, run " in table
    child_view = cli("describe park-1-child --output json").json()
    assert child_view["parent"]["workflow_id"] == "park-1" and child_view["status"] == "RUNNING"


# -- cancel and terminate ------------------------------------------------------------------------------
def test_cancel_and_terminate(cli: Cli, engine: Any, cli_worker: Any) -> None:
    for wid in ("can-1", "term-1"):
        assert cli(f"""start Greeter --id {wid} --task-list {TL} --input '"x"' --input 5""").code == 0
    _eventually(lambda: cli("describe can-1 --output json").json()["history_length"] >= 3)

    cancelled = cli("cancel can-1 --reason 'no longer needed'")
    assert cancelled.code == 0 and cancelled.out.startswith("cancel request sent to can-1 run ")
    outcome = cli("result can-1 --timeout 60")
    assert outcome.code == 1
    _one_error_line(outcome, "can-1", "canceled")
    assert cli("describe can-1 --output json").json()["status"] == "CANCELED"

    assert cli("terminate term-1").code == 2  # --reason is required
    terminated = cli("terminate term-1 --reason 'ops says so'")
    assert terminated.code == 0 and terminated.out.startswith("terminate sent to term-1 run ")
    outcome = cli("result term-1 --timeout 60")
    assert outcome.code == 1
    _one_error_line(outcome, "terminated", "ops says so")
    described = cli("describe term-1 --output json").json()
    assert described["status"] == "TERMINATED" and described["reason"] == "ops says so"

    for command in ("cancel can-1", "terminate term-1 --reason again"):
        again = cli(command)
        assert again.code == 1
        _one_error_line(again, "not running")


# -- not found, unreachable, missing topics ------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        "describe never-started",
        "show never-started",
        "history never-started",
        "show never-started --follow",
        "result never-started --timeout 5",
        "signal never-started greet --input 1",
        "query never-started greeted",
        "cancel never-started",
        "terminate never-started --reason r",
        f"replay never-started --module {MODULE}",
    ],
)
def test_an_unknown_id_is_not_found(cli: Cli, settings: Settings, command: str) -> None:
    ensure_core_topics(settings)
    ran = cli(command)
    assert ran.code == 1 and ran.out == ""
    _one_error_line(ran, "workflow 'never-started' not found in domain 'default'")


def test_missing_topics_exit_3(cli: Cli, settings: Settings) -> None:
    ran = cli("describe x")  # nothing was created under this test's prefix
    assert ran.code == 3
    _one_error_line(ran, f"topic {settings.prefix}history does not exist", "kadence topics create")


@pytest.mark.parametrize(
    "command", [f"""start Greeter --id x --task-list {TL} --input '"cli"'""", "describe x"]
)
def test_an_unreachable_broker_is_reported_within_5s(command: str) -> None:
    """A process: librdkafka's own printer would write to fd 2, which capsys does not see."""
    bootstrap = f"127.0.0.1:{_dead_port()}"
    t0 = time.monotonic()
    argv = _cli_process(*shlex.split(command), "--bootstrap", bootstrap)
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=60, cwd=REPO)
    elapsed = time.monotonic() - t0
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [  # said as soon as the connection is refused
        f"kadence: cannot reach the Kafka broker at {bootstrap} "
        f"(Connect to ipv4#{bootstrap} failed: Connection refused)"
    ]
    assert "%3|" not in done.stderr and "FAIL" not in done.stderr
    assert elapsed < 5.0, f"took {elapsed:.1f}s"


def test_librdkafka_log_goes_through_python_logging_at_debug() -> None:
    bootstrap = f"127.0.0.1:{_dead_port()}"
    argv = _cli_process(
        "describe", "x", "--bootstrap", bootstrap, "--log-level", "DEBUG", "--connect-timeout", "1"
    )
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 3
    assert "kadence.librdkafka ERROR" in done.stderr and "%3|" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"kadence: cannot reach the Kafka broker at {bootstrap} (Connect to")


def test_a_start_nobody_records_is_not_confirmed(cli: Cli, settings: Settings) -> None:
    ensure_core_topics(settings)  # the topics, but no engine
    ran = cli(f"start Greeter --id lonely --task-list {TL} --timeout 2")
    assert ran.code == 1 and ran.out == ""
    _one_error_line(ran, "'lonely' was sent", "did not record it within 2s", "kadence server")


# -- show, follow, replay ------------------------------------------------------------------------------
def test_show_follow_streams_until_the_workflow_closes(
    cli: Cli, settings: Settings, engine: Any, cli_worker: Any, tmp_path: Path
) -> None:
    assert cli(f"""start Greeter --id fol-1 --task-list {TL} --input '"f"' --input 1""").code == 0
    argv = _cli_process("show", "fol-1", "--follow", "--output", "json", *_connection(settings))
    stderr_path = tmp_path / "follow.err"
    with open(stderr_path, "w") as stderr:
        follow = subprocess.Popen(
            argv, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    # Everything is read through follow.stdout: communicate() after a readline() reads the pipe's
    # file descriptor and loses what readline() had buffered (once, a line's end: an empty line).
    watchdog = threading.Timer(60, follow.kill)
    watchdog.start()
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()  # streamed while the workflow still runs
        assert json.loads(first)["attributes"][0] == "WorkflowExecutionStarted"
        assert json.loads(first)["workflow_id"] == "fol-1"
        assert follow.poll() is None
        assert cli("""signal fol-1 greet --input '"zed"'""").code == 0
        out = first + follow.stdout.read()  # to the end: the follower exits at the close
        follow.wait(10)
    finally:
        watchdog.cancel()
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, stderr_path.read_text()
    kinds = [json.loads(line)["attributes"][0] for line in out.splitlines()]
    assert "WorkflowExecutionSignaled" in kinds and kinds[-1] == "WorkflowExecutionCompleted"

    table = cli("show fol-1")
    assert table.code == 0 and table.out == cli("history fol-1").out
    assert "WorkflowExecutionCompleted" in table.out and table.out.startswith("  run ")
    assert cli("show fol-1 --json").json() == cli("history fol-1 --output json").json()
    followed_closed = cli("show fol-1 --follow")  # already closed: prints the history and ends
    assert followed_closed.code == 0 and followed_closed.out == table.out


def test_replay(cli: Cli, engine: Any, cli_worker: Any, tmp_path: Path) -> None:
    assert (
        cli(f"""execute Greeter --id rep-1 --task-list {TL} --input '"r"' --input 0 --timeout 60""").code == 0
    )
    ok = cli(f"replay rep-1 --module {MODULE}")
    assert ok.code == 0 and "replayed 1 run(s)" in ok.out and "deterministic" in ok.out

    wrong_module = cli("replay rep-1 --module tests.support.timeout_workflows")
    assert wrong_module.code == 2
    _one_error_line(wrong_module, "module tests.support.timeout_workflows has no workflow type 'Greeter'")
    assert cli("replay rep-1 --module tests.support.no_such_module").code == 2

    # The recorded history, with the activity the code schedules renamed: the code no longer matches.
    events = cli("show rep-1 --output json").json()
    recorded = tmp_path / "rep-1.json"
    recorded.write_text(json.dumps(events))
    assert cli(f"replay --module {MODULE} --file", str(recorded)).code == 0
    (scheduled,) = [e for e in events if e["attributes"][0] == "ActivityTaskScheduled"]
    scheduled["attributes"][1]["activity_type"] = "whisper"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(events))
    diverged = cli(f"replay --module {MODULE} --file", str(tampered))
    assert diverged.code == 1 and diverged.out == ""
    _one_error_line(
        diverged, "non-determinism in workflow 'rep-1'", f"event {scheduled['event_id']}", "whisper"
    )
