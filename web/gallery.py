"""What the gallery shows: the page (the form and a page of jobs), jobs as public JSON, one image at a time."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

from flask import Blueprint, abort, current_app, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue

import handoff
import imaging
import storage
from imaging.formats import format_name
from imaging.screen import SCREEN_SIZE, save_screen_copy

from . import choices
from .files import immutable, session_job
from .sessions import current_workspace, has_workspace, keep_alive, lifetime_days, sync_jobs

bp = Blueprint("gallery", __name__)

#: Image formats every current browser shows in an <img>; others (HEIC, TIFF) are seen through their previews.
BROWSER_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "AVIF", "BMP", "ICO"}


class PreviewJSON(TypedDict):
    url: str
    width: int
    height: int


class ImageJSON(TypedDict):
    """The source or an output as the API shows it: the manifest's fields, its file and previews as URLs."""

    url: str
    download_url: str
    preview_url: str
    previews: list[PreviewJSON]
    format: str
    width: int
    height: int
    bytes: int
    name: NotRequired[str]  # the source's
    op: NotRequired[str]  # an output's, with its label and time
    label: NotRequired[str]
    ms: NotRequired[float]
    frames: NotRequired[int]
    pictures: NotRequired[int]


class JobJSON(TypedDict):
    """A job as ``/api/session``, ``POST /jobs`` and the gallery's template see it."""

    id: str
    created: str
    source: ImageJSON
    outputs: list[ImageJSON]
    zip_url: str


def job_json(job: storage.Job) -> JobJSON:
    """Return the public JSON of a manifest job: file names become URLs."""

    def url(filename: str, **args: Any) -> str:
        return url_for("files.serve", job_id=job["id"], filename=filename, **args)

    def public(entry: storage.Source | storage.Output) -> ImageJSON:
        fields = cast(ImageJSON, {k: v for k, v in entry.items() if k not in ("file", "previews")})
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


def index_after(jobs: list[storage.Job], job_id: str) -> int | None:
    """The index just past job ``job_id`` in ``jobs`` (where a page after it starts), or None if it is not there."""
    return next((i + 1 for i, job in enumerate(jobs) if job["id"] == job_id), None)


def page_of_jobs(jobs: list[storage.Job], before: str | None) -> tuple[list[storage.Job], str | None]:
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


def _viewer_urls(job_id: str, index: int, entry: ImageJSON) -> dict[str, str]:
    """Where the viewer gets image ``index`` of a job: fitted to the screen, and at 100%.

    Fitted, a large image or one browsers cannot show comes from its screen
    copy; a small one, and an animation (which must move), from the file.
    At 100%, the file itself, unless browsers cannot show it.
    """
    screen = url_for("gallery.screen", job_id=job_id, index=index)
    if entry["format"] not in BROWSER_FORMATS:
        return {"fit": screen, "full": screen}
    small = max(entry["width"], entry["height"]) <= SCREEN_SIZE
    return {"fit": entry["url"] if small or entry.get("frames") else screen, "full": entry["url"]}


def _saving(before: int, after: int) -> str:
    """The change in bytes from the original, as Squoosh writes it: "−65%", "+12%" (a true minus sign)."""
    change = round(100 * (after - before) / before) if before else 0
    return f"−{-change}%" if change < 0 else f"+{change}%"


def _same_shape(a: ImageJSON, b: ImageJSON) -> bool:
    """Whether two images have the same aspect ratio (within 2%): a slider between them lines up."""
    return bool(abs(a["width"] * b["height"] - b["width"] * a["height"]) <= 0.02 * a["width"] * b["height"])


@bp.get("/")
def index() -> ResponseReturnValue:
    """Show the upload form, the jobs still running and a page of the gallery, newest job first."""
    handoff.Handoff.warm_up()  # a visitor is about to upload: have children waiting by then
    ws = current_workspace()
    # A look writes no session: a visitor's session starts with its first upload
    # (the page's script asks /api/session first, so its progress polls share it).
    page = context(ws, request.args.get("before"))
    keep_alive()
    return render_template(
        "gallery/index.html", ops=imaging.OPS.values(), choices=choices.form_choices(), presets=choices.PRESETS,
        output_formats=imaging.OUTPUT_FORMATS, has_session=has_workspace(), **page,
    )


@bp.get("/jobs/<job_id>/view/<int:index>")
def view(job_id: str, index: int) -> ResponseReturnValue:
    """Show one image of a job filling the window: the original (0), or an output against the original.

    ``mode``: ``slider`` (one picture, split between before and after) or
    ``side`` (side by side); the slider is the default when the two have the
    same shape. ``zoom=100``: pixel for pixel, the two panes scrolling together.
    """
    _, manifest_job = session_job(job_id)
    job = job_json(manifest_job)
    entries = [job["source"], *job["outputs"]]
    if index >= len(entries):
        abort(404)
    entry, source = entries[index], job["source"]
    mode = request.args.get("mode")
    if mode not in ("slider", "side"):
        mode = "slider" if _same_shape(source, entry) else "side"
    actual = request.args.get("zoom") == "100"

    def link(to: int, **changes: Any) -> str:
        """This view of image ``to``, with ``changes`` to its mode or zoom."""
        state = {"mode": mode if index and to else None, "zoom": 100 if actual else None, **changes}
        return url_for("gallery.view", job_id=job_id, index=to, **state)

    return render_template(
        "gallery/view.html", job=job, entry=entry, index=index, count=len(entries), mode=mode, actual=actual,
        urls={"source": _viewer_urls(job_id, 0, source), "entry": _viewer_urls(job_id, index, entry)},
        saving=_saving(source["bytes"], entry["bytes"]), link=link,
        browser_formats=BROWSER_FORMATS, format_name=format_name,
    )


@bp.get("/jobs/<job_id>/screen/<int:index>")
def screen(job_id: str, index: int) -> ResponseReturnValue:
    """Image ``index`` of a job at screen size (WebP), made in a child the first time it is asked for.

    If it cannot be made now (the server is busy, the file does not decode),
    the viewer is sent what the gallery shows instead: the file, or its preview.
    """
    ws, manifest_job = session_job(job_id)
    entries = [manifest_job["source"], *manifest_job["outputs"]]
    if index >= len(entries):
        abort(404)
    path = ws.job_dir(job_id) / f"screen-{index}.webp"
    if not path.exists():
        source = ws.resolve_file(job_id, entries[index]["file"])
        try:
            made = handoff.run(save_screen_copy, str(source), str(path), current_app.config["DARKROOM_MAX_PIXELS"])
        except (handoff.Busy, handoff.Timeout, handoff.ChildFailed) as exc:
            current_app.logger.warning("screen copy of %s/%d not made: %r", job_id, index, exc)
            made = False
        if not made:
            shown = job_json(manifest_job)
            fallback = [shown["source"], *shown["outputs"]][index]
            return redirect(fallback["url"] if fallback["format"] in BROWSER_FORMATS else fallback["preview_url"])
    return immutable(send_file(path, mimetype="image/webp"))
