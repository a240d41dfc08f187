"""A server killed mid-job (SIGKILL of it and its children), then started again: nothing of the job is left."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

import handoff
import storage
from tests.support import Client, Server, descendants
from tests.support.photos import image_bytes


def kill_server(server, web_last_by=0.0):
    """SIGKILL the web process and everything under it (forkserver, children), as a crash or the OOM killer.

    ``web_last_by``: kill the web process that many seconds after the rest,
    so that it is killed while it handles its child's death.
    """
    family = sorted(descendants(server.proc.pid)) if web_last_by else descendants(server.proc.pid) | {server.proc.pid}
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if web_last_by:
        time.sleep(web_last_by)
        server.proc.kill()
    server.proc.wait()


def _env(tmp_path):
    return {"FLASK_DARKROOM_STORAGE_ROOT": str(tmp_path / "storage"),
            "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'sessions.db'}",
            "FLASK_SECRET_KEY": uuid.uuid4().hex, "FLASK_DARKROOM_PLUGINS": '["tests.support.faulty_ops"]'}


def _job_dirs(tmp_path):
    [ws_dir] = [p for p in (tmp_path / "storage").iterdir() if p.is_dir() and storage.is_valid_id(p.name)]
    return sorted(p.name for p in ws_dir.iterdir() if p.is_dir() and storage.is_valid_id(p.name))


def _one_done_one_stalled(server):
    """A session with one finished job and one stuck in the 'stall' op; return its client."""
    client = Client(server.port)
    client.get("/api/session")
    assert client.upload(image_bytes((300, 200)), ["invert"])[0] == 201
    stuck = threading.Thread(target=lambda: _ignore_errors(Client(server.port), client.cookie), daemon=True)
    stuck.start()
    deadline = time.monotonic() + 10
    while not json.loads(client.get("/api/progress")[1])["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return client


def _only_the_finished_job_is_left(tmp_path, env, cookie):
    with Server("flask", env=env) as second:
        client = _with_cookie(second.port, cookie)
        assert json.loads(client.get("/api/progress")[1]) == {"running": []}
        [job] = json.loads(client.get("/api/session")[1])["jobs"]
        assert _job_dirs(tmp_path) == [job["id"]]
        return second.log_text()


def test_a_job_of_a_killed_server_leaves_no_ghost(tmp_path):
    env = _env(tmp_path)
    with Server("flask", env=env) as first:
        client = _one_done_one_stalled(first)
        kill_server(first)
    assert len(_job_dirs(tmp_path)) == 2  # the finished job and the ghost, with its 'running' note
    assert "reclaimed 1 abandoned job directories" in _only_the_finished_job_is_left(tmp_path, env, client.cookie)


@pytest.mark.parametrize("web_last_by", [0.001, 0.002, 0.003, 0.005, 0.008, 0.05])
def test_a_web_process_killed_while_it_handles_its_childs_death_leaves_no_ghost(tmp_path, web_last_by):
    # Killed a few ms after its child, the web process has dropped the call's note but not yet the
    # job's directory: the directory's holder, not the note, tells the next start it is abandoned.
    env = _env(tmp_path)
    with Server("flask", env=env) as first:
        client = _one_done_one_stalled(first)
        kill_server(first, web_last_by=web_last_by)
    _only_the_finished_job_is_left(tmp_path, env, client.cookie)


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
from tests.support.jobs import PLUGINS
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
    client.get("/api/session")
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


def test_a_job_directory_is_spared_while_its_holder_lives_and_reclaimed_once_it_died(tmp_path):
    ws = storage.Workspace(str(tmp_path), storage.new_id())
    mine, orphan, unheld = storage.new_id(), storage.new_id(), storage.new_id()
    ws.create_job_dir(mine, hold_for=60)
    subprocess.run([sys.executable, "-c", f"import storage; storage.Workspace({str(tmp_path)!r}, {ws.id!r})"
                    f".create_job_dir({orphan!r}, hold_for=60)"], check=True, cwd=os.getcwd())
    ws.create_job_dir(unheld)
    empty: storage.Manifest = {"jobs": []}
    # This process's call died (its note came back abandoned), but it still holds the directory: spared.
    assert storage.reclaim_abandoned(ws, empty, 3600, running=[], abandoned=[{"job": mine}]) == 1
    assert _names(ws) == sorted([mine, unheld])  # the orphan went at once; the unheld one waits for the grace
    assert storage.reclaim_abandoned(ws, empty, 0, running=[], abandoned=[]) == 1
    assert _names(ws) == [mine]


def _names(ws):
    return sorted(p.name for p in ws.path.iterdir() if p.is_dir() and storage.is_valid_id(p.name))
