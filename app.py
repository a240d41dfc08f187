"""Darkroom: leak-proof image processing for Flask. ``flask --app app run``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

import imaging
from handoff import Handoff
from web import (
    api,
    cli,
    errors,
    files,
    gallery,
    health,
    jobs,
    limits,
    logs,
    metrics,
    security,
    seed,
    sessions,
    settings,
    store,
    uploads,
)

#: Runs the image jobs (and the seed routes' calls) in children. Its session records live in the
#: session's workspace, beside the manifest. Only what differs from handoff's defaults is given here.
handoff = Handoff(session_id=sessions.workspace_id, reraise=[imaging.BadImage], memory_mb=2048,
                  rehearsal="imaging.job:rehearse")


def create_app(test_config: Mapping[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Create and configure the Darkroom app.

    The instance folder is ``instance/`` beside this file unless ``instance_path``
    or the ``DARKROOM_INSTANCE_PATH`` environment variable names another.
    """
    instance_path = instance_path or os.environ.get("DARKROOM_INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    settings.load(app, test_config)
    imaging.load_plugins(app.config["DARKROOM_PLUGINS"])
    store.init_app(app)
    handoff.init_app(app)
    logs.init_app(app)  # first of the request hooks: every later one's log lines and errors carry the request id
    for extension in (uploads, security, errors, cli):
        extension.init_app(app)
    for bp in (seed.bp, jobs.bp, gallery.bp, api.bp, files.bp, health.bp):
        app.register_blueprint(bp)
    app.add_template_filter(limits.human_size, "size")
    metrics.init_app(app)
    limits.init_app(app)  # wraps registered views
    cli.reclaim_at_start(app)
    return app
