"""Decision and query tasks: the run cache, replay through `WorkflowInstance`, the answers.

- DecisionTask: the run's cached `WorkflowInstance` (LRU by run id) takes the new events, or a
  fresh one replays the full history; answers RespondDecisionTaskCompleted (command id
  `<token>/completed`), or RespondDecisionTaskFailed with cause CACHE_MISS (the processor resends
  the task with full history), NONDETERMINISM, UNKNOWN_TYPE or WORKFLOW_ERROR.
- Eager activities: the decision's ScheduleActivityTask decisions that this worker can run are
  marked with their predicted event id (kadence/worker/_eager.py) and handed to the activity
  runner as attempts. Their decision answer is held until they answer (kadence/worker/_held.py)
  and each attempt carries that held answer: the one link between a decision and its attempts.
- QueryTask: answered with a QueryResult on the task's reply topic, keyed by query id.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from kadence.history.ids import answer_command_id

from .._runtime import CacheMissError, WorkflowInstance
from .._runtime_defn import WorkflowDefinition
from ..converter import JSONConverter
from ..failures import ApplicationError, NondeterminismError, to_failure
from ._activities import ActivityAttempt, ActivityRunner
from ._answers import TP, Outbox
from ._eager import plan_eager
from ._held import HeldAnswers
from ._metrics import WORKFLOW_TASK_FAILED

log = logging.getLogger("kadence.worker")


class DecisionRunner:
    """Runs the worker's workflows. `eager`: the activity runner that takes eager attempts (None:
    no eager activities). `suggest_events`/`suggest_bytes`: the history processor's continue-as-new
    thresholds (`workflow.info().continue_as_new_suggested` is computed from history here, so that
    replay sees the same value)."""

    def __init__(
        self,
        workflows: dict[str, WorkflowDefinition],
        *,
        task_list: str,
        identity: str,
        converter: JSONConverter,
        outbox: Outbox,
        held: HeldAnswers,
        eager: ActivityRunner | None,
        max_cached_workflows: int,
        suggest_events: int,
        suggest_bytes: int,
    ) -> None:
        self.workflows = workflows
        self.task_list = task_list
        self.identity = identity
        self.converter = converter
        self.outbox = outbox
        self.held = held
        self.eager = eager
        self.max_cached_workflows = max_cached_workflows
        self.suggest_events = suggest_events
        self.suggest_bytes = suggest_bytes
        self._warned_suggest = False
        self._cache: collections.OrderedDict[str, WorkflowInstance] = collections.OrderedDict()

    # -- decision tasks ---------------------------------------------------------------------------
    def on_task(self, t: dict[str, Any], tp: TP, offset: int) -> None:
        """Handle one DecisionTask: answer it (now, or held for its eager attempts) and start its
        eager attempts."""

        def failed(cause: str, exc: BaseException | None) -> None:
            WORKFLOW_TASK_FAILED.labels(self.task_list, t["workflow_type"], cause).inc()
            self.outbox.command(
                t,
                "RespondDecisionTaskFailed",
                {"task_token": t["task_token"], "cause": cause, "failure": to_failure(exc) if exc else None},
                answer_command_id(t["task_token"], "failed"),
                tp,
                offset,
            )

        run_id = t["run_id"]
        defn = self.workflows.get(t["workflow_type"])
        if defn is None:
            failed(
                "UNKNOWN_TYPE",
                ApplicationError(
                    f"workflow type {t['workflow_type']!r} is not registered on worker {self.identity} "
                    f"(task list {self.task_list}); registered: {sorted(self.workflows)}",
                    type="UnknownWorkflowType",
                ),
            )
            return
        inst = self._cache.pop(run_id, None)
        if inst is not None and inst.last_task_token == t["task_token"]:
            # a redelivered task we already answered: the same answer again (same command id)
            self._complete(t, inst, inst.last_decisions, tp, offset)
            return
        events = t["events"]
        full = (
            t["full_history"]
            or t["previous_started_event_id"] == 0
            or (events and events[0]["event_id"] == 1)
        )
        if full:
            inst = None
        elif inst is None or inst.live_started_event_id != t["previous_started_event_id"]:
            failed("CACHE_MISS", None)
            return
        try:
            if inst is None:
                inst = WorkflowInstance(
                    defn,
                    converter=self.converter,
                    suggest_events=self.suggest_events,
                    suggest_bytes=self.suggest_bytes,
                )
            decisions = inst.activate(events)
            if (
                inst.info.continue_as_new_suggested != t["continue_as_new_suggested"]
                and not self._warned_suggest
            ):
                self._warned_suggest = True
                log.warning(
                    "worker %s: continue_as_new_suggested differs from the server's (history length %d, "
                    "%d bytes): give the Worker the history processor's suggest_continue_as_new_* "
                    "thresholds",
                    self.task_list,
                    inst.info.history_length,
                    inst.info.history_size_bytes,
                )
        except CacheMissError:
            failed("CACHE_MISS", None)
            return
        except NondeterminismError as exc:
            log.error("workflow %s run %s: %s", t["workflow_id"], run_id, exc)
            failed("NONDETERMINISM", exc)
            return
        except Exception as exc:  # noqa: BLE001 - a broken workflow fails its task, not the worker
            log.exception("workflow %s run %s: decision task failed", t["workflow_id"], run_id)
            failed("WORKFLOW_ERROR", exc)
            return
        inst.last_task_token = t["task_token"]
        eager = self.eager
        if eager is None:
            self._complete(t, inst, decisions, tp, offset)
            return
        decisions, eager_tasks = plan_eager(t, decisions, eager.runs_here, eager.free_slots())
        if not eager_tasks:
            self._complete(t, inst, decisions, tp, offset)
            return
        held = None
        if self.held.hold_s <= 0:
            self._complete(t, inst, decisions, tp, offset)
        else:  # the decision goes when its eager attempts answer (or their hold ends), before them
            held = self.held.hold(lambda: self._answer_decision(t, decisions, tp, offset), len(eager_tasks))
            self._cache_run(run_id, inst)
        # after the decision: the answers reach the history processor in that order
        eager.start_eager([ActivityAttempt(task, None, 0, held, eager=True) for task in eager_tasks])

    def _complete(
        self, t: dict[str, Any], inst: WorkflowInstance, decisions: list[dict[str, Any]], tp: TP, offset: int
    ) -> None:
        """Answer a decision task. A redelivered task is answered with `inst.last_decisions`, the
        runtime's own decisions: without eager marks, so a resent answer never skips a dispatch."""
        self._answer_decision(t, decisions, tp, offset)
        self._cache_run(t["run_id"], inst)

    def _answer_decision(
        self, t: dict[str, Any], decisions: list[dict[str, Any]], tp: TP, offset: int
    ) -> None:
        self.outbox.command(
            t,
            "RespondDecisionTaskCompleted",
            {"task_token": t["task_token"], "decisions": decisions},
            answer_command_id(t["task_token"], "completed"),
            tp,
            offset,
        )

    def _cache_run(self, run_id: str, inst: WorkflowInstance) -> None:
        if not inst.finished:
            self._cache[run_id] = inst
            while len(self._cache) > self.max_cached_workflows:
                self._cache.popitem(last=False)

    # -- query tasks ------------------------------------------------------------------------------
    def on_query(self, t: dict[str, Any], tp: TP, offset: int) -> None:
        result: dict[str, Any] = {"query_id": t["query_id"], "result": None, "error": None}
        try:
            defn = self.workflows.get(t["workflow_type"])
            if defn is None:
                raise ApplicationError(
                    f"workflow type {t['workflow_type']!r} is not registered on this worker",
                    type="QueryError",
                )
            inst = self._cache.get(t["run_id"])
            if inst is None or any(
                e["event_id"] >= inst.next_event_id and e["attributes"][0] == "DecisionTaskStarted"
                for e in t["events"]
            ):
                inst = WorkflowInstance(
                    defn,
                    converter=self.converter,
                    suggest_events=self.suggest_events,
                    suggest_bytes=self.suggest_bytes,
                )
                inst.activate(t["events"])
            if t.get("update_id"):  # an update's validation (docs/updates.md): no result, or the rejection
                inst.validate_update(t["query_type"], t.get("args"))
            else:
                result["result"] = inst.query(t["query_type"], t.get("args"))
        except Exception as exc:  # noqa: BLE001 - any query error goes back to the caller
            result["error"] = to_failure(exc)
        self.outbox.produce(t["reply_topic"], t["query_id"], "QueryResult", result, tp, offset)
