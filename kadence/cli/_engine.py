"""Running the engine and workers: `kadence server`, `topics`, `worker` and `demo`."""

from __future__ import annotations

import argparse
import signal
import threading

from ._connect import connect, settings_from_args
from ._errors import EXIT_OK, CliError, usage_error
from ._modules import import_user_module, task_lists
from ._parser import COMPONENTS


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def cmd_server(args: argparse.Namespace) -> int:
    from kadence.processors.server import ServerProcesses  # the CLI may launch the engine (DESIGN.md 1)

    components = [c for c in args.only.split(",") if c]
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise usage_error(f"unknown components {sorted(unknown)}; choose from {', '.join(COMPONENTS)}")
    server = ServerProcesses(settings_from_args(args), components, args.slot).start()
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
        print(f"ok: {settings.commands_topic} and {settings.history_topic} have {partitions} partitions")
    except TopicLayoutError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from kadence import Client, Worker

    module = import_user_module(args.module)
    client = Client(settings_from_args(args), domain=args.domain)
    workers = [
        Worker(client, tl, workflows=w, activities=a).start() for tl, (w, a) in task_lists(module).items()
    ]
    print(f"kadence worker: serving {', '.join(w.task_list for w in workers)}", flush=True)
    _stop_event().wait()
    for w in workers:
        w.stop(10)
    client.close()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from kadence.demo import run_demo

    return run_demo(args.customer)
