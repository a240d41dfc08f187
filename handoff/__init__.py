"""Run a function in a fresh child process from a Flask view; get its value and its session writes back.

::

    from flask import Flask, session
    from handoff import Handoff, run

    app = Flask(__name__)
    app.secret_key = "change me"           # sessions need a secret key
    Handoff(app)

    def write_to_session(session):        # at module level: the child imports it by name
        session["inside_function"] = "inside"

    @app.get("/multi")
    def multi():
        run(write_to_session, session)    # the child's write lands in flask.session
        return dict(session)

The child makes one call and exits, so the memory it touched goes back to
the system. Imports neither Pillow nor anything of the app that uses it.
"""

from ._child import CallRecord, report
from ._extension import (
    Handoff,
    RemoteTraceback,
    abandoned,
    check_importable,
    default_max_children,
    on_call,
    run,
    running,
    status,
)
from ._submit import Handle, handle, submit
from .errors import AlreadyCollected, Busy, ChildFailed, HandoffError, NoSuchCall, NotFinished, Timeout

__version__ = "1.2.0"

__all__ = [
    "AlreadyCollected",
    "Busy",
    "CallRecord",
    "ChildFailed",
    "Handle",
    "Handoff",
    "HandoffError",
    "NoSuchCall",
    "NotFinished",
    "RemoteTraceback",
    "Timeout",
    "abandoned",
    "check_importable",
    "default_max_children",
    "handle",
    "report",
    "run",
    "on_call",
    "running",
    "status",
    "submit",
]
