"""More of the `kadence` CLI against a real broker: the retry policy flags, `--output json` on every
workflow verb (checked against the recorded history), an unreachable broker on every verb,
`kadence server --log-level` reaching the processes it starts, the demo ending cleanly, and the
progress of `kadence replay`. The helpers and fixtures are tests/test_cli.py's."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import shlex
import signal
import socket
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from kadence.cli._progress import Progress
from kadence.streams.settings import Settings
from tests import test_cli
from tests.test_cli import (
    IDLE,
    MODULE,
    REPO,
    TL,
    Cli,
    _cli_process,
    _connection,
    _dead_port,
    _env,
    _one_error_line,
    _payload,
)

#: tests/test_cli.py's fixtures: `cli("describe wf-1 -o json")` and a worker of its workflows.
cli = test_cli.cli
cli_worker = test_cli.cli_worker

pytestmark = pytest.mark.timeout(240)


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["attributes"][0] for e in events]


# -- the retry policy -----------------------------------------------------------------------------------
def test_retry_policy_flags_retry_a_failed_run(cli: Cli, engine: Any, cli_worker: Any) -> None:
    ran = cli(
        f"execute Flaky --id flaky-1 --task-list {TL} --input 2 --retry-maximum-attempts 3 "
        "--retry-initial-interval 0.2 --retry-backoff-coefficient 1.5 --retry-maximum-interval 2 "
        "--retry-non-retryable CliBoom --timeout 90 -o json"
    )
    assert ran.code == 0, ran.err
    outcome = ran.json()
    assert outcome["status"] == "COMPLETED" and outcome["result"] == 2  # the second attempt succeeded

    events = cli("show flaky-1 -o json").json()
    first, second = (e for e in events if e["attributes"][0] == "WorkflowExecutionStarted")
    assert first["attributes"][1]["retry_policy"] == {
        "initial_interval_ms": 200,
        "backoff_coefficient": 1.5,
        "maximum_interval_ms": 2000,
        "maximum_attempts": 3,
        "non_retryable_error_types": ["CliBoom"],
        "expiration_ms": 0,
    }
    assert second["attributes"][1]["attempt"] == 2 and second["run_id"] != first["run_id"]
    first_run = [e for e in events if e["run_id"] == first["run_id"]]
    assert _kinds(first_run)[-1] == "WorkflowExecutionContinuedAsNew"
    assert first_run[-1]["attributes"][1]["initiator"] == "RETRY_POLICY"
    described = cli("describe flaky-1 -o json").json()
    assert described["chain"] == [first["run_id"], second["run_id"]] and described["attempt"] == 2

    # Without a retry flag there is no policy: the failure is final.
    once = cli(f"execute Flaky --id flaky-2 --task-list {TL} --input 2 --timeout 90")
    assert once.code == 1
    _one_error_line(once, "flaky-2", "CliFlaky")
    started = cli("show flaky-2 -o json").json()[0]["attributes"][1]
    assert started["retry_policy"] is None

    bad = cli(f"start Flaky --id flaky-3 --task-list {TL} --retry-maximum-attempts -1")
    assert bad.code == 2
    _one_error_line(bad, "--retry-maximum-attempts -1")


# -- --output json on every verb, checked against the history -----------------------------------------------
def test_every_workflow_verb_speaks_json(cli: Cli, settings: Settings, engine: Any, cli_worker: Any) -> None:
    started = cli(
        f"""start Greeter --id js-1 --task-list {TL} --input '"js"' --input 1 --request-id r-js -o json"""
    )
    assert started.code == 0, started.err
    first = started.json()
    assert first["workflow_id"] == "js-1" and first["request_id"] == "r-js" and first["run_id"]

    signalled = cli("""signal js-1 greet --input '"ada"' -o json""").json()
    assert signalled == {"workflow_id": "js-1", "run_id": first["run_id"], "signal": "greet", "sent": True}
    done = cli("result js-1 --timeout 60 -o json").json()
    assert done["status"] == "COMPLETED" and done["result"] == "JS: ADA"
    events = cli("show js-1 -o json").json()
    (signal_event,) = [e for e in events if e["attributes"][0] == "WorkflowExecutionSignaled"]
    assert signal_event["attributes"][1]["signal_name"] == "greet"
    assert _payload(signal_event["attributes"][1]["input"]) == ["ada"]

    waited = cli(
        f"""start Greeter --id js-2 --task-list {TL} --input '"w"' --input 0 --wait --timeout 60 -o json"""
    )
    assert waited.code == 0, waited.err
    together = waited.json()  # one JSON document: the start's fields and the outcome
    assert together["status"] == "COMPLETED" and together["result"] == "W:" and together["request_id"]

    for wid in ("js-3", "js-4"):
        assert cli(f"""start Greeter --id {wid} --task-list {TL} --input '"x"' --input 9 -o json""").code == 0
    cancelled = cli("cancel js-3 --reason 'not needed' -o json").json()
    assert cancelled["action"] == "cancel" and cancelled["reason"] == "not needed" and cancelled["sent"]
    terminated = cli("terminate js-4 --reason 'ops' -o json").json()
    assert terminated["action"] == "terminate" and terminated["reason"] == "ops"
    assert cli("result js-3 --timeout 60 -o json").json()["status"] == "CANCELED"
    assert cli("result js-4 --timeout 60 -o json").json()["status"] == "TERMINATED"
    assert "WorkflowExecutionCancelRequested" in _kinds(cli("show js-3 -o json").json())
    last = cli("show js-4 -o json").json()[-1]
    assert last["attributes"][0] == "WorkflowExecutionTerminated" and last["attributes"][1]["reason"] == "ops"

    replayed = cli(f"replay js-1 --module {MODULE} -o json")
    assert replayed.code == 0, replayed.err
    assert replayed.json() == {"workflow_id": "js-1", "runs": 1, "events": len(events), "deterministic": True}

    checked = cli("topics check -o json").json()
    assert checked["ok"] is True and checked["partitions"] == settings.partitions
    assert checked["topics"] == [settings.commands_topic, settings.history_topic]


# -- an unreachable broker, on every verb that talks to one -----------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        f"execute Greeter --id x --task-list {TL}",
        "result x",
        "show x --follow",
        "signal x greet",
        "query x greeted",
        "cancel x",
        "terminate x --reason r",
        f"replay x --module {MODULE}",
        "topics check",
    ],
)
def test_every_verb_reports_an_unreachable_broker(command: str) -> None:
    bootstrap = f"127.0.0.1:{_dead_port()}"
    t0 = time.monotonic()
    argv = _cli_process(*shlex.split(command), "--bootstrap", bootstrap)
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=60, cwd=REPO)
    elapsed = time.monotonic() - t0
    assert done.returncode == 3 and done.stdout == "", done.stderr
    (line,) = done.stderr.splitlines()
    assert (
        line
        == f"kadence: cannot reach the Kafka broker at {bootstrap} (Connect to ipv4#{bootstrap} failed: Connection refused)"
    )
    assert elapsed < 5.0, f"took {elapsed:.1f}s"


def test_a_broker_that_never_answers_is_reported_after_the_connect_timeout() -> None:
    """A socket that takes the connection and never answers (a hung broker, a firewall that
    swallows packets): no refusal to go by, so the verb waits --connect-timeout, then says so."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody reads
        bootstrap = f"127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        argv = _cli_process("describe", "x", "--bootstrap", bootstrap, "--connect-timeout", "1")
        done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=60, cwd=REPO)
        elapsed = time.monotonic() - t0
    assert done.returncode == 3 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"kadence: cannot reach the Kafka broker at {bootstrap} within 1s ("), line
    assert 1.0 <= elapsed < 5.0, f"took {elapsed:.1f}s"


