"""What the gallery shows: a session's jobs as public JSON, a page of them, and one image at a time."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, render_template, request, url_for

import handoff
import storage
from imaging.formats import format_name

from .files import session_job
from .sessions import lifetime_days, sync_jobs

bp = Blueprint("gallery", __name__)

#: Image formats every current browser shows in an <img>; others (HEIC, TIFF) are seen through their previews.
BROWSER_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "AVIF", "BMP", "ICO"}


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    """Return the public JSON of a manifest job: file names become URLs."""

    def url(filename: str, **args: Any) -> str:
        return url_for("files.serve", job_id=job["id"], filename=filename, **args)

    def public(entry: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in entry.items() if k not in ("file", "previews")}
        fields["url"] = url(entry["file"])
        fields["download_url"] = url(entry["file"], download=1)
        # Jobs made before previews existed have none: their tiles use the file itself.
        fields["previews"] = [{"url": url(p["file"]), "width": p["width"], "height": p["height"]}
                              for p in entry.get("previews", ())]
        fields["preview_url"] = fields["previews"][-1]["url"] if fields["previews"] else fields["url"]
        return fields

    return {
        "id": job["id"],
        "created": job["created"],
        "source": public(job["source"]),
        "outputs": [public(o) for o in job["outputs"]],
        "zip_url": url_for("files.download_job", job_id=job["id"]),
    }


def index_after(jobs: list[dict[str, Any]], job_id: str) -> int | None:
    """The index just past job ``job_id`` in ``jobs`` (where a page after it starts), or None if it is not there."""
    return next((i + 1 for i, job in enumerate(jobs) if job["id"] == job_id), None)


def page_of_jobs(jobs: list[dict[str, Any]], before: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """The page of ``jobs`` (newest first) that starts after job ``before``, and the cursor of the next.

    A cursor rather than a page number: a job added or deleted meanwhile
    does not shift the pages the visitor is reading. An unknown cursor (a
    deleted job) starts again from the newest.
    """
    size = current_app.config["DARKROOM_PAGE_SIZE"]
    start = (index_after(jobs, before) or 0) if before else 0
    page = jobs[start:start + size]
    return page, (page[-1]["id"] if start + size < len(jobs) else None)


def running_json(note: dict[str, Any]) -> dict[str, Any]:
    """The public part of a running job's progress note (``key``: the Idempotency-Key its page sent)."""
    fields = {k: note.get(k) for k in ("name", "op", "label", "done", "total", "percent")}
    return {"id": note.get("job"), **fields, "key": note.get("idempotency_key")}


def context(ws: storage.Workspace, before: str | None) -> dict[str, Any]:
    """What the gallery's template needs: a page of jobs, the running ones, and how to show them."""
    manifest = storage.load_manifest(ws)
    jobs = list(reversed(sync_jobs(ws, manifest)))
    page, older = page_of_jobs(jobs, before)
    return {
        "jobs": [job_json(j) for j in page], "job_count": len(jobs), "older": older,
        "first_page": page[:1] == jobs[:1],
        "running": [running_json(n) for n in storage.running_jobs(ws, handoff.running(ws.id), manifest)],
        "browser_formats": BROWSER_FORMATS, "format_name": format_name,
        "lifetime_days": lifetime_days(),
    }


@bp.get("/jobs/<job_id>/view/<int:index>")
def view(job_id: str, index: int):
    """Show one image of a job large: the original (0), or an output beside the original, fitted or at 100%."""
    _, manifest_job = session_job(job_id)
    job = job_json(manifest_job)
    entries = [job["source"], *job["outputs"]]
    if index >= len(entries):
        abort(404)
    return render_template(
        "gallery/view.html", job=job, entry=entries[index], index=index, count=len(entries),
        actual=request.args.get("zoom") == "100", browser_formats=BROWSER_FORMATS, format_name=format_name,
    )
