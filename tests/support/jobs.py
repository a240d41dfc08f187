"""A test app (Flask's test client): sending it jobs, reading its answers and state, closing it."""

from __future__ import annotations

import io
import os
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import storage
from handoff import Handoff
from web import store

from .photos import image_bytes
from .processes import wait_for

#: The ops that misbehave on purpose (tests/support/faulty_ops.py), as DARKROOM_PLUGINS names them.
PLUGINS = ["tests.support.faulty_ops"]
#: The folder of a workspace that holds handoff's notes and records of its calls.
CALLS = "calls"


def upload(client, data=None, ops=None, name="photo.jpg", json=True, fields=None, **headers) -> TestResponse:
    """POST an image to /jobs (with more form ``fields``, e.g. ``format``) and return the response.

    The keywords left are request headers, often given as ``**{"Sec-Fetch-Site": ...}``.
    """
    form: dict[str, Any] = {"image": (io.BytesIO(image_bytes() if data is None else data), name), **(fields or {})}
    if ops is not None:
        form["ops"] = ops
    if json:
        headers.setdefault("Accept", "application/json")
    return client.post("/jobs", data=form, headers=headers, content_type="multipart/form-data")


def error_json(response: TestResponse) -> dict[str, Any]:
    """An error answer's JSON without its ``request_id``, once that is checked against ``X-Request-ID``."""
    body = dict(response.get_json())
    assert body.pop("request_id") == response.headers["X-Request-ID"]
    return body


def workspace_of(app: Flask, client: FlaskClient) -> storage.Workspace | None:
    """The workspace of a test client's session, or None if it has none yet."""
    with client.session_transaction() as sess:
        workspace_id = sess.get("_workspace")
    return storage.Workspace(app.config["DARKROOM_STORAGE_ROOT"], workspace_id) if workspace_id else None


def wait_for_child_at_work(client: FlaskClient, timeout: float = 10) -> None:
    """Wait until a job of the client's session is inside its child (which has taken a slot).

    The web process writes the job's first note (no op yet) before the job
    waits for a slot; only the child names the op it is on.
    """
    wait_for(lambda: any(note["op"] for note in client.get("/api/progress").get_json()["running"]),
             "a job to reach its child", timeout, pause=0.02)


def close_app(app: Flask) -> None:
    """Stop an app's forkserver and children, and close its session database's connections."""
    with app.app_context():
        Handoff.close()
        store.session_table(app)[1].engine.dispose()


def assert_state(app: Flask, client: FlaskClient, job_ids: list[str]) -> None:
    """The manifest, the session and the job directories all list exactly job_ids; no upload is left over."""
    uploads = os.path.join(app.config["DARKROOM_STORAGE_ROOT"], ".uploads")
    assert not os.path.isdir(uploads) or os.listdir(uploads) == []
    assert [j["id"] for j in client.get("/api/session").get_json()["jobs"]] == job_ids
    with client.session_transaction() as sess:
        assert [j["id"] for j in sess.get("jobs", [])] == job_ids
    ws = workspace_of(app, client)
    if ws is None:
        assert job_ids == []
        return
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == job_ids
    dirs = sorted(e.name for e in ws.path.iterdir() if e.is_dir()) if ws.path.exists() else []
    assert [d for d in dirs if d != CALLS] == sorted(job_ids)
    calls = ws.path / CALLS
    assert not calls.is_dir() or list(calls.iterdir()) == []  # no call's note or record left behind
    leftovers = list(ws.path.rglob("*.tmp")) if ws.path.exists() else []
    assert leftovers == []