# -- kadence server --log-level, and the demo ----------------------------------------------------------------
def _server(settings: Settings, state_dir: Path, *flags: str) -> subprocess.Popen[str]:
    argv = _cli_process(
        "server", "--only", "history,derived", "--state-dir", str(state_dir), *_connection(settings), *flags
    )
    return subprocess.Popen(
        argv, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_server_log_level_reaches_every_process(cli: Cli, settings: Settings, tmp_path: Path) -> None:
    """The processes log their start ("... started: group ...") at INFO: shown with --log-level INFO,
    not with ERROR. Each server runs until it has recorded a start, so its processes are up."""
    assert cli("topics create").code == 0  # before the first start (the server makes them too)
    quiet = _server(settings, tmp_path / "quiet", "--log-level", "ERROR")
    try:
        ran = cli(f"start Greeter --id srv-1 --task-list {IDLE} --timeout 90")
        assert ran.code == 0, ran.err
    finally:
        out, err = _stop(quiet)
    assert "running (pids" in out
    assert " INFO " not in err and " WARNING " not in err, err[-2000:]

    verbose = _server(settings, tmp_path / "verbose", "--log-level", "info")
    try:
        ran = cli(f"start Greeter --id srv-2 --task-list {IDLE} --timeout 90")
        assert ran.code == 0, ran.err
    finally:
        out, err = _stop(verbose)
    pids = {int(p) for p in out.split("pids [", 1)[1].split("]", 1)[0].split(", ")}
    started = [line for line in err.splitlines() if " INFO " in line and "started: group" in line]
    assert {int(line.split()[2]) for line in started} == pids, err[-2000:]  # one per process
    assert "srv-2" in {e["workflow_id"] for e in cli("show srv-2 -o json").json()}


def test_demo_runs_and_ends_without_librdkafka_lines() -> None:
    done = subprocess.run(
        _cli_process("demo"), env=_env(), capture_output=True, text=True, timeout=180, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith("[demo] done in ")
    assert "WorkflowExecutionCompleted" in done.stdout
    assert done.stderr == "", done.stderr[-3000:]  # no librdkafka "Disconnected", no warnings


# -- the progress of replay -------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(caplog: pytest.LogCaptureFixture) -> None:
    terminal = _Terminal()
    with Progress("replay", total=4, unit="run", stream=terminal, bar_delay_s=0) as bar:
        assert bar.is_bar
        for _ in range(4):
            time.sleep(0.15)  # past tqdm's redraw interval (0.1 s)
            bar.update()
    drawn = terminal.getvalue()
    assert "replay" in drawn and "4/4" in drawn and "run" in drawn

    caplog.set_level(logging.DEBUG, logger="kadence.progress")
    with Progress("replay", total=3, unit="run", stream=io.StringIO(), every_s=0) as lines:
        assert not lines.is_bar
        for _ in range(3):
            lines.update()
    messages = [r.getMessage() for r in caplog.records if r.name == "kadence.progress"]
    assert messages[:3] == ["replay: 1/3 runs (33%)", "replay: 2/3 runs (66%)", "replay: 3/3 runs (100%)"]
    assert messages[3].startswith("replay: 3/3 runs (100%) done in ")

    caplog.clear()
    with pytest.raises(RuntimeError), Progress("replay", total=2, stream=io.StringIO(), every_s=60):
        raise RuntimeError("stopped")
    assert [r for r in caplog.records if r.name == "kadence.progress"] == []  # the error speaks


def test_replay_reports_its_progress_off_a_terminal(
    cli: Cli, settings: Settings, engine: Any, cli_worker: Any
) -> None:
    assert (
        cli(f"""execute Greeter --id prog-1 --task-list {TL} --input '"p"' --input 0 --timeout 60""").code
        == 0
    )
    argv = _cli_process(
        "replay", "prog-1", "--module", MODULE, "--log-level", "DEBUG", *_connection(settings)
    )
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "replayed 1 run(s)" in done.stdout
    assert "kadence.progress DEBUG replay: 1/1 run (100%) done in" in done.stderr


# -- signal-with-start and search attributes --------------------------------------------------------------
def test_signal_with_start_starts_then_signals(cli: Cli, engine: Any, cli_worker: Any) -> None:
    sws = (
        f"""signal-with-start Greeter --id sws-1 --task-list {TL} --input '"hey"' --input 2 """
        "--signal greet --signal-input"
    )
    first = cli(sws, '"ada"', "-o", "json")
    assert first.code == 0, first.err
    run_id = first.json()["run_id"]
    second = cli(sws, '"bob"')  # the run is open: it gets the signal, nothing starts
    assert second.code == 0, second.err
    assert second.out.startswith(f"signal greet sent to sws-1 run {run_id} ")
    assert cli("result sws-1 --timeout 60").out.strip() == '"HEY: ADA BOB"'

    events = cli("show sws-1 -o json").json()
    kinds = _kinds(events)
    assert kinds.count("WorkflowExecutionStarted") == 1 and {e["run_id"] for e in events} == {run_id}
    signals = [e for e in events if e["attributes"][0] == "WorkflowExecutionSignaled"]
    assert [_payload(e["attributes"][1]["input"]) for e in signals] == [["ada"], ["bob"]]
    # The first signal is recorded before the first decision task: the handler saw it first.
    assert kinds.index("WorkflowExecutionSignaled") < kinds.index("DecisionTaskScheduled")

    missing = cli(f"signal-with-start Greeter --id sws-2 --task-list {TL}")
    assert missing.code == 2  # --signal is required


def test_search_attributes_at_start(cli: Cli, engine: Any) -> None:
    ran = cli(
        f"start Greeter --id sa-1 --task-list {IDLE} --search-attribute 'Customer=\"ada\"' "
        '--search-attribute Priority=3 --search-attribute \'Tags=["a", "b"]\' '
        "--search-attribute 'Note:text=rush order' --search-attribute Due:datetime=2026-12-01T10:00:00+00:00"
    )
    assert ran.code == 0, ran.err
    recorded = cli("show sa-1 -o json").json()[0]["attributes"][1]["search_attributes"]
    assert recorded["Customer"]["type"] == "KEYWORD" and recorded["Priority"]["type"] == "INT"
    assert recorded["Tags"]["type"] == "KEYWORD_LIST" and recorded["Note"]["type"] == "TEXT"
    assert recorded["Due"]["type"] == "DATETIME"

    for flag, fragment in [
        ("Customer=ada", "not JSON"),
        ("'Odd={\"a\": 1}'", "Odd"),
        ("Due:datetime=tomorrow", "not an ISO-8601 time"),
        ("Due:date=2026-01-01", "text or datetime"),
    ]:
        bad = cli(f"start Greeter --id sa-2 --task-list {IDLE} --search-attribute {flag}")
        assert bad.code == 2, bad.err
        _one_error_line(bad, fragment)


def test_replay_draws_a_bar_on_a_terminal(cli: Cli, engine: Any, cli_worker: Any, tmp_path: Path) -> None:
    """Many recorded runs (one real history, repeated under other run ids) replayed with stderr on a
    pseudo-terminal: tqdm draws the bar, and stdout still gets the one summary line."""
    assert (
        cli(f"""execute Greeter --id bar-1 --task-list {TL} --input '"b"' --input 0 --timeout 60""").code == 0
    )
    events = cli("show bar-1 -o json").json()
    runs = 600
    recorded = tmp_path / "many.json"
    recorded.write_text(
        json.dumps([{**e, "run_id": f"{e['run_id']}-{i}"} for i in range(runs) for e in events])
    )
    terminal, terminal_side = os.openpty()
    fcntl.ioctl(terminal_side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 120 columns
    argv = _cli_process("replay", "--file", str(recorded), "--module", MODULE)
    proc = subprocess.Popen(
        argv, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=terminal_side, text=True
    )
    os.close(terminal_side)
    drawn = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(terminal)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert out == f"replayed {runs} run(s) of {runs * len(events)} events: deterministic\n"
    bar = drawn.decode(errors="replace")
    assert "replay:" in bar and f"/{runs} [" in bar and "run/s" in bar, bar[-500:]
