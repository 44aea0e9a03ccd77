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

from kadence.streams.launch import spawn
from kadence.streams.loop import ProcessorRunner
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics

from .derived import ALL_MODULES, DerivedProcessor
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
class ServerProcesses:
    """Supervises one OS process per component; restarts a process that exits."""

    settings: Settings
    components: Sequence[str] = ("history", "derived")
    slot: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> ServerProcesses:
        ensure_core_topics(self.settings)
        for component in self.components:
            self._spawn(component)
        return self

    def _spawn(self, component: str) -> None:
        module, env = _module_and_env(component)
        self.procs[component] = spawn(module, self.settings, self.slot, env={**os.environ, **env})

    def supervise(self, poll_s: float = 0.5) -> None:
        while not self._stop.is_set():
            for component, proc in list(self.procs.items()):
                if proc.poll() is not None and not self._stop.is_set():
                    log.warning("%s exited with %s; restarting", component, proc.returncode)
                    self._spawn(component)
            self._stop.wait(poll_s)

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
    runners: list[ProcessorRunner] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, wait_assigned: float = 30.0) -> InProcessEngine:
        ensure_core_topics(self.settings)
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
