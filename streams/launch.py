"""Running a processor as a process: `run_forever` (until SIGTERM/SIGINT), `processor_main` (the
`__main__` of a processor module: standard options, then `run_forever`) and `spawn` (such a
module as a subprocess).

    sys.exit(processor_main(MyProcessor, prepare=create_topics))   # a processor module's __main__
    proc = spawn("bench.counting", settings, slot=1)               # that module as a subprocess

A fatal error makes `run_forever` return 1: the supervisor restarts the instance, whose
`init_transactions` fences the other holder of the slot.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import metrics
from .errors import LoopFatalError
from .loop import ProcessorRunner
from .processing import Processor
from .settings import Settings

log = logging.getLogger(__name__)


def run_forever(
    settings: Settings,
    processor: Processor,
    slot: int = 0,
    *,
    batch_max_records: int | None = None,
    batch_max_wait_ms: int | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (handlers installed when called from the main thread).
    Returns a process exit code: 0 after a clean stop, 1 after a fatal error."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    runner = ProcessorRunner(settings, processor, slot, batch_max_records, batch_max_wait_ms)
    try:
        runner.run(stop)
    except LoopFatalError as exc:
        log.error("%s", exc)
        return 1
    return 0


def arg_parser(description: str) -> argparse.ArgumentParser:
    """The standard options of a processor process (the ones `spawn` passes)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bootstrap", help="Kafka bootstrap servers (default: KADENCE_BOOTSTRAP)")
    ap.add_argument("--prefix", help="topic/group/transactional id prefix (default: KADENCE_PREFIX)")
    ap.add_argument("--state-dir", help="RocksDB state folder (default: KADENCE_STATE_DIR)")
    ap.add_argument("--partitions", type=int)
    ap.add_argument("--slot", type=int, default=0, help="stable instance slot: names the transactional id")
    ap.add_argument("--batch-max-records", type=int)
    ap.add_argument("--batch-max-wait-ms", type=int)
    ap.add_argument("--session-timeout-ms", type=int)
    ap.add_argument("--heartbeat-interval-ms", type=int)
    ap.add_argument("--log-level", default=os.environ.get("KADENCE_LOG_LEVEL", "INFO"))
    ap.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("KADENCE_METRICS_PORT") or 0) or None,
        help="serve Prometheus metrics on this port (default: KADENCE_METRICS_PORT; none if unset)",
    )
    return ap


def processor_main(
    make_processor: Callable[[Settings], Processor],
    argv: Sequence[str] | None = None,
    *,
    prepare: Callable[[Settings], None] | None = None,
    description: str = "",
) -> int:
    """`main` of a processor module: parse the standard options, `prepare` (e.g. create topics),
    run until SIGTERM. Use as `sys.exit(processor_main(MyProcessor))`."""
    args = arg_parser(description).parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    keys = ("bootstrap", "prefix", "state_dir", "partitions", "session_timeout_ms", "heartbeat_interval_ms")
    settings = Settings.from_env(**{k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    if prepare is not None:
        prepare(settings)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    return run_forever(
        settings,
        make_processor(settings),
        args.slot,
        batch_max_records=args.batch_max_records,
        batch_max_wait_ms=args.batch_max_wait_ms,
    )


def spawn(
    module: str,
    settings: Settings,
    slot: int = 0,
    *,
    batch_max_records: int | None = None,
    batch_max_wait_ms: int | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start `python -m module` (a module whose main is `processor_main`) for `settings` and `slot`."""
    cmd = [
        sys.executable,
        "-m",
        module,
        "--bootstrap",
        settings.bootstrap,
        "--prefix",
        settings.prefix,
        "--state-dir",
        settings.state_dir,
        "--partitions",
        str(settings.partitions),
        "--slot",
        str(slot),
        "--session-timeout-ms",
        str(settings.session_timeout_ms),
        "--heartbeat-interval-ms",
        str(settings.heartbeat_interval_ms),
    ]
    if batch_max_records is not None:
        cmd += ["--batch-max-records", str(batch_max_records)]
    if batch_max_wait_ms is not None:
        cmd += ["--batch-max-wait-ms", str(batch_max_wait_ms)]
    # Every other setting (fetch wait, linger, batch sizes...) travels as KADENCE_* variables.
    popen["env"] = {**(popen.get("env") or os.environ), **settings.to_env()}
    return subprocess.Popen(cmd, **popen)


__all__ = ["run_forever", "arg_parser", "processor_main", "spawn"]
