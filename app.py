"""Darkroom: leak-proof image processing for Flask. ``flask --app app run``."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from flask.logging import default_handler
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy

import imaging
import storage
from handoff import Handoff, default_max_children
from web import cli, errors, files, gallery, health, jobs, limits, logs, metrics, security, seed, sessions, uploads

#: Runs the image jobs (and the seed routes' calls) in children. Its session
#: records live in the session's workspace, beside the manifest.
handoff = Handoff(session_id=sessions.workspace_id, reraise=[imaging.BadImage])


def create_app(test_config: dict[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Create and configure the Darkroom app.

    The instance folder is ``instance/`` beside this file unless ``instance_path``
    or the ``DARKROOM_INSTANCE_PATH`` environment variable names another.
    """
    instance_path = instance_path or os.environ.get("DARKROOM_INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=None,
        SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "darkroom.db"),
        MAX_CONTENT_LENGTH=40 * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # None: Secure exactly when PREFERRED_URL_SCHEME is "https" (web/security.py).
        SESSION_COOKIE_SECURE=None,
        PERMANENT_SESSION_LIFETIME=7 * 24 * 3600,
        # Read-only requests must not write a stale copy of the session back.
        SESSION_REFRESH_EACH_REQUEST=False,
        DARKROOM_STORAGE_ROOT=os.path.join(app.instance_path, "workspaces"),
        DARKROOM_LOCK_TYPE="file",
        HANDOFF_MODE="warm",
        HANDOFF_MAX_CHILDREN=default_max_children(),
        HANDOFF_QUEUE_TIMEOUT=10.0,
        HANDOFF_TIMEOUT=60.0,
        HANDOFF_MEMORY_MB=2048,
        DARKROOM_MAX_PIXELS=60_000_000,
        DARKROOM_JOB_THREADS=None,
        DARKROOM_CORES_DIR=None,
        DARKROOM_PAGE_SIZE=10,
        DARKROOM_SESSION_JOBS=20,
        DARKROOM_DB_TIMEOUT=2.0,
        DARKROOM_PLUGINS=[],
        DARKROOM_PROXY_HOPS=0,
        DARKROOM_TRUSTED_ORIGINS=[],
        DARKROOM_CLIENT_LIMITS=True,
        DARKROOM_CLIENT_JOB_RATE="60 per minute; 600 per hour",
        DARKROOM_CLIENT_SESSION_RATE="10 per minute; 100 per hour",
        DARKROOM_CLIENT_ZIP_RATE="20 per minute; 200 per hour",
        DARKROOM_CLIENT_BYTES_PER_HOUR=1024**3,
        DARKROOM_SESSION_QUOTA_MB=1024,
        DARKROOM_MIN_FREE_MB=512,
        DARKROOM_METRICS_ALLOW=["127.0.0.1/32", "::1/128"],
        DARKROOM_METRICS_TOKEN=None,
        DARKROOM_LOG_FORMAT="text",
        RATELIMIT_STORAGE_URI="memory://",
    )
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    sessions.check_instance_writable(app)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = sessions.load_or_create_secret(app.instance_path)

    # One SQLAlchemy per app: Flask-Session defines its table on the db's
    # metadata, and a second app on a shared db would define it twice.
    db = SQLAlchemy()
    sessions.configure_engine(app)
    db.init_app(app)
    sessions.tune_sqlite(app, db)
    app.config.update(SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=db)
    with sessions.schema_lock(app, db):
        Session(app)  # creates the sessions table if it is missing

    # One line per job and per call, and the limits' storage going away and coming back
    # (not each refusal), on stderr like Flask's own log.
    for name, level in (("darkroom", logging.INFO), ("handoff", logging.INFO), ("flask-limiter", logging.WARNING)):
        job_log = logging.getLogger(name)
        if not job_log.handlers:
            job_log.addHandler(default_handler)
            job_log.setLevel(level)
    imaging.load_plugins(app.config["DARKROOM_PLUGINS"])
    if app.config["DARKROOM_LOCK_TYPE"] not in storage.LOCK_TYPES:
        raise ValueError(f"DARKROOM_LOCK_TYPE must be one of {sorted(storage.LOCK_TYPES)}, "
                         f"not {app.config['DARKROOM_LOCK_TYPE']!r}")
    # handoff keeps its call records in the session's workspace, beside the manifest: one root for both.
    root = app.config.setdefault("HANDOFF_STORAGE_ROOT", app.config["DARKROOM_STORAGE_ROOT"])
    if os.path.realpath(root) != os.path.realpath(app.config["DARKROOM_STORAGE_ROOT"]):
        raise ValueError("HANDOFF_STORAGE_ROOT must be DARKROOM_STORAGE_ROOT (set only the latter)")
    # An operator's own lock type, rehearsal and preloads win; the children always preload the image code.
    app.config.setdefault("HANDOFF_LOCK_TYPE", app.config["DARKROOM_LOCK_TYPE"])
    app.config.setdefault("HANDOFF_REHEARSAL", "imaging.job:rehearse")
    app.config["HANDOFF_PRELOAD"] = [*imaging.CHILD_PRELOAD, "web.seed_child", *app.config.get("HANDOFF_PRELOAD", [])]
    handoff.init_app(app)
    sessions.init_app(app)
    logs.init_app(app)  # first: every later hook's log lines and errors carry the request id
    uploads.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    for bp in (seed.bp, jobs.bp, gallery.bp, files.bp, health.bp):
        app.register_blueprint(bp)
    app.add_template_filter(limits.human_size, "size")
    metrics.init_app(app)
    limits.init_app(app)  # wraps registered views
    return app
