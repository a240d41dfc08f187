"""One place that turns every failure into a message a person understands."""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from flask import (
    Flask,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException

import handoff
import imaging
import storage

from .limits import InsufficientStorage, human_size, retry_after

MESSAGES = {
    404: "Nothing here: this address does not exist, or belongs to another session.",
    405: "This address does not accept {method} requests.",
    413: "The upload is larger than the limit of {limit}.",
    500: "Something went wrong on the server. Nothing was saved; please try again.",
}


def wants_json() -> bool:
    """Whether the client prefers JSON to HTML (API paths always do)."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def opened_session() -> Any:
    """The request's session, or None if it could not be opened (its store is down)."""
    try:
        return session._get_current_object()  # type: ignore[attr-defined]
    except AssertionError:  # Flask: "The session has not yet been opened."
        return None


def has_session() -> bool:
    """Whether the request's session holds anything (a client without one has an empty session)."""
    return bool(opened_session())


def error_response(status: int, message: str, headers: dict[str, str] | None = None, *, can_flash: bool = True):
    """Answer an error as JSON, as a flash message on the form, or as an error page."""
    if wants_json():
        response = jsonify(error=message)
    elif request.method == "POST" and status != 403 and can_flash and has_session():
        # A form post: show the message next to the form, keep the gallery.
        # A refused cross-site post, or one from a client that has no session
        # yet, gets a plain error page: it must not write a session row.
        flash(message, "error")
        return redirect(url_for("jobs.index"), 303)
    else:
        response = current_app.make_response(
            (render_template("error.html", status=status, message=message), status)
        )
    response.status_code = status
    response.headers.update(headers or {})
    return response


def form_too_large() -> str | None:
    """Say which form limit a 413 for a body within ``MAX_CONTENT_LENGTH`` came from, or None."""
    config = current_app.config
    size, limit = request.content_length, config["MAX_CONTENT_LENGTH"]
    if size is None or not limit or size > limit:
        return None
    return (
        f"The form is too large: at most {config['MAX_FORM_PARTS']:,} fields, "
        f"and at most {human_size(config['MAX_FORM_MEMORY_SIZE'])} in a field other than the image."
    )


#: What SQLAlchemy raises when the session database is locked, gone or restarting.
DATABASE_UNAVAILABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.PendingRollbackError)


def _database_busy(exc: Exception):
    """503 for a session database that did not answer in time, saying what is known to be saved."""
    current_app.logger.warning("session database unavailable: %s", exc)
    job = g.get("saved_job")
    message = (
        f"Your image was processed and saved ({job}), but the session store is busy; "
        "reload the page in a few seconds to see it."
        if job else "The session store is busy; please try again in a few seconds."
    )
    # Do not try to save the session again for this answer (Flask-Session
    # retries each query three times): the manifest repairs it next time.
    if (current := opened_session()) is not None:
        current.modified = False
    # Not as a flash message either: saving one would need the database that just failed.
    return error_response(503, message, {"Retry-After": "5"}, can_flash=False)


def _http_error(exc: HTTPException):
    if isinstance(getattr(exc, "original_exception", None), DATABASE_UNAVAILABLE):
        return _database_busy(exc.original_exception)  # type: ignore[attr-defined]
    if exc.code == 413 and (message := form_too_large()):
        return error_response(413, message)
    if exc.code == 500 and g.get("saved_job"):
        return error_response(500, saved_but_failed())
    template = MESSAGES.get(exc.code or 500)
    if template and (exc.description == type(exc).description or exc.code in (413, 500)):
        limit = current_app.config["MAX_CONTENT_LENGTH"] or 0
        message = template.format(method=request.method, limit=human_size(limit))
    else:
        message = exc.description or exc.name
    return error_response(exc.code or 500, message)


def _too_many(exc: RateLimitExceeded):
    seconds = retry_after(current_app)
    wait = f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} minutes"
    return error_response(429, f"{exc.description} Please try again in {wait}.", {"Retry-After": str(seconds)})


STORAGE_FULL = InsufficientStorage.description


def _os_error(exc: OSError):
    if storage.is_disk_full(exc):
        current_app.logger.error("storage full: %s", exc)
        return error_response(507, STORAGE_FULL)
    return _unexpected(exc)


def _child_failed(exc: handoff.ChildFailed):
    if exc.errno in storage.DISK_FULL_ERRNOS:
        return error_response(507, STORAGE_FULL)
    return error_response(500, child_failure_message(exc))


def child_failure_message(exc: handoff.ChildFailed) -> str:
    """Say what happened in the child, without its details (they are in the log)."""
    if exc.out_of_memory:
        return f"The image needs more memory than a job may use ({current_app.config['HANDOFF_MEMORY_MB']} MB)."
    if exc.type_name:
        return f"Processing failed inside the image worker ({exc.type_name})."
    if exc.exitcode is not None and exc.exitcode < 0:
        return f"The image worker was killed by signal {-exc.exitcode}."
    return exc.message


def saved_but_failed() -> str:
    """The 500 message once the request's job is saved: "nothing was saved" would be untrue."""
    return (f"Your image was processed and saved ({g.saved_job}), but answering failed; "
            "reload the page to see it.")


def _unexpected(exc: Exception):
    current_app.logger.exception("unhandled error", exc_info=exc)
    return error_response(500, saved_but_failed() if g.get("saved_job") else MESSAGES[500])


def init_app(app: Flask) -> None:
    """Register the error handlers: handoff/imaging/storage exceptions map to HTTP here only."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(RateLimitExceeded, _too_many)
    app.register_error_handler(imaging.BadImage, lambda e: error_response(400, str(e)))
    app.register_error_handler(
        handoff.Busy,
        lambda e: error_response(
            503, "The server is busy with other images; please try again in a few seconds.",
            {"Retry-After": str(e.retry_after)},
        ),
    )
    app.register_error_handler(
        handoff.Timeout, lambda e: error_response(504, f"The job took longer than {e.timeout:g} s and was stopped.")
    )
    app.register_error_handler(handoff.ChildFailed, _child_failed)
    app.register_error_handler(OSError, _os_error)
    for exc_class in DATABASE_UNAVAILABLE:
        app.register_error_handler(exc_class, _database_busy)
    app.register_error_handler(storage.NotFound, lambda e: error_response(404, MESSAGES[404]))
    app.register_error_handler(Exception, _unexpected)
