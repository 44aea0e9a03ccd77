"""Workflows of the `test_kafka_only_*` suites: a parent with children (one signalled by its
parent), a durable timer and activities, so that every processor path (history, children,
signals, timers) writes in every batch."""

from __future__ import annotations

from kadence import activity, workflow

CHILDREN = 2


@activity.defn
def step(name: str) -> str:
    return f"step-{name}"


@workflow.defn
class EoChild:
    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.run
    async def run(self, name: str, wait_note: bool) -> str:
        done = await workflow.execute_activity(step, name, start_to_close_timeout=120)
        if wait_note:
            await workflow.wait_condition(lambda: bool(self.notes))
        return f"{done}|{','.join(self.notes)}"


@workflow.defn
class EoParent:
    """Children (one waits for a signal from its parent), a durable timer (fired by the derived
    processor's punctuation, in a transaction of its own) and activities."""

    @workflow.run
    async def run(self, pid: str) -> list[str]:
        starts = [
            workflow.start_child_workflow(EoChild.run, f"{pid}-c{i}", i == 0, id=f"{pid}-c{i}")
            for i in range(CHILDREN)
        ]
        kids = [await s for s in starts]
        await kids[0].signal(EoChild.note, f"hello-{pid}")
        results = [await k.result() for k in kids]
        await workflow.sleep(0.2)
        results.append(await workflow.execute_activity(step, pid, start_to_close_timeout=120))
        return results


def expected(pid: str) -> list[str]:
    return (
        [f"step-{pid}-c0|hello-{pid}"] + [f"step-{pid}-c{i}|" for i in range(1, CHILDREN)] + [f"step-{pid}"]
    )
