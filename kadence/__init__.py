"""Kadence: durable Cadence/Temporal-style workflows for Python, event-sourced on Kafka.

```python
from kadence import Client, Worker, activity, workflow
```
"""

from . import activity, workflow
from .client import Client, UpdateHandle, UpdateStage, WorkflowHandle
from .failures import (
    ActivityError,
    ApplicationError,
    CanceledError,
    ChildWorkflowError,
    KadenceError,
    NondeterminismError,
    QueryError,
    StartFailureCause,
    TerminatedError,
    TimeoutError,
    UpdateFailedError,
    UpdateRejectedError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
)
from .replayer import Replayer, dump_history, load_history
from .worker import Worker
from .workflow import (
    CancellationScope,
    ChildWorkflowCancellationType,
    ChildWorkflowHandle,
    ExternalWorkflowHandle,
    IdConflictPolicy,
    IdReusePolicy,
    ParentClosePolicy,
    RetryPolicy,
    WorkflowInfo,
)

__all__ = [
    "Client",
    "WorkflowHandle",
    "UpdateHandle",
    "UpdateStage",
    "Worker",
    "activity",
    "workflow",
    "ActivityError",
    "ApplicationError",
    "CanceledError",
    "ChildWorkflowError",
    "KadenceError",
    "NondeterminismError",
    "QueryError",
    "TerminatedError",
    "TimeoutError",
    "WorkflowAlreadyStartedError",
    "StartFailureCause",
    "UpdateFailedError",
    "UpdateRejectedError",
    "WorkflowNotFoundError",
    "WorkflowFailureError",
    "Replayer",
    "dump_history",
    "load_history",
    "CancellationScope",
    "ChildWorkflowCancellationType",
    "ChildWorkflowHandle",
    "ExternalWorkflowHandle",
    "IdConflictPolicy",
    "IdReusePolicy",
    "ParentClosePolicy",
    "RetryPolicy",
    "WorkflowInfo",
]
