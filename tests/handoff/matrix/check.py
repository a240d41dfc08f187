"""Serve the matrix app with one server of one environment, and check what flask-handoff promises.

Run with the Python of the environment under test (its ``bin/`` holds the
servers)::

    python check.py --server gunicorn-gevent --backend redis --cell gevent

It copies ``app.py`` to a scratch folder (the reloader checks edit it),
starts the server, runs the checks, stops the server the way its users do,
and fails if any process it started is left behind. The last line it prints
is the cell's result as JSON.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent

#: How each server is started, given the port; and the signal its users stop it with.
SERVERS = {
    "flask-run-debug": (lambda p: [BIN / "flask", "--app", "app", "--debug", "run", "--port", p], signal.SIGINT),
    "app-run-reloader": (lambda p: [BIN / "python", "app.py"], signal.SIGINT),
    "gunicorn-sync": (lambda p: [BIN / "gunicorn", "-w", "2", "-b", f"127.0.0.1:{p}", "app:app"], signal.SIGTERM),
    "gunicorn-gthread": (lambda p: [BIN / "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4",
                                    "-b", f"127.0.0.1:{p}", "app:app"], signal.SIGTERM),
    "gunicorn-gevent": (lambda p: [BIN / "gunicorn", "-w", "1", "-k", "gevent", "-b", f"127.0.0.1:{p}", "app:app"],
                        signal.SIGTERM),
    "gunicorn-eventlet": (lambda p: [BIN / "gunicorn", "-w", "1", "-k", "eventlet", "-b", f"127.0.0.1:{p}",
                                     "app:app"], signal.SIGTERM),
    "gunicorn-preload": (lambda p: [BIN / "gunicorn", "-w", "2", "--preload", "-b", f"127.0.0.1:{p}", "app:app"],
                         signal.SIGTERM),
    "gunicorn-max-requests": (lambda p: [BIN / "gunicorn", "-w", "2", "--max-requests", "7",
                                         "-b", f"127.0.0.1:{p}", "app:app"], signal.SIGTERM),
    "uwsgi": (lambda p: [BIN / "uwsgi", "--http", f"127.0.0.1:{p}", "--master", "--processes", "2",
                         "--module", "app:app", "--need-app"], signal.SIGINT),
    "uwsgi-threads": (lambda p: [BIN / "uwsgi", "--http", f"127.0.0.1:{p}", "--master", "--processes", "2",
                                 "--enable-threads", "--module", "app:app", "--need-app"], signal.SIGINT),
    "uwsgi-lazy-apps": (lambda p: [BIN / "uwsgi", "--http", f"127.0.0.1:{p}", "--master", "--processes", "2",
                                   "--lazy-apps", "--module", "app:app", "--need-app"], signal.SIGINT),
    "waitress": (lambda p: [BIN / "waitress-serve", f"--listen=127.0.0.1:{p}", "app:app"], signal.SIGTERM),
}
RELOADERS = {"flask-run-debug", "app-run-reloader"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked(token: str) -> list[int]:
    """The processes (not zombies) whose environment carries ``token``: all that the server started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if token.encode() not in f.read():
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


class Client:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body: object = None, timeout: float = 60) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text.decode("utf-8", "replace")[-2000:]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# The checks: each returns a figure (or None) or raises AssertionError.

def session_write(c: Client) -> str:
    check(c.call("POST", "/session", {"outside": "set by the view"})[0] == 200, "POST /session failed")
    status, body = c.call("POST", "/write/inside", {"value": "set in the child"})
    check(status == 200, f"POST /write answered {status}: {body}")
    check(body.get("inside") == "set in the child" and body.get("outside") == "set by the view", f"{body}")
    for _ in range(4):  # any worker, any process: the write was saved with the session
        status, body = c.call("GET", "/session")
        check(body["session"].get("inside") == "set in the child", f"not persisted: {body}")
    return "landed, persisted"


