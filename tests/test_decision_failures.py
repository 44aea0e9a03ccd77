"""A decision task that keeps failing (issue 12, item 9, the `describe` half): describe shows the
failure and the attempt count, through the broker; a completed decision task clears them."""

from __future__ import annotations

import time

from kadence import workflow
from kadence.cli._present import describe_fields
from kadence.history import fold


@workflow.defn
class Known:
    @workflow.run
    async def run(self) -> str:
        return "ok"


def test_describe_shows_a_failing_decision_and_its_attempts(client, worker) -> None:
    worker(workflows=[Known])
    handle = client.start_workflow("NoSuchWorkflowType", id="unknown-type", task_list="default")
    deadline = time.monotonic() + 60
    while True:
        summary = handle.describe()
        if (
            summary is not None
            and summary["decision_failure"] is not None
            and summary["decision_attempt"] >= 2
        ):
            break
        assert time.monotonic() < deadline, summary
        time.sleep(0.2)
    assert summary["status"] == "RUNNING"
    assert summary["decision_failure"]["cause"] == "UNKNOWN_TYPE"
    assert "NoSuchWorkflowType" in summary["decision_failure"]["message"]
    # The attempts go on while the test reads, so counts are compared within one read of history.
    history = handle.history()
    kinds = [e["attributes"][0] for e in history]
    fields = describe_fields(fold(history))  # what `kadence describe` prints
    assert fields["decision_failure"]["cause"] == "UNKNOWN_TYPE"
    assert kinds.count("DecisionTaskFailed") == fields["decision_attempt"] - 1 >= 1

    ok = client.start_workflow(Known.run, id="known-type", task_list="default")
    assert ok.result(timeout=60) == "ok"
    done = ok.describe()
    assert done["decision_failure"] is None and done["decision_attempt"] == 1
