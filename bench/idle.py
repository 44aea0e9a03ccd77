"""idle: what a deployment with nothing to do costs: CPU seconds per process over `--seconds`.

    python -m bench.idle [--seconds 10] [--kafka apache] [--set fetch_wait_max_ms=100]

Every consumer (history, derived, the worker's, the client's completions reader) long-polls its
partitions; `fetch_wait_max_ms` bounds each poll. Tansu answers a poll only when that bound ends,
Apache Kafka as soon as data arrives, so on Kafka this line is the price of a short bound
(docs/brokers.md §5). One hello workflow runs first (group joins, metadata), then nothing.
"""

from __future__ import annotations

import argparse
import time

from bench.engine import Bench, emit, r, scenario_main
from bench.workflows import HelloWorkflow


def run(args: argparse.Namespace) -> list[dict]:
    with Bench.from_args("idle", args, task_lists=["bench"]) as b:
        b.execute(HelloWorkflow.run, "warm", id="warm")
        time.sleep(2.0)  # offsets of the warm-up committed, every consumer settled
        b.begin_timed()
        time.sleep(args.seconds)
        cpu = b.end_timed()
        line = b.line(
            seconds=args.seconds, cpu_s=cpu, cpu_percent_total=r(100 * sum(cpu.values()) / args.seconds)
        )
        emit(line)
        return [line]


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seconds", type=float, default=10.0)


def main(argv: list[str] | None = None) -> None:
    scenario_main(__doc__, run, _options, argv)


if __name__ == "__main__":
    main()
