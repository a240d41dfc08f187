"""Serving a session's images, and nobody else's."""

from __future__ import annotations

from flask import Blueprint, abort, send_file

import storage

from .sessions import current_workspace

bp = Blueprint("files", __name__)


@bp.get("/files/<job_id>/<filename>")
def serve(job_id: str, filename: str):
    """Send one image listed in the requesting session's manifest; 404 for anything else."""
    ws = current_workspace()
    job = storage.find_job(storage.load_manifest(ws), job_id) if storage.is_valid_id(job_id) else None
    listed = job and filename in {job["source"]["file"], *(o["file"] for o in job["outputs"])}
    if not listed:
        abort(404)
    try:
        path = ws.resolve_file(job_id, filename)
    except storage.NotFound:
        abort(404)
    # send_file rather than send_from_directory: resolve_file has already
    # checked the real path (symlinks included) stays inside the job directory.
    response = send_file(path, max_age=3600, download_name=f"{job_id}-{filename}")
    # A session's images are its own: browsers may keep them, shared caches not.
    response.cache_control.public = False
    response.cache_control.private = True
    return response
