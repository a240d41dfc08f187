"""An app of many concurrent requests per session, on the Flask-Session store named in the environment.

``gunicorn handoff_session_app:app`` serves it; ``HANDOFF_TEST_BACKEND`` is
``sqlite`` or ``postgresql`` (the sqlalchemy store, the latter at
``HANDOFF_TEST_DATABASE_URL``), ``redis`` (at ``HANDOFF_TEST_REDIS_URL``),
``filesystem`` or ``cachelib``; ``HANDOFF_TEST_MERGE`` is ``1`` or ``0``.
"""

import os

import handoff_fns as fns
from flask import Flask, jsonify, request, session
from flask_session import Session

import handoff

ROOT = os.environ["HANDOFF_TEST_ROOT"]
BACKEND = os.environ["HANDOFF_TEST_BACKEND"]


def configure_store(app):
    if BACKEND in ("sqlite", "postgresql"):
        from flask_sqlalchemy import SQLAlchemy

        url = f"sqlite:///{ROOT}/sessions.db" if BACKEND == "sqlite" else os.environ["HANDOFF_TEST_DATABASE_URL"]
        app.config.update(SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=url)
        app.config["SESSION_SQLALCHEMY"] = SQLAlchemy(app)
    elif BACKEND == "redis":
        import redis

        client = redis.Redis.from_url(os.environ["HANDOFF_TEST_REDIS_URL"])
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client)
    elif BACKEND == "filesystem":
        app.config.update(SESSION_TYPE="filesystem", SESSION_FILE_DIR=os.path.join(ROOT, "sessions"))
    elif BACKEND == "cachelib":
        from cachelib import FileSystemCache

        app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache(os.path.join(ROOT, "cachelib")))
    else:
        raise ValueError(f"unknown HANDOFF_TEST_BACKEND {BACKEND!r}")
    Session(app)


app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["HANDOFF_TEST_SECRET"],
    HANDOFF_STORAGE_ROOT=os.path.join(ROOT, "handoff"),
    HANDOFF_SESSION_MERGE=os.environ["HANDOFF_TEST_MERGE"] == "1",
    HANDOFF_QUEUE_TIMEOUT=60.0,
)
configure_store(app)
handoff.Handoff(app)


@app.post("/session")
def set_session():
    session.update(request.get_json())
    return jsonify(dict(session))


@app.get("/session")
def get_session():
    return jsonify(dict(session))


def held():
    """The ``started`` and ``release`` files a test orders its requests by (fns.hold), if it gave them."""
    return (request.args["started"], request.args["release"]) if "release" in request.args else None


@app.post("/write/<key>")
def write(key):
    """A child sets ``key``; the view adds nothing of its own."""
    handoff.run(fns.write_key, session, key, request.get_json(), request.args.get("pause", 0.05, type=float), held())
    return "", 204


@app.post("/delete/<key>")
def delete(key):
    handoff.run(fns.delete_key, session, key, request.args.get("pause", 0.05, type=float))
    return "", 204


@app.get("/read/<key>")
def read(key):
    """Read a key, wait in a child, answer: a request that changes nothing."""
    value = session.get(key)
    handoff.run(fns.pause, request.args.get("pause", 0.05, type=float), held())
    return jsonify(value=value)
