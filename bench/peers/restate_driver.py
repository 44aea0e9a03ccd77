"""Drives the four scenarios against a running Restate server through its HTTP ingress and prints
one JSON line each (run by `bench.peers.restate` inside the peer's virtualenv: it needs httpx).

    python restate_driver.py INGRESS_URL --pids SERVER_PID,SERVICE_PID [--rounds 1]

CPU seconds per process come from /proc (the server, the service process and this driver), taken
around each timed phase, as bench/engine.py takes Kadence's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

import httpx

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and of its children still running (the npm wrapper spawns the
    server binary)."""
    total = 0.0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            continue
    return total


class Meter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids, driver=os.getpid())
        self.start: dict[str, float] = {}

    def __enter__(self) -> Meter:
        self.start = {k: cpu_seconds(p) for k, p in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {k: round(cpu_seconds(p) - self.start[k], 3) for k, p in self.pids.items()}


async def call(client: httpx.AsyncClient, path: str, arg: Any) -> Any:
    response = await client.post(path, json=arg)
    response.raise_for_status()
    return response.json()


async def at_concurrency(
    client: httpx.AsyncClient, path: str, args: list[Any], concurrency: int
) -> list[float]:
    """Call `path` once per arg, `concurrency` in flight; the latency of each call in ms."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(arg: Any) -> None:
        async with gate:
            t0 = time.perf_counter()
            await call(client, path, arg)
            latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(one(a) for a in args))
    return latencies


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p / 100))], 2) if xs else float("nan")


async def run(url: str, pids: dict[str, int], args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tag = f"{time.time_ns()}"
        await at_concurrency(client, "/Hello/run", [f"warm-{i}" for i in range(100)], args.concurrency)

        def line(scenario: str, meter: Meter, **fields: Any) -> None:
            print(
                json.dumps({"scenario": scenario, "system": "restate", **fields, "cpu_s": meter.used}),
                flush=True,
            )

        with Meter(pids) as m:
            t0 = time.perf_counter()
            lat = await at_concurrency(
                client, "/Hello/run", [f"{tag}-{i}" for i in range(args.workflows)], args.concurrency
            )
            wall = time.perf_counter() - t0
        line(
            "hello",
            m,
            workflows=args.workflows,
            concurrency=args.concurrency,
            seconds=round(wall, 2),
            workflows_per_s=round(args.workflows / wall, 1),
            p50_ms=pct(lat, 50),
            p99_ms=pct(lat, 99),
            cpu_ms_per_workflow=round(sum(m.used.values()) * 1000 / args.workflows, 2),
        )
        with Meter(pids) as m:
            lat = await at_concurrency(client, "/Hello/run", [f"{tag}-s{i}" for i in range(args.serial)], 1)
        line(
            "hello-serial",
            m,
            workflows=args.serial,
            p50_ms=pct(lat, 50),
            p90_ms=pct(lat, 90),
            min_ms=round(min(lat), 2),
        )
        with Meter(pids) as m:
            t0 = time.perf_counter()
            lat = await at_concurrency(
                client, "/Order/run", [f"{tag}-o{i}" for i in range(args.orders)], args.concurrency
            )
            wall = time.perf_counter() - t0
        line(
            "order",
            m,
            orders=args.orders,
            concurrency=args.concurrency,
            seconds=round(wall, 2),
            orders_per_s=round(args.orders / wall, 1),
            p50_ms=pct(lat, 50),
            p99_ms=pct(lat, 99),
            cpu_ms_per_order=round(sum(m.used.values()) * 1000 / args.orders, 2),
        )
        walls = []
        with Meter(pids) as m:
            for _ in range(args.runs):
                t0 = time.perf_counter()
                total = await call(client, "/Counter/run", [args.batches, args.per_run, 0])
                walls.append(time.perf_counter() - t0)
                assert total == args.batches, total
        line(
            "continue-as-new",
            m,
            batches=args.batches,
            per_run=args.per_run,
            runs=args.runs,
            wall_s_median=round(statistics.median(walls), 3),
            wall_s=[round(w, 3) for w in walls],
        )
        walls = []
        with Meter(pids) as m:
            for _ in range(args.runs):
                t0 = time.perf_counter()
                await call(client, "/Fanout/run", args.children)
                walls.append((time.perf_counter() - t0) * 1000)
        line(
            "fanout",
            m,
            children=args.children,
            runs=args.runs,
            wall_ms_median=round(statistics.median(walls), 1),
            wall_ms=[round(w, 1) for w in walls],
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--pids", required=True, help="SERVER_PID,SERVICE_PID")
    ap.add_argument("--workflows", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--serial", type=int, default=50)
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--per-run", type=int, default=10)
    ap.add_argument("--children", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    server, service = (int(p) for p in args.pids.split(","))
    asyncio.run(run(args.url, {"server": server, "service": service}, args))


if __name__ == "__main__":
    main()
