"""The session's workspace and what the session row carries: the workspace id, the newest jobs, when it was seen."""

from __future__ import annotations

import time

from flask import current_app, g, session

import storage

WORKSPACE_KEY = "_workspace"
SEEN_KEY = "_seen"
#: How often looking at the gallery pushes the session's expiry back (one write each time).
KEEP_ALIVE_SECONDS = 3600


def workspace_for(workspace_id: str) -> storage.Workspace:
    """Return the workspace with this id under the configured storage root."""
    config = current_app.config
    return storage.Workspace(
        config["DARKROOM_STORAGE_ROOT"], workspace_id, config["DARKROOM_LOCK_TYPE"]
    )


def current_workspace() -> storage.Workspace:
    """Return this session's workspace, or a new one if the session has none yet.

    A new workspace id is kept in the session only once something is stored
    in it (:func:`keep_workspace`), so a client that never uploads, or whose
    uploads are refused, never gets a session row. The id is random; the
    cookie's value never names a path.
    """
    workspace_id = session.get(WORKSPACE_KEY)
    if not workspace_id or not storage.is_valid_id(workspace_id):
        workspace_id = g.setdefault("new_workspace_id", storage.new_id())
    return workspace_for(workspace_id)


def workspace_id() -> str:
    """The id of this session's workspace (where ``handoff`` keeps the session's call records)."""
    return current_workspace().id


def has_workspace() -> bool:
    """Whether this session has a workspace of its own yet."""
    return WORKSPACE_KEY in session


def start_session(ws: storage.Workspace) -> None:
    """Give this client a session now, holding only ``ws``'s id, for a client that asked for one.

    Its next requests then share it: uploads an API client sends in
    parallel after ``/api/session``, the page's progress polls during its
    first upload. Such a row expires within the hour unless a job is stored
    in it meanwhile (:func:`web.store.expire_unused_session`).
    """
    keep_workspace(ws)
    g.started_session = True


def keep_workspace(ws: storage.Workspace) -> None:
    """Remember ``ws`` as this session's workspace (it now holds something)."""
    if session.get(WORKSPACE_KEY) != ws.id:
        session[WORKSPACE_KEY] = ws.id


def sync_jobs(ws: storage.Workspace, manifest: storage.Manifest) -> list[storage.Job]:
    """Make the session's list of newest jobs match the manifest, the locked source of truth; return all jobs.

    ``handoff``'s merging save keeps the keys concurrent requests set, but two
    that both set ``jobs`` meet on one key and the later one wins, perhaps
    with a list read before the other's job was recorded; the manifest cannot
    lose a job, so every view reads it and repairs the list from it.
    """
    jobs = manifest["jobs"]
    if jobs:
        keep_workspace(ws)
    # The row carries the newest jobs only: it is read and written with every
    # request, so its size must not grow with the gallery (the manifest has them all).
    recent = jobs[max(0, len(jobs) - current_app.config["DARKROOM_SESSION_JOBS"]):]
    if session.get("jobs", []) != recent:
        session["jobs"] = recent
    return jobs


def lifetime_days() -> int:
    """How many days a session (and so its images) lives after its owner's last visit."""
    return round(current_app.permanent_session_lifetime.total_seconds() / 86400)


def keep_alive() -> None:
    """Push the session's expiry back when its owner looks at the gallery.

    A request that changes nothing saves nothing (``SESSION_REFRESH_EACH_REQUEST``
    is off, and ``handoff``'s merging save never writes an unchanged session);
    marking it seen at most once an hour renews the row's expiry and the
    cookie's at the cost of one write.
    """
    if not has_workspace():
        return
    # A session saved anyway (modified) gets its new expiry for free: note it, so the next look does not write.
    if session.modified or session.get(SEEN_KEY, 0) < time.time() - KEEP_ALIVE_SECONDS:
        session[SEEN_KEY] = int(time.time())


def start_over() -> None:
    """Forget everything but the (now empty) workspace, under a new session id.

    Flask-Session deletes the old row, so an id planted in a browser earlier
    stops working.
    """
    # Not "_permanent", Flask's mark of a session that outlives the browser: the new cookie keeps its Expires.
    for key in [k for k in session if k not in (WORKSPACE_KEY, "_permanent")]:
        del session[key]
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
