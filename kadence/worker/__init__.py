"""The worker: consumes `tasks.<task_list>`, runs workflow and activity code, answers with Commands.

```python
from kadence.worker import Worker

with Worker(client, "orders", workflows=[OrderWorkflow], activities=[charge]):
    ...
```

- `_worker.py`: the `Worker` (consumer loop, lifecycle, routing of tasks, offset commits);
- `_decisions.py`: decision tasks (run cache, replay, answers) and query tasks;
- `_activities.py`: activity attempts (backlog, thread pool and event loop, heartbeats, answers);
- `_eager.py`: which scheduled activities this worker runs at once (eager activities);
- `_held.py`: a decision answer held until its eager attempts answer;
- `_answers.py`: the producer of every answer and the offsets answered tasks make committable;
- `_threads.py`: the daemon thread pool of sync activities.
"""

from ._worker import Worker

__all__ = ["Worker"]