def strings(c: Client) -> str:
    piece = "Grüße, 世界! \u202e "
    text = piece * (4 * 2**20 // len(piece.encode()) + 1)  # 4 MB as UTF-8, with what ASCII lacks
    status, body = c.call("POST", "/echo", {"text": text}, timeout=120)
    check(status == 200, f"POST /echo answered {status}: {str(body)[:300]}")
    check(body["text"] == text[::-1], "the 4 MB string came back changed")
    status, body = c.call("POST", "/echo", {"text": "short"})
    check(body["text"] == "trohs", f"{body}")
    return f"{len(text.encode()) / 2**20:.1f} MB both ways"


def exception(c: Client) -> str:
    status, body = c.call("GET", "/boom")
    check(status == 200 and body["type"] == "ValueError", f"{status} {body}")
    check("in boom" in body["traceback"] and 'raise ValueError("raised in the child")' in body["traceback"],
          f"no child traceback: {body}")
    return "ValueError with its traceback"


def timeout(c: Client) -> str:
    status, body = c.call("POST", "/sleep")
    check(status == 200 and body["timeout"], f"{status} {body}")
    check(body["child_alive"] is False, f"the sleeping child: {body['child_alive']}")
    check(body["seconds"] < 9, f"took {body['seconds']:.1f} s")  # its 5 s timeout, then the kill and join
    return f"killed after {body['seconds']:.1f} s"


#: Calls of the memory check: enough that each web process (2 under uWSGI) makes 3 or more.
TOUCHES = 10


def memory(c: Client) -> str:
    seen: dict[int, list[int]] = {}
    for _ in range(TOUCHES):
        status, body = c.call("POST", "/touch?mb=200", timeout=120)
        check(status == 200, f"POST /touch answered {status}: {body}")
        seen.setdefault(body["pid"], []).append(body["rss_kb"])
    # Per web process, from its second call on (the first call imports and warms up).
    growth = max((kb[-1] - kb[1]) / 1024 for kb in seen.values() if len(kb) >= 3) if any(
        len(kb) >= 3 for kb in seen.values()) else 0.0
    peak = max(max(kb) for kb in seen.values()) / 1024
    check(growth < 10, f"web RSS grew {growth:+.1f} MB over {TOUCHES} calls of 200 MB")
    return f"{growth:+.1f} MB (web RSS {peak:.0f} MB)"


def submitted(c: Client) -> str:
    status, body = c.call("POST", "/submit")
    check(status == 202, f"POST /submit answered {status}: {body}")
    call_id = body["id"]
    notes = wait_for(lambda: c.call("GET", "/running")[1], 20, "a progress note in another request")
    check(notes[0]["call"] == call_id and notes[0]["step"].startswith("step "), f"{notes}")
    status, body = wait_for(lambda: (r := c.call("POST", f"/result/{call_id}?wait=1"))[0] == 200 and r, 30,
                            "the submitted call's result")
    check(body["value"] == 6 and body["session"].get("submitted") == "written by a submitted call", f"{body}")
    check(c.call("GET", "/session")[1]["session"].get("submitted"), "the submitted call's write was not saved")
    check(c.call("GET", "/running")[1] == [], "a finished call is still reported running")
    return f"progress seen ({notes[0]['step']}), result and write collected"


#: Requests of one session sent at once, each with a child that sets a key of its own.
AT_ONCE = 32


def concurrent_writes(c: Client, backend: str) -> str:
    check(c.call("POST", "/session", {"before": "kept"})[0] == 200, "POST /session failed")
    start = threading.Barrier(AT_ONCE)
    statuses: list[object] = [None] * AT_ONCE

    def send(i: int) -> None:
        start.wait()
        statuses[i] = c.call("POST", f"/write/at-once-{i}", {"value": i})[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(AT_ONCE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(statuses == [200] * AT_ONCE, f"answers: {statuses}")
    stored = c.call("GET", "/session")[1]["session"]
    kept = sum(1 for i in range(AT_ONCE) if stored.get(f"at-once-{i}") == i)
    if backend == "cookie":  # the browser keeps whichever cookie came last: nothing to merge on the server
        return f"{kept}/{AT_ONCE}, cookie: not merged"
    check(kept == AT_ONCE and stored.get("before") == "kept", f"{kept} of {AT_ONCE} keys kept: {sorted(stored)}")
    return f"{kept}/{AT_ONCE} kept"


CHECKS = {"session write": session_write, "strings": strings, "exception": exception, "timeout": timeout,
          f"web RSS over {TOUCHES} × 200 MB": memory, "submit/report": submitted}
#: Checks that depend on the session backend.
BACKEND_CHECKS = {f"{AT_ONCE} writes at once": concurrent_writes}


def reloads(c: Client, app_file: Path, token: str) -> str:
    counts = []
    for n in range(1, 4):
        text = app_file.read_text()
        app_file.write_text(re.sub(r"^VERSION = \d+", f"VERSION = {n}", text, flags=re.M))
        wait_for(lambda n=n: c.call("GET", "/version")[1]["version"] == n, 30, f"the reloaded app (version {n})")
        session_write(c)
        time.sleep(1)  # the previous app's forkserver and children wind down
        counts.append(len(marked(token)))
    check(counts[-1] <= counts[0], f"processes grew over reloads: {counts}")
    return f"3 edits, processes {counts}"


def start_redis(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--dir", str(work)],
                            stdout=subprocess.DEVNULL)
    wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1), 10, "redis-server")
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, choices=sorted(SERVERS))
    parser.add_argument("--backend", default="cookie")
    parser.add_argument("--mode", default="warm")
    parser.add_argument("--cell", default="")
    args = parser.parse_args()

    import handoff

    versions = {"python": sys.version.split()[0], "flask": _dist_version("flask"),
                "flask-session": _dist_version("flask-session"),
                "handoff": _dist_version("flask-handoff"), "handoff_file": handoff.__file__}
    check("site-packages" in handoff.__file__, f"handoff was not imported from the installed wheel: {handoff.__file__}")
    work = Path(tempfile.mkdtemp(prefix="handoff-matrix-"))
    shutil.copy(HERE / "app.py", work / "app.py")
    token = f"HANDOFF_MATRIX_TOKEN={uuid.uuid4().hex}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PYTHONPATH"))}
    env.update(MATRIX_ROOT=str(work), MATRIX_BACKEND=args.backend, MATRIX_SECRET=uuid.uuid4().hex,
               MATRIX_PORT=str(port), HANDOFF_MATRIX_TOKEN=token.split("=", 1)[1], MATRIX_MODE=args.mode)
    redis = None
    if args.backend == "redis":
        redis, env["MATRIX_REDIS_URL"] = start_redis(work)
    command, stop_signal = SERVERS[args.server]
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([str(a) for a in command(str(port))], cwd=work, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    results: dict[str, str] = {}
    failed = False
    client = Client(port)
    try:
        def answers() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"the server exited with status {server.returncode}")
            return client.call("GET", "/version")[0] == 200

        wait_for(answers, 60, "the server to answer")
        for name, fn in CHECKS.items():
            began = time.monotonic()
            try:
                results[name] = "ok: " + fn(client) + f" [{time.monotonic() - began:.1f} s]"
            except Exception as exc:
                failed = True
                results[name] = f"FAILED: {exc}"
                traceback.print_exc()
        for name, backend_fn in BACKEND_CHECKS.items():
            try:
                results[name] = "ok: " + backend_fn(client, args.backend)
            except Exception as exc:
                failed = True
                results[name] = f"FAILED: {exc}"
                traceback.print_exc()
        if args.server in RELOADERS:
            try:
                results["reloads"] = "ok: " + reloads(client, work / "app.py", token.split("=", 1)[1])
            except Exception as exc:
                failed = True
                results["reloads"] = f"FAILED: {exc}"
    except Exception as exc:
        failed = True
        results["start"] = f"FAILED: {exc}"
    finally:
        # Stopped as its users stop it: Ctrl-C (the terminal signals the whole group) or a signal to the master.
        if args.server in RELOADERS:
            os.killpg(server.pid, stop_signal)
        else:
            server.send_signal(stop_signal)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            results["stop"] = "FAILED: the server did not stop within 30 s"
            failed = True
        try:
            wait_for(lambda: not marked(token.split("=", 1)[1]), 15, "every process it started to end")
            results["nothing left"] = "ok"
        except AssertionError:
            left = marked(token.split("=", 1)[1])
            results["nothing left"] = f"FAILED: {len(left)} processes left: {_describe(left)}"
            failed = True
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if redis is not None:
            redis.terminate()
            redis.wait()
        log.close()
    if failed:
        print(f"--- server log ({work / 'server.log'}) ---")
        print((work / "server.log").read_text(errors="replace")[-6000:])
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"cell": args.cell, "server": args.server, "backend": args.backend, "mode": args.mode,
                      **versions, "passed": not failed, "checks": results}))
    return 1 if failed else 0


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _describe(pids: list[int]) -> str:
    out = []
    for pid in pids[:5]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid} {command[:80]}")
        except OSError:
            out.append(str(pid))
    return "; ".join(out)


if __name__ == "__main__":
    sys.exit(main())
