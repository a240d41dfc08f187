"""handoff's promises as a library: its names, its closed errors, process groups, leases, interpreters."""

import logging
import os
import re
import subprocess
import sys
import textwrap
import time

import handoff_fns as fns
import pytest
from helpers import is_alive, killed_submit_app, python_code, read_pid, wait_for
from test_handoff import make_app

import handoff

PUBLIC = {
    "AlreadyCollected", "Busy", "CallRecord", "ChildFailed", "Handle", "Handoff", "HandoffError", "NoSuchCall",
    "NotFinished", "RemoteTraceback", "Timeout", "abandoned", "check_importable", "default_max_children", "handle",
    "on_call", "report", "run", "running", "status", "submit",
}


def test_the_public_names_are_exactly_the_documented_ones():
    assert set(handoff.__all__) == PUBLIC
    assert all(hasattr(handoff, name) for name in handoff.__all__)
    public_now = {n for n in vars(handoff) if not n.startswith("_")} - {"errors", "files"}
    assert public_now == PUBLIC  # nothing new leaks out without being put in __all__ (and here)


def test_every_error_a_call_can_raise_is_a_handoff_error():
    for name in ("AlreadyCollected", "Busy", "ChildFailed", "NoSuchCall", "NotFinished", "Timeout"):
        assert issubclass(getattr(handoff, name), handoff.HandoffError), name


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, reraise=[fns.Refused, "handoff_fns:Unrebuildable"])
    yield app
    with app.app_context():
        handoff.Handoff.close()


def test_a_timeout_ends_what_the_child_started(app, tmp_path):
    with app.app_context(), pytest.raises(handoff.Timeout):
        handoff.run(fns.start_grandchild, str(tmp_path / "pid"), 60, timeout=1)
    grandchild = read_pid(tmp_path / "pid")
    assert grandchild, "the child never started its grandchild"
    wait_for(lambda: not is_alive(grandchild), timeout=5, what="the grandchild to be killed")


def test_a_call_that_returns_leaves_nothing_running(app, tmp_path):
    with app.app_context():
        grandchild = handoff.run(fns.start_grandchild, str(tmp_path / "pid"), 0)
    wait_for(lambda: not is_alive(grandchild), timeout=5, what="the grandchild to be killed")


def test_named_exception_types_come_back_as_themselves(app, caplog):
    with caplog.at_level(logging.INFO, "handoff"), app.app_context(), pytest.raises(fns.Refused) as info:
        handoff.run(fns.refuse, "too big")
    assert "status=raised" in caplog.text and "raised in the child" not in caplog.text  # expected: no traceback
    assert (info.value.message, info.value.kind) == ("refused: too big", "too big")
    cause = info.value.__cause__
    assert isinstance(cause, handoff.RemoteTraceback)
    assert "in refuse" in str(cause) and "(in the child process)" in str(cause)


def test_other_exceptions_are_child_failed_even_when_named_but_not_rebuildable(app, caplog):
    with app.app_context():
        with caplog.at_level(logging.WARNING, "handoff"), pytest.raises(handoff.ChildFailed, match="secret sauce"):
            handoff.run(fns.boom)
    assert "raised in the child" in caplog.text and 'raise ValueError("secret sauce")' in caplog.text
    with app.app_context():
        with caplog.at_level(logging.WARNING, "handoff"), pytest.raises(handoff.ChildFailed) as info:
            handoff.run(fns.refuse_unrebuildably)
    assert info.value.type_name == "Unrebuildable"
    assert "could not rebuild Unrebuildable" in caplog.text


def test_reraise_lists_exception_types_only(tmp_path):
    with pytest.raises(TypeError, match="HANDOFF_RERAISE lists exception types"):
        make_app(tmp_path, reraise=["handoff_fns:echo"])


def test_a_second_handoff_on_one_app_is_refused(app):
    with pytest.raises(RuntimeError, match="already set up"):
        handoff.Handoff(app)


