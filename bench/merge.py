"""``python -m bench.merge``: what handoff's merging session save costs a request, and what it keeps.

For each Flask-Session store (SQLAlchemy on SQLite, and on PostgreSQL when
``--postgres URL`` is given; a real ``redis-server``), with
``HANDOFF_SESSION_MERGE`` on and off:

- **cost**: the median time of a request that sets one key, and of one that
  only reads, through Flask's test client (no network, no child: the save is
  most of what is left), over ``--requests`` of each, rounds interleaved;
- **writes**: how many writes reached the store for the read-only requests
  (SQL ``INSERT``/``UPDATE``/``DELETE``, or Redis ``SET``/``SETEX``);
- **kept**: of 32 requests of one session sent at once to a threaded
  server, each setting a key of its own, how many keys the session holds after.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, session
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from werkzeug.serving import WSGIRequestHandler, make_server

import handoff
from bench.load import RedisServer

AT_ONCE = 32


def make_app(store: str, url: str, merge: bool, root: Path) -> tuple[Flask, list[int]]:
    """The app on ``store``; and a one-item list counting the store's writes."""
    app = Flask(__name__, instance_path=str(root))
    app.config.update(SECRET_KEY="bench", HANDOFF_STORAGE_ROOT=str(root / "handoff"), HANDOFF_SESSION_MERGE=merge)
    writes = [0]
    if store == "redis":
        import redis

        client = redis.Redis.from_url(url)
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client)
        original = client.execute_command

        def counted(*args: Any, **kwargs: Any) -> Any:
            if str(args[0]).upper() in ("SET", "SETEX", "DEL"):
                writes[0] += 1
            return original(*args, **kwargs)

        client.execute_command = counted  # type: ignore[method-assign]
        Session(app)
    else:
        app.config.update(SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=url)
        db = SQLAlchemy(app)
        app.config["SESSION_SQLALCHEMY"] = db
        Session(app)
        with app.app_context():
            @event.listens_for(db.engine, "before_cursor_execute")
            def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                    writes[0] += 1

    handoff.Handoff(app, mode="inline")

    @app.post("/set/<key>")
    def set_key(key: str) -> str:
        session[key] = time.time()
        return ""

    @app.get("/read")
    def read() -> str:
        return str(len(session))

    @app.get("/keys")
    def keys() -> list[str]:
        return sorted(session)

    @app.post("/child/<key>")
    def child_sets(key: str) -> str:
        handoff.run(write_key, session, key)
        return ""

    return app, writes


def write_key(session: Any, key: str) -> None:
    time.sleep(0.02)  # long enough for the 32 requests to overlap
    session[key] = key


def cost(app: Flask, writes: list[int], requests: int) -> dict[str, float]:
    client = app.test_client()
    client.post("/set/base")
    setting, reading = [], []
    read_writes = 0
    for i in range(requests):
        started = time.perf_counter()
        client.post(f"/set/k{i % 8}")
        setting.append(time.perf_counter() - started)
        before = writes[0]
        started = time.perf_counter()
        client.get("/read")
        reading.append(time.perf_counter() - started)
        read_writes += writes[0] - before
    return {"set ms": statistics.median(setting) * 1000, "read ms": statistics.median(reading) * 1000,
            "writes by reads": read_writes}


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


def kept(app: Flask) -> int:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import http.cookiejar
        import json
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        base = f"http://127.0.0.1:{server.server_port}"
        opener.open(urllib.request.Request(f"{base}/set/base", method="POST")).read()
        start = threading.Barrier(AT_ONCE)

        def one(i: int) -> None:
            start.wait()
            opener.open(urllib.request.Request(f"{base}/child/at-once-{i}", method="POST")).read()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(AT_ONCE)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        keys = json.loads(opener.open(f"{base}/keys").read())
        return sum(1 for k in keys if k.startswith("at-once-"))
    finally:
        server.shutdown()


@contextmanager
def stores(postgres: str | None) -> Iterator[list[tuple[str, str]]]:
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-merge-")))
        found = [("sqlite", f"sqlite:///{scratch / 'sessions.db'}")]
        if postgres:
            found.append(("postgresql", postgres))
        found.append(("redis", stack.enter_context(RedisServer()).url))
        yield found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--postgres", help="a PostgreSQL URL whose database the bench may write a table to")
    args = parser.parse_args()
    print(f"| store | merge | set one key, ms | only read, ms | store writes by {args.requests} reads "
          f"| {AT_ONCE} at once, keys kept |")
    print("|---|---|---:|---:|---:|---:|")
    with stores(args.postgres) as found:
        for store, url in found:
            rows = {}
            for merge in (False, True):
                with tempfile.TemporaryDirectory(prefix="bench-merge-app-") as root:
                    app, writes = make_app(store, url, merge, Path(root))
                    if store != "redis":
                        with app.app_context():
                            app.extensions["sqlalchemy"].create_all()
                    rows[merge] = {**cost(app, writes, args.requests), "kept": kept(app)}
            for merge, row in rows.items():
                print(f"| {store} | {'on' if merge else 'off'} | {row['set ms']:.2f} | {row['read ms']:.2f} "
                      f"| {row['writes by reads']} | {row['kept']}/{AT_ONCE} |")
            on, off = rows[True], rows[False]
            print(f"| {store} | on − off | {on['set ms'] - off['set ms']:+.2f} | {on['read ms'] - off['read ms']:+.2f} "
                  "| | |")


if __name__ == "__main__":
    main()
