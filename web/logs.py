"""Logs an operator can search: a request id on every request, in its log lines, its answer and its
errors, and one structured line per job.

The id is the trusted proxy's ``X-Request-ID`` (with ``DARKROOM_PROXY_HOPS``
set, and only if it looks like an id), else a new one. It goes back in the
``X-Request-ID`` header, in every JSON error (``request_id``) and on every
error page, so a user's report finds its log lines. ``DARKROOM_LOG_FORMAT=json``
writes each job's line as one JSON object.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request, session
from flask.logging import default_handler

import handoff

#: What a proxy's id may look like to be taken as it is: no spaces, no quotes, no control characters.
_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")

log = logging.getLogger("darkroom.jobs")


def request_id() -> str:
    """This request's id (``-`` outside a request)."""
    return g.get("request_id", "-") if has_request_context() else "-"


def _take_request_id() -> None:
    sent = request.headers.get("X-Request-ID", "")
    trusted = current_app.config["DARKROOM_PROXY_HOPS"] > 0 and _ID.fullmatch(sent)
    g.request_id = sent if trusted else secrets.token_hex(8)


def _send_request_id(response: Response) -> Response:
    response.headers["X-Request-ID"] = request_id()
    return response


class _WithRequestId(logging.Filter):
    """Give every record a ``request_id`` (the current request's, or ``-``) for the format to show."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True


def session_hash() -> str:
    """A short hash of the session's id, to follow one session through the log without its id (a secret)."""
    sid = getattr(session, "sid", None) if has_request_context() else None
    return hashlib.sha256(f"darkroom-log:{sid}".encode()).hexdigest()[:12] if sid else "-"


def log_job(fields: dict[str, Any]) -> None:
    """One line for a job, whatever its outcome: key=value pairs, or a JSON object with ``DARKROOM_LOG_FORMAT=json``."""
    record = {"event": "job", **fields, "request_id": request_id(), "session": session_hash()}
    if current_app.config["DARKROOM_LOG_FORMAT"] == "json":
        log.info("%s", json.dumps(record, separators=(",", ":"), default=str))
    else:  # "job 3f2a... ops=sepia status=done duration_ms=812.0 ..."
        log.info("job %s %s", record["id"], " ".join(f"{k}={v}" for k, v in record.items() if k not in ("event", "id")))


def _keep_call(record: handoff.CallRecord) -> None:
    """Keep the request's latest handoff call (its queue wait, its child's peak RSS) for the job's line."""
    if has_request_context():
        g.handoff_call = record


#: The loggers whose lines go to stderr like Flask's own log: one line per job and per call, and the
#: limits' storage going away and coming back (not each refusal).
LOGGERS = (("darkroom", logging.INFO), ("handoff", logging.INFO), ("flask-limiter", logging.WARNING))


def init_app(app: Flask) -> None:
    """Give every request an id, and every log line of Flask's handler the id of its request."""
    for name, level in LOGGERS:
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(default_handler)
            logger.setLevel(level)
    app.before_request(_take_request_id)
    app.after_request(_send_request_id)
    with app.app_context():
        handoff.on_call(_keep_call)
    if not any(isinstance(f, _WithRequestId) for f in default_handler.filters):
        default_handler.addFilter(_WithRequestId())
        default_handler.setFormatter(logging.Formatter(
            "[%(asctime)s] %(levelname)s in %(module)s [%(request_id)s]: %(message)s"))
