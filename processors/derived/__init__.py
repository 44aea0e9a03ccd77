"""Derived processors: read `history`, fold it with the one reducer, and emit commands/outcomes.

Each module reacts to new events with the state right after each event:
- `children`: child starts, and a child's start/close reported back to its parent;
- `signals`: SignalExternalWorkflowExecutionInitiated -> a signal to the target;
- `cancellations`: external cancel requests, and parent close policies on every run close;
- `timers`: durable timers and timeouts, in a RocksDB index ordered by fire time.
(Closed runs reach the completions topic from the history processor itself, in the close's own
transaction: see docs/deviations.md.) They run in one process sharing one consumer of `history`
(`DerivedProcessor(modules=ALL)`), or one process each (`modules=[...]`, each with its own
consumer group and store).
"""

from .processor import ALL_MODULES, DerivedProcessor

__all__ = ["DerivedProcessor", "ALL_MODULES"]
