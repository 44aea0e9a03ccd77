"""The history processor: commands in, history transitions + tasks out, on the exactly-once loop.

For each command (in offset order): decode it (undecodable -> dead letters), check it is on the
partition that owns its workflow id (a producer with another partitioner may have misplaced it:
it is forwarded to the right partition), load the workflow's state, let the command's handler
produce events through a `Transition`, store state and events, and emit one `HistoryTransition`
record (the changelog: partition = input partition) plus the tasks, replies and outcomes.

Restore folds `history` back into state with the same reducer; afterwards the pending work of
every open run is re-dispatched (a task lost in a crash is re-sent; a duplicate is dropped by its
token).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from kadence.history import ExecutionState, RunState, apply, fire_timer_command, fold_transition
from kadence.history.commands import engine_only_reason
from kadence.history.reducer import already_applied
from kadence.history.validation import command_problem
from kadence.schemas.records import (
    Command,
    HistoryEvent,
    HistoryTransition,
    Task,
    TaskTask,
    WorkflowExecutionTerminated,
    WorkflowOutcome,
)
from kadence.streams.clients import murmur2_partition
from kadence.streams.engine_secret import engine_signer
from kadence.streams.processing import Context, InRecord, OutRecord, PoisonRecord, Processor
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings
from kadence.streams.signing import SIGNATURE_HEADER
from kadence.streams.topics import ensure_topics, task_topic

from ..store import ExecutionStore
from . import metrics, transient
from .config import HistoryConfig
from .handlers import HANDLERS, HandlerEnv
from .liveness import AttemptKey, LivenessTracker
from .tasks import activity_task, decision_task, query_task
from .transient import TransientDecision
from .transition import Dispatch, Transition

log = logging.getLogger("kadence.history")

#: A transient attempt's retry or timeout fire is sent again after this long if the attempt is
#: still the same (the first FireTimer was lost with an aborted punctuation).
TRANSIENT_REFIRE_MS = 2000


class HistoryProcessor(Processor):
    name = "history"
    #: The history topic (set in `__init__`): this processor always has a changelog.
    changelog_topic: str
    #: Heartbeat / schedule-to-start deadlines are checked this often (they are seconds-scale).
    punctuate_interval_ms = 50

    def __init__(self, settings: Settings, config: HistoryConfig | None = None) -> None:
        self.settings = settings
        self.config = config or HistoryConfig()
        self.input_topic = settings.commands_topic
        self.changelog_topic = settings.history_topic
        self.env = HandlerEnv(self.config)
        self.store = ExecutionStore()
        self.serde = serde()
        #: Signs the commands this processor sends and checks those only the engine may send.
        self.signer = engine_signer(settings)
        self._task_topics: set[str] = set()
        self.liveness = LivenessTracker()
        #: partition -> source offset -> (replies, outcomes, timestamp) seen while restoring
        self._restored_sends: dict[int, dict[int, tuple[list[Command], list[WorkflowOutcome], int]]] = {}
        self._partitions = settings.partitions
        self._headers = {
            t: tuple(self.serde.headers(t))
            for t in ("HistoryTransition", "Task", "Command", "WorkflowOutcome", "QueryResult")
        }

    # -- processing ------------------------------------------------------------------------------
    def process(self, record: InRecord, ctx: Context) -> None:
        try:
            _, decoded = self.serde.decode(record.value, "Command")
        except SerdeError as exc:
            raise PoisonRecord(f"undecodable command: {exc}") from exc
        cmd = cast(Command, decoded)
        payload_type, attrs = cmd["payload"]
        handler = HANDLERS.get(payload_type)
        if handler is None:
            raise PoisonRecord(f"the history processor does not handle {payload_type} commands")
        self._check_signature(cmd, record)
        self._check_entry(cmd)
        owner = murmur2_partition(cmd["workflow_id"].encode(), self._partitions)
        if owner != record.partition:
            log.warning(
                "%s[%d]@%d: command for %s belongs to partition %d (producer without murmur2?); forwarded",
                record.topic,
                record.partition,
                record.offset,
                cmd["workflow_id"],
                owner,
            )
            assert record.value is not None  # it decoded
            ctx.emit(
                OutRecord(self.input_topic, cmd["workflow_id"].encode(), record.value, record.headers, owner)
            )
            return
        tr = Transition(
            cmd["domain"],
            cmd["workflow_id"],
            cmd["command_id"],
            ctx.now_ms,
            self.store.load(ctx.state, cmd["domain"], cmd["workflow_id"]),
        )
        if payload_type == "ResetWorkflowExecution":
            view = ctx.state
            tr.stored_events = lambda run_id: [
                cast(HistoryEvent, self.serde.decode_body("HistoryEvent", body))
                for body in self.store.event_bodies(view, run_id)
            ]
        loaded = self._load_transient(ctx, tr)
        tr.transient = loaded
        handler(tr, cmd, attrs, self.env)
        self._enforce_history_limits(tr)
        self._keep_transient(tr, loaded, ctx)
        self._write(tr, record, ctx)

    def _check_signature(self, cmd: Command, record: InRecord) -> None:
        """An engine-only command (timer fires, child and external-call results...) is accepted only
        with the engine's signature: anyone who may write `commands` could send one otherwise."""
        reason = engine_only_reason(cmd)
        if reason is not None:
            assert record.value is not None  # it decoded
            if not self.signer.verify(record.headers, record.key, record.value):
                raise PoisonRecord(
                    f"rejected: {reason}, and this record has no valid engine signature "
                    f"({SIGNATURE_HEADER} header): it was not written by this deployment's engine"
                )

    def _check_entry(self, cmd: Command) -> None:
        """Every field is checked where it enters (kadence.history.validation). A start with bad
        values is rejected by its handler (the caller gets the reason); a bad decision fails its
        decision task; any other bad command is poison: dead-lettered with the reason."""
        payload_type, attrs = cmd["payload"]
        if payload_type == "StartWorkflowExecution":  # its handler checks the body (to reject it)
            problem = command_problem({**cmd, "payload": ("", {})})
        else:
            problem = command_problem(cmd)
        if problem is not None:
            raise PoisonRecord(f"invalid {payload_type} command: {problem}")
        reply_topic = cast(Mapping[str, Any], attrs).get("reply_topic")  # queries, updates: where answers go
        if isinstance(reply_topic, str) and not self.settings.is_reply_topic(reply_topic):
            raise PoisonRecord(
                f"invalid {payload_type} command: reply_topic {reply_topic[:200]!r} is not a client "
                f"reply topic of this engine ({self.settings.query_results_topic!r})"
            )

    def _enforce_history_limits(self, tr: Transition) -> None:
        run = tr.run
        if run is None or not run.is_open or not tr.events:
            return
        length = run.next_event_id - 1
        size = run.full_history_bytes
        if length > self.config.hard_history_events or size > self.config.hard_history_bytes:
            terminated: WorkflowExecutionTerminated = {
                "reason": f"history limit exceeded: {length} events / {size} bytes (limits "
                f"{self.config.hard_history_events} events, {self.config.hard_history_bytes} bytes); "
                "use continue-as-new for long-running workflows",
                "details": None,
                "identity": "kadence",
                "new_execution_run_id": "",
                "reset_last_event_id": 0,
            }
            tr.add(("WorkflowExecutionTerminated", terminated))
        elif length > self.config.warn_history_events and any(
            e["attributes"][0] == "DecisionTaskCompleted" for e in tr.events
        ):  # once per decision, as HistoryConfig says: not on every signal of a long run
            log.warning(
                "workflow %s run %s has %d history events; continue-as-new is suggested",
                tr.workflow_id,
                run.run_id,
                length,
            )

    def _write(self, tr: Transition, record: InRecord, ctx: Context) -> None:
        key = tr.workflow_id.encode()
        if tr.heartbeat is not None:
            self._note_heartbeat(tr, ctx)
        replies, outcomes = tr.commands, tr.outcomes
        bodies: list[bytes] = []
        if tr.events:
            assert tr.state is not None
            self.store.save(ctx.state, tr.state)
            bodies = self.store.put_events(ctx.state, tr.events)
            self._drop_continued_runs(ctx, tr.events)
            assert tr.state.current is not None
            metrics.observe_events(tr.events, tr.state.current.workflow_type, ctx.partition)
        if tr.events or replies or outcomes:
            # Replies and outcomes travel in the transition too: a restore re-sends those of an
            # interrupted transaction whose history record leaked but whose replies did not.
            # The HistoryTransition but its events (their stored bodies are spliced in).
            transition: dict[str, Any] = {
                "domain": tr.domain,
                "workflow_id": tr.workflow_id,
                "command_id": tr.command_id,
                "source_partition": record.partition,
                "source_offset": record.offset,
                "replies": replies,
                "outcomes": outcomes,
            }
            value = self.serde.encode_spliced("HistoryTransition", transition, "events", bodies)
            ctx.emit(
                OutRecord(
                    self.changelog_topic,
                    key,
                    value,
                    self._headers["HistoryTransition"],
                    ctx.partition,
                    tr.now_ms,
                )
            )
        for dispatch in tr.dispatches:
            self._dispatch(tr, dispatch, ctx)
        self._send(replies, outcomes, ctx, tr.now_ms)
        for topic, result in tr.query_results:
            ctx.emit(
                OutRecord(
                    topic,
                    result["query_id"].encode(),
                    self.serde.encode("QueryResult", result),
                    self._headers["QueryResult"],
                    None,
                    tr.now_ms,
                )
            )

    def _send(
        self, replies: list[Command], outcomes: list[WorkflowOutcome], ctx: Context, now_ms: int
    ) -> None:
        for command in replies:
            self._emit_command(command, ctx, now_ms)
        for outcome in outcomes:  # in the transaction, not dispatched: whoever has a run's outcome must
            # find its close in history (read-your-writes; docs/deviations.md 19)
            ctx.emit(
                OutRecord(
                    self.settings.completions_topic,
                    outcome["workflow_id"].encode(),
                    self.serde.encode("WorkflowOutcome", outcome),
                    self._headers["WorkflowOutcome"],
                    None,
                    now_ms,
                )
            )

    def _dispatch(self, tr: Transition, dispatch: Dispatch, ctx: Context) -> None:
        state = tr.state
        assert state is not None
        run_id = dispatch[1]
        run = state.run(run_id)
        if run is None:
            return
        if dispatch[0] == "decision":
            if not run.is_open or run.decision is None:
                return
            full = dispatch[2]
            events = self.store.event_bodies(
                ctx.state, run_id, 0 if full else run.last_completed_started_event_id
            )
            self._emit_task(
                tr.workflow_id,
                run.decision.task_list,
                ("DecisionTask", decision_task(state, run, full, self.config)),
                ctx,
                events,
            )
        elif dispatch[0] == "transient_decision":
            t = tr.transient
            if t is not None and transient.current(t, run) and t.outstanding:
                self._emit_transient_task(state, run, t, ctx)
        elif dispatch[0] == "activity":
            task = activity_task(state, run, dispatch[2]) if run.is_open else None
            if task is not None:
                self._emit_task(tr.workflow_id, task["task_list"], ("ActivityTask", task), ctx)
                self._arm_liveness(state.domain, state.workflow_id, run, dispatch[2], ctx)
        elif dispatch[0] == "eager_activity":  # started by the deciding worker: only its liveness to arm
            if run.is_open and dispatch[2] in run.activities:
                self._arm_liveness(state.domain, state.workflow_id, run, dispatch[2], ctx, started=True)
        elif dispatch[0] == "query":
            events = self.store.event_bodies(ctx.state, run_id, 0)
            self._emit_task(
                tr.workflow_id, run.task_list, ("QueryTask", query_task(state, run, dispatch[2])), ctx, events
            )

    def _emit_transient_task(
        self, state: ExecutionState, run: RunState, t: TransientDecision, ctx: Context
    ) -> None:
        """The task of a transient decision attempt: the stored history and, after it, the attempt's
        DecisionTaskScheduled and DecisionTaskStarted, which are not stored (transient.py)."""
        synthetic = transient.events(state.domain, state.workflow_id, run, t)
        ahead = state
        for event in synthetic:
            ahead = apply(ahead, event)
        assert ahead.current is not None
        bodies = self.store.event_bodies(ctx.state, run.run_id, 0)
        bodies += [self.serde.encode_body("HistoryEvent", cast(dict[str, Any], e)) for e in synthetic]
        task = decision_task(ahead, ahead.current, True, self.config)
        self._emit_task(state.workflow_id, run.task_list, ("DecisionTask", task), ctx, bodies)

    # -- transient decision attempts (transient.py) ---------------------------------------------------
    def _load_transient(self, ctx: Context, tr: Transition) -> TransientDecision | None:
        """The run's transient attempt, read only while its last decision task failed."""
        if not transient.in_streak(tr.run):
            return None
        raw = self.store.load_transient(ctx.state, tr.domain, tr.workflow_id)
        return TransientDecision.decode(raw) if raw is not None else None

    def _keep_transient(self, tr: Transition, loaded: TransientDecision | None, ctx: Context) -> None:
        """Store what the handler left in `tr.transient` and arm its deadline. A run whose last
        decision task failed always has one (the handler that appended an event without scheduling
        a decision task leaves it stale: a retry is armed at the same count); other runs none."""
        run = tr.run
        t = tr.transient
        if not transient.in_streak(run):
            t = None
        elif not transient.current(t, run):
            assert run is not None
            same_run = t is not None and t.run_id == run.run_id
            attempt = t.attempt + int(t.outstanding) if t is not None and same_run else run.decision_attempt
            t = TransientDecision(
                run.run_id, run.next_event_id, attempt, 0, tr.now_ms + transient.backoff_ms(attempt)
            )
        tr.transient = t
        if t == loaded:
            return
        if t is not None or loaded is not None:
            encoded = t.encode() if t is not None else None
            self.store.save_transient(ctx.state, tr.domain, tr.workflow_id, encoded)
        if t is not None:
            self._arm_transient(tr.domain, tr.workflow_id, t, ctx.partition, t.due_ms)

    def _arm_transient(
        self, domain: str, workflow_id: str, t: TransientDecision, partition: int, due_ms: int
    ) -> None:
        kind = "decision_timeout" if t.outstanding else "decision_retry"
        key = AttemptKey(domain, workflow_id, t.run_id, t.event_id, t.attempt)
        self.liveness.arm(partition, kind, key, due_ms)

    def _fire_transient(self, kind: str, key: AttemptKey, ctx: Context) -> None:
        """A transient attempt's retry or timeout is due: a FireTimer on the processor's own input
        (its handler decides), if the stored attempt is still the one the deadline was armed for.
        Armed again a little later in case that command is lost (an aborted punctuation)."""
        state = self.store.load(ctx.state, key.domain, key.workflow_id)
        run = state.current if state is not None else None
        raw = self.store.load_transient(ctx.state, key.domain, key.workflow_id)
        t = TransientDecision.decode(raw) if raw is not None else None
        if (
            t is None
            or not transient.current(t, run)
            or t.run_id != key.run_id
            or t.event_id != key.scheduled_event_id
            or t.attempt != key.attempt
            or t.outstanding != (kind == "decision_timeout")
        ):
            return
        self._fire(kind, key, ctx)
        self._arm_transient(key.domain, key.workflow_id, t, ctx.partition, ctx.now_ms + TRANSIENT_REFIRE_MS)

    def _emit_task(
        self,
        workflow_id: str,
        task_list: str,
        task: TaskTask,
        ctx: Context,
        events: list[bytes] | None = None,
    ) -> None:
        """Emit a Task; a decision or query task's `events` are stored event bodies, spliced in."""
        topic = self.settings.tasks_topic(task_list)
        if topic not in self._task_topics:
            ensure_topics(self.settings, [task_topic(self.settings, task_list)])
            self._task_topics.add(topic)
        if events is None:
            record: Task = {"task": task}
            value = self.serde.encode("Task", record)
        else:
            kind, body = task
            value = self.serde.encode_spliced(
                "Task", cast(dict[str, Any], body), "events", events, branch=kind
            )
        # dispatch: sent before the transaction (workers de-duplicate tasks by token; a redo after
        # an abort sends the same bytes), saving the worker the transaction's round trips
        ctx.emit(OutRecord(topic, workflow_id.encode(), value, self._headers["Task"], dispatch=True))

    def _drop_continued_runs(self, ctx: Context, events: list[HistoryEvent]) -> None:
        """A run that continued as new is never addressed again (queries, tasks go to the new run):
        its stored events go (the history topic keeps them), so long chains do not grow the store."""
        for event in events:
            if event["attributes"][0] == "WorkflowExecutionContinuedAsNew":
                self.store.drop_events(ctx.state, event["run_id"])

    # -- liveness (heartbeat, schedule-to-start) ------------------------------------------------------
    def _arm_liveness(
        self,
        domain: str,
        workflow_id: str,
        run: RunState,
        scheduled_event_id: int,
        ctx: Context,
        started: bool = False,
    ) -> None:
        """Arm the attempt's heartbeat and (unless it is `started`: eager) schedule-to-start deadlines."""
        info = run.activities[scheduled_event_id]
        key = AttemptKey(domain, workflow_id, run.run_id, scheduled_event_id, info.attempt)
        heartbeat = info.scheduled["heartbeat_timeout_ms"]
        if heartbeat:
            self.liveness.arm(
                ctx.partition, "heartbeat_timeout", key, max(ctx.now_ms, info.dispatch_time) + heartbeat
            )
        to_start = info.scheduled["schedule_to_start_timeout_ms"]
        if to_start and not started:
            self.liveness.arm(
                ctx.partition,
                "schedule_to_start_timeout",
                key,
                max(ctx.now_ms, info.dispatch_time) + to_start,
            )

    def _note_heartbeat(self, tr: Transition, ctx: Context) -> None:
        run = tr.run
        assert run is not None and tr.heartbeat is not None
        info = run.activities.get(tr.heartbeat[0])
        if info is not None:
            key = AttemptKey(tr.domain, tr.workflow_id, run.run_id, info.scheduled_event_id, info.attempt)
            self.liveness.heartbeat(ctx.partition, key, ctx.now_ms, info.scheduled["heartbeat_timeout_ms"])

    def punctuate(self, partition: int, ctx: Context) -> None:
        for kind, key in self.liveness.due(partition, ctx.now_ms):
            if kind in ("decision_retry", "decision_timeout"):
                self._fire_transient(kind, key, ctx)
                continue
            state = self.store.load(ctx.state, key.domain, key.workflow_id)
            run = state.run(key.run_id) if state is not None else None
            info = run.activities.get(key.scheduled_event_id) if run is not None and run.is_open else None
            if info is None or info.attempt != key.attempt:
                continue  # the attempt finished meanwhile
            self._fire(kind, key, ctx)

    def _fire(self, kind: str, key: AttemptKey, ctx: Context) -> None:
        """A FireTimer for the attempt `key` on the processor's own input: its handler decides."""
        command = fire_timer_command(
            kind=kind,
            domain=key.domain,
            workflow_id=key.workflow_id,
            run_id=key.run_id,
            event_id=key.scheduled_event_id,
            attempt=key.attempt,
            timestamp=ctx.now_ms,
        )
        self._emit_command(command, ctx, ctx.now_ms)

    def _emit_command(self, command: Command, ctx: Context, now_ms: int) -> None:
        """A command of the engine's own (a reply, a liveness fire), signed (`streams.signing`)."""
        key, value = command["workflow_id"].encode(), self.serde.encode("Command", command)
        headers = self.signer.sign(self._headers["Command"], key, value)
        ctx.emit(OutRecord(self.settings.commands_topic, key, value, headers, None, now_ms))

    # -- restore and re-dispatch -------------------------------------------------------------------
    def restore(self, record: InRecord, ctx: Context) -> int | None:
        try:
            _, decoded = self.serde.decode(record.value, "HistoryTransition")
        except SerdeError as exc:
            log.error(
                "%s[%d]@%d: unreadable history record skipped in restore: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return None
        transition = cast(HistoryTransition, decoded)
        # Replies and outcomes of an input the group's committed offset covers were written before
        # that offset was sent (streams.restore.RestoreContext): re-sending them would only duplicate
        # them (on Apache Kafka: committed duplicates, after every rebalance or restart).
        committed: int = getattr(ctx, "committed_offset", 0)
        source = transition["source_offset"]
        proven_sent = transition["source_partition"] == record.partition and source < committed
        if (transition["replies"] or transition["outcomes"]) and not proven_sent:
            self._restored_sends.setdefault(record.partition, {})[transition["source_offset"]] = (
                transition["replies"],
                transition["outcomes"],
                record.timestamp_ms,
            )
        state = self.store.load(ctx.state, transition["domain"], transition["workflow_id"])
        if state is not None and all(already_applied(state, e) for e in transition["events"]):
            return transition["source_offset"]  # a duplicate (or a leaked aborted copy): nothing new
        state, fresh = fold_transition(state, transition)
        if fresh:
            assert state is not None
            self.store.save(ctx.state, state)
            self.store.put_events(ctx.state, fresh)
            self._drop_continued_runs(ctx, fresh)
        return transition["source_offset"] if transition["source_partition"] == record.partition else None

    def on_assigned(self, partition: int, ctx: Context) -> None:
        self.liveness.reset(partition)  # the re-dispatch below arms every pending attempt afresh
        self._resend_restored_tail(partition, ctx)
        redispatched = open_runs = 0
        for domain, workflow_id in list(self.store.open_workflows(ctx.state)):
            state = self.store.load(ctx.state, domain, workflow_id)
            run = state.current if state is not None else None
            if run is None or not run.is_open:
                continue
            open_runs += 1
            tr = Transition(domain, workflow_id, "redispatch", ctx.now_ms, state)
            if run.decision is not None and run.decision.started_event_id:
                tr.dispatches.append(("decision", run.run_id, True))
            elif transient.in_streak(run):  # waiting for a retry, or a transient attempt is out
                self._resume_transient(tr, run, ctx)
            for scheduled_event_id, info in run.activities.items():
                if (
                    info.dispatch_time <= ctx.now_ms
                ):  # a retry still in its backoff is dispatched by its timer
                    tr.dispatches.append(("activity", run.run_id, scheduled_event_id))
            for dispatch in tr.dispatches:
                self._dispatch(tr, dispatch, ctx)
            redispatched += len(tr.dispatches)
        metrics.set_open(partition, open_runs)
        log.info("history partition %d restored; re-dispatched %d pending tasks", partition, redispatched)

    def _resume_transient(self, tr: Transition, run: RunState, ctx: Context) -> None:
        """On assignment: arm the deadline of the run's transient attempt and re-send it if it is
        out. Without a current one (a store rebuilt from history) a retry is due now, at the
        recorded attempt: the count may start over, the run never stalls."""
        raw = self.store.load_transient(ctx.state, tr.domain, tr.workflow_id)
        t = TransientDecision.decode(raw) if raw is not None else None
        if t is None or not transient.current(t, run):
            attempt = t.attempt if t is not None and t.run_id == run.run_id else run.decision_attempt
            t = TransientDecision(
                run.run_id, run.next_event_id, max(attempt, run.decision_attempt), 0, ctx.now_ms
            )
            self.store.save_transient(ctx.state, tr.domain, tr.workflow_id, t.encode())
        tr.transient = t
        if t.outstanding:
            tr.dispatches.append(("transient_decision", run.run_id, True))
        self._arm_transient(tr.domain, tr.workflow_id, t, ctx.partition, t.due_ms)

    def _resend_restored_tail(self, partition: int, ctx: Context) -> None:
        """Re-send the replies and outcomes of the last batch's worth of restored transitions.

        A transaction cut short on a broker that shows aborted records may leave a transition in
        history without the replies it sent (records of one transaction reach different partitions
        independently); input then resumes after it. Re-sending is safe: replies carry
        deterministic command ids that their targets de-duplicate, outcomes are keyed by run.
        """
        sends = self._restored_sends.pop(partition, {})
        if not sends:
            return
        newest = max(sends)
        for offset, (replies, outcomes, timestamp) in sorted(sends.items()):
            if offset > newest - self.settings.batch_max_records:
                self._send(replies, outcomes, ctx, timestamp)

    def on_revoked(self, partition: int) -> None:
        metrics.forget_partition(partition)
        self.store.clear_cache()
