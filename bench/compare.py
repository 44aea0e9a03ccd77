"""Kadence and Restate side by side: the four scenarios in interleaved rounds, ratios printed.

    python -m bench.compare [--rounds 3] [--kafka embedded|apache] [--quick]

Each round runs Kadence's scenarios (bench.hello, bench.order, bench.continue_as_new without its
long loop, bench.fanout; each with fresh engine processes) and then Restate's
(bench.peers.restate_bench: a fresh server and service), as separate processes, so the two never
share the machine. Rounds alternate which system goes first. One JSON line per figure: the
median over rounds for each system, [min, max], and `ratio` = Kadence / Restate, with `better`
saying which way is better for that figure (higher throughput, lower latency, wall time and CPU).
The targets of the performance work are in bench/README.md.

CPU per workflow counts every process of a system: for Kadence the broker, history and derived
processors, the worker and the client; for Restate the server, the service process and the HTTP
driver.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

Line = dict[str, Any]

#: figure name -> (scenario, how to read it from a scenario line, "higher"|"lower" is better)
FIGURES: dict[str, tuple[str, Callable[[Line], float], str]] = {
    "S1 hello workflows/s": ("hello", lambda x: x["workflows_per_s"], "higher"),
    "S1 hello CPU ms/workflow": (
        "hello",
        lambda x: 1000 * sum(x["cpu_s"].values()) / x["workflows"],
        "lower",
    ),
    "S1 serial p50 ms": ("hello-serial", lambda x: x["p50_ms"], "lower"),
    "S2 order orders/s": ("order", lambda x: x["orders_per_s"], "higher"),
    "S2 order CPU ms/order": ("order", lambda x: 1000 * sum(x["cpu_s"].values()) / x["orders"], "lower"),
    "S3 continue-as-new wall s": (
        "continue-as-new",
        lambda x: x["wall_s_median"] if "wall_s_median" in x else x["wall_ms"] / 1000,
        "lower",
    ),
    "S4 fan-out wall ms": ("fanout", lambda x: x["wall_ms_median"], "lower"),
}


def run_lines(cmd: list[str]) -> list[Line]:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def kadence(args: argparse.Namespace) -> list[Line]:
    py, common = sys.executable, ["--kafka", args.kafka]
    sizes = _sizes(args)
    lines: list[Line] = []
    lines += run_lines(
        [py, "-m", "bench.hello", "--workflows", sizes["workflows"], "--serial", sizes["serial"], *common]
    )
    lines += run_lines([py, "-m", "bench.order", "--orders", sizes["orders"], "--serial", "0", *common])
    lines += run_lines(
        [
            py,
            "-m",
            "bench.continue_as_new",
            "--batches",
            sizes["batches"],
            "--runs",
            "1",
            "--loop",
            "0",
            *common,
        ]
    )
    lines += run_lines([py, "-m", "bench.fanout", "--children", sizes["children"], "--runs", "3", *common])
    return lines


def restate(args: argparse.Namespace) -> list[Line]:
    sizes = _sizes(args)
    return run_lines(
        [
            sys.executable, "-m", "bench.peers.restate_bench",
            "--workflows", sizes["workflows"], "--serial", sizes["serial"], "--orders", sizes["orders"],
            "--batches", sizes["batches"], "--children", sizes["children"], "--runs", "3",
        ]
    )  # fmt: skip


def _sizes(args: argparse.Namespace) -> dict[str, str]:
    if args.quick:
        return {"workflows": "100", "serial": "10", "orders": "20", "batches": "40", "children": "50"}
    return {"workflows": "500", "serial": "50", "orders": "100", "batches": "200", "children": "200"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kafka", choices=("embedded", "apache"), default="embedded", help="Kadence's broker")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args(argv)
    figures: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i in range(args.rounds):
        order = [("kadence", kadence), ("restate", restate)]
        for system, run in order if i % 2 == 0 else order[::-1]:
            by_scenario = {line["scenario"]: line for line in run(args)}
            for name, (scenario, read, _) in FIGURES.items():
                if scenario in by_scenario:
                    figures[name][system].append(round(read(by_scenario[scenario]), 3))
    for name, (_, _, better) in FIGURES.items():
        k, r = figures[name]["kadence"], figures[name]["restate"]
        line: Line = {"figure": name, "kadence_broker": args.kafka, "rounds": args.rounds, "better": better}
        for system, xs in (("kadence", k), ("restate", r)):
            line[system] = statistics.median(xs) if xs else None
            line[system + "_range"] = [min(xs), max(xs)] if xs else None
        if k and r and line["restate"]:
            line["ratio"] = round(line["kadence"] / line["restate"], 2)
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
