"""The session store: the secret key, the database engine and Flask-Session's table of session rows."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from filelock import FileLock
from flask import Flask, g, request_finished, session
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event, text

#: How long a session started before it holds anything lives (``sessions.start_session``), unless it comes to.
EMPTY_SESSION_SECONDS = 3600


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (real paths; ``/a/bc`` is not inside ``/a/b``)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def check_instance_writable(app: Flask) -> None:
    """Fail at start-up, saying why, if the instance folder must be written to and cannot be."""
    instance = os.path.realpath(app.instance_path)
    needs = []
    if not app.config["SECRET_KEY"]:
        needs.append("the generated secret key (or set SECRET_KEY)")
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    if database.startswith("sqlite:///") and _inside(database[len("sqlite:///"):], instance):
        needs.append("the SQLite session database (or set SQLALCHEMY_DATABASE_URI)")
    if _inside(app.config["DARKROOM_STORAGE_ROOT"], instance):
        needs.append("the workspaces (or set DARKROOM_STORAGE_ROOT)")
    if needs and not os.access(instance, os.W_OK):
        raise RuntimeError(f"The instance folder {instance} is not writable, and it holds {'; '.join(needs)}.")


def load_or_create_secret(instance_path: str) -> str:
    """Return the secret key kept in the instance folder, creating it (mode 0600) on first start."""
    path = os.path.join(instance_path, "secret_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32))
    return load_or_create_secret(instance_path)


def configure_engine(app: Flask) -> None:
    """Bound every wait on the session database by ``DARKROOM_DB_TIMEOUT``.

    SQLite waits that long for a lock another process holds; PostgreSQL that
    long for a connection and for a lock. Past it the request answers 503.
    """
    seconds = float(app.config["DARKROOM_DB_TIMEOUT"])
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    # A connection left over from before a database restart is found dead and replaced, not used.
    options.setdefault("pool_pre_ping", True)
    connect_args = options.setdefault("connect_args", {})
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        connect_args.setdefault("timeout", seconds)
    elif url.startswith("postgresql"):
        connect_args.setdefault("connect_timeout", max(1, round(seconds)))
        connect_args.setdefault("options", f"-c lock_timeout={round(seconds * 1000)}")


def tune_sqlite(app: Flask, db: SQLAlchemy) -> None:
    """Switch SQLite to WAL, so readers never block the one writer.

    ``synchronous=NORMAL`` is WAL's recommended pairing: a commit is not
    fsynced until the next checkpoint, so a power cut can lose the last few
    session writes but never corrupts the database.
    """
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():

        @event.listens_for(db.engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()


#: Arbitrary key of the PostgreSQL advisory lock taken while creating tables.
SCHEMA_LOCK_KEY = 0x6461726B726F6F6D  # "darkroom"


@contextmanager
def schema_lock(app: Flask, db: SQLAlchemy) -> Iterator[None]:
    """Let one starting process at a time create the sessions table.

    Flask-Session checks for its table, then creates it: two gunicorn workers
    booting together would both try, and the loser would fail to boot.
    """
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
                conn.commit()
    else:  # SQLite: every process is on this machine; the lock sits beside the database file
        database = engine.url.database
        lock_path = f"{database}.schema.lock" if database and database != ":memory:" else None
        with FileLock(lock_path or os.path.join(app.instance_path, "schema.lock")):
            yield


def naive_utc_now() -> datetime:
    """Now, as Flask-Session stores its rows' expiry times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def session_table(app: Flask) -> tuple[Any, Any]:
    """Flask-Session's model of the session rows and its Flask-SQLAlchemy database (behind handoff's merge)."""
    interface: Any = app.session_interface
    return interface.sql_session_model, interface.client


def expire_unused_session(app: Flask, response: object, **_extra: object) -> None:
    """Give a session started by this request, and still holding no job, an hour instead of its lifetime.

    Runs on ``request_finished``, after Flask-Session has written the row.
    """
    sid = getattr(session, "sid", None)  # Flask-Session's; Flask's own sessions have none
    if not g.get("started_session") or session.get("jobs") or sid is None:
        return
    model, db = session_table(app)
    expiry = naive_utc_now() + timedelta(seconds=EMPTY_SESSION_SECONDS)
    store_id = app.session_interface.key_prefix + sid  # type: ignore[attr-defined]
    model.query.filter_by(session_id=store_id).update({"expiry": expiry})
    db.session.commit()


def init_app(app: Flask) -> None:
    """Keep the sessions in the SQLAlchemy database, and sessions nobody stored anything in short-lived."""
    # One SQLAlchemy per app: Flask-Session defines its table on the db's
    # metadata, and a second app on a shared db would define it twice.
    db = SQLAlchemy()
    configure_engine(app)
    db.init_app(app)
    tune_sqlite(app, db)
    app.config.update(SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=db)
    with schema_lock(app, db):
        Session(app)  # creates the sessions table if it is missing
    request_finished.connect(expire_unused_session, app)
