"""Versioning (issue 14, item 1): `workflow.patched` / `deprecate_patch` end to end through the broker.

Code is "deployed" under running workflows the way it is in production: a worker on the old code is
stopped while a run is open and a worker on the patched code (same workflow type) takes over, so it
replays the open run's history. The histories are then replayed against every version of the code,
through `Replayer` and through `kadence replay`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from examples import versioning
from examples.versioning import CheckoutV1, CheckoutV2, CheckoutV3, CheckoutV4
from kadence import Client, Replayer, Worker, workflow
from kadence.audit import run_audit
from kadence.cli import main
from kadence.failures import NondeterminismError
from kadence.history.decisions import PATCH_MARKER, patch_marker_id

pytestmark = pytest.mark.timeout(240)

TL = versioning.TASK_LIST


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["attributes"][0] for e in events]


def markers(events: list[dict[str, Any]]) -> list[tuple[str | None, bool]]:
    """(patch id, deprecated) of each MarkerRecorded event."""
    out = []
    for e in events:
        kind, attrs = e["attributes"]
        if kind == "MarkerRecorded":
            assert attrs["marker_name"] == PATCH_MARKER
            out.append((patch_marker_id(attrs), json.loads(attrs["details"]["data"])["deprecated"]))
    return out


def scheduled(events: list[dict[str, Any]]) -> list[str]:
    return [a["activity_type"] for k, a in (e["attributes"] for e in events) if k == "ActivityTaskScheduled"]


def run_on(client: Client, cls: type, workflow_id: str) -> list[dict[str, Any]]:
    """One Checkout run, start to finish, on a worker with only `cls`; returns its history."""
    with Worker(client, TL, workflows=[cls], activities=versioning.ACTIVITIES):
        handle = client.start_workflow(cls.run, workflow_id, id=workflow_id, task_list=TL)  # type: ignore[attr-defined]
        versioning.wait_for_event(client, workflow_id, "ActivityTaskCompleted")
        handle.signal("ship")
        handle.result(timeout=30)
    return client.get_handle(workflow_id).history()


def test_deploy_patch_under_running_workflow_then_deprecate_and_remove(
    client: Client, tmp_path: Path
) -> None:
    # 1. Deploy version 2 while a run charged on version 1 waits for `ship` (examples/versioning.py).
    assert versioning.run_sample(client, "co") == {
        "co-old": "charged co-old",  # the old branch: the run passed the patch point on version 1
        "co-new": "charged co-new, receipt sent",  # the new branch: started on version 2
    }
    old = client.get_handle("co-old").history()
    new = client.get_handle("co-new").history()
    assert markers(old) == [] and scheduled(old) == ["charge"]
    assert types_of(old)[-1] == "WorkflowExecutionCompleted"
    assert markers(new) == [("receipt", False)] and scheduled(new) == ["charge_with_receipt"]
    new_types = types_of(new)
    # the marker is the first decision of the first task, recorded before the activity it guards
    assert new_types.index("DecisionTaskCompleted") + 1 == new_types.index("MarkerRecorded")
    assert new_types.index("MarkerRecorded") + 1 == new_types.index("ActivityTaskScheduled")
    # the old run was finished by the version-2 worker: its last decision task came after the deploy
    assert any(k == "WorkflowExecutionSignaled" for k in types_of(old))

    # 2. Version 2 replays both; version 1 cannot replay the patched run (rollback is detected).
    assert len(Replayer([CheckoutV2]).replay(old)) == 1
    assert len(Replayer([CheckoutV2]).replay(new)) == 1
    with pytest.raises(NondeterminismError, match="charge_with_receipt"):
        Replayer([CheckoutV1]).replay(new)

    # 3. Deprecate the patch: version 3 replays the patched run (its marker matches), and is refused
    #    on the old-branch run, which is why a patch is deprecated only once such runs are closed.
    assert len(Replayer([CheckoutV3]).replay(new)) == 1
    with pytest.raises(NondeterminismError, match=r"ActivityTaskScheduled.*'charge'"):
        Replayer([CheckoutV3]).replay(old)
    deprecated = run_on(client, CheckoutV3, "co-v3")
    assert markers(deprecated) == [("receipt", True)] and scheduled(deprecated) == ["charge_with_receipt"]
    # rolling back from version 3 to version 2 is safe: patched() finds the (deprecated) marker
    assert len(Replayer([CheckoutV2]).replay(deprecated)) == 1

    # 4. Remove the call: the recorded markers are skipped, so version 4 replays both patched runs;
    #    a run without a marker replays on version 3 (deprecate_patch never blocks a history lacking it).
    for history in (new, deprecated):
        assert len(Replayer([CheckoutV4]).replay(history)) == 1
    removed = run_on(client, CheckoutV4, "co-v4")
    assert markers(removed) == [] and scheduled(removed) == ["charge_with_receipt"]
    assert len(Replayer([CheckoutV3]).replay(removed)) == 1
    # version 2 on a history without the marker takes the old branch: refused, naming the event
    with pytest.raises(NondeterminismError, match=r"ActivityTaskScheduled.*'charge_with_receipt'"):
        Replayer([CheckoutV2]).replay(removed)


def test_kadence_replay_understands_patch_markers(
    client: Client, settings: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    versioning.run_sample(client, "cr")
    connection = ["--bootstrap", settings.bootstrap, "--prefix", settings.prefix]
    connection += ["--partitions", str(settings.partitions)]

    def replay(command: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*shlex.split(command), *connection])
        out, err = capsys.readouterr()
        return code, out, err

    for wid in ("cr-old", "cr-new"):
        code, out, _ = replay(f"replay {wid} --module examples.versioning")  # WORKFLOWS = [CheckoutV2]
        assert code == 0 and "deterministic" in out
    code, out, err = replay("replay cr-old --module tests.support.versioning_deprecated")
    assert code == 1 and "non-determinism in workflow 'cr-old'" in err and "'charge'" in err
    code, out, _ = replay("replay cr-new --module tests.support.versioning_deprecated")
    assert code == 0 and "deterministic" in out

    # the audit folds the markers with the one reducer and replays them with the same rules
    report = run_audit(client, workflows=[CheckoutV2])
    assert report.mismatches == [] and report.replay["Checkout"].runs == 2
    assert report.replay["Checkout"].deterministic == 2
    deprecated = run_audit(client, workflows=[CheckoutV3]).replay["Checkout"]
    assert deprecated.deterministic == 1 and [f[0] for f in deprecated.failures] == ["cr-old"]

    # `kadence show` prints the marker with its patch id
    code, out, _ = replay("show cr-new")
    (line,) = [ln for ln in out.splitlines() if "MarkerRecorded" in ln]
    assert "marker_name=Version" in line and "receipt" in line


@workflow.defn(name="Looper")
class LooperV1:
    @workflow.run
    async def run(self, left: int) -> list[str]:
        await workflow.sleep(0.3)
        if left > 0:
            workflow.continue_as_new(left - 1)
        return ["v1"]


@workflow.defn(name="Looper")
class LooperV2:
    @workflow.run
    async def run(self, left: int) -> list[str]:
        branch = "v2" if workflow.patched("loop-v2") else "v1"
        await workflow.sleep(0.3)
        if left > 0:
            workflow.continue_as_new(left - 1)
        return [branch]


def test_continue_as_new_starts_the_new_run_on_the_newest_code(client: Client) -> None:
    """A run started on version 1 passes the patch point, then continues as new after the deploy:
    it finishes on the old branch, and the next run (a new history) takes the patched branch."""
    with Worker(client, "looper", workflows=[LooperV1]):
        client.start_workflow(LooperV1.run, 1, id="loop", task_list="looper")
        versioning.wait_for_event(client, "loop", "TimerStarted")
    with Worker(client, "looper", workflows=[LooperV2]):
        assert client.get_handle("loop").result(timeout=60) == ["v2"]
    events = client.get_handle("loop").history()
    runs: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        runs.setdefault(e["run_id"], []).append(e)
    first, second = runs.values()
    assert markers(first) == [] and types_of(first)[-1] == "WorkflowExecutionContinuedAsNew"
    assert markers(second) == [("loop-v2", False)] and types_of(second)[-1] == "WorkflowExecutionCompleted"
    assert len(Replayer([LooperV2]).replay(events)) == 2
