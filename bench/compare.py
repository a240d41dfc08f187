"""``python -m bench peers``: Darkroom beside Celery and RQ, on one web tier and one pipeline.

Each system serves the same app under gunicorn (one worker, 4 threads) with
4 processes to do the pixel work: Darkroom's 4 waiting children, a Celery
prefork worker of concurrency 4 (a fresh child per task, then Celery's
default of reused children), an RQ worker pool of 4 (a forked work horse per
job), and, as the anchor, the pipeline inline in the web process. Every
process that does pixel work runs with the same glibc tunables. Rounds are
interleaved (each round runs every system once, in a rotated order) and the
table gives the median of the rounds with their range.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable

from bench.load import Server, descendants, overhead, rss_kb, run_load, summarize

SYSTEMS = ("inline", "darkroom", "celery", "celery-reused", "rq")
LABELS = {
    "inline": "inline (no isolation)",
    "darkroom": "Darkroom (warm one-shot children)",
    "celery": "Celery, one task per child",
    "celery-reused": "Celery, reused children",
    "rq": "RQ (work horse per job)",
}


def pss_kb(pid: int) -> int:
    """A process's proportional set size in KiB: shared pages split between the processes sharing them."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        found = re.search(r"^Pss:\s+(\d+)", f.read(), re.MULTILINE)
    assert found, f"no Pss for {pid}"
    return int(found.group(1))


def processes(server: Server) -> list[int]:
    """Every process the system runs: gunicorn and its tree, and a peer's workers and Redis."""
    pids = {server.proc.pid} | descendants(server.proc.pid)
    if server.peer is not None:
        pids |= {server.peer.proc.pid, server.redis.proc.pid} | descendants(server.peer.proc.pid)
    return sorted(pids)


def footprint(server: Server) -> dict[str, float]:
    """Processes, summed RSS and summed PSS (MB) of the whole system at rest."""
    rss = pss = count = 0
    for pid in processes(server):
        try:
            rss, pss, count = rss + rss_kb(pid), pss + pss_kb(pid), count + 1
        except (OSError, AttributeError):  # exited meanwhile
            continue
    return {"procs": count, "rest_rss": rss / 1024, "rest_pss": pss / 1024}


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (every core, every process)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(system: str, images: list[bytes], tiny: bytes, ops: list[str], jobs: int, clients: int,
            overhead_rounds: int) -> dict[str, float]:
    with Server("gunicorn", system) as server:
        run_load(server.port, images[:1], ops, clients, clients)  # every worker and child past its first job
        over = overhead(server.port, tiny, overhead_rounds)
        run_load(server.port, images, ops, clients, clients)
        rss_start = server.rss_kb()
        cpu = busy_seconds()
        load = summarize(run_load(server.port, images, ops, jobs, clients))
        cpu = busy_seconds() - cpu
        rss_end = server.rss_kb()
        time.sleep(3)  # children replaced, queues idle
        rest = footprint(server)
    if load["errors"]:
        raise RuntimeError(f"{system}: {len(load['errors'])} failed jobs, e.g. {load['errors'][0]}")
    return {"tiny_ms": over["tiny_ms"], "overhead_ms": over["tiny_ms"] - over["get_ms"],
            "jobs_per_s": load["jobs_per_s"], "median_ms": load["median_ms"],
            "cpu_ms_per_job": cpu * 1000 / jobs, "growth": (rss_end - rss_start) / 1024, **rest}


def run(images: list[bytes], tiny: bytes, ops: list[str], jobs: int, clients: int, rounds: int,
        overhead_rounds: int, systems: tuple[str, ...] = SYSTEMS,
        progress: Callable[[str], None] = print) -> dict[str, list[dict[str, float]]]:
    """Every system once per round, in an order rotated each round; return each system's rounds."""
    results: dict[str, list[dict[str, float]]] = {system: [] for system in systems}
    for r in range(rounds):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for system in order:
            started = time.monotonic()
            row = measure(system, images, tiny, ops, jobs, clients, overhead_rounds)
            results[system].append(row)
            progress(f"round {r + 1}/{rounds} {system:13} {row['jobs_per_s']:.2f} jobs/s, "
                     f"tiny {row['tiny_ms']:.1f} ms, {time.monotonic() - started:.0f} s")
    return results


def cell(values: list[float], fmt: str) -> str:
    """The median, and the range when there is more than one value."""
    median = format(statistics.median(values), fmt)
    if len(values) < 2:
        return median
    return f"{median} ({format(min(values), fmt)}–{format(max(values), fmt)})"


COLUMNS = [
    ("tiny job ms", "tiny_ms", ".1f"),
    ("isolation overhead ms", "overhead_ms", ".1f"),
    ("jobs/s, 12–24 MP", "jobs_per_s", ".2f"),
    ("median job ms", "median_ms", ".0f"),
    ("machine CPU ms per job", "cpu_ms_per_job", ".0f"),
    ("web RSS growth MB", "growth", "+.1f"),
    ("processes at rest", "procs", ".0f"),
    ("RSS at rest MB", "rest_rss", ".0f"),
    ("PSS at rest MB", "rest_pss", ".0f"),
]


def table(results: dict[str, list[dict[str, float]]]) -> str:
    head = "| system | " + " | ".join(name for name, _, _ in COLUMNS) + " | jobs/s vs inline |"
    lines = [head, "|---|" + "---:|" * (len(COLUMNS) + 1)]
    inline = results.get("inline")
    for system, rounds in results.items():
        cells = [cell([r[key] for r in rounds], fmt) for _, key, fmt in COLUMNS]
        if inline:
            # Paired by round: each round ran every system back to back.
            ratios = [r["jobs_per_s"] / i["jobs_per_s"] for r, i in zip(rounds, inline, strict=True)]
            cells.append(cell([100 * x for x in ratios], ".0f") + " %")
        else:
            cells.append("–")
        lines.append(f"| {LABELS[system]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def medians(results: dict[str, list[dict[str, float]]], key: str) -> dict[str, float]:
    return {system: statistics.median(r[key] for r in rounds) for system, rounds in results.items()}
