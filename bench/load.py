"""Pieces of the benchmark: a server under test (Darkroom or a peer) and an HTTP load."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from handoff._processes import CHILD_GLIBC_TUNABLES
from tests.support import ROOT, Client, RedisServer, descendants, make_photo, rss_kb, stop_process
from tests.support import Server as _Server

T = TypeVar("T")

__all__ = ["ROOT", "Client", "RedisServer", "Server", "descendants", "make_photo", "rss_kb", "stop_process",
           "overhead", "run_load", "summarize", "timed", "tiny_rounds"]

#: The benchmark's names for the runners, and the HANDOFF_MODE each one is.
MODES = {"darkroom": "warm", "spawn": "spawn", "pool": "pool", "inline": "inline",
         "celery": "celery", "celery-reused": "celery", "rq": "rq"}
#: The runners that are other systems (bench/peers.py): a Redis and their own workers beside the web tier.
PEERS = ("celery", "celery-reused", "rq")


@dataclass
class Server(_Server):
    """The tests' server, run as a benchmark runs it: by a runner's name, a peer's too, limits off."""

    runner: str = "darkroom"

    def prepare(self, env: dict[str, str]) -> str:
        self.peer = None
        env["FLASK_HANDOFF_MODE"] = MODES[self.runner]
        # One client sends every job here: the per-client limits would refuse a load test.
        env.setdefault("FLASK_DARKROOM_CLIENT_LIMITS", "false")
        if self.runner not in PEERS:
            return super().prepare(env)
        from bench.peers import Workers

        redis = self.stack.enter_context(RedisServer())
        env["DARKROOM_BENCH_REDIS_URL"] = redis.url
        # The peers' workers do the pixel work: the same malloc setting as darkroom's children.
        self.peer = self.stack.enter_context(Workers(
            self.runner, redis.url, int(env["FLASK_HANDOFF_MAX_CHILDREN"]), self.tmp / "workers.log",
            env={"GLIBC_TUNABLES": CHILD_GLIBC_TUNABLES}))
        self.redis = redis
        return "bench.peers:create_app()"


def timed(call: Callable[[], T]) -> tuple[float, T]:
    """Call ``call``; return the milliseconds it took and what it returned."""
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def run_load(port: int, images: list[bytes], ops: list[str], jobs: int, clients: int) -> dict:
    """Send ``jobs`` uploads from ``clients`` concurrent clients; return latencies and throughput."""
    latencies: list[float] = []
    op_ms: dict[str, list[float]] = {}
    errors: list[str] = []
    counter = iter(range(jobs))
    lock = threading.Lock()

    def client_loop() -> None:
        client = Client(port)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            image = images[i % len(images)]
            ms, (status, data) = timed(lambda: client.upload(image, ops))  # noqa: B023 (called at once)
            with lock:
                if status != 201:
                    errors.append(f"{status} {data[:200]!r}")
                    continue
                latencies.append(ms)
                for out in json.loads(data)["outputs"]:
                    op_ms.setdefault(out["op"], []).append(out["ms"])

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - started, "op_ms": op_ms}


def summarize(*loads: dict) -> dict:
    """Combine load results into throughput and latency figures."""
    latencies = [ms for load in loads for ms in load["latencies"]]
    op_ms: dict[str, list[float]] = {}
    for load in loads:
        for op, times in load["op_ms"].items():
            op_ms.setdefault(op, []).extend(times)
    return {
        "ok": len(latencies),
        "errors": [e for load in loads for e in load["errors"]],
        "jobs_per_s": len(latencies) / sum(load["wall"] for load in loads),
        "median_ms": statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": quantile(latencies, 0.95),
        "op_ms": {op: statistics.median(v) for op, v in op_ms.items()},
    }


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tiny_rounds(port: int, tiny: bytes, rounds: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of ``rounds`` 64×48 jobs and of as many plain GET /api/session, interleaved."""
    client = Client(port)
    client.get("/api/session")
    jobs, reads = [], []
    for _ in range(rounds):
        ms, (status, _data) = timed(lambda: client.upload(tiny, ["invert"]))
        assert status == 201, status
        jobs.append(ms)
        reads.append(timed(lambda: client.get("/api/session"))[0])
        client.request("POST", "/session/clear")  # keep the session small and constant
    return jobs, reads


def overhead(port: int, tiny: bytes, rounds: int) -> dict:
    """Median latency of a 64×48 job and of a plain GET /api/session, interleaved."""
    jobs, reads = tiny_rounds(port, tiny, rounds)
    return {"tiny_ms": statistics.median(jobs), "get_ms": statistics.median(reads)}
