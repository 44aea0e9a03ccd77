"""Running the engine and workers: `kadence server`, `topics`, `worker` and `demo`."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time

from ._connect import connect, settings_from_args
from ._errors import EXIT_OK, CliError, usage_error
from ._modules import import_user_module, task_lists
from ._parser import COMPONENTS

#: How long `kadence worker` waits for its task lists' partitions before saying it serves them.
WORKER_READY_TIMEOUT = 60.0


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def cmd_server(args: argparse.Namespace) -> int:
    from kadence.processors.server import ServerProcesses  # the CLI may launch the engine

    components = [c for c in args.only.split(",") if c]
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise usage_error(f"unknown components {sorted(unknown)}; choose from {', '.join(COMPONENTS)}")
    level = args.log_level.upper()  # checked by main; every process logs at it
    settings = settings_from_args(args)
    if args.reset_state:
        from kadence.processors.reset_state import reset_state

        for line in reset_state(settings) or ["nothing to reset"]:
            print(f"kadence server --reset-state: {line}", flush=True)
    server = ServerProcesses(
        settings, components, args.slot, log_level=level, metrics_port=args.metrics_port
    ).start()
    stop = _stop_event()
    threading.Thread(target=server.supervise, daemon=True).start()
    pids = [p.pid for p in server.procs.values()]
    print(f"kadence server: {', '.join(components)} running (pids {pids})", flush=True)
    stop.wait()
    server.stop()
    return EXIT_OK


def cmd_topics(args: argparse.Namespace) -> int:
    from kadence.streams.topics import TopicLayoutError, check_layout, ensure_core_topics

    settings = connect(args, lambda s: [])
    try:
        if args.action == "create":
            ensure_core_topics(settings, args.task_list)
        partitions = check_layout(settings)
        if args.output == "json":
            topics = [settings.commands_topic, settings.history_topic]
            print(json.dumps({"ok": True, "topics": topics, "partitions": partitions}))
        else:
            print(f"ok: {settings.commands_topic} and {settings.history_topic} have {partitions} partitions")
    except TopicLayoutError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from kadence import Client, Worker

    module = import_user_module(args.module)
    client = Client(settings_from_args(args), domain=args.domain)
    workers = [
        Worker(client, tl, workflows=w, activities=a, metrics_port=args.metrics_port).start()
        for tl, (w, a) in task_lists(module).items()
    ]
    # "serving" once the worker polls its task lists' partitions (tasks sent now reach it)
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    waiting = [w.task_list for w in workers if not w.assigned.wait(max(0.0, deadline - time.monotonic()))]
    still = f" (still waiting for the partitions of {', '.join(waiting)})" if waiting else ""
    print(f"kadence worker: serving {', '.join(w.task_list for w in workers)}{still}", flush=True)
    _stop_event().wait()
    for w in workers:
        w.stop(10)
    client.close()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from kadence.demo import run_demo

    return run_demo(args.customer)