@pytest.mark.parametrize("bad", ["../../etc", "short", "a" * 65, "dots.are.not.ok.here", 12345678901234567])
def test_a_session_id_that_is_not_a_safe_name_is_refused(tmp_path, bad):
    app = make_app(tmp_path, session_id=lambda: bad)
    with app.test_request_context(), pytest.raises(ValueError, match="session_id"):
        handoff.run(fns.echo, 1)
    assert not (tmp_path / "etc").exists()


def test_the_package_imports_where_there_is_no_resource_or_fcntl_module():
    # What Windows lacks; filelock picks its Windows lock there, so only import-time use would fail.
    code = "import sys; sys.modules['resource'] = sys.modules['fcntl'] = None; import handoff; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_children_start_with_python_when_the_server_binary_is_notpython_code(tmp_path):
    """As under uWSGI: sys.executable names the server's binary. Children still start, with this Python."""
    result = python_code(f"""
        import os, sys
        sys.executable = "/usr/local/bin/uwsgi"
        from flask import Flask
        import handoff, handoff_fns
        app = Flask("embedded", instance_path={str(tmp_path)!r})
        handoff.Handoff(app)
        with app.app_context():
            print(handoff.run(handoff_fns.echo, "from a child"), handoff.run(os.getpid) != os.getpid())
    """, tmp_path)
    assert result.stdout.split() == ["from", "a", "child", "True"], result.stderr


