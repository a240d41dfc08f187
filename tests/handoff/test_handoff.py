"""The handoff extension on its own, in a small Flask app of the suite's (not Darkroom's views)."""

import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import handoff_fns as fns
import pytest
from flask import Flask, copy_current_request_context, jsonify, session
from helpers import is_alive, rss_kb, wait_for

import handoff
from handoff._runners import WarmRunner


def make_app(tmp_path, **options):
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="test", HANDOFF_STORAGE_ROOT=str(tmp_path / "records"))
    handoff.Handoff(app, **options)

    @app.post("/run/<name>")
    def call(name):
        from flask import request

        args = request.get_json(silent=True) or []
        args = [session if a == "$session" else a for a in args]
        value = handoff.run(getattr(fns, name), *args, timeout=request.args.get("timeout", type=float))
        return jsonify(value=value, session=dict(session))

    @app.post("/session")
    def set_session():
        from flask import request

        session.update(request.get_json())
        return jsonify(dict(session))

    @app.get("/session")
    def get_session():
        return jsonify(dict(session))

    @app.post("/eight")
    def eight():
        results = {}

        def one(i):
            results[i] = handoff.run(fns.write_own_key, session, i)

        threads = [threading.Thread(target=copy_current_request_context(one), args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return jsonify(seen=results, session=dict(session))

    @app.get("/running")
    def progress():
        return jsonify(handoff.running())

    return app


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        handoff.Handoff.close()


@pytest.fixture
def client(app):
    return app.test_client()


def records(tmp_path):
    root = tmp_path / "records"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".lock")


@pytest.mark.parametrize("value", [42, "Hello from the child", {"a": [1, 2.5, None]}, [1, "two"], None, b"\x00\xff",
                                   ("tuple", 1)])
def test_run_returns_the_value(app, value):
    with app.test_request_context():
        assert handoff.run(fns.echo, value) == value


def test_the_value_comes_from_another_process(app):
    with app.app_context():
        assert handoff.run(os.getpid) != os.getpid()


def test_run_works_outside_a_request(app):
    with app.app_context():
        assert handoff.run(fns.echo, "no request") == "no request"


def test_session_writes_come_back(client, tmp_path):
    client.post("/session", json={"outside_function": "outside"})
    body = client.post("/run/write_to_session", json=["$session"]).get_json()
    assert {"outside_function": "outside", "inside_function": "inside"}.items() <= body["session"].items()
    assert client.get("/session").get_json() == body["session"]  # saved with the session
    assert records(tmp_path) == []  # merged, then removed


def test_session_set_and_delete(client):
    client.post("/session", json={"doomed": "x", "kept": "y"})
    body = client.post("/run/set_and_delete", json=["$session"]).get_json()
    assert body["value"] == ["added", "kept"]  # what the child's session held at the end
    after = client.get("/session").get_json()
    assert after["added"] == [1, 2, 3] and after["kept"] == "y" and "doomed" not in after


def test_eight_concurrent_calls_in_one_request_all_land(client):
    client.post("/session", json={"before": 1})
    body = client.post("/eight").get_json()
    assert {f"key{i}": i for i in range(8)}.items() <= client.get("/session").get_json().items()
    for i, seen in body["seen"].items():  # each child saw the session as it was, plus only its own key
        assert seen == ["before", f"key{i}"]


def test_concurrent_requests_of_one_session_get_only_their_own_writes(app, client):
    client.post("/session", json={"before": 1})
    cookie = client.get_cookie("session").value
    answers = {}
    barrier = threading.Barrier(8)

    def tab(i):
        other = app.test_client()
        other.set_cookie("session", cookie)
        barrier.wait()
        answers[i] = other.post("/run/write_own_key", json=["$session", i]).get_json()["session"]

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == list(range(8))  # every request answered (a thread that died has no answer)
    for i, after in answers.items():
        assert {k for k in after if k.startswith("key")} == {f"key{i}"}


def test_a_raising_function_is_child_failed_with_its_traceback(app, client, tmp_path):
    with app.test_request_context():
        with pytest.raises(handoff.ChildFailed) as info:
            handoff.run(fns.boom)
    error = info.value
    assert (error.type_name, error.detail, error.status_code) == ("ValueError", "secret sauce", 500)
    assert error.traceback and 'raise ValueError("secret sauce")' in error.traceback and "in boom" in error.traceback
    assert error.message == "handoff_fns.boom raised ValueError: secret sauce"
    response = client.post("/run/boom", headers={"Accept": "application/json"})
    assert response.status_code == 500
    assert response.get_json() == {"error": "handoff_fns.boom raised ValueError: secret sauce"}
    assert records(tmp_path) == []


def test_a_killed_child_is_child_failed(client):
    response = client.post("/run/die")
    assert response.status_code == 500
    assert response.get_data(as_text=True) == "The child process was killed by signal 9."


@pytest.mark.parametrize("mode", ["warm", "spawn"])
def test_timeout_kills_and_joins_the_child_and_leaves_nothing(tmp_path, mode):
    app = make_app(tmp_path, mode=mode)
    client = app.test_client()
    # A spawn child's exit is seen through its sentinel a moment before it can be reaped:
    # three calls in a row met that moment at least once before join() waited for it.
    for attempt in range(3):
        pid_file = tmp_path / f"pid{attempt}"
        started = time.monotonic()
        response = client.post("/run/sleep_and_note?timeout=2", json=[30, str(pid_file)],
                               headers={"Accept": "application/json"})
        assert response.status_code == 504
        assert response.get_json() == {"error": "The call took longer than 2 s and was stopped."}
        assert time.monotonic() - started < 9
        assert not os.path.exists(f"/proc/{pid_file.read_text()}")  # killed, and reaped (joined): not a zombie
    assert records(tmp_path) == []
    with app.app_context():
        handoff.Handoff.close()


def test_busy_is_503_with_retry_after(tmp_path):
    app = make_app(tmp_path, max_children=1, queue_timeout=0.2)
    client = app.test_client()
    slow = threading.Thread(target=client.post, args=("/run/sleep_and_note",),
                            kwargs={"json": [1.5, str(tmp_path / "pid")]})
    slow.start()
    while not (tmp_path / "pid").exists():
        time.sleep(0.01)
    response = app.test_client().post("/run/echo", json=["x"])
    slow.join()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert app.test_client().post("/run/echo", json=["x"]).status_code == 200
    with app.app_context():
        handoff.Handoff.close()


def test_a_call_goes_to_the_child_that_has_waited_longest(app):
    from handoff._extension import _state

    with app.app_context():
        handoff.Handoff.warm_up()
        runner = _state().runner()
        assert isinstance(runner, WarmRunner)
        deadline = time.monotonic() + 20
        while len(runner._ready) < runner.max_children:  # all started
            assert time.monotonic() < deadline
            time.sleep(0.05)
        oldest = runner._ready[0][0].pid
        # The newest may still be starting up or rehearsing; the oldest is done.
        assert handoff.run(fns.pid) == oldest
        handoff.Handoff.close()


def test_memory_limit_is_child_failed(tmp_path):
    app = make_app(tmp_path, memory_mb=256)
    with app.app_context():
        with pytest.raises(handoff.ChildFailed) as info:
            handoff.run(fns.allocate, 400)
        assert info.value.out_of_memory
        assert info.value.message == "handoff_fns.allocate needed more memory than a call may use (256 MB)."
        assert handoff.run(fns.allocate, 50) == 50 * 1024 * 1024
        handoff.Handoff.close()


def test_an_unpicklable_value_is_child_failed(app):
    with app.app_context(), pytest.raises(handoff.ChildFailed, match="could not be sent to the parent"):
        handoff.run(fns.unpicklable)


def test_nested_functions_and_lambdas_are_refused_before_any_child_starts(app):
    def nested():
        return 1

    with app.app_context():
        with pytest.raises(TypeError, match=r"test_handoff\.test_nested.*<locals>\.nested.*Define nested at module"):
            handoff.run(nested)
        with pytest.raises(TypeError, match="a nested function or a lambda"):
            handoff.run(lambda: 1)
    assert app.extensions["handoff"]._runner is None


def test_progress_is_readable_by_another_request(tmp_path):
    # Progress is kept per session, so the app says which session is which.
    app = make_app(tmp_path, session_id=lambda: session.setdefault("folder", secrets.token_hex(12)))
    client = app.test_client()
    client.get("/running")  # gives the session its folder id
    cookie = client.get_cookie("session").value
    worker = threading.Thread(target=client.post, args=("/run/steps",), kwargs={"json": [3, 0.3]})
    worker.start()
    seen = []
    reader = client.application.test_client()
    reader.set_cookie("session", cookie)
    while worker.is_alive():
        seen += [note["step"] for note in reader.get("/running").get_json()]
        time.sleep(0.05)
    worker.join()
    assert {"step 1", "step 2", "step 3"} <= set(seen)
    assert reader.get("/running").get_json() == []
    with app.app_context():
        handoff.Handoff.close()


def test_without_a_session_id_there_is_no_progress_to_read(client):
    assert client.get("/running").get_json() == []


def test_the_app_may_answer_the_errors_itself(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.register_error_handler(handoff.ChildFailed, lambda e: (f"custom: {e.type_name}", 502))
    handoff.Handoff(app)

    @app.get("/")
    def index():
        return handoff.run(fns.boom)

    assert app.test_client().get("/").get_data(as_text=True) == "custom: ValueError"
    with app.app_context():
        handoff.Handoff.close()


def test_unknown_options_and_modes_are_refused(tmp_path):
    with pytest.raises(TypeError, match="unknown options"):
        handoff.Handoff(max_kids=2)
    app = Flask(__name__)
    app.config["HANDOFF_MODE"] = "threads"
    with pytest.raises(ValueError, match="HANDOFF_MODE must be one of"):
        handoff.Handoff(app)


@pytest.mark.parametrize("mode", ["warm", "spawn", "pool", "inline"])
def test_every_mode_returns_values_and_session_writes(tmp_path, mode):
    app = make_app(tmp_path, mode=mode)
    client = app.test_client()
    client.post("/session", json={"outside_function": "outside"})
    body = client.post("/run/write_to_session", json=["$session"]).get_json()
    assert body["session"]["inside_function"] == "inside"
    assert client.post("/run/echo", json=["inside"]).get_json()["value"] == "inside"
    with app.app_context():
        handoff.Handoff.close()


def test_web_process_memory_stays_flat_over_fifty_big_calls(app):
    with app.app_context():
        before = rss_kb(os.getpid())
        for _ in range(50):
            assert handoff.run(fns.allocate, 300) == 300 * 1024 * 1024
        growth_mb = (rss_kb(os.getpid()) - before) / 1024
    print(f"web process RSS growth over 50 calls of 300 MB each: {growth_mb:+.1f} MB")
    assert growth_mb < 15


def test_the_package_imports_neither_pillow_nor_the_app():
    code = ("import sys, handoff; bad = {'PIL', 'imaging', 'storage', 'web', 'app'} & set(sys.modules); "
            "print(sorted(bad)); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_killed_forkserver_is_replaced_with_the_same_environment(app, caplog):
    from handoff._processes import CHILD_GLIBC_TUNABLES, forkserver_pid

    with app.app_context():
        assert handoff.run(fns.echo, 1) == 1
        handoff.Handoff.warm_up()
        old = forkserver_pid()
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not is_alive(old), timeout=5, what="the forkserver to die")
        # Calls go on working, and children are started ahead of time again.
        assert [handoff.run(fns.echo, i) for i in range(5)] == list(range(5))
        runner = app.extensions["handoff"].runner()
        deadline = time.monotonic() + 10
        while len(runner._ready) < runner.max_children:
            assert time.monotonic() < deadline, "no child was started ahead of time again"
            time.sleep(0.05)
        assert runner._refiller.is_alive()
    new = forkserver_pid()
    assert new != old
    with open(f"/proc/{new}/environ", "rb") as f:
        assert f"GLIBC_TUNABLES={CHILD_GLIBC_TUNABLES}".encode() in f.read().split(b"\0")


def test_a_stopped_forkserver_delays_a_call_by_seconds_and_is_replaced(app):
    from handoff._processes import forkserver_pid

    with app.app_context():
        handoff.Handoff.warm_up()
        assert handoff.run(fns.echo, 1) == 1
        stopped = forkserver_pid()
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert handoff.run(fns.echo, 2) == 2  # a waiting child answers; joining it waits for no one forever
            assert handoff.run(fns.echo, 3) == 3  # started by a new forkserver
            elapsed = time.monotonic() - started
        finally:
            if is_alive(stopped):
                os.kill(stopped, signal.SIGCONT)
        print(f"two calls with the forkserver stopped: {elapsed:.1f} s")
        assert elapsed < 15
        assert not is_alive(stopped)  # killed, not left stopped
        deadline = time.monotonic() + 10
        while forkserver_pid() == stopped:  # the refill thread starts a new one
            assert time.monotonic() < deadline, "no new forkserver"
            time.sleep(0.05)
        assert handoff.run(fns.echo, 4) == 4
