"""`python -m bench`: every engine scenario, one JSON line each (logs and profiles on stderr).

    python -m bench [--only hello,order,fanout,timers,continue_as_new,idle,visibility] [--set NAME=VALUE ...]
                    [--workers process|thread] [--profile DIR] [--kafka embedded|apache]
                    [--bootstrap HOST:PORT]

Each scenario gets fresh engine processes and a fresh embedded broker; with `--kafka apache` every
scenario runs on one Apache Kafka 4.4.0 node started (and warmed up) for the run, with
`--bootstrap` on a running broker (Apache Kafka unless `--kafka embedded`).
`python -m bench.loop` (the processing loop vs the raw broker) is separate.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from bench import continue_as_new, fanout, hello, idle, order, timers, visibility
from bench.engine import add_common_args

SCENARIOS = {
    "hello": hello,
    "order": order,
    "fanout": fanout,
    "timers": timers,
    "continue_as_new": continue_as_new,
    "idle": idle,
    "visibility": visibility,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    add_common_args(ap)
    args, rest = ap.parse_known_args(argv)
    logging.basicConfig(level=args.log_level)
    common = ["--workers", args.workers, "--log-level", args.log_level]
    for item in args.set:
        common += ["--set", item]
    if args.bootstrap:
        common += ["--bootstrap", args.bootstrap]
    if args.kafka:
        common += ["--kafka", args.kafka]
    if args.profile:
        common += ["--profile", args.profile]
    if args.no_eager:
        common.append("--no-eager")
    if args.hold_ms is not None:
        common += ["--hold-ms", str(args.hold_ms)]
    if args.instances != 1:
        common += ["--instances", str(args.instances)]
    if args.dispatch_in_txn:
        common.append("--dispatch-in-txn")
    failed = 0
    for name in args.only.split(","):
        module = SCENARIOS[name]
        try:
            module.main(common + rest)
        except Exception:  # noqa: BLE001 - one failing scenario must not hide the others' figures
            failed += 1
            print(f"scenario {name} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
