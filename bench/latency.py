"""``python -m bench.latency``: a 24 MP photo with all nine ops, sent alone and among four clients.

Starts the app under gunicorn (one worker, four threads) with each job on
one thread (``DARKROOM_JOB_THREADS=1``) and with each job on the cores it
may claim (the default), rounds interleaved. Per server: one job to warm it,
then ``singles`` jobs sent one at a time (the machine otherwise idle: their
median is the latency a user waits), then ``jobs`` jobs from four clients at
once on 12-24 MP photos (jobs per second: that must not drop).
"""

from __future__ import annotations

import argparse
import statistics

from bench.load import Client, Server, make_photo, run_load, timed
from bench.vips import OPS

#: The two settings compared: a job's outputs written one at a time, and on the free cores.
SETTINGS = {"1 thread a job": {"FLASK_DARKROOM_JOB_THREADS": "1"}, "the free cores": {}}


def one_server(env: dict[str, str], photo: bytes, photos: list[bytes], singles: int, jobs: int,
               clients: int) -> dict[str, list[float]]:
    with Server("gunicorn", env=env) as server:
        client = Client(server.port)
        client.get("/api/session")
        alone = []
        for _ in range(singles + 1):
            ms, (status, body) = timed(lambda: client.upload(photo, OPS))
            assert status == 201, (status, body[:300])
            alone.append(ms / 1000)
        load = run_load(server.port, photos, OPS, jobs, clients)
        assert not load["errors"], load["errors"][:3]
    return {"alone_s": alone[1:], "jobs_per_s": [jobs / load["wall"]]}


def run(rounds: int, singles: int, jobs: int, clients: int, photos: list[bytes] | None = None,
        ) -> dict[str, dict[str, float]]:
    """Each setting's median single-job seconds and jobs/s, ``rounds`` interleaved."""
    photos = photos or [make_photo(6000, 4000, 1)]
    runs: dict[str, dict[str, list[float]]] = {name: {"alone_s": [], "jobs_per_s": []} for name in SETTINGS}
    for _ in range(rounds):
        for name, env in SETTINGS.items():
            for key, values in one_server(env, photos[-1], photos, singles, jobs, clients).items():
                runs[name][key] += values
    return {name: {key: statistics.median(values) for key, values in figures.items()}
            for name, figures in runs.items()}


def table(figures: dict[str, dict[str, float]], clients: int) -> str:
    one, free = figures["1 thread a job"], figures["the free cores"]
    return "\n".join([
        "| 24 MP, all nine ops | 1 thread a job | on the free cores (default) | ratio |",
        "|---|---|---|---|",
        f"| one job alone: latency | {one['alone_s']:.2f} s | {free['alone_s']:.2f} s | "
        f"{free['alone_s'] / one['alone_s']:.2f}× |",
        f"| {clients} clients at once: jobs/s | {one['jobs_per_s']:.3f} | {free['jobs_per_s']:.3f} | "
        f"{free['jobs_per_s'] / one['jobs_per_s']:.2f}× |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--singles", type=int, default=3, help="jobs sent alone per server (default 3)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs of the four clients per server (default 8)")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    from bench.__main__ import SIZES

    photos = [make_photo(w, h, i) for i, (w, h) in enumerate(SIZES)]
    print(table(run(args.rounds, args.singles, args.jobs, args.clients, photos), args.clients))


if __name__ == "__main__":
    main()
