"""`kadence audit`: rebuild every execution from the history topic and compare it with the engine.

1. **Read.** Every partition of the history topic, from the start (or from the first record at or
   after `since`), up to the end offsets taken when the audit begins. Each HistoryTransition is
   folded with the one reducer (`history.reducer.fold_transition`, which skips duplicates).
2. **Ask.** For every execution (domain, workflow id) the history processor is asked, through
   Kafka, what it holds: a QueryWorkflow command with the built-in query type
   `history.live.LIVE_STATE_QUERY`, answered by the processor itself from its state (no worker).
   The SDK does not import the processors: the question and the answer are records, as for any
   client.
3. **Compare.** `history.live.live_state` of the fold against the processor's answer, field by
   field: status, close event and its result or failure, history length and size, pending
   activities, children, timers, outgoing signals and cancels, the decision task, search
   attributes and the chain of earlier runs.

An execution that moved while the audit read (the processor is ahead of what was read: same run
with more events, or a newer run of the chain) is not a mismatch: the audit reads on to the new
end offsets and compares again, a few rounds, and reports what is still moving as in flight.

With `replay`, every run read is also replayed against the given workflow code
(`kadence.replayer`), and non-determinism is reported per workflow type.

Exit status of the CLI: 0 when nothing differs and nothing diverges, 1 otherwise, 3 when the
broker or the history processor does not answer.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from kadence.failures import KadenceError, NondeterminismError
from kadence.history import ExecutionState, UnknownEventError, fold_transition
from kadence.history.commands import command_record
from kadence.history.ids import new_command_id, new_query_id
from kadence.history.live import LIVE_STATE_ENCODING, LIVE_STATE_QUERY, decode_live_state, live_state
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.serde import SerdeError, serde

if TYPE_CHECKING:
    from kadence.client import Client
    from kadence.schemas.records import HistoryTransition

log = logging.getLogger("kadence.audit")

#: (domain, workflow id)
Key = tuple[str, str]
#: `progress(stage, done, total)`: called as the audit advances (stage "read", "ask" or "replay").
ProgressFn = Callable[[str, int, int], None]

#: Rounds of "read on and compare again" for executions that moved while the audit ran.
MOVING_ROUNDS = 5


@dataclass
class Mismatch:
    """One execution whose fold differs from what the history processor holds."""

    domain: str
    workflow_id: str
    #: Field name -> (value in the fold of the history topic, value the processor holds).
    fields: dict[str, tuple[Any, Any]]

    def describe(self) -> str:
        parts = [
            f"{name}: history {rec!r} != processor {live!r}" for name, (rec, live) in self.fields.items()
        ]
        return f"{self.domain}/{self.workflow_id}: " + "; ".join(parts)


@dataclass
class TypeReplay:
    """Replay of the runs of one workflow type."""

    runs: int = 0
    deterministic: int = 0
    #: (workflow id, run id, error) of each run that diverged.
    failures: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class AuditReport:
    partitions: int = 0
    records: int = 0
    events: int = 0
    executions: int = 0
    runs: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    #: Executions that were still changing after the last round (not mismatches).
    in_flight: list[Key] = field(default_factory=list)
    #: Executions whose first record read is not a run's start (begun before `since`): not compared.
    partial: list[Key] = field(default_factory=list)
    #: Records that could not be decoded or folded (topic, partition, offset, why).
    unreadable: list[str] = field(default_factory=list)
    #: Workflow type -> replay figures (with `replay` only).
    replay: dict[str, TypeReplay] = field(default_factory=dict)
    #: Workflow types recorded in history that the replay module does not define (not replayed).
    not_in_module: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def nondeterministic(self) -> int:
        return sum(len(r.failures) for r in self.replay.values())

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.unreadable and not self.nondeterministic

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "partitions": self.partitions,
            "records": self.records,
            "events": self.events,
            "executions": self.executions,
            "runs": self.runs,
            "mismatches": [
                {
                    "domain": m.domain,
                    "workflow_id": m.workflow_id,
                    "fields": {k: {"history": r, "processor": v} for k, (r, v) in m.fields.items()},
                }
                for m in self.mismatches
            ],
            "in_flight": [list(k) for k in self.in_flight],
            "partial": [list(k) for k in self.partial],
            "unreadable": self.unreadable,
            "replay": {
                t: {
                    "runs": r.runs,
                    "deterministic": r.deterministic,
                    "nondeterministic": [
                        {"workflow_id": w, "run_id": run, "error": e} for w, run, e in r.failures
                    ],
                }
                for t, r in sorted(self.replay.items())
            },
            "not_in_module": self.not_in_module,
            "seconds": round(self.seconds, 3),
        }


class AuditError(KadenceError):
    """The audit could not be carried out (the history processor did not answer, a topic is missing)."""


class _HistoryScan:
    """The history topic read partition by partition, folded per execution."""

    def __init__(self, client: Client, since_ms: int | None, keep_events: bool) -> None:
        self.settings = client.settings
        self.topic = self.settings.history_topic
        self.since_ms = since_ms
        self.keep_events = keep_events
        self.states: dict[Key, ExecutionState | None] = {}
        #: Executions whose history read so far cannot be folded (begun before `since`, or broken).
        self.skipped: set[Key] = set()
        #: Of those, the ones begun before `since`.
        self.partial: set[Key] = set()
        #: Run id -> its events in order (with `keep_events`), for replay.
        self.run_events: dict[str, list[dict[str, Any]]] = {}
        self.records = 0
        self.events = 0
        self.unreadable: list[str] = []
        self._codec = serde()
        self._consumer = make_consumer(
            self.settings, self.settings.group(f"audit-{uuid.uuid4().hex}"), **{"enable.partition.eof": True}
        )
        md = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            self._consumer.close()
            raise AuditError(f"topic {self.topic} does not exist")
        self.partitions = sorted(md.partitions)
        self._position: dict[int, int] = {}
        starts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions]
        if since_ms is not None:
            wanted = [TopicPartition(self.topic, p, since_ms) for p in self.partitions]
            starts = self._consumer.offsets_for_times(wanted, timeout=10)
        for tp in starts:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, tp.partition), timeout=10, cached=False
            )
            # offsets_for_times gives -1 (end) when no record is that recent.
            self._position[tp.partition] = (
                high if tp.offset < 0 and since_ms is not None else max(tp.offset, low)
            )

    def end_offsets(self) -> dict[int, int]:
        ends = {}
        for p in self.partitions:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=10, cached=False
            )
            ends[p] = high
        return ends

    def records_to(self, ends: dict[int, int]) -> int:
        return sum(max(0, ends[p] - self._position[p]) for p in self.partitions)

    def read_to(self, ends: dict[int, int], on_progress: Callable[[int], None] | None = None) -> set[Key]:
        """Read every partition up to `ends` (exclusive); return the executions that changed.
        `on_progress(offsets)`: how many offsets have been passed (records and transaction markers)."""
        changed: set[Key] = set()
        first = dict(self._position)

        def advanced() -> None:
            if on_progress is not None:
                on_progress(sum(self._position[p] - first[p] for p in self.partitions))

        todo = {p for p in self.partitions if self._position[p] < ends[p]}
        if not todo:
            return changed
        self._consumer.assign([TopicPartition(self.topic, p, self._position[p]) for p in sorted(todo)])
        idle_since = time.monotonic()
        while todo:
            msg = self._consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - idle_since > 60:
                    raise AuditError(
                        f"reading {self.topic}: no record for 60 s from partitions {sorted(todo)}"
                    )
                continue
            idle_since = time.monotonic()
            partition = cast("int", msg.partition())
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 - confluent-kafka's name
                    # A transactional topic ends in control records: the end offset may not be a record.
                    if partition in todo:
                        todo.discard(partition)
                        self._position[partition] = max(self._position[partition], ends[partition])
                        advanced()
                    continue
                raise AuditError(f"reading {self.topic}[{partition}]: {err.str()}")
            offset = cast("int", msg.offset())
            if partition not in todo or offset >= ends[partition]:
                todo.discard(partition)
                continue
            self._position[partition] = offset + 1
            if self._position[partition] >= ends[partition]:
                todo.discard(partition)
            advanced()
            if self.since_ms is not None and msg.timestamp()[1] < self.since_ms:
                continue  # before `since` (a broker may seek to an earlier record than asked)
            self.records += 1
            key = self._apply(msg.value(), partition, offset)
            if key is not None:
                changed.add(key)
        self._consumer.unassign()
        return changed

    def _apply(self, value: bytes | None, partition: int, offset: int) -> Key | None:
        where = f"{self.topic}[{partition}]@{offset}"
        try:
            _, record = self._codec.decode(value, expected="HistoryTransition")
        except SerdeError as exc:
            self.unreadable.append(f"{where}: {exc}")
            return None
        transition = cast("HistoryTransition", record)
        key = (transition["domain"], transition["workflow_id"])
        if key in self.skipped or not transition["events"]:
            return key if transition["events"] else None
        state = self.states.get(key)
        if state is None and transition["events"][0]["attributes"][0] != "WorkflowExecutionStarted":
            self.skipped.add(key)  # begun before `since`: its earlier events were not read
            self.partial.add(key)
            return key
        try:
            new_state, fresh = fold_transition(state, transition)
        except (UnknownEventError, AssertionError, KeyError) as exc:
            self.unreadable.append(f"{where}: {key[0]}/{key[1]} cannot be folded: {exc}")
            self.skipped.add(key)
            self.states.pop(key, None)
            return key
        self.states[key] = new_state
        self.events += len(fresh)
        if self.keep_events:
            for event in fresh:
                self.run_events.setdefault(event["run_id"], []).append(cast("dict[str, Any]", event))
        return key

    def close(self) -> None:
        self._consumer.close()


class _LiveStates:
    """Asks the history processor for its state of many executions at once (LIVE_STATE_QUERY)."""

    def __init__(self, client: Client, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self._producer = make_producer(client.settings)
        self._conn = client.connection
        self._conn.reader(client.settings.query_results_topic)

    def ask(self, keys: Sequence[Key], on_answer: Callable[[], None] | None = None) -> dict[Key, Any]:
        settings = self.client.settings
        codec = serde()
        headers: list[tuple[str, str | bytes | None]] = list(codec.headers("Command"))
        query_ids: dict[Key, str] = {}
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for domain, workflow_id in keys:
            query_id = new_query_id()
            self._conn.query_results.expect(query_id)
            query_ids[(domain, workflow_id)] = query_id
            command = command_record(
                command_id=new_command_id(),
                domain=domain,
                workflow_id=workflow_id,
                run_id="",
                timestamp=int(time.time() * 1000),
                payload_type="QueryWorkflow",
                attrs={
                    "query_id": query_id,
                    "query_type": LIVE_STATE_QUERY,
                    "args": None,
                    "reply_topic": settings.query_results_topic,
                },
            )
            value = codec.encode("Command", command)
            while True:
                try:
                    self._producer.produce(
                        settings.commands_topic,
                        key=workflow_id.encode(),
                        value=value,
                        headers=headers,
                        on_delivery=delivered,
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    self._producer.poll(0.1)
            self._producer.poll(0)
        if self._producer.flush(30) or errors:
            raise AuditError(
                f"the live-state queries were not delivered to {settings.commands_topic}: "
                f"{errors[0] if errors else 'flush timed out'}"
            )
        answers: dict[Key, Any] = {}
        deadline = time.monotonic() + self.timeout_s
        for key, query_id in query_ids.items():
            result = self._conn.query_results.wait(query_id, max(0.0, deadline - time.monotonic()))
            if result is None:
                raise AuditError(
                    f"the history processor did not answer the live-state query for {key[0]}/{key[1]} "
                    f"within {self.timeout_s:g}s (is the engine running on this prefix?)"
                )
            payload = result["result"]
            if (
                result.get("error") is not None
                or payload is None
                or payload["encoding"] != LIVE_STATE_ENCODING
            ):
                raise AuditError(
                    f"the history processor gave no live state for {key[0]}/{key[1]}: "
                    f"{result.get('error') or payload}"
                )
            answers[key] = decode_live_state(payload["data"])
            if on_answer is not None:
                on_answer()
        return answers

    def close(self) -> None:
        self._producer.flush(5)


class _Ticker:
    """Calls `progress(stage, done, total)` at the start, every `every` items and at the end."""

    def __init__(self, progress: ProgressFn, stage: str, total: int, every: int) -> None:
        self.progress, self.stage, self.total, self.every = progress, stage, total, every
        self.done = self._shown = 0
        progress(stage, 0, total)

    def __call__(self) -> None:
        self.update_to(self.done + 1)

    def update_to(self, done: int) -> None:
        if done // self.every > self.done // self.every:
            self.progress(self.stage, done, self.total)
            self._shown = done
        self.done = done

    def finish(self) -> None:
        if self._shown != self.done:
            self.progress(self.stage, self.done, self.total)
            self._shown = self.done


def _moving(recorded: dict[str, Any] | None, live: dict[str, Any] | None) -> bool:
    """The processor is ahead of what the audit read (same run with more events, or a later run)."""
    if recorded is None or live is None:
        return False
    if recorded["run_id"] == live["run_id"]:
        return bool(live["next_event_id"] > recorded["next_event_id"])
    return any(run_id == recorded["run_id"] for run_id, _ in live["previous_runs"])


def compare(
    recorded: dict[str, Any] | None, live: dict[str, Any] | None, *, whole_chain: bool
) -> dict[str, tuple[Any, Any]]:
    """The fields in which the fold of history (`recorded`) and the processor (`live`) differ.
    Without `whole_chain` (a read from `since`) the chain of earlier runs is not compared."""
    if recorded == live:
        return {}
    if live is None:
        return {"execution": ("present", "unknown to the history processor")}
    if recorded is None:
        return {"execution": ("no run started", "present")}
    names = sorted(set(recorded) | set(live))
    if not whole_chain:
        names = [n for n in names if n != "previous_runs"]
    return {n: (recorded.get(n), live.get(n)) for n in names if recorded.get(n) != live.get(n)}


def run_audit(
    client: Client,
    *,
    since_ms: int | None = None,
    workflows: Sequence[type] | None = None,
    progress: ProgressFn | None = None,
    answer_timeout_s: float = 60.0,
) -> AuditReport:
    """Audit the deployment `client` is connected to (all domains); see the module docstring.
    `workflows`: replay every run against these workflow classes too."""
    t0 = time.monotonic()
    report = AuditReport()
    tick = progress or (lambda stage, done, total: None)
    scan = _HistoryScan(client, since_ms, keep_events=workflows is not None)
    live_states = _LiveStates(client, answer_timeout_s)
    try:
        report.partitions = len(scan.partitions)
        ends = scan.end_offsets()
        reading = _Ticker(tick, "read", scan.records_to(ends), every=200)
        scan.read_to(ends, reading.update_to)
        reading.finish()
        to_check = [k for k in scan.states if k not in scan.skipped]
        mismatched: dict[Key, Mismatch] = {}
        for round_ in range(MOVING_ROUNDS + 1):
            asking = _Ticker(tick, "ask", len(to_check), every=200)
            answers = live_states.ask(to_check, asking) if to_check else {}
            asking.finish()
            moving: list[Key] = []
            for key in to_check:
                recorded = live_state(scan.states[key])
                live = answers[key]
                if _moving(recorded, live) and round_ < MOVING_ROUNDS:
                    moving.append(key)
                    continue
                differs = compare(recorded, live, whole_chain=since_ms is None)
                if differs and _moving(recorded, live):
                    report.in_flight.append(key)
                elif differs:
                    mismatched[key] = Mismatch(key[0], key[1], differs)
                else:
                    mismatched.pop(key, None)
            if not moving:
                break
            log.info("audit: %d execution(s) moved while being read; reading on", len(moving))
            scan.read_to(scan.end_offsets())
            to_check = [k for k in moving if k not in scan.skipped]
        report.mismatches = [mismatched[k] for k in sorted(mismatched)]
        report.partial = sorted(scan.partial)
        report.unreadable = scan.unreadable
        report.records, report.events = scan.records, scan.events
        report.executions = len([k for k in scan.states if k not in scan.skipped])
        report.runs = sum(
            len(s.previous_runs) + (1 if s.current is not None else 0)
            for k, s in scan.states.items()
            if s is not None and k not in scan.skipped
        )
        if workflows is not None:
            _replay_all(scan, workflows, report, tick)
    finally:
        live_states.close()
        scan.close()
    report.seconds = time.monotonic() - t0
    return report


def _replay_all(scan: _HistoryScan, workflows: Sequence[type], report: AuditReport, tick: ProgressFn) -> None:
    """Replay every run read (whole runs only: those that begin with WorkflowExecutionStarted)."""
    from kadence.replayer import Replayer

    replayer = Replayer(workflows)
    runs = [
        events
        for events in scan.run_events.values()
        if events and events[0]["attributes"][0] == "WorkflowExecutionStarted"
    ]
    replaying = _Ticker(tick, "replay", len(runs), every=50)
    for events in runs:
        workflow_type = events[0]["attributes"][1]["workflow_type"]
        if workflow_type not in replayer.definitions:
            report.not_in_module[workflow_type] = report.not_in_module.get(workflow_type, 0) + 1
        else:
            figures = report.replay.setdefault(workflow_type, TypeReplay())
            figures.runs += 1
            try:
                replayer.replay(events)
                figures.deterministic += 1
            except NondeterminismError as exc:
                figures.failures.append((events[0]["workflow_id"], events[0]["run_id"], str(exc)))
        replaying()
    replaying.finish()


def summary_lines(report: AuditReport) -> Iterable[str]:
    """The report for people: figures, then every mismatch and divergence, one per line."""
    yield (
        f"read {report.records} history records ({report.events} events) from {report.partitions} "
        f"partitions in {report.seconds:.1f}s: {report.executions} executions, {report.runs} runs"
    )
    yield f"mismatches with the history processor: {len(report.mismatches)}"
    for m in report.mismatches:
        yield f"  MISMATCH {m.describe()}"
    if report.in_flight:
        yield f"still changing after {MOVING_ROUNDS} rounds (not compared): {len(report.in_flight)}"
    if report.partial:
        yield f"begun before --since (not compared): {len(report.partial)}"
    for line in report.unreadable:
        yield f"  UNREADABLE {line}"
    if report.replay or report.not_in_module:
        for workflow_type, r in sorted(report.replay.items()):
            verdict = "deterministic" if not r.failures else f"{len(r.failures)} NON-DETERMINISTIC"
            yield f"replay {workflow_type}: {r.runs} runs, {verdict}"
            for workflow_id, run_id, error in r.failures:
                yield f"  NONDETERMINISM {workflow_type} {workflow_id} run {run_id}: {error}"
        for workflow_type, n in sorted(report.not_in_module.items()):
            yield f"replay {workflow_type}: {n} runs not replayed (the module does not define this type)"
    yield "audit: OK" if report.ok else "audit: FAILED"
