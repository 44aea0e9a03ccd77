"""Run the whole engine: the history processor and the derived processors, one process each by
default (so both cores work), restarted if they die. Used by `kadence server` and `kadence demo`."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kadence.streams import metrics
from kadence.streams.engine_secret import with_engine_secret
from kadence.streams.launch import spawn
from kadence.streams.loop import ProcessorRunner
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics

from .derived import ALL_MODULES, DerivedProcessor
from .exit_report import exit_note
from .history import HistoryConfig, HistoryProcessor

log = logging.getLogger("kadence.server")

#: Process layouts: what `--only` may name.
COMPONENTS = ("history", "derived", *ALL_MODULES)


def _module_and_env(component: str) -> tuple[str, dict[str, str]]:
    if component == "history":
        return "kadence.processors.history", {}
    if component == "derived":
        return "kadence.processors.derived", {}
    return "kadence.processors.derived", {"KADENCE_DERIVED_MODULES": component}


@dataclass
class RestartBackoff:
    """When to restart a component that keeps exiting: exponential backoff with a cap.

    A process that ran at least `healthy_after_s` before it exited starts the count again, so one
    crash a day restarts at once while a crash loop backs off to one restart every `cap_s`."""

    initial_s: float = 0.5
    cap_s: float = 30.0
    healthy_after_s: float = 60.0
    #: Exits in a row after which the supervisor says, at ERROR, that the component keeps dying.
    alarm_after: int = 5
    exits_in_a_row: int = 0

    def on_exit(self, ran_for_s: float) -> float:
        """Record an exit after `ran_for_s` seconds of running; return the delay before the restart."""
        self.exits_in_a_row = 1 if ran_for_s >= self.healthy_after_s else self.exits_in_a_row + 1
        return float(min(self.cap_s, self.initial_s * 2 ** (self.exits_in_a_row - 1)))

    @property
    def alarming(self) -> bool:
        return self.exits_in_a_row >= self.alarm_after


@dataclass
class ServerProcesses:
    """Supervises one OS process per component; restarts a process that exits, backing off while it
    keeps exiting (RestartBackoff) and saying so in the log."""

    settings: Settings
    components: Sequence[str] = ("history", "derived")
    slot: int = 0
    #: The processes' log level (`kadence server --log-level`); None: KADENCE_LOG_LEVEL, else INFO.
    log_level: str | None = None
    #: `kadence server --metrics-port P`: the supervisor serves its metrics (restarts) on P and the
    #: i-th component (in `components` order, from 0) on P + 1 + i. None: no metrics endpoints.
    metrics_port: int | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    backoff: dict[str, RestartBackoff] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    restart_at: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> ServerProcesses:
        ensure_core_topics(self.settings)
        # loaded (or provisioned) once; the processes get it with the other settings (Settings.to_env)
        self.settings = with_engine_secret(self.settings)
        if self.metrics_port is not None:
            metrics.serve(self.metrics_port)
        for component in self.components:
            self._spawn(component)
        return self

    def _spawn(self, component: str) -> None:
        module, env = _module_and_env(component)
        if self.log_level is not None:
            env["KADENCE_LOG_LEVEL"] = self.log_level
        if self.metrics_port is not None:
            env["KADENCE_METRICS_PORT"] = str(self.component_metrics_port(component))
        self.procs[component] = spawn(module, self.settings, self.slot, env={**os.environ, **env})
        self.started_at[component] = time.monotonic()

    def component_metrics_port(self, component: str) -> int:
        """The port of `component`'s metrics endpoint (`metrics_port` must be set)."""
        assert self.metrics_port is not None
        return self.metrics_port + 1 + list(self.components).index(component)

    def supervise(self, poll_s: float = 0.1) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for component, proc in list(self.procs.items()):
                if self._stop.is_set():
                    break
                if component in self.restart_at:
                    if now >= self.restart_at[component]:
                        del self.restart_at[component]
                        self.restarts[component] = self.restarts.get(component, 0) + 1
                        metrics.RESTARTS.labels(component).inc()
                        self._spawn(component)
                elif proc.poll() is not None:
                    self._schedule_restart(component, proc, now)
            self._stop.wait(poll_s)

    def _schedule_restart(self, component: str, proc: subprocess.Popen[bytes], now: float) -> None:
        backoff = self.backoff.setdefault(component, RestartBackoff())
        ran_for = now - self.started_at.get(component, now)
        delay = backoff.on_exit(ran_for)
        self.restart_at[component] = now + delay
        note = exit_note(self.settings, component, time.time() - ran_for)
        if backoff.alarming:
            log.error(
                "%s (pid %s) keeps dying: %d exits in a row, the last with %s after %.1fs; "
                "restarting in %.1fs%s. Restarts alone do not get past a cause that kills it every time",
                component,
                proc.pid,
                backoff.exits_in_a_row,
                proc.returncode,
                ran_for,
                delay,
                note,
            )
        else:
            log.warning(
                "%s (pid %s) exited with %s after %.1fs (%d in a row); restarting in %.1fs%s",
                component,
                proc.pid,
                proc.returncode,
                ran_for,
                backoff.exits_in_a_row,
                delay,
                note,
            )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class InProcessEngine:
    """The engine's processors as threads of this process (tests, the demo): one runner each."""

    settings: Settings
    modules: Sequence[str] = tuple(ALL_MODULES)
    config: HistoryConfig | None = None
    #: Serve the processors' metrics (one registry, one endpoint for both) on this port.
    metrics_port: int | None = None
    runners: list[ProcessorRunner] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, wait_assigned: float = 30.0) -> InProcessEngine:
        ensure_core_topics(self.settings)
        self.settings = with_engine_secret(self.settings)  # loaded once, for both processors
        if self.metrics_port is not None:
            self.metrics_port = metrics.serve(self.metrics_port)
        self.runners = [
            ProcessorRunner(self.settings, HistoryProcessor(self.settings, self.config)),
            ProcessorRunner(self.settings, DerivedProcessor(self.settings, self.modules)),
        ]
        for runner in self.runners:
            t = threading.Thread(
                target=self._run, args=(runner,), name=f"kadence-{runner.processor.name}", daemon=True
            )
            t.start()
            self.threads.append(t)
        deadline = time.monotonic() + wait_assigned
        while any(len(r.assigned) < self.settings.partitions for r in self.runners):
            if time.monotonic() > deadline:
                raise TimeoutError("engine processors were not assigned their partitions in time")
            time.sleep(0.02)
        return self

    def _run(self, runner: ProcessorRunner) -> None:
        try:
            runner.run(self._stop)
        except Exception:  # noqa: BLE001 - logged; the test or demo sees the engine stop
            log.exception("processor %s stopped", runner.processor.name)

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(15)

    def __enter__(self) -> InProcessEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
