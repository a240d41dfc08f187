"""Limits per client and per session, so one anonymous client cannot fill the server.

Rates and byte budgets per client address are Flask-Limiter's (its storage,
``RATELIMIT_STORAGE_URI``, must be shared by every process that serves the
app: Redis for several workers or nodes). The session quota and the free-disk
reserve are checked here, from the manifest and the file system, before the
upload is read.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many
from werkzeug.exceptions import HTTPException

import storage

from . import metrics

LIMITER_KEY = "darkroom.limiter"
#: Views that start a child: they share one job rate per client.
CHILD_VIEWS = ("jobs.create", "seed.multi", "seed.value")
#: Views that stream a ZIP archive: they share one rate per client.
ZIP_VIEWS = ("files.download_job", "files.download_all")
#: The names of the counters the job rate and the ZIP rate keep per address.
JOB_SCOPE, ZIP_SCOPE = "jobs", "zips"


class InsufficientStorage(HTTPException):
    """507: there is no room to keep what the client sent."""

    code = 507
    description = "The server's storage is full; please try again later."


def human_size(n: float) -> str:
    """Return a byte count for people: ``1 GB``, ``40 MB``, ``6.9 MB``, ``512 kB``, ``200 bytes``.

    The one convention of every size Darkroom shows, its pages' script included
    (static/upload.js): 1 kB is 1,024 bytes, 1 MB is 1,024 kB.
    """
    for unit, size in (("GB", 1024**3), ("MB", 1024**2)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    if n < 1024:
        return f"{n:.0f} bytes"
    return f"{n / 1024:.0f} kB"


def job_rate() -> str:
    """The ``DARKROOM_CLIENT_JOB_RATE`` limit string, e.g. ``60 per minute; 600 per hour``."""
    return str(current_app.config["DARKROOM_CLIENT_JOB_RATE"])


def session_rate() -> str:
    """The ``DARKROOM_CLIENT_SESSION_RATE`` limit string: new sessions one address may start."""
    return str(current_app.config["DARKROOM_CLIENT_SESSION_RATE"])


def zip_rate() -> str:
    """The ``DARKROOM_CLIENT_ZIP_RATE`` limit string: ZIP downloads one address may ask for."""
    return str(current_app.config["DARKROOM_CLIENT_ZIP_RATE"])


def take(rate: str, scope: str) -> int | None:
    """Count one against this client address's ``rate`` in ``scope``: None if it fits, else the seconds to wait.

    The counters are the ones Flask-Limiter's decorators keep (the same
    storage and keys), so a view's own charges and its decorator's add up.
    Nothing is counted when the one would not fit. The check fails open: if
    the limits' storage cannot be reached, the one is let through (and the
    outage is logged).
    """
    if not current_app.config["RATELIMIT_ENABLED"]:
        return None
    limiter = current_app.extensions[LIMITER_KEY]
    identifiers = (get_remote_address(), scope)
    items = parse_many(rate)
    try:
        full = [item for item in items if not limiter.limiter.test(item, *identifiers)]
        if full:
            reset = max(limiter.limiter.get_window_stats(item, *identifiers).reset_time for item in full)
            return max(1, int(reset - time.time()))
        for item in items:
            limiter.limiter.hit(item, *identifiers)
    except Exception as exc:  # the storage's own error types (redis, memcached) vary
        current_app.logger.warning("%s limit not checked: %s: %s", scope, type(exc).__name__, exc)
    return None


def may_start_session() -> bool:
    """Whether this client address may be given one more new session now.

    Past ``DARKROOM_CLIENT_SESSION_RATE``, a client asking for a session
    (``/api/session``) is answered without one, so a flood of them writes
    no rows; its first stored upload starts one anyway.
    """
    if take(session_rate(), "new-session") is None:
        return True
    metrics.count_refusal("new_session")
    return False


def try_again_in(seconds: int) -> str:
    """How a refusal tells its wait: "Please try again in 54 s." or "... in 12 minutes."."""
    wait = f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} minutes"
    return f"Please try again in {wait}."


def too_many_photos() -> str:
    """The refusal of a job past the job rate."""
    return f"Too many photos from your address (the limit is {job_rate()})."


def byte_budget() -> str:
    """The ``DARKROOM_CLIENT_BYTES_PER_HOUR`` budget as a limit string."""
    return f"{int(current_app.config['DARKROOM_CLIENT_BYTES_PER_HOUR'])} per hour"


def stored_bytes() -> int:
    """What a job costs the byte budget.

    Before the view runs, the upload's size (a request that cannot fit is
    refused unread); after it, everything the job stored, source and outputs.
    """
    return int(g.get("stored_bytes", request.content_length or 1))


def job_was_stored(_response: object) -> bool:
    """Charge the byte budget only for jobs that were kept."""
    return "stored_bytes" in g


def check_free_disk() -> None:
    """Refuse an upload that would leave less than ``DARKROOM_MIN_FREE_MB`` free (always on)."""
    root = Path(current_app.config["DARKROOM_STORAGE_ROOT"])
    root.mkdir(parents=True, exist_ok=True)
    reserve = current_app.config["DARKROOM_MIN_FREE_MB"] * 1024**2
    if shutil.disk_usage(root).free - (request.content_length or 0) < reserve:
        current_app.logger.warning("upload refused: less than %s free under %s", human_size(reserve), root)
        metrics.count_refusal("disk_reserve")
        raise InsufficientStorage()


def check_session_quota(ws: storage.Workspace) -> None:
    """Refuse an upload that would take the session past ``DARKROOM_SESSION_QUOTA_MB``."""
    if not current_app.config["DARKROOM_CLIENT_LIMITS"]:
        return
    quota = current_app.config["DARKROOM_SESSION_QUOTA_MB"] * 1024**2
    used = storage.stored_bytes(storage.load_manifest(ws))
    if used + (request.content_length or 0) > quota:
        metrics.count_refusal("session_quota")
        raise InsufficientStorage(
            f"Your images use {human_size(used)} of the {human_size(quota)} a session may keep; "
            "delete some photos to make room."
        )


def retry_after(app: Flask) -> int:
    """Seconds until the limit this request broke lets the client in again."""
    breached = app.extensions[LIMITER_KEY].current_limit
    return max(1, int(breached.reset_at - time.time())) if breached else 60


def init_app(app: Flask) -> None:
    """Put the per-client limits on the views that start children and store files."""
    app.config["RATELIMIT_ENABLED"] = bool(app.config["DARKROOM_CLIENT_LIMITS"])
    # One limiter per app (like the SQLAlchemy object): its storage and
    # switches are the app's own, never shared with another app in the process.
    limiter = Limiter(get_remote_address, app=app, strategy="fixed-window", headers_enabled=False)
    app.extensions[LIMITER_KEY] = limiter
    # A request is charged one job here; a form carrying several files is charged the rest
    # file by file as it goes (web/jobs.py), so the rate counts jobs, not requests.
    jobs = limiter.shared_limit(job_rate, scope=JOB_SCOPE, error_message=too_many_photos)
    zips = limiter.shared_limit(
        zip_rate, scope=ZIP_SCOPE,
        error_message=lambda: f"Too many downloads of ZIP archives from your address (the limit is {zip_rate()}).",
    )
    budget = limiter.limit(
        byte_budget, cost=stored_bytes, deduct_when=job_was_stored,
        error_message=lambda: (
            "Your address has stored its "
            f"{human_size(current_app.config['DARKROOM_CLIENT_BYTES_PER_HOUR'])} for this hour."
        ),
    )
    # Flask-Limiter's decorators are typed for async views too; these views are plain ones.
    for endpoint in CHILD_VIEWS:
        app.view_functions[endpoint] = jobs(app.view_functions[endpoint])  # type: ignore[assignment]
    for endpoint in ZIP_VIEWS:
        app.view_functions[endpoint] = zips(app.view_functions[endpoint])  # type: ignore[assignment]
    app.view_functions["jobs.create"] = budget(app.view_functions["jobs.create"])  # type: ignore[assignment]
