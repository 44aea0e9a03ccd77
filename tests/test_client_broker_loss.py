"""The client and a broker that goes away (issue 12, item 4): with no broker at all a command fails
within seconds with `BrokerUnreachableError`; after a broker restart the same client delivers again
(its idempotent producer used to stay wedged, reporting nothing) and gets results."""

from __future__ import annotations

import time
import uuid

import pytest

from kadence import activity, workflow
from kadence.client import Client
from kadence.failures import BrokerUnreachableError
from kadence.processors.reset_state import reset_state
from kadence.processors.server import InProcessEngine
from kadence.streams.broker import EmbeddedBroker, free_port
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics
from kadence.worker import Worker


@activity.defn
def double(n: int) -> int:
    return 2 * n


@workflow.defn
class Doubler:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(double, n, start_to_close_timeout=10)


def test_no_broker_is_reported_within_seconds(state_dir) -> None:
    settings = Settings(bootstrap=f"127.0.0.1:{free_port()}", prefix="nobroker.", state_dir=str(state_dir))
    with Client(settings) as client:
        started = time.monotonic()
        with pytest.raises(BrokerUnreachableError, match="no Kafka broker answers at 127.0.0.1:"):
            client.start_workflow(Doubler.run, 1, id="w", task_list="default")
        assert time.monotonic() - started < 15


def _serve(settings: Settings, client: Client, wid: str, n: int) -> tuple[int, list[str]]:
    with InProcessEngine(settings):
        worker = Worker(client, "default", workflows=[Doubler], activities=[double]).start()
        try:
            handle = client.start_workflow(Doubler.run, n, id=wid, task_list="default")
            result = handle.result(timeout=60)
            return result, [e["attributes"][0] for e in handle.history()]
        finally:
            worker.stop(5)


def test_the_client_delivers_again_after_a_broker_restart(broker_kind, state_dir) -> None:
    if broker_kind != "tansu":
        pytest.skip("restarts the embedded broker, which comes back empty")
    broker = EmbeddedBroker().start()
    settings = Settings(
        bootstrap=broker.bootstrap,
        prefix=f"t{uuid.uuid4().hex[:10]}.",
        state_dir=str(state_dir),
        partitions=2,
        task_partitions=2,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    client = Client(settings)
    try:
        assert _serve(settings, client, "before", 2)[0] == 4
        port = broker.port
        broker.stop()
        broker = EmbeddedBroker(port=port).start()  # the same address, nothing of before
        ensure_core_topics(settings, ["default"])
        reset_state(settings)  # the engine's state belongs to the topics that are gone
        started = time.monotonic()
        result, kinds = _serve(settings, client, "after", 21)
        assert result == 42
        assert kinds[0] == "WorkflowExecutionStarted" and kinds[-1] == "WorkflowExecutionCompleted"
        assert "ActivityTaskCompleted" in kinds
        assert time.monotonic() - started < 90
    finally:
        client.close()
        broker.stop()
