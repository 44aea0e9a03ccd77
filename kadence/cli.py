"""`kadence`: run the engine, the demo and workers; start workflows; read, describe and replay history.

    kadence demo                          embedded broker + engine + worker, runs the demo workflows
    kadence server [--only history,...]   the engine's processors, one process each, supervised
    kadence topics create|check           create the topics / check the partition invariant
    kadence worker MODULE                 serve MODULE's WORKFLOWS/ACTIVITIES on its TASK_LIST(S)
    kadence start TYPE --id ID --task-list TL [--input JSON]
    kadence history ID | describe ID | replay ID --module MODULE | replay --file F --module MODULE
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
from typing import Any, Sequence

from kadence.streams.settings import Settings, kafka_config_from_env, read_properties_file

from .history_view import print_history

COMPONENTS = ("history", "derived", "children", "signals", "cancellations", "timers")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="kadence", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap", help="Kafka bootstrap servers (default: KADENCE_BOOTSTRAP or 127.0.0.1:9092)")
    common.add_argument("--prefix", help="topic/group prefix (default: KADENCE_PREFIX or 'kadence.')")
    common.add_argument("--partitions", type=int, help="partitions of commands/history (default 4)")
    common.add_argument("--state-dir", help="RocksDB state folder of the processors")
    common.add_argument("--kafka-config", action="append", default=[], metavar="PROPERTY=VALUE",
                        help="a librdkafka property for every Kafka client, e.g. security.protocol=SASL_SSL "
                             "(repeatable; also KADENCE_KAFKA_<PROPERTY> in the environment)")
    common.add_argument("--kafka-config-file", metavar="FILE",
                        help="a properties file of librdkafka settings (also KADENCE_KAFKA_CONFIG_FILE)")
    common.add_argument("--domain", default="default")
    common.add_argument("--log-level", default="WARNING")
    sub = ap.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", parents=[common], help="run the demo on the embedded broker")
    demo.add_argument("--customer", default="ada")

    server = sub.add_parser("server", parents=[common], help="run the engine's processors")
    server.add_argument("--only", default="history,derived",
                        help=f"comma-separated components, one process each: {', '.join(COMPONENTS)}")
    server.add_argument("--slot", type=int, default=0, help="stable instance slot (names transactional ids)")

    topics = sub.add_parser("topics", parents=[common], help="create or check the topics")
    topics.add_argument("action", choices=["create", "check"])
    topics.add_argument("--task-list", action="append", default=[], help="also create tasks.<TASK_LIST>")

    worker = sub.add_parser("worker", parents=[common], help="run a worker for a module's workflows and activities")
    worker.add_argument("module", help="a module with WORKFLOWS, ACTIVITIES and TASK_LIST (or TASK_LISTS)")

    start = sub.add_parser("start", parents=[common], help="start a workflow")
    start.add_argument("workflow_type")
    start.add_argument("--id", required=True)
    start.add_argument("--task-list", required=True)
    start.add_argument("--input", default="[]", help="JSON list of arguments")
    start.add_argument("--wait", action="store_true", help="wait for and print the result")

    history = sub.add_parser("history", parents=[common], help="print a workflow's history (all runs)")
    history.add_argument("workflow_id")
    history.add_argument("--json", action="store_true")

    describe = sub.add_parser("describe", parents=[common], help="fold the history into state and print it")
    describe.add_argument("workflow_id")

    replay = sub.add_parser("replay", parents=[common], help="replay recorded history against workflow code")
    replay.add_argument("workflow_id", nargs="?")
    replay.add_argument("--file", help="a recorded history JSON file instead of the topic")
    replay.add_argument("--module", required=True, help="module whose WORKFLOWS are replayed")
    return ap


def _settings(args: argparse.Namespace) -> Settings:
    keys = {"bootstrap": args.bootstrap, "prefix": args.prefix, "partitions": args.partitions, "state_dir": args.state_dir}
    overrides: dict[str, Any] = {k: v for k, v in keys.items() if v is not None}
    kafka_config = kafka_config_from_env()
    if args.kafka_config_file:
        kafka_config.update(read_properties_file(args.kafka_config_file))
    for item in args.kafka_config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--kafka-config takes PROPERTY=VALUE, got {item!r}")
        kafka_config[key.strip()] = value.strip()
    if kafka_config:
        overrides["kafka_config"] = kafka_config
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        raise SystemExit(f"kadence: {exc}") from None


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


# -- commands -------------------------------------------------------------------------------------
def cmd_server(args: argparse.Namespace) -> int:
    from kadence.processors.server import ServerProcesses  # the CLI may launch the engine (DESIGN.md 1)

    components = [c for c in args.only.split(",") if c]
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise SystemExit(f"unknown components {sorted(unknown)}; choose from {', '.join(COMPONENTS)}")
    server = ServerProcesses(_settings(args), components, args.slot).start()
    stop = _stop_event()
    threading.Thread(target=server.supervise, daemon=True).start()
    print(f"kadence server: {', '.join(components)} running (pids {[p.pid for p in server.procs.values()]})", flush=True)
    stop.wait()
    server.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from kadence.streams.topics import check_layout, ensure_core_topics

    settings = _settings(args)
    if args.action == "create":
        ensure_core_topics(settings, args.task_list)
    print(f"ok: {settings.commands_topic} and {settings.history_topic} have {check_layout(settings)} partitions")
    return 0


def _task_lists(module: Any) -> dict[str, tuple[Sequence[type], Sequence[Any]]]:
    if hasattr(module, "TASK_LISTS"):
        return dict(module.TASK_LISTS)
    return {module.TASK_LIST: (module.WORKFLOWS, getattr(module, "ACTIVITIES", []))}


def cmd_worker(args: argparse.Namespace) -> int:
    from kadence import Client, Worker

    module = importlib.import_module(args.module)
    client = Client(_settings(args), domain=args.domain)
    workers = [Worker(client, tl, workflows=w, activities=a).start() for tl, (w, a) in _task_lists(module).items()]
    print(f"kadence worker: serving {', '.join(w.task_list for w in workers)}", flush=True)
    _stop_event().wait()
    for w in workers:
        w.stop(10)
    client.close()
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from kadence import Client

    with Client(_settings(args), domain=args.domain) as client:
        handle = client.start_workflow(args.workflow_type, *json.loads(args.input), id=args.id, task_list=args.task_list)
        print(f"started {args.id} (request {handle.start_request_id})")
        if args.wait:
            print(json.dumps(handle.result(), default=str))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from kadence import Client
    from kadence.replayer import events_to_json

    with Client(_settings(args), domain=args.domain) as client:
        events = client.get_handle(args.workflow_id).history()
    if args.json:
        print(json.dumps(events_to_json(events), indent=1))
    else:
        print_history(events)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from kadence.history import fold
    from kadence import Client

    with Client(_settings(args), domain=args.domain) as client:
        events = client.get_handle(args.workflow_id).history()
    state = fold(events)
    if state is None or state.current is None:
        print(f"{args.workflow_id}: no history")
        return 1
    run = state.current
    print(json.dumps({
        "workflow_id": state.workflow_id, "domain": state.domain, "status": run.status, "run_id": run.run_id,
        "first_run_id": run.first_run_id, "chain": [r for r, _ in state.previous_runs] + [run.run_id],
        "workflow_type": run.workflow_type, "task_list": run.task_list, "history_length": run.next_event_id - 1,
        "history_bytes": run.history_size, "pending_activities": len(run.activities), "pending_timers": len(run.timers),
        "pending_children": [c.workflow_id for c in run.children.values()], "decision_outstanding": run.decision is not None,
        "parent": run.parent, "close": run.close_type or None,
    }, indent=2, default=str))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from kadence import Client, Replayer
    from kadence.replayer import load_history

    module = importlib.import_module(args.module)
    workflows = [w for wfs, _ in _task_lists(module).values() for w in wfs]
    if args.file:
        events = load_history(args.file)
    else:
        if not args.workflow_id:
            raise SystemExit("name a workflow id or --file")
        with Client(_settings(args), domain=args.domain) as client:
            events = client.get_handle(args.workflow_id).history()
    results = Replayer(workflows=workflows).replay(events)
    print(f"replayed {len(results)} run(s) of {len(events)} events: deterministic")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.customer)


COMMANDS = {"demo": cmd_demo, "server": cmd_server, "topics": cmd_topics, "worker": cmd_worker, "start": cmd_start,
            "history": cmd_history, "describe": cmd_describe, "replay": cmd_replay}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
