"""Execution state: everything the engine knows of a workflow id, derived from its history alone.

Values, not objects with behaviour: the reducer never mutates a state it was given (it copies
what an event changes), so `fold(history) == live state` is a test anyone can write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from immutables import Map

if TYPE_CHECKING:  # types only: `history` imports nothing of Kadence at run time (docs/architecture.md §1)
    from _typeshed import DataclassInstance

    from kadence.schemas.records import (
        ActivityTaskScheduled,
        ParentExecution,
        Payload,
        RequestCancelExternalWorkflowExecutionInitiated,
        RetryPolicy,
        SignalExternalWorkflowExecutionInitiated,
        WatchExternalWorkflowExecutionInitiated,
        WorkflowExecutionCanceled,
        WorkflowExecutionCompleted,
        WorkflowExecutionContinuedAsNew,
        WorkflowExecutionFailed,
        WorkflowExecutionSignaled,
        WorkflowExecutionTerminated,
        WorkflowExecutionTimedOut,
        WorkflowExecutionUpdateAccepted,
        WorkflowExecutionUpdateCompleted,
        WorkflowExecutionWatched,
    )

    #: The attributes of an event in `CLOSE_EVENTS` (what `RunState.close` keeps).
    CloseAttributes: TypeAlias = (
        WorkflowExecutionCompleted
        | WorkflowExecutionFailed
        | WorkflowExecutionCanceled
        | WorkflowExecutionTerminated
        | WorkflowExecutionTimedOut
        | WorkflowExecutionContinuedAsNew
    )

#: The empty id set (`RunState.signal_request_ids`).
NO_IDS: Map[str, None] = Map()

CLOSED_STATUSES = frozenset(
    {"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "CONTINUED_AS_NEW", "TIMED_OUT"}
)

#: The events that close a run, and the status each gives it.
CLOSE_EVENTS = {
    "WorkflowExecutionCompleted": "COMPLETED",
    "WorkflowExecutionFailed": "FAILED",
    "WorkflowExecutionCanceled": "CANCELED",
    "WorkflowExecutionTerminated": "TERMINATED",
    "WorkflowExecutionTimedOut": "TIMED_OUT",
    "WorkflowExecutionContinuedAsNew": "CONTINUED_AS_NEW",
}

#: Events that the workflow code must see: one arriving makes a new decision task necessary.
DECISION_TRIGGERING_EVENTS = frozenset(
    {
        "ActivityTaskCompleted",
        "ActivityTaskFailed",
        "ActivityTaskTimedOut",
        "ActivityTaskCanceled",
        "TimerFired",
        "WorkflowExecutionSignaled",
        "WorkflowExecutionCancelRequested",
        "StartChildWorkflowExecutionFailed",
        "ChildWorkflowExecutionStarted",
        "ChildWorkflowExecutionCompleted",
        "ChildWorkflowExecutionFailed",
        "ChildWorkflowExecutionCanceled",
        "ChildWorkflowExecutionTimedOut",
        "ChildWorkflowExecutionTerminated",
        "SignalExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionSignaled",
        "RequestCancelExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionCancelRequested",
        "WatchExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionClosed",
        "RequestCancelActivityTaskFailed",
        "CancelTimerFailed",
        "WorkflowExecutionUpdateAccepted",
    }
)

_V = TypeVar("_V")
_D = TypeVar("_D", bound="DataclassInstance")

#: The generated copier of each state class (see `_value_class`).
_COPIERS: dict[type, Callable[[Any, Mapping[str, Any]], Any]] = {}


def copy_with(obj: _V, changes: Mapping[str, Any]) -> _V:
    """A copy of a state object with `changes` (field name -> new value) applied: what
    `dataclasses.replace(obj, **changes)` does for the classes of this module, about 4x cheaper.
    The copy is shallow, and `obj` itself is never modified."""
    copier: Callable[[_V, Mapping[str, Any]], _V] = _COPIERS[type(obj)]
    return copier(obj, changes)


def _value_class(cls: type[_D]) -> type[_D]:
    """Give a frozen slots dataclass a cheap copier (for `copy_with`) and cheap pickling.

    Why: the reducer copies a `RunState` (31 fields) and its `ExecutionState` for every event, and
    the processors' stores pickle a whole `ExecutionState` (every pending activity and child) on
    every command. `dataclasses.replace` calls `fields()` and re-runs `__init__` (a frozen
    `object.__setattr__` per field), and the `__getstate__` dataclasses gives a frozen slots class
    calls `fields()` per object. Here the functions are generated once per class as straight-line
    code that sets each field through its slot descriptor (which, like the frozen `__init__`,
    bypasses the frozen `__setattr__`; instances stay immutable for everyone else).

    Pickling: `__reduce__` gives `(cls._unpickle, field values in field order)`, which pickles
    cheaper than `__getstate__` and loads cheaper than calling the class. Pickles written by the
    dataclasses default still load (through its `__setstate__`, left in place); a pickle of a
    different field layout fails to load (the stores are rebuilt from the history topic).
    """
    names = [f.name for f in fields(cls)]
    setters: dict[str, Callable[[Any, Any], None]] = {}
    for name in names:
        slot = cls.__dict__.get(name)
        if not isinstance(slot, MemberDescriptorType):
            raise TypeError(f"{cls.__name__}.{name} is not a slot: use @dataclass(slots=True, frozen=True)")
        setters[name] = slot.__set__
    # Generated names are prefixed by an underscore (fields may not begin with one).
    if any(name.startswith("_") for name in names):
        raise TypeError(f"{cls.__name__}: a field name begins with an underscore")
    source = "\n".join(
        [
            "def _copy(_obj, _changes):",
            "    _new_obj = _new(_cls)",
            *(f"    _set_{n}(_new_obj, _obj.{n})" for n in names),
            "    for _name, _value in _changes.items():",
            "        if _name not in _setters:",
            "            raise TypeError(f'{_cls.__name__} has no field {_name!r}')",
            "        _setters[_name](_new_obj, _value)",
            "    return _new_obj",
            "",
            "def __reduce__(_self):",
            f"    return _cls._unpickle, ({', '.join(f'_self.{n}' for n in names)},)",
            "",
            f"def _unpickle({', '.join(names)}):",
            "    _new_obj = _new(_cls)",
            *(f"    _set_{n}(_new_obj, {n})" for n in names),
            "    return _new_obj",
        ]
    )
    namespace: dict[str, Any] = {
        "__name__": cls.__module__,
        "_new": object.__new__,
        "_cls": cls,
        "_setters": setters,
        **{f"_set_{n}": setter for n, setter in setters.items()},
    }
    exec(compile(source, f"<generated by history.state._value_class for {cls.__name__}>", "exec"), namespace)
    reduce, unpickle = namespace["__reduce__"], namespace["_unpickle"]
    reduce.__qualname__ = f"{cls.__name__}.__reduce__"
    unpickle.__qualname__ = f"{cls.__name__}._unpickle"  # pickle finds it by module and qualified name
    for name, method in (("__reduce__", reduce), ("_unpickle", staticmethod(unpickle))):
        setattr(cls, name, method)  # generated methods: installed by name on the finished class
    _COPIERS[cls] = namespace["_copy"]
    return cls


@_value_class
@dataclass(slots=True, frozen=True)
class DecisionInfo:
    scheduled_event_id: int
    attempt: int
    task_list: str
    timeout_ms: int
    scheduled_time: int
    started_event_id: int = 0


@_value_class
@dataclass(slots=True, frozen=True)
class ActivityInfo:
    scheduled_event_id: int
    activity_id: str
    activity_type: str
    task_list: str
    #: The ActivityTaskScheduled attributes (input, timeouts, retry policy): needed to re-dispatch.
    scheduled: ActivityTaskScheduled
    scheduled_time: int
    attempt: int = 1
    cancel_requested: bool = False
    #: The ActivityTaskCancelRequested event's id (0: none); the ActivityTaskCanceled that a
    #: worker's acknowledgement records names it.
    cancel_requested_event_id: int = 0
    #: When the current attempt is (or was) dispatched: scheduled_time, or after a retry's backoff.
    attempt_time: int = 0

    @property
    def dispatch_time(self) -> int:
        return self.attempt_time or self.scheduled_time


@_value_class
@dataclass(slots=True, frozen=True)
class TimerInfo:
    timer_id: str
    started_event_id: int
    fire_at_ms: int


@_value_class
@dataclass(slots=True, frozen=True)
class ChildInfo:
    initiated_event_id: int
    domain: str
    workflow_id: str
    workflow_type: str
    parent_close_policy: str
    #: The child's first run id, known before it starts (derived from the start command id).
    first_run_id: str
    run_id: str = ""
    started_event_id: int = 0
    #: Attached to a run that was already open (id_conflict_policy USE_EXISTING): watched, not
    #: owned, so no parent close policy applies to it.
    attached: bool = False
    #: The run that initiated it (set when a continue-as-new with keep_children carries it on).
    parent_run_id: str = ""


@_value_class
@dataclass(slots=True, frozen=True)
class RunState:
    run_id: str
    first_run_id: str
    workflow_type: str
    task_list: str
    task_timeout_ms: int
    run_timeout_ms: int
    execution_timeout_ms: int
    execution_deadline_ms: int
    start_time: int
    request_id: str
    input: Payload | None
    parent: ParentExecution | None
    retry_policy: RetryPolicy | None
    attempt: int
    memo: dict[str, Payload]
    status: str = "RUNNING"
    close_event_id: int = 0
    close_time: int = 0
    #: Attributes of the close event (result, failure, new run id...).
    close: CloseAttributes | None = None
    close_type: str = ""
    next_event_id: int = 1
    #: Approximate history size in bytes (payload bytes + a fixed cost per event).
    history_size: int = 0
    #: The run's history in bytes as a decision task carries it, estimated (the estimate above plus
    #: each event's ids and text fields beyond its fixed overhead): what the hard history limit
    #: compares, so a run is terminated before its full history stops fitting in one record. Kept
    #: apart from `history_size`, which workflow code sees (`info().history_size_bytes`) and replays.
    full_history_bytes: int = 0
    decision: DecisionInfo | None = None
    decision_attempt: int = 1
    #: Started event id of the last completed decision task (what a cached worker has seen).
    last_completed_started_event_id: int = 0
    #: Events the workflow code has not seen yet (arrived after the last decision task started).
    unhandled_events: int = 0
    #: The signals among `unhandled_events`, in order: what a continue-as-new decision carries to
    #: the next run (docs/protocol.md, "Signals across continue-as-new").
    unseen_signals: tuple[WorkflowExecutionSignaled, ...] = ()
    #: (run id, last event id) of the runs reset into this one (docs/protocol.md, "Reset"): what
    #: they initiated at or before that event reports to this run now. The base run is the last.
    reset_attached: tuple[tuple[str, int], ...] = ()
    activities: dict[int, ActivityInfo] = field(default_factory=dict)
    activity_ids: dict[str, int] = field(default_factory=dict)
    timers: dict[str, TimerInfo] = field(default_factory=dict)
    children: dict[int, ChildInfo] = field(default_factory=dict)
    signals_out: dict[int, SignalExternalWorkflowExecutionInitiated] = field(default_factory=dict)
    cancels_out: dict[int, RequestCancelExternalWorkflowExecutionInitiated] = field(default_factory=dict)
    #: Request ids of the signals recorded in this run (a repeated one is a duplicate). A persistent
    #: map (keys only), not a frozenset: adding to a frozenset copies it, which made a run of n
    #: signals cost O(n^2) in both processors (bench/README.md, "A 50,000-event history").
    signal_request_ids: Map[str, None] = NO_IDS
    #: Outgoing watches (WatchExternalWorkflowExecutionInitiated by event id) not answered yet.
    watches_out: dict[int, WatchExternalWorkflowExecutionInitiated] = field(default_factory=dict)
    #: Runs told how this workflow's chain ends (WorkflowExecutionWatched); carried to the next
    #: run of the chain (continue-as-new, retry), told at the chain's final close.
    watchers: tuple[WorkflowExecutionWatched, ...] = ()
    #: Children earlier runs of the chain left running (continue-as-new with keep_children),
    #: carried on so the chain's parent close policy reaches them when the chain finally ends.
    kept_children: tuple[ChildInfo, ...] = ()
    #: Update id -> the update's latest event: accepted (its handler is running) or completed
    #: (result or failure: a repeated update id is answered with it). docs/updates.md.
    updates: dict[str, WorkflowExecutionUpdateAccepted | WorkflowExecutionUpdateCompleted] = field(
        default_factory=dict
    )
    cancel_requested: bool = False
    #: Search attributes of the run as typed Python values (str for keyword and text, int, float,
    #: bool, datetime, list[str] for a keyword list), folded from the start event and every
    #: UpsertWorkflowSearchAttributes (history/search_attributes.py decodes the recorded form).
    search_attributes: dict[str, Any] = field(default_factory=dict)
    #: Timestamp of the run's latest event: the next event is never earlier (docs/protocol.md,
    #: "Event time").
    last_event_time: int = 0
    #: The last failure of the run's decision task since its last completed one ({"cause",
    #: "message"}), None once a decision task completes; `decision_attempt` counts the attempts.
    decision_failure: dict[str, str] | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "RUNNING"


@_value_class
@dataclass(slots=True, frozen=True)
class ExecutionState:
    """A workflow id in a domain: its latest run and the chain of run ids before it."""

    domain: str
    workflow_id: str
    current: RunState | None = None
    #: (run_id, status) of earlier runs, oldest first (bounded; see reducer.MAX_CHAIN).
    previous_runs: tuple[tuple[str, str], ...] = ()

    def run(self, run_id: str) -> RunState | None:
        """The current run if `run_id` names it (or is empty)."""
        cur = self.current
        if cur is not None and (not run_id or run_id == cur.run_id):
            return cur
        return None

    def knows_run(self, run_id: str) -> bool:
        return (self.current is not None and self.current.run_id == run_id) or any(
            r == run_id for r, _ in self.previous_runs
        )
