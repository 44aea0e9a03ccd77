"""`kadence server`'s supervisor restarts a dying processor with exponential backoff and says so."""

from __future__ import annotations

import logging
import signal
import threading
import time

import pytest

from kadence.processors.server import RestartBackoff, ServerProcesses
from kadence.streams.settings import Settings


def test_backoff_doubles_up_to_the_cap_and_a_healthy_run_starts_again() -> None:
    backoff = RestartBackoff(initial_s=0.5, cap_s=8.0, healthy_after_s=60.0, alarm_after=5)
    delays = [backoff.on_exit(ran_for_s=1.0) for _ in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.alarming
    assert backoff.on_exit(ran_for_s=120.0) == 0.5  # it ran fine for a while: a fresh failure
    assert not backoff.alarming


def test_a_killed_processor_comes_back_later_each_time(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kadence.server")
    server = ServerProcesses(settings, ["history"]).start()
    server.backoff["history"] = RestartBackoff(initial_s=0.5, cap_s=30.0, alarm_after=3)
    supervisor = threading.Thread(target=server.supervise, daemon=True)
    supervisor.start()
    gaps = []
    try:
        for _ in range(3):
            proc = server.procs["history"]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed = time.monotonic()
            deadline = killed + 30
            while server.procs["history"] is proc:
                assert time.monotonic() < deadline, "the supervisor did not restart history"
                time.sleep(0.02)
            gaps.append(time.monotonic() - killed)
        assert server.procs["history"].poll() is None
    finally:
        server.stop()
        supervisor.join(5)
    assert gaps[0] >= 0.4 and gaps[1] >= 0.9 and gaps[2] >= 1.9, gaps
    assert gaps[0] < gaps[2]
    messages = [r.getMessage() for r in caplog.records if r.name == "kadence.server"]
    assert any("(1 in a row); restarting in 0.5s" in m for m in messages), messages
    assert any("(2 in a row); restarting in 1.0s" in m for m in messages), messages
    alarm = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "keeps dying: 3 exits in a row" in r.getMessage()
    ]
    assert alarm, messages
    assert server.restarts["history"] == 3


def _restart_lines(caplog: pytest.LogCaptureFixture, count: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "kadence.server" and "restarting in" in r.getMessage()
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_the_restart_line_names_the_input_offset_that_stopped_the_process(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The child records the offsets of a batch that stopped it in the failed-input ledger
    (streams.failed_inputs) before it goes; the supervisor names them in its restart line. The
    entry is written here through the ledger's own API, as the dying child writes it, and the
    child (a real history processor on the broker) is then killed."""
    from kadence.streams.failed_inputs import FailedInputs

    caplog.set_level(logging.WARNING, logger="kadence.server")
    server = ServerProcesses(settings, ["history"]).start()
    server.backoff["history"] = RestartBackoff(initial_s=0.2, cap_s=1.0, alarm_after=2)
    supervisor = threading.Thread(target=server.supervise, daemon=True)
    supervisor.start()
    try:
        time.sleep(1.5)
        ledger = FailedInputs(settings.state_dir, f"{settings.prefix}history")
        ledger.record({2: (15, 15)}, "KafkaException: Broker: Message size too large")
        proc = server.procs["history"]
        proc.send_signal(signal.SIGKILL)
        first = _restart_lines(caplog, 1)
        assert first, "no restart line"
        assert f"it was stopped by input {settings.commands_topic}[2]@15 (attempt 1)" in first[0], first
        assert "Message size too large" in first[0]

        deadline = time.monotonic() + 30
        while server.procs["history"] is proc or server.procs["history"].poll() is not None:
            assert time.monotonic() < deadline, "history was not restarted"
            time.sleep(0.05)
        time.sleep(1.5)  # the ledger entry is older than this instance
        server.procs["history"].send_signal(signal.SIGKILL)
        lines = _restart_lines(caplog, 2)
        assert len(lines) == 2, lines
        assert "keeps dying: 2 exits in a row" in lines[1], lines
        assert "it recorded no input offset" in lines[1], lines
    finally:
        server.stop()
        supervisor.join(5)
