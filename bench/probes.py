"""``python -m bench.probes``: what a liveness and a readiness probe cost, under gunicorn.

Starts Darkroom under gunicorn (1 worker, 4 threads) on SQLite and, with
``--postgres URL``, on PostgreSQL too; sends interleaved ``GET /healthz`` and
``GET /readyz`` on one kept-alive connection, and prints the medians and the
95th percentiles of the round trip, and the slowest check inside readiness.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.load import Client, Server


def measure(server: Server, rounds: int) -> dict[str, list[float]]:
    """Round-trip milliseconds of each probe, ``rounds`` of each, interleaved, after the children are up."""
    client = Client(server.port)
    while client.get("/readyz")[0] != 200:
        time.sleep(0.2)
    times: dict[str, list[float]] = {"/healthz": [], "/readyz": []}
    checks: dict[str, list[float]] = {}
    for _ in range(rounds):
        for path in times:
            started = time.perf_counter()
            status, body = client.get(path)
            times[path].append((time.perf_counter() - started) * 1000)
            assert status == 200, body
            if path == "/readyz":
                for name, check in json.loads(body)["checks"].items():
                    checks.setdefault(name, []).append(check["ms"])
    return {**times, **{f"  {name}": ms for name, ms in checks.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure readiness against as well")
    args = parser.parse_args()
    stores = {"sqlite": None, **({"postgresql": args.postgres} if args.postgres else {})}
    print(f"| store | probe | median ms | p95 ms |  ({args.rounds} of each, gunicorn 1×4, one connection)")
    print("|---|---|---:|---:|")
    for store, url in stores.items():
        with Server("gunicorn", workers=1, database_url=url) as server:
            for probe, ms in measure(server, args.rounds).items():
                p95 = statistics.quantiles(ms, n=20)[-1]
                print(f"| {store} | {probe} | {statistics.median(ms):.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
