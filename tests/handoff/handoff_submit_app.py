"""A small app that submits calls and collects them, as two workers (or nodes) of one site would.

``flask --app tests/handoff_submit_app run`` serves it with the storage root and
secret from the environment, so a test can run one copy in its own process.
"""

import os
import secrets

import handoff_fns as fns
from flask import Flask, jsonify, request, session

import handoff


def folder_id():
    """The session's folder id, kept in its cookie (made on first use)."""
    return session.setdefault("folder", secrets.token_hex(12))


def create_app(root=None, secret=None):
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret or os.environ["HANDOFF_TEST_SECRET"],
        HANDOFF_STORAGE_ROOT=root or os.environ["HANDOFF_TEST_ROOT"],
        HANDOFF_TIMEOUT=float(os.environ.get("HANDOFF_TEST_TIMEOUT", 60)),
        HANDOFF_QUEUE_TIMEOUT=float(os.environ.get("HANDOFF_TEST_QUEUE_TIMEOUT", 10)),
        HANDOFF_MODE=os.environ.get("HANDOFF_TEST_MODE", "warm"),
    )
    # Progress and results are kept per session: the session's folder id lives in its cookie.
    handoff.Handoff(app, session_id=folder_id)

    @app.post("/submit/<name>")
    def start(name):
        args = [session if a == "$session" else a for a in request.get_json(silent=True) or []]
        call = handoff.submit(getattr(fns, name), *args, timeout=request.args.get("timeout", type=float))
        return {"id": call.id}, 202

    @app.get("/status/<call_id>")
    def status(call_id):
        call = handoff.handle(call_id)
        return {"done": call.done(), "progress": call.progress()}

    @app.post("/result/<call_id>")
    def result(call_id):
        value = handoff.handle(call_id).result(timeout=request.args.get("wait", 0.0, type=float))
        return jsonify(value=value, session=dict(session))

    @app.get("/folder")
    def folder():
        return {"folder": folder_id()}

    @app.get("/running")
    def running():
        return jsonify(handoff.running())

    @app.post("/session")
    def set_session():
        session.update(request.get_json())
        folder_id()
        return jsonify(dict(session))

    for error in (handoff.NotFinished, handoff.AlreadyCollected, handoff.NoSuchCall):
        app.register_error_handler(error, lambda e: ({"error": e.message}, e.status_code))
    return app


app = create_app() if "HANDOFF_TEST_ROOT" in os.environ else None
