"""A server killed mid-job (SIGKILL of it and its children), then started again: nothing of the job is left."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from conftest import image_bytes

import handoff
import storage
from bench.load import Client, Server, descendants


def kill_server(server):
    """SIGKILL the web process and everything under it (forkserver, children), as a crash or the OOM killer."""
    for pid in descendants(server.proc.pid) | {server.proc.pid}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait()


def test_a_job_of_a_killed_server_leaves_no_ghost(tmp_path):
    env = {
        "FLASK_DARKROOM_STORAGE_ROOT": str(tmp_path / "storage"),
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'sessions.db'}",
        "FLASK_SECRET_KEY": uuid.uuid4().hex,
        "FLASK_DARKROOM_PLUGINS": '["tests.faulty_ops"]',
    }
    with Server("flask", env=env) as first:
        client = Client(first.port)
        client.get("/")
        assert client.upload(image_bytes((300, 200)), ["invert"])[0] == 201
        stuck = threading.Thread(target=lambda: _ignore_errors(Client(first.port), client.cookie), daemon=True)
        stuck.start()
        deadline = time.monotonic() + 10
        while not json.loads(client.get("/api/progress")[1])["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        kill_server(first)
    [ws_dir] = [p for p in (tmp_path / "storage").iterdir() if p.is_dir() and storage.is_valid_id(p.name)]
    job_dirs = sorted(p.name for p in ws_dir.iterdir() if p.is_dir() and storage.is_valid_id(p.name))
    assert len(job_dirs) == 2  # the finished job and the ghost, with its 'running' note

    with Server("flask", env=env) as second:
        client = _with_cookie(second.port, client.cookie)
        assert json.loads(client.get("/api/progress")[1]) == {"running": []}
        [job] = json.loads(client.get("/api/session")[1])["jobs"]
        assert sorted(p.name for p in ws_dir.iterdir() if p.is_dir() and storage.is_valid_id(p.name)) == [job["id"]]
        assert "reclaimed 1 abandoned job directories" in second.log_text()


def _ignore_errors(client, cookie):
    client.cookie = cookie
    try:
        client.upload(image_bytes((300, 200)), ["stall"])
    except OSError:
        pass  # the server was killed under it


def _with_cookie(port, cookie):
    client = Client(port)
    client.cookie = cookie
    return client


def _killed_mid_call(app, ws, job_id):
    """A real web process that runs a call for ``job_id`` (as make_job does), SIGKILLed while it runs."""
    code = f"""
import time, handoff
from conftest import PLUGINS
from app import create_app
app = create_app({{"TESTING": True, "DARKROOM_PLUGINS": PLUGINS}}, instance_path={app.instance_path!r})
with app.test_request_context():
    from flask import session
    session["_workspace"] = {ws.id!r}
    handoff.run(time.sleep, 60, note={{"job": {job_id!r}}})
"""
    web = subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd(),
                           env={**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), "tests"])})
    with app.test_request_context():
        deadline = time.monotonic() + 30
        while not any(n.get("job") == job_id for n in handoff.running(ws.id)):
            assert web.poll() is None and time.monotonic() < deadline, "the call never started"
            time.sleep(0.05)
    web.kill()
    web.wait()


def test_cleanup_and_clear_all_reclaim_a_job_whose_owner_died(app, client, runner):
    client.get("/")
    ws = storage.Workspace(app.config["DARKROOM_STORAGE_ROOT"], _workspace_id(client))
    for _ in range(2):
        job_id = storage.new_id()
        ws.create_job_dir(job_id)
        _killed_mid_call(app, ws, job_id)
        assert client.get("/api/progress").get_json() == {"running": []}  # not reported as running
        assert "1 abandoned jobs" in runner.invoke(args=["cleanup"]).output  # at once, not after the grace
    job_id = storage.new_id()
    ws.create_job_dir(job_id)
    _killed_mid_call(app, ws, job_id)
    assert client.post("/session/clear").status_code == 303
    assert [p for p in ws.path.iterdir() if p.is_dir() and storage.is_valid_id(p.name)] == []
    assert list((ws.path / "calls").glob("*.progress.json")) == []  # and their notes


def _workspace_id(client):
    with client.session_transaction() as sess:
        return sess["_workspace"]
