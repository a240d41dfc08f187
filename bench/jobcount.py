"""``python -m bench.jobcount``: what a request costs as a session's jobs pile up.

Starts the app under gunicorn (one worker, four threads), fills one session
with tiny jobs up to each count (10, 300 and 1,000 by default), and at each
count measures, interleaved, the median latency of GET /, POST /jobs (a
64×48 job, deleted again so the count stays put), GET /api/session and GET
/api/progress, then the size of the session's database row and of its
manifest. Flat means the same figures at every count.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics

from bench.load import Client, Server, make_photo, timed

#: Interleaved rounds of the endpoints at each count.
ROUNDS = 30
ENDPOINTS = ("GET /", "POST /jobs", "GET /api/session", "GET /api/progress")  # /api/session: a page of 10


def row_bytes(server: Server) -> int:
    """The size of the (one) session row's data in the bench's SQLite session store."""
    with sqlite3.connect(server.tmp / "sessions.db") as db:
        return max(length for (length,) in db.execute("SELECT length(data) FROM sessions"))


def manifest_bytes(server: Server) -> int:
    """The manifest's snapshot and its log, together."""
    [manifest] = (server.tmp / "workspaces").glob("*/manifest.json")
    return sum(path.stat().st_size for path in manifest.parent.glob("manifest.*") if path.is_file())


def measure(client: Client, image: bytes, rounds: int) -> dict[str, float]:
    """Median milliseconds of each endpoint over ``rounds`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
    for _ in range(rounds):
        ms, (status, _) = timed(lambda: client.get("/"))
        assert status == 200, status
        times["GET /"].append(ms)
        ms, (status, body) = timed(lambda: client.upload(image, ["invert"]))
        assert status == 201, status
        times["POST /jobs"].append(ms)
        client.request("POST", f"/jobs/{json.loads(body)['id']}/delete")
        times["GET /api/session"].append(timed(lambda: client.get("/api/session?limit=10"))[0])
        times["GET /api/progress"].append(timed(lambda: client.get("/api/progress"))[0])
    return {name: statistics.median(values) for name, values in times.items()}


def run(counts: list[int], rounds: int) -> list[dict]:
    """Fill one session up to each count and measure every endpoint there; one row per count."""
    image = make_photo(64, 48, 0)  # the tiny job of make bench
    rows = []
    with Server("gunicorn") as server:
        client = Client(server.port)
        client.get("/")
        jobs = 0
        for count in sorted(counts):
            while jobs < count:
                status, _ = client.upload(image, ["invert"])
                assert status == 201, status
                jobs += 1
            rows.append({"jobs": count, **measure(client, image, rounds),
                         "row": row_bytes(server), "manifest": manifest_bytes(server)})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"| jobs in the session | {' | '.join(ENDPOINTS)} | session row | manifest (snapshot + log) |",
             "|---:" * (len(ENDPOINTS) + 3) + "|"]
    for row in rows:
        cells = [f"{row[name]:.1f} ms" for name in ENDPOINTS]
        sizes = f"{row['row'] / 1024:.1f} kB | {row['manifest'] / 1024:.1f} kB"
        lines.append(f"| {row['jobs']:,} | {' | '.join(cells)} | {sizes} |")
    first, last = rows[0], rows[-1]
    lines += ["", f"Ratios, {last['jobs']:,} jobs to {first['jobs']:,}: "
              + ", ".join(f"{name} {last[name] / first[name]:.2f}×" for name in ENDPOINTS) + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 300, 1000])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    print(table(run(args.counts, args.rounds)))


if __name__ == "__main__":
    main()
