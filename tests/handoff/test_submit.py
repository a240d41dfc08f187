"""handoff.submit: started by one worker, collected by another; faults on the way."""

import os
import signal
import time
from pathlib import Path

import pytest
from handoff_submit_app import create_app
from helpers import is_alive, killed_submit_app, python_code, read_pid, wait_for

import handoff

SECRET = "shared by both workers"


@pytest.fixture
def workers(tmp_path):
    """Two apps on one storage root and one secret: what two workers or nodes of a site are."""
    apps = [create_app(str(tmp_path / "root"), SECRET) for _ in range(2)]
    yield apps
    for app in apps:
        with app.app_context():
            handoff.Handoff.close()


def files(tmp_path):
    root = tmp_path / "root"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.suffix != ".lock") if root.exists() else []


def clients(workers):
    a = workers[0].test_client()
    a.post("/session", json={"outside_function": "outside"})
    b = workers[1].test_client()
    b.set_cookie("session", a.get_cookie("session").value)
    return a, b


def wait_done(client, call_id, timeout=20):
    deadline = time.monotonic() + timeout
    while not client.get(f"/status/{call_id}").get_json()["done"]:
        assert time.monotonic() < deadline, "the call did not end"
        time.sleep(0.05)


def test_submitted_on_one_worker_collected_on_another(workers, tmp_path):
    a, b = clients(workers)
    call_id = a.post("/submit/write_to_session", json=["$session"]).get_json()["id"]
    body = b.post(f"/result/{call_id}?wait=20").get_json()
    assert body["value"] is None
    assert {"outside_function": "outside", "inside_function": "inside"}.items() <= body["session"].items()
    assert files(tmp_path) == []  # lease, progress and record gone once collected
    assert b.post(f"/result/{call_id}").status_code == 404  # collected once: no such call any more


def test_progress_and_done_are_visible_from_another_worker(workers):
    a, b = clients(workers)
    call_id = a.post("/submit/steps", json=[3, 0.3]).get_json()["id"]
    seen = set()
    while not (status := b.get(f"/status/{call_id}").get_json())["done"]:
        if status["progress"]:
            seen.add(status["progress"]["step"])
        time.sleep(0.05)
    assert {"step 1", "step 2", "step 3"} <= seen
    assert b.post(f"/result/{call_id}").get_json()["value"] == 3


def test_an_unfinished_call_says_so_and_a_stranger_cannot_collect_it(workers):
    a, b = clients(workers)
    call_id = a.post("/submit/steps", json=[2, 0.5]).get_json()["id"]
    assert b.post(f"/result/{call_id}").status_code == 202
    stranger = workers[1].test_client()
    assert stranger.post(f"/result/{call_id}").status_code == 404  # another session's folder
    assert b.post(f"/result/{call_id}?wait=20").get_json()["value"] == 2


def test_failures_reach_the_collecting_request(workers):
    a, b = clients(workers)
    raised = a.post("/submit/boom").get_json()["id"]
    wait_done(b, raised)
    response = b.post(f"/result/{raised}")
    assert (response.status_code, response.get_data(as_text=True)) == (
        500, "handoff_fns.boom raised ValueError: secret sauce")


def test_a_killed_child_and_a_timeout_are_recorded_by_the_web_process(workers, tmp_path):
    a, b = clients(workers)
    pid_file = tmp_path / "pid"
    killed = a.post("/submit/sleep_and_note", json=[30, str(pid_file)]).get_json()["id"]
    os.kill(wait_for(lambda: read_pid(pid_file), what="the child's pid"), signal.SIGKILL)
    wait_done(b, killed)
    assert b.post(f"/result/{killed}").get_data(as_text=True) == "The child process was killed by signal 9."
    slow = a.post("/submit/sleep_and_note?timeout=0.5", json=[30, str(tmp_path / "pid2")]).get_json()["id"]
    wait_done(b, slow)
    response = b.post(f"/result/{slow}")
    assert (response.status_code, response.get_data(as_text=True)) == (
        504, "The call took longer than 0.5 s and was stopped.")
    assert files(tmp_path) == []


@pytest.mark.parametrize("mode", ["warm", "spawn", "pool"])
def test_a_submitted_call_outlives_a_web_process_that_exits_cleanly(workers, tmp_path, mode):
    """As when gunicorn recycles a worker (--max-requests) or reloads: the worker returns from its
    last request and Python exits, running multiprocessing's exit hook, which stops the daemonic
    children that process started."""
    code = f"""
        import handoff_submit_app
        app = handoff_submit_app.create_app({str(tmp_path / "root")!r}, {SECRET!r})
        client = app.test_client()
        call_id = client.post("/submit/steps", json=[3, 0.5]).get_json()["id"]
        print(call_id, client.get_cookie("session").value)
    """
    done = python_code(code, Path(__file__).parent, HANDOFF_TEST_MODE=mode)
    assert done.returncode == 0, done.stderr
    call_id, cookie = done.stdout.split()
    b = workers[1].test_client()
    b.set_cookie("session", cookie)
    response = b.post(f"/result/{call_id}?wait=20")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["value"] == 3
    assert files(tmp_path) == []


def test_a_submitted_call_outlives_its_web_process_and_is_collected_elsewhere(workers, tmp_path):
    """As when the OOM killer or a crash takes the web process with a submitted call still running."""
    with killed_submit_app(tmp_path / "root", SECRET, timeout="30") as remote:
        call_id = remote.post("/submit/steps", json=[3, 0.5]).get_json()["id"]
        wait_for(lambda: remote.get("/running").get_json(), what="the call to start")
    b = workers[1].test_client()
    b.set_cookie("session", next(c.value for c in remote.jar if c.name == "session"))
    assert b.post(f"/result/{call_id}?wait=20").get_json()["value"] == 3
    assert files(tmp_path) == []


def test_a_call_whose_server_died_is_reported_lost(workers, tmp_path):
    """SIGKILL the server (web process and forkserver) with a call running past its deadline: the child
    ends at that deadline, no record is ever written."""
    pid_file = tmp_path / "pid"
    with killed_submit_app(tmp_path / "root", SECRET, timeout="1", queue_timeout="0.5") as remote:
        response = remote.post("/submit/sleep_and_note", json=[30, str(pid_file)])
        assert response.status_code == 202
        call_id = response.get_json()["id"]
        child = wait_for(lambda: read_pid(pid_file), what="the child's pid")
    wait_for(lambda: not is_alive(child), timeout=10, what="the orphaned child to stop")
    b = workers[1].test_client()
    b.set_cookie("session", next(c.value for c in remote.jar if c.name == "session"))
    assert b.get(f"/status/{call_id}").get_json()["done"] is True  # its web process is gone: lost at once
    response = b.post(f"/result/{call_id}")
    assert response.status_code == 500
    assert "the process that ran it stopped" in response.get_data(as_text=True)
