"""The three routes of the original question: writing to the session from a child."""

from __future__ import annotations

from flask import Blueprint, render_template, session
from flask.typing import ResponseReturnValue

import handoff

from . import seed_child
from .sessions import current_workspace, keep_workspace, lifetime_days

bp = Blueprint("seed", __name__)


def visible_items() -> str:
    """Return ``dict_items([...])`` of the session's own keys (Darkroom's ``_``-keys hidden)."""
    return str({k: v for k, v in session.items() if not k.startswith("_") and k != "jobs"}.items())


@bp.get("/about")
def about() -> ResponseReturnValue:
    """Explain what Darkroom is for, and what the three demo pages show developers."""
    return render_template("seed/about.html", lifetime_days=lifetime_days())


@bp.get("/baseline")
def baseline() -> ResponseReturnValue:
    """Call ``write_to_session`` in the web process: it can write to the session directly."""
    session["outside_function"] = "outside"
    initial = visible_items()
    seed_child.write_to_session(session)
    return render_template("seed/session.html", mode="in-process", initial=initial, after=visible_items())


@bp.get("/multi")
def multi() -> ResponseReturnValue:
    """Call ``write_to_session`` in a child; ``handoff`` applies its write to the session after ``join()``."""
    session["outside_function"] = "outside"
    initial = visible_items()
    keep_workspace(current_workspace())  # the call's record goes into the session's workspace
    handoff.run(seed_child.write_to_session, session)
    return render_template("seed/session.html", mode="child process", initial=initial, after=visible_items())


@bp.get("/value")
def value() -> ResponseReturnValue:
    """Get a string back from a child (what ``Value(c_wchar_p)`` cannot do)."""
    after = handoff.run(seed_child.return_value)
    return render_template("seed/value.html", initial="Hello initial!", after=after)
