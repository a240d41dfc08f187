"""The JSON API beside the page: a session's jobs, a page at a time, and its running jobs."""

from __future__ import annotations

from flask import Blueprint, abort, request
from flask.typing import ResponseReturnValue

import handoff
import storage

from . import gallery, limits
from .sessions import current_workspace, has_workspace, keep_alive, start_session, sync_jobs

bp = Blueprint("api", __name__, url_prefix="/api")

#: The most jobs one answer of /api/session carries.
MAX_JOBS_PER_ANSWER = 100


@bp.get("/session")
def session_json() -> ResponseReturnValue:
    """Return a page of the session's jobs, oldest first, and the cursor of the next page.

    ``?limit=N`` (1 to 100, 100 by default) and ``?after=<job id>`` (the
    ``next`` of the previous answer); ``next`` is null on the last page.
    A client without a session is given one (and its cookie), so that
    uploads it sends in parallel next all land in it: at most
    ``DARKROOM_CLIENT_SESSION_RATE`` per address, each expiring within the
    hour unless a job is stored in it.
    """
    ws = current_workspace()
    if not has_workspace() and limits.may_start_session():
        start_session(ws)
    jobs = sync_jobs(ws, storage.load_manifest(ws))
    limit_text = request.args.get("limit", str(MAX_JOBS_PER_ANSWER))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_JOBS_PER_ANSWER:
        abort(400, f"limit must be a whole number from 1 to {MAX_JOBS_PER_ANSWER}.")
    limit = int(limit_text)
    after = request.args.get("after")
    start = 0 if after is None else gallery.index_after(jobs, after)
    if start is None:
        abort(400, "The cursor names no job of this session (deleted meanwhile?); start again without it.")
    page = jobs[start:start + limit]
    keep_alive()
    more = start + limit < len(jobs)
    return {"jobs": [gallery.job_json(j) for j in page], "next": page[-1]["id"] if more else None}


@bp.get("/progress")
def progress() -> ResponseReturnValue:
    """Return what the session's running children are doing right now."""
    ws = current_workspace()
    return {"running": [gallery.running_json(n) for n in storage.running_jobs(ws, handoff.running(ws.id))]}
