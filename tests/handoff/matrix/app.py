"""The app of a Flask developer who installed flask-handoff: functions and views in one file.

Served unchanged by every server of the matrix (``check.py`` says how). The
session backend comes from ``MATRIX_BACKEND``: ``cookie`` (Flask's own),
``filesystem``, ``cachelib``, ``redis`` or ``sqlalchemy`` (Flask-Session).
"""

import os
import secrets
import time

from flask import Flask, jsonify, request, session

import handoff
from handoff import Handoff, handle, report, run, running, submit

VERSION = 0  # check.py edits this line to make the reloader restart the app
#: The sleeper's timeout: room for a cold child that imports this module (and SQLAlchemy) first.
SLEEP_TIMEOUT = 5

ROOT = os.environ["MATRIX_ROOT"]
BACKEND = os.environ.get("MATRIX_BACKEND", "cookie")


# What runs in the children: at module level, so a child can import it by name.

def write_key(session, key, value):
    session[key] = value


def reverse_text(text):
    return text[::-1]


def boom():
    raise ValueError("raised in the child")


def sleep_noting_pid(pid_file, seconds):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


_kept: list[bytearray] = []


def touch(megabytes):
    """Fill ``megabytes`` in 64 kB blocks and keep a small object above them: the memory ratchet."""
    blocks = []
    for _ in range(megabytes * 16):
        block = bytearray(65536)
        block[::4096] = b"\x01" * 16
        blocks.append(block)
    _kept.append(bytearray(100_000))
    return len(blocks)


def steps(session, total, pause):
    for done in range(total):
        report(step=f"step {done + 1}", done=done, total=total)
        time.sleep(pause)
    session["submitted"] = "written by a submitted call"
    return total


def rss_kb():
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS:")))


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def configure_sessions(app):
    if BACKEND == "cookie":
        return
    from flask_session import Session

    app.config["SESSION_TYPE"] = BACKEND
    if BACKEND == "filesystem":
        app.config["SESSION_FILE_DIR"] = os.path.join(ROOT, "sessions")
    elif BACKEND == "cachelib":
        from cachelib import FileSystemCache

        app.config["SESSION_CACHELIB"] = FileSystemCache(os.path.join(ROOT, "cachelib"))
    elif BACKEND == "redis":
        import redis

        app.config["SESSION_REDIS"] = redis.Redis.from_url(os.environ["MATRIX_REDIS_URL"])
    elif BACKEND == "sqlalchemy":
        from flask_sqlalchemy import SQLAlchemy

        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{os.path.join(ROOT, 'sessions.db')}"
        app.config["SESSION_SQLALCHEMY"] = db = SQLAlchemy(app)
        Session(app)
        with app.app_context():
            db.create_all()  # Flask-Session 0.5 and 0.6 leave the table to the app
        return
    Session(app)


def folder_id():
    """With Flask's cookie session there is no server-side id: keep one in the cookie."""
    return session.setdefault("folder", secrets.token_hex(12))


app = Flask(__name__)
app.config.update(SECRET_KEY=os.environ["MATRIX_SECRET"], HANDOFF_STORAGE_ROOT=os.path.join(ROOT, "handoff"),
                  HANDOFF_MODE=os.environ.get("MATRIX_MODE", "warm"),
                  # 32 requests of one session at once queue for 2 child slots: room for the last of them.
                  HANDOFF_QUEUE_TIMEOUT=60.0)
configure_sessions(app)
Handoff(app, session_id=folder_id if BACKEND == "cookie" else None)
app.register_error_handler(getattr(handoff, "NotFinished", TimeoutError), lambda e: ({"error": str(e)}, 202))


@app.get("/version")
def version():
    return {"version": VERSION, "pid": os.getpid()}


@app.post("/session")
def set_session():
    session.update(request.get_json())
    if BACKEND == "cookie":
        folder_id()
    return jsonify(dict(session))


@app.get("/session")
def get_session():
    return jsonify(session=dict(session), pid=os.getpid())


@app.post("/write/<key>")
def write(key):
    run(write_key, session, key, request.get_json()["value"])
    return jsonify(dict(session))


@app.post("/echo")
def echo():
    return {"text": run(reverse_text, request.get_json()["text"])}


@app.get("/boom")
def raising():
    try:
        run(boom)
    except handoff.ChildFailed as exc:
        return {"type": exc.type_name, "traceback": exc.traceback}
    return {"error": "no exception"}, 500


@app.post("/sleep")
def sleeper():
    pid_file = os.path.join(ROOT, f"sleeper-{secrets.token_hex(4)}")
    started = time.monotonic()
    try:
        run(sleep_noting_pid, pid_file, 30, timeout=SLEEP_TIMEOUT)
    except handoff.Timeout:
        seconds = time.monotonic() - started
        try:
            with open(pid_file) as f:
                child = int(f.read())
        except (OSError, ValueError):
            return {"timeout": True, "seconds": seconds, "child_alive": "never started the function"}
        return {"timeout": True, "seconds": seconds, "child_alive": pid_alive(child)}
    return {"timeout": False}


@app.post("/touch")
def touching():
    run(touch, int(request.args.get("mb", 200)))
    return {"pid": os.getpid(), "rss_kb": rss_kb()}


@app.post("/submit")
def submitting():
    return {"id": submit(steps, session, 6, 0.25).id}, 202


@app.get("/running")
def progress():
    return jsonify(running())


@app.post("/result/<call_id>")
def result(call_id):
    value = handle(call_id).result(timeout=float(request.args.get("wait", 0)))
    return jsonify(value=value, session=dict(session))


if __name__ == "__main__":
    app.run(port=int(os.environ["MATRIX_PORT"]), debug=True, use_reloader=True)
