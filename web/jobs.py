"""Submitting image jobs, and deleting them."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException

import handoff
import imaging
import storage
from imaging.job import JobSpec, run_job

from . import choices, gallery, limits, logs, metrics
from .errors import wants_json
from .names import display_name
from .sessions import current_workspace, has_workspace, keep_alive, start_over, sync_jobs
from .uploads import keep_upload

bp = Blueprint("jobs", __name__)

_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")
def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` (the page sends one per chosen file), or None."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        abort(400, "The Idempotency-Key header must be 1 to 100 letters, digits, '-' or '_'.")
    return key


def replay(ws: storage.Workspace, key: str) -> ResponseReturnValue | None:
    """Answer a retried upload: the job its key already made, or 409 while that job still runs."""
    manifest = storage.load_manifest(ws)
    job = next((j for j in manifest["jobs"] if j.get("idempotency_key") == key), None)
    if job is not None:
        sync_jobs(ws, manifest)
        if wants_json():
            return jsonify(gallery.job_json(job)), 200, {"Idempotent-Replayed": "true"}
        flash(done_message(job, "Already done"), "success")
        return redirect(url_for("gallery.index"), 303)
    if any(note.get("idempotency_key") == key for note in storage.running_jobs(ws, handoff.running(ws.id), manifest)):
        abort(409, "This upload is still being processed; its result will be in the gallery shortly.")
    return None


def requested_ops() -> list[str]:
    """Return the ops asked for, canonical and deduplicated, in order.

    An op may carry its argument after a colon (``thumbnail:640``, the API's
    way), or in the form's ``arg-<op>`` fields, joined with commas
    (``arg-resize=800x600`` and ``arg-resize=cover``). A request with no
    ``ops`` field gets the default set; one whose ``ops`` fields are all
    empty (the form sends an empty one, so unticking every box says so)
    gets a 400.
    """
    if "ops" not in request.form:
        return list(imaging.DEFAULT_OPS)
    asked = [text for text in request.form.getlist("ops") if text.strip()]
    if not asked:
        abort(400, "Choose at least one operation.")
    with_args = []
    for text in asked:
        args = [a.strip() for a in request.form.getlist(f"arg-{text}") if a.strip()]
        with_args.append(f"{text}:{','.join(args)}" if args and ":" not in text else text)
    try:
        return [call.spec for call in imaging.parse_ops(with_args)]
    except imaging.BadOp as exc:
        abort(400, str(exc))


def requested_encoding() -> imaging.EncodingFields:
    """Return the ``format``, ``quality``, ``metadata`` and ``colour`` fields, checked, as Encoding fields."""
    form = request.form
    try:
        encoding = imaging.parse_encoding(form.get("format"), form.get("quality"), form.get("metadata"),
                                          form.get("colour"))
    except imaging.BadEncoding as exc:
        abort(400, str(exc))
    return encoding.fields()


#: How long a request may hold a new job's directory: longer than an upload, its wait and its call take.
JOB_HOLD_SECONDS = 3600.0


def accept_upload(
    ws: storage.Workspace, job_id: str, upload: FileStorage, ops: list[str], encoding: imaging.EncodingFields,
) -> storage.Upload:
    """Stream the upload into a new job directory, read its header and check its outputs fit their format.

    Returns the source description; on any refusal the directory is gone again.
    """
    job_dir = ws.create_job_dir(job_id, hold_for=JOB_HOLD_SECONDS)
    try:
        path = job_dir / "upload"
        keep_upload(upload, path)
        size = path.stat().st_size
        if size == 0:
            raise imaging.BadImage("The uploaded file is empty.")
        header = imaging.probe(path, current_app.config["DARKROOM_MAX_PIXELS"])
        # A chosen format too small for an output is refused before any child starts.
        imaging.check_encodable(imaging.parse_ops(ops), (header["width"], header["height"]),
                                imaging.Encoding(**encoding))
        source_file = "source." + imaging.extension(header["format"])
        path.rename(job_dir / source_file)
    except BaseException:
        ws.remove_job_dir(job_id)
        raise
    return {"name": display_name(upload.filename), "file": source_file, "bytes": size, **header}


def outcome_of(exc: BaseException) -> str:
    """What a job that ended in ``exc`` counts as in the metrics (``refused_damaged``, ``timeout``...)."""
    if isinstance(exc, imaging.BadImage):
        return f"refused_{exc.kind}"
    if isinstance(exc, handoff.Timeout | handoff.Busy):
        return "timeout" if isinstance(exc, handoff.Timeout) else "busy"
    if isinstance(exc, handoff.ChildFailed):
        if exc.errno in storage.DISK_FULL_ERRNOS:
            return "storage_full"
        if exc.out_of_memory:
            return "out_of_memory"
        if exc.exitcode is not None and exc.exitcode < 0 and not exc.type_name:
            return "killed"
    if isinstance(exc, OSError) and storage.is_disk_full(exc):
        return "storage_full"
    return "failed"


def make_job(
    ws: storage.Workspace, upload: FileStorage, ops: list[str], encoding: imaging.EncodingFields, key: str | None,
) -> storage.Job:
    """Store one uploaded file, render its derivatives in a child and return the job it recorded.

    Whatever happens, the job is counted in the metrics and gets one log line.
    """
    started = time.perf_counter()
    facts: dict[str, Any] = {}  # what _make_job learnt before it ended: the job's id, bytes in, child time
    outcome = "failed"
    job: storage.Job | None = None
    try:
        job = _make_job(ws, upload, ops, encoding, key, facts)
        outcome = "done"
        return job
    except Exception as exc:
        outcome = outcome_of(exc)
        raise
    finally:
        stored = job["source"]["bytes"] + sum(o["bytes"] for o in job["outputs"]) if job else 0
        metrics.count_job(outcome)
        metrics.count_stored(stored)
        call = g.pop("handoff_call", None) or {}
        logs.log_job({
            "id": facts.get("job_id", "-"), "ops": ",".join(ops), "status": outcome,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "queue_ms": round(call["queue_seconds"] * 1000, 1) if call.get("queue_seconds") is not None else "-",
            "child_ms": facts.get("child_ms", "-"), "threads": facts.get("threads") or "-",
            "bytes_in": facts.get("bytes_in", "-"),
            "bytes_out": stored - job["source"]["bytes"] if job else 0,
            "peak_rss_kb": call.get("peak_rss_kb") or "-", "child_pid": call.get("child_pid") or "-",
            "mode": current_app.config["HANDOFF_MODE"], "web_pid": os.getpid(),
        })


def _make_job(
    ws: storage.Workspace, upload: FileStorage, ops: list[str], encoding: imaging.EncodingFields, key: str | None,
    facts: dict[str, Any],
) -> storage.Job:
    job_id = facts["job_id"] = storage.new_id()
    source = accept_upload(ws, job_id, upload, ops, encoding)
    facts["bytes_in"] = source["bytes"]
    started = time.time()
    spec: JobSpec = {
        "workspace": ws,
        "job_id": job_id,
        "ops": ops,
        "encoding": encoding,
        "source": source,
        "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "idempotency_key": key,
        "max_pixels": current_app.config["DARKROOM_MAX_PIXELS"],
        "threads": current_app.config["DARKROOM_JOB_THREADS"],
        "cores_dir": current_app.config["DARKROOM_CORES_DIR"],
        "plugins": current_app.config["DARKROOM_PLUGINS"],
    }
    # The call's progress note names its job: the gallery shows it from now on, and a note
    # whose owner died tells the cleanup whose directory is abandoned (storage.reclaim_abandoned).
    note = {"job": job_id, "name": source["name"], "idempotency_key": key, "started": started,
            "op": "", "label": "", "done": 0, "total": len(ops), "percent": 0}
    try:
        result = handoff.run(run_job, spec, note=note)
        facts["child_ms"], facts["threads"] = result.get("ms"), result.get("threads")
        # The child has been joined; the manifest now says what it finished.
        manifest = storage.load_manifest(ws)
        job = storage.find_job(manifest, job_id)
        if job is None:
            raise handoff.ChildFailed("The image worker finished without recording its results.")
    except BaseException:
        storage.discard_job(ws, job_id)
        raise
    g.saved_job = job_id  # from here on, whatever fails, the job is saved
    sync_jobs(ws, manifest)
    keep_alive()
    g.stored_bytes = g.get("stored_bytes", 0) + source["bytes"] + sum(o["bytes"] for o in job["outputs"])
    return job


def done_message(job: storage.Job, done: str = "Done") -> str:
    """What the gallery says when a job is saved: "Done: 3 images from holiday.jpg."."""
    count = len(job["outputs"])
    return f"{done}: {count} image{'s' if count != 1 else ''} from {job['source']['name']}."


@bp.post("/jobs")
def create() -> ResponseReturnValue:
    """Accept uploads, render each one's derivatives in a child, hand them back into the session.

    The page sends one file per request; a form posted without JavaScript
    may carry several, each becoming a job of its own.
    """
    ws = current_workspace()
    key = idempotency_key()
    if key and (answer := replay(ws, key)):
        return answer
    # Before the body is read: a refused upload never reaches the disk. (The
    # checks count the whole body, so they cover every file a form carries.)
    limits.check_free_disk()
    limits.check_session_quota(ws)
    ops, encoding = requested_ops(), requested_encoding()
    uploads = [u for u in request.files.getlist("image") if u.filename]
    if not uploads:
        raise imaging.BadImage("Choose an image file to upload.")
    if len(uploads) == 1:
        job = make_job(ws, uploads[0], ops, encoding, key)
        if wants_json():
            return jsonify(gallery.job_json(job)), 201
        choices.remember_choices()
        flash(done_message(job), "success")
        return redirect(url_for("gallery.index", _anchor=f"job-{job['id']}"), 303)
    if wants_json() or key:
        abort(400, "Send one image per request (the page sends several files one after another).")
    choices.remember_choices()
    response = redirect(url_for("gallery.index"), 303)
    for index, upload in enumerate(uploads):
        # The request was charged its first job; each further file is charged as it comes.
        if index and (seconds := limits.take(limits.job_rate(), limits.JOB_SCOPE)) is not None:
            refuse_the_rest(uploads[index:], seconds)
            response.headers["Retry-After"] = str(seconds)
            break
        # One file refused says why and spares the rest; a failure of the server stops them all.
        try:
            flash(done_message(make_job(ws, upload, ops, encoding, None)), "success")
        except imaging.BadImage as exc:
            flash(f"{display_name(upload.filename)}: {exc}", "error")
        except HTTPException as exc:
            if exc.code is None or exc.code >= 500:
                raise
            flash(f"{display_name(upload.filename)}: {exc.description}", "error")
    return response


#: How many of the files a form could not process its message names.
NAMED_REFUSALS = 3


def refuse_the_rest(refused: list[FileStorage], seconds: int) -> None:
    """Say that the files of a form past the job rate were not processed, and when to send them again."""
    names = [display_name(upload.filename) for upload in refused]
    listed = ", ".join(names[:NAMED_REFUSALS]) + (f" and {len(names) - NAMED_REFUSALS} more"
                                                   if len(names) > NAMED_REFUSALS else "")
    metrics.count_refusal("job_rate", len(refused))
    flash(f"Not processed: {listed}. {limits.too_many_photos()} {limits.try_again_in(seconds)}", "error")


@bp.post("/jobs/<job_id>/delete")
def delete(job_id: str) -> ResponseReturnValue:
    """Delete one job of this session."""
    ws = current_workspace()
    job = storage.find_job(storage.load_manifest(ws), job_id) if storage.is_valid_id(job_id) else None
    if job is None:
        abort(404)
    storage.discard_job(ws, job_id)
    sync_jobs(ws, storage.load_manifest(ws))
    if wants_json():
        return {"deleted": job_id}
    flash(f"Deleted {job['source']['name']}.", "success")
    return redirect(url_for("gallery.index", _anchor="gallery"), 303)


@bp.post("/session/clear")
def clear() -> ResponseReturnValue:
    """Delete every job of this session and its files."""
    had_jobs = has_workspace()  # a client without a workspace has nothing to clear, nor a row to write
    if had_jobs:
        ws = current_workspace()
        storage.clear_jobs(ws)
        running, ended = handoff.running(ws.id), handoff.abandoned(ws.id)  # before the manifest, as in cli
        manifest = storage.load_manifest(ws)
        storage.reclaim_abandoned(ws, manifest, 3600, running, ended)  # jobs of a server killed mid-way
        sync_jobs(ws, manifest)
        start_over()
        keep_alive()
    if wants_json():
        return {"jobs": []}
    if had_jobs:
        flash("All your images were deleted.", "success")
    return redirect(url_for("gallery.index"), 303)
