"""``python -m bench.tinyjob``: where a tiny job's time goes, inline and in a child.

Runs the app under gunicorn (one worker, 4 threads) once per runner, sends
64×48 ``invert`` jobs one after another (each followed by a plain GET and a
"Clear all", as ``make bench``'s tiny job), and splits the median request
from the server's own log lines:

- the request as the client saw it, and a plain ``GET /api/session``;
- the view's job (``make_job``: storing the upload, the header probe, the
  progress note, the call, reading the manifest back);
- ``handoff.run`` (the call: in a child, or inline);
- ``run_job`` itself, timed inside whichever process ran it.

What is left between two lines is that layer's own cost: the hand-off (send,
wake, answer, join) is ``handoff.run`` minus ``run_job``.
"""

from __future__ import annotations

import argparse
import re
import statistics

from bench.load import Server, make_photo, tiny_rounds


def measure(runner: str, rounds: int) -> dict[str, float]:
    with Server("gunicorn", runner) as server:
        requests, gets = tiny_rounds(server.port, make_photo(64, 48, 0), rounds)
        log = server.log_text()
    skip = rounds // 5  # the first jobs warm the caches
    found = {
        "handoff.run": re.findall(r"fn=imaging\.job\.run_job status=ok duration_ms=([\d.]+)", log),
        "make_job": re.findall(r"ops=invert status=done duration_ms=([\d.]+)", log),
        "run_job": re.findall(r"ops=invert status=done .*child_ms=([\d.]+)", log),
    }
    median = {name: statistics.median(float(v) for v in values[skip:]) for name, values in found.items()}
    return {"request": statistics.median(requests[skip:]), "GET": statistics.median(gets[skip:]), **median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--runners", default="inline,darkroom")
    args = parser.parse_args()
    rows = {runner: measure(runner, args.rounds) for runner in args.runners.split(",")}
    print("| runner | request | GET | request − make_job (parse, session, answer) "
          "| make_job − handoff.run (upload, probe, note, manifest) | handoff.run − run_job (the hand-off) "
          "| run_job |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for runner, r in rows.items():
        print(f"| {runner} | {r['request']:.1f} | {r['GET']:.1f} | {r['request'] - r['make_job']:.1f} "
              f"| {r['make_job'] - r['handoff.run']:.1f} | {r['handoff.run'] - r['run_job']:.1f} "
              f"| {r['run_job']:.1f} |")
    print(f"(ms, median of {args.rounds - args.rounds // 5} jobs after {args.rounds // 5} to warm up)")


if __name__ == "__main__":
    main()
