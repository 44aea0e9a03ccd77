"""Crash-test helpers: engine processors as OS processes killed with SIGKILL, and the raw topics
read back to prove nothing was lost, doubled or changed.

- `Component`: one processor process (`python -m processors.history` or `processors.derived`
  with KADENCE_DERIVED_MODULES), stderr/stdout to its own log file; `start`, `kill` (SIGKILL),
  `restart` (same slot: the new instance's `init_transactions` fences the dead one),
  `wait_assigned` (its log shows it was assigned every partition), `stop` (SIGTERM, exit 0).
- `Engine`: a set of components; `check()` fails loudly (with log tails) if one died on its own.
- `read_raw`: every record of a topic, raw (an `IdempotentReader` whose id is the offset, so it
  drops nothing), and `HistoryView`: the idempotent view of history (dedupe by (run_id, event_id))
  plus the byte comparison of every duplicate with its first copy.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kadence.streams.launch import spawn
from kadence.streams.processing import InRecord
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from tests.support.dedupe import Deduplicator, IdempotentReader

#: Pause between a SIGKILL and the restart of the same slot (see Component.kill).
RESTART_DELAY_S = 0.5

REPO = Path(__file__).resolve().parent.parent.parent
SERDE = serde()


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


class Component:
    """One engine processor process. `modules=None`: the history processor; otherwise the derived
    processor with those modules (KADENCE_DERIVED_MODULES)."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        log_dir: Path,
        modules: Sequence[str] | None = None,
        slot: int = 0,
        batch_max_records: int | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.modules = modules
        self.slot = slot
        self.batch_max_records = batch_max_records
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.pids: list[int] = []
        self.kills = 0
        self.kill_times: list[float] = []
        self.assign_seconds: list[float] = []  # restart -> all partitions assigned
        self.busy_kills = 0  # kills that landed while the process was burning CPU

    def start(self) -> Component:
        env = dict(os.environ)
        env.pop("KADENCE_DERIVED_MODULES", None)
        module = "kadence.processors.history"
        if self.modules is not None:
            module = "kadence.processors.derived"
            env["KADENCE_DERIVED_MODULES"] = ",".join(self.modules)
        with open(self.log_path, "ab") as log:
            self.proc = spawn(
                module,
                self.settings,
                self.slot,
                batch_max_records=self.batch_max_records,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )
        self._started_at = time.monotonic()
        self.pids.append(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assigned_partitions(self) -> set[int]:
        """Partitions the current process logged as assigned (kadence.streams.loop: '<txid> assigned t[p]@o, ...')."""
        marker = f" {self.pid} kadence.streams.loop INFO "
        parts: set[int] = set()
        for line in self.log_path.read_text(errors="replace").splitlines():
            if marker in line and " assigned " in line:
                parts.update(int(p) for p in re.findall(r"\[(\d+)\]@", line))
        return parts

    def wait_assigned(self, timeout: float = 90.0) -> float:
        """Wait until the current process has been assigned every partition; returns the seconds it took."""
        deadline = time.monotonic() + timeout
        want = set(range(self.settings.partitions))
        while not want <= self.assigned_partitions():
            if not self.alive():
                raise AssertionError(
                    f"{self.name} (pid {self.pid}) exited with {self.proc.returncode} before "
                    f"it was assigned:\n{tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} (pid {self.pid}) not assigned all partitions in {timeout}s "
                    f"(has {sorted(self.assigned_partitions())}):\n{tail(self.log_path)}"
                )
            time.sleep(0.05)
        took = time.monotonic() - self._started_at
        self.assign_seconds.append(took)
        return took

    def kill(self) -> None:
        """SIGKILL the current process (it must be alive: a kill of a dead process proves nothing)."""
        assert self.alive(), f"{self.name} was already dead:\n{tail(self.log_path)}"
        os.kill(self.pid, signal.SIGKILL)
        assert self.proc is not None
        rc = self.proc.wait(15)
        assert rc == -signal.SIGKILL, f"{self.name} exit code {rc} after SIGKILL"
        self.kills += 1
        self.kill_times.append(time.monotonic())
        # Like a supervisor's restart delay: produce requests the dead process had in flight reach
        # the broker before its successor fences the slot. On Tansu, one that lands after the
        # successor's init_transactions leaves a transaction open that nothing closes, and every
        # read_committed reader of that partition stalls behind it (docs/deviations.md 15).
        time.sleep(RESTART_DELAY_S)

    def restart(self, busy_within: float = 0.0, jitter: float = 0.03) -> Component:
        """Kill (first waiting up to `busy_within` s for a moment it burns CPU, see `wait_busy`,
        then a random 0-`jitter` s more, so the kill lands anywhere in the batch: processing, or
        waiting for the broker inside the transaction), then start the same slot again (call
        wait_assigned to know it took over)."""
        if busy_within > 0:
            self.busy_kills += self.wait_busy(busy_within)
            time.sleep(random.uniform(0.0, jitter))
        self.kill()
        return self.start()

    def cpu_ticks(self) -> int:
        """utime + stime of the current process (all threads), in clock ticks."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def wait_busy(self, within: float) -> bool:
        """Wait until the process burns CPU (>= 2 clock ticks within 30 ms: it is processing, not
        idle in a poll, where librdkafka costs ~2 ticks a second), at most `within` seconds.
        True if it was seen busy."""
        deadline = time.monotonic() + within
        samples = [self.cpu_ticks()] * 6
        while time.monotonic() < deadline:
            time.sleep(0.005)
            samples = samples[1:] + [self.cpu_ticks()]
            if samples[-1] - samples[0] >= 2:
                return True
        return False

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def restores(self) -> list[int]:
        """Records replayed by each restore ('restored <topic>[p]: N records ...' lines)."""
        return [
            int(m)
            for m in re.findall(r" restored \S+: (\d+) records", self.log_path.read_text(errors="replace"))
        ]


@dataclass
class Engine:
    """The engine as separate processes. `check()` fails with every log tail if one died by itself."""

    components: dict[str, Component]

    def start(self, timeout: float = 90.0) -> Engine:
        for c in self.components.values():
            c.start()
        for c in self.components.values():
            c.wait_assigned(timeout)
        return self

    def check(self) -> None:
        dead = [c for c in self.components.values() if not c.alive()]
        if dead:
            raise AssertionError(
                "engine process died on its own: "
                + ", ".join(f"{c.name} exit {c.proc.returncode if c.proc else None}" for c in dead)
                + "\n"
                + self.logs()
            )

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"----- {c.name} ({c.log_path}) -----\n{tail(c.log_path, chars)}"
            for c in self.components.values()
        )

    def stop(self) -> dict[str, int | None]:
        return {name: c.stop() for name, c in self.components.items()}

    def kill_all(self) -> None:
        for c in self.components.values():
            if c.alive():
                assert c.proc is not None
                c.proc.kill()
                c.proc.wait(10)


# Reading topics back ----------------------------------------------------------------------------
class RawTopic:
    """Every record of a topic, incrementally (`poll`), in partition order; drops nothing. By
    default read_uncommitted: records of aborted transactions are shown too (each must still be
    byte-identical to any other copy of the same record)."""

    def __init__(self, settings: Settings, topic: str, isolation_level: str = "read_uncommitted") -> None:
        self.reader = IdempotentReader(settings, topic, lambda r: (r.partition, r.offset), isolation_level)
        self.records: list[InRecord] = []

    def poll(self, timeout: float = 2.0) -> list[InRecord]:
        fresh = self.reader.read_available(timeout)
        self.records.extend(fresh)
        return fresh

    def read_all(self, settle: float = 1.0, timeout: float = 60.0) -> list[InRecord]:
        """Read until nothing new arrives for `settle` seconds (processors stopped: the topic is final)."""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll(2.0):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > settle:
                break
        return self.records

    def close(self) -> None:
        self.reader.close()


def read_raw(settings: Settings, topic: str, isolation_level: str = "read_uncommitted") -> list[InRecord]:
    raw = RawTopic(settings, topic, isolation_level)
    try:
        return raw.read_all()
    finally:
        raw.close()


def _event_type(event: dict[str, Any]) -> str:
    return event["attributes"][0]


@dataclass
class HistoryView:
    """The idempotent view of the raw history topic and what the raw topic had beyond it."""

    raw_records: int = 0
    duplicate_records: int = 0  # raw transitions whose id (wid, first run, first event) was seen
    duplicate_events: int = 0  # raw events whose (run_id, event_id) was seen
    mismatches: list[str] = field(default_factory=list)  # a duplicate that differs from its first copy
    events: dict[str, dict[int, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    workflow_of_run: dict[str, str] = field(default_factory=dict)
    runs_of_workflow: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, records: Iterable[InRecord]) -> HistoryView:
        view = cls()
        first_value: dict[tuple[str, str, int], bytes] = {}
        first_event: dict[tuple[str, int], bytes] = {}
        transitions = Deduplicator(lambda t: t)  # ids of transitions
        for r in records:
            view.raw_records += 1
            _, tr = SERDE.decode(r.value, "HistoryTransition")
            if not tr["events"]:
                continue
            head = tr["events"][0]
            tid = (tr["workflow_id"], head["run_id"], head["event_id"])
            if not transitions.accept(tid):
                view.duplicate_records += 1
                if r.value != first_value[tid]:
                    view.mismatches.append(f"transition {tid}: raw value differs at {r.partition}@{r.offset}")
            else:
                first_value[tid] = r.value
            for ev in tr["events"]:
                eid = (ev["run_id"], ev["event_id"])
                body = SERDE.encode_body("HistoryEvent", ev)
                seen = first_event.get(eid)
                if seen is not None:
                    view.duplicate_events += 1
                    if body != seen:
                        view.mismatches.append(
                            f"event {eid} ({_event_type(ev)}) differs at {r.partition}@{r.offset}"
                        )
                    continue
                first_event[eid] = body
                view.events[ev["run_id"]][ev["event_id"]] = ev
                if ev["run_id"] not in view.workflow_of_run:
                    view.workflow_of_run[ev["run_id"]] = ev["workflow_id"]
                    view.runs_of_workflow[ev["workflow_id"]].append(ev["run_id"])
        return view

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        evs = self.events[run_id]
        return [evs[i] for i in sorted(evs)]

    def gaps(self) -> dict[str, list[int]]:
        """Runs whose event ids are not exactly 1..n -> their ids."""
        return {
            run: sorted(evs)
            for run, evs in self.events.items()
            if sorted(evs) != list(range(1, len(evs) + 1))
        }

    def count(self, run_id: str, event_type: str) -> int:
        return sum(1 for e in self.events[run_id].values() if _event_type(e) == event_type)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for evs in self.events.values() for e in evs.values() if _event_type(e) == event_type]


CLOSE_TYPES = (
    "WorkflowExecutionCompleted",
    "WorkflowExecutionFailed",
    "WorkflowExecutionCanceled",
    "WorkflowExecutionTerminated",
    "WorkflowExecutionTimedOut",
    "WorkflowExecutionContinuedAsNew",
)


def closes(view: HistoryView, run_id: str) -> list[str]:
    return [_event_type(e) for e in view.run_events(run_id) if _event_type(e) in CLOSE_TYPES]


@dataclass
class DupReport:
    raw: int
    distinct: int
    duplicates: int
    mismatches: list[str]


def compare_duplicates(
    records: Iterable[InRecord], record_type: str, id_of: Callable[[dict[str, Any]], Any | None]
) -> DupReport:
    """Group raw records by `id_of(decoded)` (None = not checked) and require every duplicate to be
    byte-identical to its first copy."""
    first: dict[Any, bytes] = {}
    raw = dups = 0
    mismatches: list[str] = []
    for r in records:
        _, rec = SERDE.decode(r.value, record_type)
        rid = id_of(rec)
        if rid is None:
            continue
        raw += 1
        seen = first.get(rid)
        if seen is None:
            first[rid] = r.value
        else:
            dups += 1
            if seen != r.value:
                mismatches.append(f"{record_type} {rid} differs at {r.partition}@{r.offset}")
    return DupReport(raw, len(first), dups, mismatches)


def derived_command_id(cmd: dict[str, Any]) -> str | None:
    """Ids of commands the derived processors make (`<kind>:<run>:<event>`); worker responses
    (`d/...`, `a/...`: an external client's timestamps differ on a resend) and client uuids are None."""
    cid = cmd["command_id"]
    if cid.startswith(("d/", "a/")) or ":" not in cid:
        return None
    return cid


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary(counter: Counter) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))