def test_a_clean_exit_stops_the_refill_and_the_waiting_children_before_multiprocessing_joins_them(tmp_path):
    """At exit, multiprocessing stops the children it knows of, then joins them all with no time limit:
    one the refill thread started in between would hang the exit (a recycled gunicorn worker that never
    ends). What that hook is left to do is seen by a hook registered between it and handoff's."""
    result = python_code(f"""
        import atexit, multiprocessing, threading, time
        import multiprocessing.util  # registers multiprocessing's exit hook: the last to run

        def left_for_multiprocessing():
            refill = [t.name for t in threading.enumerate() if t.name == "handoff-refill"]
            print("LEFT", len(multiprocessing.active_children()), "children,", len(refill), "refill threads")

        atexit.register(left_for_multiprocessing)
        from flask import Flask
        import handoff, handoff_fns
        app = Flask("embedded", instance_path={str(tmp_path)!r})
        handoff.Handoff(app, max_children=2)
        with app.app_context():
            print(handoff.run(handoff_fns.echo, "called"))  # and its child is replaced at once
            deadline = time.monotonic() + 30
            while handoff.status()["waiting"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            print("waiting", handoff.status()["waiting"])
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["called", "waiting 2", "LEFT 0 children, 0 refill threads"], result.stdout


def test_no_python_to_be_found_is_child_failed_and_the_refill_backs_off(tmp_path):
    result = python_code(f"""
        import logging, sys, time
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(message)s")
        sys.executable = sys.prefix = sys.exec_prefix = sys.base_prefix = sys.base_exec_prefix = {str(tmp_path)!r}
        from flask import Flask
        import handoff, handoff_fns
        app = Flask("embedded", instance_path={str(tmp_path)!r})
        handoff.Handoff(app)
        with app.app_context():
            try:
                handoff.run(handoff_fns.echo, 1)
            except handoff.ChildFailed as exc:
                print(f"FAILED {{exc.message}}")  # one write: the refill thread logs to stdout too
            time.sleep(4)  # the refill thread, meanwhile, tries to start waiting children
    """, tmp_path)
    out = result.stdout
    assert "FAILED No child process can be started" in out and "--py-sys-executable" in out, result.stderr
    attempts = len(re.findall(r"LOG could not start a waiting child", out))
    print(f"attempts to start a waiting child in 4 s with no Python to start: {attempts}")
    assert 1 <= attempts <= 4  # 1 s, 2 s, 4 s... not one a second for ever


def test_a_note_whose_child_is_gone_is_not_running(tmp_path):
    """SIGKILL a server with a call reporting progress: another worker sees no call running, not a ghost."""
    from handoff_submit_app import create_app

    # A submitted call outlives its web process until its deadline (2.5 s after it was made), then ends.
    with killed_submit_app(tmp_path / "root", "s", timeout="2", queue_timeout="0.5") as remote:
        remote.post("/submit/steps", json=[200, 0.1])
        notes = wait_for(lambda: remote.get("/running").get_json(), what="a progress note")
        folder = remote.get("/folder").get_json()["folder"]
    child = notes[0]["pid"]
    wait_for(lambda: not is_alive(child), timeout=10, what="the orphaned child to stop")
    other = create_app(str(tmp_path / "root"), "s")
    client = other.test_client()
    client.set_cookie("session", next(c.value for c in remote.jar if c.name == "session"))
    assert client.get("/running").get_json() == []
    with other.app_context():
        [ended] = handoff.abandoned(folder)  # for the app to clean up after, once
        assert ended["call"] == notes[0]["call"] and ended["step"].startswith("step ")
        assert handoff.abandoned(folder) == []
    assert not list((tmp_path / "root").rglob("*.progress.json"))


def indented_block(text):
    """The first literal block (``::``) of a reStructuredText or docstring text."""
    lines = text.split("::\n", 1)[1].splitlines()
    block = []
    for line in lines:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_the_docstring_app_runs_as_written(tmp_path):
    """The package's own ten lines (its docstring), run as written."""
    (tmp_path / "quick.py").write_text(indented_block(handoff.__doc__))
    result = python_code(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import quick
        quick.app.instance_path = {str(tmp_path / "instance")!r}
        response = quick.app.test_client().get("/multi")
        print(response.status_code, response.get_json())
    """, tmp_path)
    assert result.stdout.strip() == "200 {'inside_function': 'inside'}", result.stderr


def test_timeouts_and_errors_of_handles_are_handoff_errors(tmp_path):
    from handoff_submit_app import create_app

    app = create_app(str(tmp_path / "root"), "s")
    a = app.test_client()
    a.post("/session", json={})
    call_id = a.post("/submit/steps", json=[2, 0.3]).get_json()["id"]
    cookie = a.get_cookie("session").value
    with app.test_request_context(headers={"Cookie": f"session={cookie}"}):
        kept = handoff.handle(call_id)
        with pytest.raises(handoff.NotFinished):
            kept.result(timeout=0.1)
        assert a.post(f"/result/{call_id}?wait=20").get_json()["value"] == 2  # another request collects it
        with pytest.raises(handoff.AlreadyCollected):
            kept.result()
        with pytest.raises(handoff.NoSuchCall):
            handoff.handle(call_id)
        with pytest.raises(handoff.NoSuchCall):
            handoff.handle("../../../etc/passwd")
    with app.app_context():
        handoff.Handoff.close()



def test_a_note_shows_a_call_before_its_child_and_keeps_its_fields(tmp_path):
    """With one slot taken, a call given a note waits in running(), owned by the web process; its child's
    reports keep the note's fields."""
    import threading

    app = make_app(tmp_path, max_children=1, session_id=lambda: "f" * 24)
    try:
        with app.app_context():
            handoff.Handoff.warm_up()
        busy = threading.Thread(target=app.test_client().post, args=("/run/sleep_and_note",),
                                kwargs={"json": [1.5, str(tmp_path / "pid")]})
        busy.start()
        wait_for(lambda: read_pid(tmp_path / "pid"), what="the first call to start")
        seen = []

        def second():
            with app.test_request_context():
                handoff.run(fns.steps, 3, 0.3, note={"job": "photo.jpg"})

        waiting = threading.Thread(target=second)
        waiting.start()
        with app.app_context():
            while waiting.is_alive():
                seen += [n for n in handoff.running("f" * 24) if n.get("job") == "photo.jpg"]
                time.sleep(0.02)
        busy.join()
        waiting.join()
        queued = [n for n in seen if "step" not in n]
        assert queued and queued[0]["pid"] == os.getpid()  # before a child had it: the web process's lease
        stepped = [n for n in seen if "step" in n]
        assert stepped and all(n["job"] == "photo.jpg" and n["pid"] != os.getpid() for n in stepped)
        with app.app_context():
            assert handoff.running("f" * 24) == [] and handoff.abandoned("f" * 24) == []
    finally:
        with app.app_context():
            handoff.Handoff.close()
