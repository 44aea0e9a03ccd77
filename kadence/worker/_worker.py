"""The Worker: one consumer of `tasks.<task_list>`, its lifecycle, and the routing of tasks.

One consumer (group `<prefix>worker.<task_list>`) and one idempotent producer (`_answers.Outbox`).
The poll thread decodes each Task and hands it on: DecisionTask and QueryTask to the decision
runner (`_decisions.py`), ActivityTask to the activity runner (`_activities.py`). Between polls
it sends held decision answers whose hold has ended (`_held.py`), resends undelivered answers,
starts backlog activities and commits the offsets of answered tasks.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.group_watch import GroupWatch
from kadence.streams.metrics import serve as serve_metrics
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_topics, task_topic

from .._runtime import SUGGEST_CONTINUE_AS_NEW_BYTES, SUGGEST_CONTINUE_AS_NEW_EVENTS
from .._runtime_defn import WorkflowDefinition, definitions
from ..activity import ActivityDefinition
from ..converter import default_converter
from . import _metrics
from ._activities import ActivityRunner
from ._answers import Offsets, Outbox
from ._decisions import DecisionRunner
from ._held import HeldAnswers

log = logging.getLogger("kadence.worker")


class Worker:
    """Runs workflows and activities of one task list.

    ```python
    with Worker(client, "orders", workflows=[OrderWorkflow], activities=[charge]):
        ...
    ```
    `client_or_settings`: a `kadence.client.Client` (its settings, data converter and identity are
    used) or a `streams.settings.Settings`. `max_cached_workflows` bounds the run cache (LRU);
    a cache miss costs one round trip (CACHE_MISS, then a full-history task).
    Eager activities (`eager_activities=True`, the default): an activity this worker can run that its
    own decision schedules starts here at once, without the round trip through the history processor
    and `tasks.<list>`; the decision's answer waits for it at most `eager_answer_hold_ms`.
    Offsets are committed after the answer's delivery report (at-least-once; answers are idempotent
    by command id), and only up to the lowest task still in flight on each partition.
    """

    def __init__(
        self,
        client_or_settings: Any,
        task_list: str,
        workflows: Sequence[type] = (),
        activities: Sequence[Callable[..., Any]] = (),
        *,
        max_concurrent_activities: int = 64,
        max_cached_workflows: int = 2000,
        identity: str | None = None,
        data_converter: Any = None,
        create_topic: bool = True,
        eager_activities: bool = True,
        eager_answer_hold_ms: float = 5.0,
        suggest_continue_as_new_events: int = SUGGEST_CONTINUE_AS_NEW_EVENTS,
        suggest_continue_as_new_bytes: int = SUGGEST_CONTINUE_AS_NEW_BYTES,
        metrics_port: int | None = None,
    ) -> None:
        if isinstance(client_or_settings, Settings):
            self.settings = client_or_settings
            converter, client_identity = None, None
        else:
            self.settings = client_or_settings.settings
            converter = getattr(client_or_settings, "data_converter", None)
            client_identity = getattr(client_or_settings, "identity", None)
        self.task_list = task_list
        self.converter = data_converter or converter or default_converter
        self.identity = identity or client_identity or f"{os.getpid()}@{socket.gethostname()}"
        self.workflows: dict[str, WorkflowDefinition] = definitions(workflows)
        self.activities: dict[str, ActivityDefinition] = {}
        for fn in activities:
            d = ActivityDefinition.of(fn)
            if d.name in self.activities:
                raise ValueError(f"two activities share the type name {d.name!r}")
            self.activities[d.name] = d
        self.max_concurrent_activities = max_concurrent_activities
        self.max_cached_workflows = max_cached_workflows
        self.create_topic = create_topic
        self.eager_activities = eager_activities
        self.topic = self.settings.tasks_topic(task_list)
        self._serde = serde()
        self._offsets = Offsets()
        self._outbox = Outbox(self.settings, task_list, self.identity, self._offsets)
        # A decision with eager activities is answered when they have (at most this long after):
        # both answers then reach the history processor together (_held.py). 0: at once.
        self._held = HeldAnswers(eager_answer_hold_ms / 1000.0)
        self._activities = ActivityRunner(
            self.activities,
            task_list=task_list,
            converter=self.converter,
            outbox=self._outbox,
            held=self._held,
            max_concurrent=max_concurrent_activities,
        )
        # The thresholds must equal the history processor's (see DecisionRunner).
        self._decisions = DecisionRunner(
            self.workflows,
            task_list=task_list,
            identity=self.identity,
            converter=self.converter,
            outbox=self._outbox,
            held=self._held,
            eager=self._activities if eager_activities else None,
            max_cached_workflows=max_cached_workflows,
            suggest_events=suggest_continue_as_new_events,
            suggest_bytes=suggest_continue_as_new_bytes,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._consumer: Any = None
        #: Notices a consumer that stays out of its group after a broker restart (streams.group_watch).
        self._group_watch = GroupWatch()
        self._last_commit = 0.0
        self._error: BaseException | None = None
        self.assigned = threading.Event()
        #: How often the task consumer was replaced because it stayed out of its group.
        self.rejoins = 0
        #: Serve Prometheus metrics (this process's registry) on this port at start (0: a free one).
        self.metrics_port = metrics_port
        self._m_schedule_to_start = _metrics.WORKFLOW_TASK_SCHEDULE_TO_START
        self._m_execution = _metrics.WORKFLOW_TASK_EXECUTION
        self._m_activity_schedule_to_start = _metrics.ACTIVITY_SCHEDULE_TO_START

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Worker:
        if self._thread is not None:
            raise RuntimeError("worker already started")
        if self.create_topic:
            ensure_topics(self.settings, [task_topic(self.settings, self.task_list)])
        if self.metrics_port is not None:
            self.metrics_port = serve_metrics(self.metrics_port)
        # linger 0: each answer is on a workflow's critical path, and under load librdkafka still
        # batches what queues up while a request is in flight.
        self._producer = make_producer(
            self.settings, **{"client.id": f"worker-{self.identity}", "linger.ms": 0}
        )
        self._outbox.producer = self._producer
        self._consumer = self._subscribe()
        self._activities.start(self._consumer)
        self._thread = threading.Thread(
            target=self._poll_loop, name=f"kadence-worker-{self.task_list}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: stop taking tasks, let running activities finish within `timeout`, flush
        answers, commit the offsets of handled tasks, leave the group. Unhandled tasks (backlog,
        activities still running at the deadline) are not committed: another worker gets them."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._thread.join()
        self._activities.wait_idle(deadline, self._stopping_tick)
        self._held.expire(everything=True)
        self._outbox.flush_retries()
        self._producer.flush(max(0.1, deadline - time.monotonic()))
        try:
            self._commit(force=True, asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - leaving the group must still happen
            log.warning("worker %s: final commit failed: %s", self.task_list, exc)
        _close_bounded(self._consumer, CLOSE_SECONDS, self.task_list)
        self._activities.stop()
        self._thread = None

    def _subscribe(self) -> Any:
        self._group_watch.reset()
        consumer = make_consumer(
            self.settings,
            self.settings.group("worker." + self.task_list),
            **self._group_watch.consumer_config(),
        )
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        return consumer

    def _rejoin_if_stuck(self) -> None:
        """Replace a consumer that has been out of its group for too long (streams.group_watch):
        without this, a worker can own no partition after a broker restart, for good, while the
        history processor times its decision tasks out. Tasks in flight are not committed: the new
        member gets them again (answers are idempotent at the history processor)."""
        down = self._group_watch.stuck()
        if down is None:
            return
        log.error(
            "worker %s: the task consumer has not been a member of its group for %.0fs (librdkafka group "
            "state %r); replacing the consumer",
            self.task_list,
            down,
            self._group_watch.state,
        )
        old, self._consumer = self._consumer, None
        self._offsets.forget_all()
        _close_bounded(old, CLOSE_SECONDS, self.task_list)
        self._consumer = self._subscribe()
        self._activities.use_consumer(self._consumer)
        self.rejoins += 1
        _metrics.CONSUMER_REJOINS.labels(self.task_list).inc()

    def _stopping_tick(self) -> None:
        self._held.expire()
        self._producer.poll(0)

    def run(self) -> None:
        """Start and block until `stop()` (from another thread) or Ctrl-C."""
        self.start()
        try:
            while self._thread is not None and not self._stop.is_set():
                self._stop.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- poll loop --------------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.assigned.set()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._producer.flush(5)
        offsets = self._offsets.to_commit(only=tps)
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - revocation proceeds; the tasks are redelivered
                log.info("worker %s: commit on revoke failed: %s", self.task_list, exc)
        self._offsets.forget(tps)

    def _poll_loop(self) -> None:
        producer, outbox, activities = self._producer, self._outbox, self._activities
        while not self._stop.is_set():
            try:
                self._rejoin_if_stuck()
                consumer = self._consumer
                msg = consumer.poll(self._poll_timeout())
                while msg is not None:
                    self._on_message(msg)
                    msg = consumer.poll(0) if not self._stop.is_set() else None
                self._held.expire()
                producer.poll(0)
                outbox.flush_retries()
                activities.drain()
                self._commit()
            except Exception as exc:  # noqa: BLE001 - keep serving; a broken broker surfaces in logs
                log.exception("worker %s: poll loop error: %s", self.task_list, exc)
                self._error = exc
                time.sleep(0.05)

    def _poll_timeout(self) -> float:
        deadline = self._held.next_deadline()
        return 0.01 if deadline is None else min(0.01, max(0.0, deadline - time.monotonic()))

    def _on_message(self, msg: Any) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("worker %s: consumer error %s", self.task_list, msg.error())
            return
        tp, offset = (msg.topic(), msg.partition()), msg.offset()
        self._offsets.begin(tp, offset)
        try:
            _, rec = self._serde.decode(msg.value(), expected="Task")
        except SerdeError as exc:
            self._outbox.dead_letter(msg, str(exc))
            self._offsets.done(tp, offset)
            return
        kind, task = rec["task"]
        waited = max(0.0, time.time() - msg.timestamp()[1] / 1000.0)
        if kind == "DecisionTask":
            labels = (self.task_list, task["workflow_type"])
            self._m_schedule_to_start.labels(*labels).observe(waited)
            started = time.perf_counter()
            self._decisions.on_task(task, tp, offset)
            self._m_execution.labels(*labels).observe(time.perf_counter() - started)
        elif kind == "ActivityTask":
            self._m_activity_schedule_to_start.labels(self.task_list, task["activity_type"]).observe(waited)
            self._activities.submit(task, tp, offset)
        else:
            self._decisions.on_query(task, tp, offset)

    def _commit(self, force: bool = False, asynchronous: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < 0.05:
            return
        self._last_commit = now
        offsets = self._offsets.to_commit()
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=asynchronous)


#: How long `Worker.stop` (and a consumer replacement) waits for a consumer to leave its group.
CLOSE_SECONDS = 10.0


def _close_bounded(consumer: Any, seconds: float, task_list: str) -> None:
    """`consumer.close()` on a helper thread, waited for at most `seconds`: close leaves the group,
    and librdkafka can block in it for good when the group coordinator is gone (a broker restart);
    a worker's stop must not hang its process. A close that does not return in time is logged and
    left to finish (or not) on its daemon thread."""
    closer = threading.Thread(target=consumer.close, name=f"kadence-close-{task_list}", daemon=True)
    closer.start()
    closer.join(seconds)
    if closer.is_alive():
        log.warning("worker %s: consumer close did not return within %.0fs; left behind", task_list, seconds)
