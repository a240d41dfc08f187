"""The three routes of the original question: writing to the session from a child."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, session

import storage
from imaging import JobFailed, child, mp_context
from imaging.processes import describe_exit

from .sessions import current_workspace, keep_workspace

bp = Blueprint("seed", __name__)


def visible_items() -> str:
    """Return ``dict_items([...])`` of the session's own keys (Darkroom's ``_``-keys hidden)."""
    return str({k: v for k, v in session.items() if not k.startswith("_") and k != "jobs"}.items())


@bp.get("/baseline")
def baseline():
    """Call ``write_to_session`` in the web process: it can write to the session directly."""
    session["outside_function"] = "outside"
    initial = visible_items()
    child.write_to_session(session)
    return render_template("seed/session.html", mode="in-process", initial=initial, after=visible_items())


@bp.get("/multi")
def multi():
    """Call ``write_to_session`` in a child; its write comes back through the locked manifest."""
    session["outside_function"] = "outside"
    initial = visible_items()
    ws = current_workspace()
    keep_workspace(ws)
    proc = mp_context().Process(target=child.write_to_manifest, args=(ws,))
    proc.start()
    # The child takes the workspace lock itself; the parent holds none while it waits.
    proc.join(current_app.config["DARKROOM_JOB_TIMEOUT"])
    if proc.exitcode != 0:
        proc.kill()
        raise JobFailed(describe_exit(proc.exitcode))
    session.update(storage.load_manifest(ws)["values"])
    return render_template("seed/session.html", mode="child process", initial=initial, after=visible_items())


@bp.get("/value")
def value():
    """Get a string back from a child through a Pipe (what ``Value(c_wchar_p)`` cannot do)."""
    initial = "Hello initial!"
    ctx = mp_context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child.return_value, args=(sender,))
    proc.start()
    sender.close()
    # Read before join(): a child blocked writing to a full pipe would never exit.
    if not receiver.poll(current_app.config["DARKROOM_JOB_TIMEOUT"]):
        proc.kill()
    try:
        result = receiver.recv()
    except EOFError:
        result = None
    proc.join()
    if result is None:
        raise JobFailed(describe_exit(proc.exitcode))
    return render_template("seed/value.html", initial=initial, after=result)
