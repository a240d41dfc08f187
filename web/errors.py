"""One place that turns every failure into a message a person understands."""

from __future__ import annotations

import secrets
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
from flask.typing import ResponseReturnValue
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

import handoff
import imaging
import storage

from . import logs, metrics
from .limits import JOB_SCOPE, ZIP_SCOPE, InsufficientStorage, human_size, retry_after, try_again_in

MESSAGES = {
    404: "Nothing here: this address does not exist, or belongs to another session.",
    405: "This address does not accept {method} requests.",
    413: "The upload is larger than the limit of {limit}.",
    500: "This is a bug in Darkroom, not a problem with your file or your connection, and trying again "
         "will not help. Nothing was saved. If you report it, quote error {error_id}.",
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


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, *, can_flash: bool = True, **fields: str,
) -> Response:
    """Answer an error as JSON (``{"error": message, **fields}``), as a flash message on the form, or as a page.

    ``fields`` are machine-readable details: ``kind`` (a refusal's class), ``error_id`` (a bug's log id).
    """
    fields = {**fields, "request_id": logs.request_id()}
    if wants_json():
        response = jsonify(error=message, **fields)
    elif request.method == "POST" and status != 403 and can_flash and has_session():
        # A form post: show the message next to the form, keep the gallery.
        # A refused cross-site post, or one from a client that has no session
        # yet, gets a plain error page: it must not write a session row.
        flash(message, "error")
        return redirect(url_for("gallery.index"), 303)
    else:
        response = current_app.make_response(
            (render_template("error.html", status=status, message=message, request_id=fields["request_id"]), status)
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


def _database_busy(exc: Exception) -> ResponseReturnValue:
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


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    if isinstance(getattr(exc, "original_exception", None), DATABASE_UNAVAILABLE):
        return _database_busy(exc.original_exception)  # type: ignore[attr-defined]
    if exc.code == 413 and (message := form_too_large()):
        return error_response(413, message)
    if exc.code == 500:
        return _unexpected(getattr(exc, "original_exception", None) or exc)
    template = MESSAGES.get(exc.code or 500)
    if template and (exc.description == type(exc).description or exc.code == 413):
        limit = current_app.config["MAX_CONTENT_LENGTH"] or 0
        message = template.format(method=request.method, limit=human_size(limit))
    else:
        message = exc.description or exc.name
    return error_response(exc.code or 500, message)


#: The metrics' name of each rate by its counter's scope; the byte budget has none.
RATE_NAMES = {JOB_SCOPE: "job_rate", ZIP_SCOPE: "zip_rate"}


def _too_many(exc: RateLimitExceeded) -> ResponseReturnValue:
    metrics.count_refusal(RATE_NAMES.get(str(exc.limit.scope), "bytes"))
    seconds = retry_after(current_app)
    return error_response(429, f"{exc.description} {try_again_in(seconds)}", {"Retry-After": str(seconds)})


STORAGE_FULL = InsufficientStorage.description


def _os_error(exc: OSError) -> ResponseReturnValue:
    if storage.is_disk_full(exc):
        current_app.logger.error("storage full: %s", exc)
        return error_response(507, STORAGE_FULL)
    return _unexpected(exc)


def _child_failed(exc: handoff.ChildFailed) -> ResponseReturnValue:
    if exc.errno in storage.DISK_FULL_ERRNOS:
        return error_response(507, STORAGE_FULL)
    if exc.out_of_memory:
        limit = current_app.config["HANDOFF_MEMORY_MB"]
        return error_response(500, f"The image needs more memory than one photo may use ({limit} MB).",
                              kind="out_of_memory")
    if exc.exitcode is not None and exc.exitcode < 0 and not exc.type_name:
        return error_response(500, f"The image worker was killed by signal {-exc.exitcode}; nothing was saved.",
                              kind="killed")
    # An exception in the child's own code is a bug: logged with its traceback under an id.
    error_id = log_bug(exc, exc.traceback)
    return error_response(500, bug_message(error_id), error_id=error_id)


def log_bug(exc: BaseException, child_traceback: str | None = None) -> str:
    """Log an unexpected exception with its traceback (the child's too) under a new id; return the id."""
    error_id = secrets.token_hex(6)
    current_app.logger.error("error %s: %s %s%s", error_id, request.method, request.path,
                             f"; in the child:\n{child_traceback}" if child_traceback else "", exc_info=exc)
    return error_id


def bug_message(error_id: str) -> str:
    """The 500 message for a bug: "saved" when the request's job was saved, and the id to quote."""
    if g.get("saved_job"):
        return saved_but_failed() + f" (Error {error_id}.)"
    return MESSAGES[500].format(error_id=error_id)


def saved_but_failed() -> str:
    """The 500 message once the request's job is saved: "nothing was saved" would be untrue."""
    return (f"Your image was processed and saved ({g.saved_job}), but answering failed; "
            "reload the page to see it.")


def _unexpected(exc: BaseException) -> ResponseReturnValue:
    error_id = log_bug(exc)
    return error_response(500, bug_message(error_id), error_id=error_id)


def init_app(app: Flask) -> None:
    """Register the error handlers: handoff/imaging/storage exceptions map to HTTP here only."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(RateLimitExceeded, _too_many)
    app.register_error_handler(imaging.BadImage, lambda e: error_response(e.status, str(e), kind=e.kind))
    app.register_error_handler(
        handoff.Busy,
        lambda e: error_response(
            503, "The server is busy with other images; please try again in a few seconds.",
            {"Retry-After": str(e.retry_after)},
        ),
    )
    app.register_error_handler(
        handoff.Timeout,
        lambda e: error_response(504, f"Processing this photo took longer than {e.timeout:g} s and was stopped."),
    )
    app.register_error_handler(handoff.ChildFailed, _child_failed)
    app.register_error_handler(OSError, _os_error)
    for exc_class in DATABASE_UNAVAILABLE:
        app.register_error_handler(exc_class, _database_busy)
    app.register_error_handler(storage.NotFound, lambda e: error_response(404, MESSAGES[404]))
    app.register_error_handler(Exception, _unexpected)
