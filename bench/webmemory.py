"""``python -m bench.webmemory``: does the web process grow with the jobs and sessions it has seen?

Starts the app under gunicorn (one worker, four threads), then fills one
session after another with tiny jobs (64×48), each followed by a look at the
session's gallery and its ``/api/session``, as a user would; at the end it
looks at every session's gallery once more. It prints the worker's RSS after
the first 100 jobs, after all of them, and after the second look. Flat: the
last two within a few MB of the first, whatever the number of sessions.
"""

from __future__ import annotations

import argparse
import time

from bench.load import Client, Server, make_photo


def look(client: Client) -> None:
    """What the page does after a job: the gallery, and a page of the session's jobs."""
    for path in ("/", "/api/session?limit=10"):
        status, _ = client.get(path)
        assert status == 200, (path, status)


def run(sessions: int, jobs_per_session: int, warm: int) -> dict[str, float]:
    """RSS (MB) of the worker after ``warm`` jobs, after every job, and after a second look at every session."""
    image = make_photo(64, 48, 0)
    marks: dict[str, float] = {}
    with Server("gunicorn") as server:
        clients = []
        done = 0
        for _ in range(sessions):
            client = Client(server.port)
            clients.append(client)
            for _ in range(jobs_per_session):
                status, body = client.upload(image, ["invert"])
                assert status == 201, (status, body[:200])
                look(client)
                done += 1
                if done == warm:
                    marks[f"after {warm} jobs"] = server.rss_kb() / 1024
        marks[f"after {done} jobs ({sessions} sessions)"] = server.rss_kb() / 1024
        for client in clients:
            look(client)
        marks["after a second look at every session"] = server.rss_kb() / 1024
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webmemory", description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10, help="jobs per session (default 10)")
    parser.add_argument("--warm", type=int, default=100, help="the jobs after which the first figure is taken")
    args = parser.parse_args()
    started = time.perf_counter()
    marks = run(args.sessions, args.jobs, args.warm)
    first = next(iter(marks.values()))
    print("| web worker RSS | MB | growth |\n|---|---|---|")
    for name, mb in marks.items():
        print(f"| {name} | {mb:.1f} | {mb - first:+.1f} MB |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
