"""Regenerate the recorded histories in tests/histories/ from a real run (embedded broker, engine,
worker): `python tests/record_histories.py`. The replay tests then replay them offline."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import order_processing  # noqa: E402
from kadence import Client, Worker, dump_history  # noqa: E402
from kadence.processors.server import InProcessEngine  # noqa: E402
from kadence.streams.broker import EmbeddedBroker  # noqa: E402
from kadence.streams.settings import embedded_broker_settings  # noqa: E402

OUT = Path(__file__).resolve().parent / "histories"


def main() -> None:
    with EmbeddedBroker() as broker:
        settings = embedded_broker_settings(
            broker.bootstrap,
            prefix="rec.",
            state_dir=tempfile.mkdtemp(),
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        with InProcessEngine(settings), Client(settings) as client:
            workers = [
                Worker(client, tl, workflows=w, activities=a).start()
                for tl, (w, a) in order_processing.TASK_LISTS.items()
            ]
            try:
                order_processing.run_sample(client, "recorded")
                dump_history(client.get_handle("recorded-2").history(), OUT / "order_processing_engine.json")
            finally:
                for w in workers:
                    w.stop(5)
    print(f"wrote {OUT / 'order_processing_engine.json'}")


if __name__ == "__main__":
    main()
