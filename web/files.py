"""Serving a session's images, and nobody else's: one at a time, or a job or the gallery as a ZIP."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from urllib.parse import quote

from flask import Blueprint, Response, abort, request, send_file
from flask.typing import ResponseReturnValue
from zipstream import ZIP_STORED, ZipStream

import storage

from . import names
from .sessions import current_workspace, has_workspace

bp = Blueprint("files", __name__)

NO_IMAGES_YET = "There are no images to download yet."


def user_stem(job: storage.Job) -> str:
    """The user's file name without its extension ("holiday"), as shown; made safe where it names a file."""
    name: str = job["source"]["name"]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def download_name(job: storage.Job, filename: str) -> str:
    """What a file of a job is called when saved: ``holiday.jpg``, ``holiday-sepia.jpg``."""
    stem, _, extension = filename.rpartition(".")
    suffix = f".{extension}" if filename == job["source"]["file"] else f"-{stem}.{extension}"
    return names.file_name(user_stem(job), suffix)


def job_files(job: storage.Job) -> list[str]:
    """The names of the files a job lists: its source and outputs (the ZIP's), then every preview."""
    entries = [job["source"], *job["outputs"]]
    return [e["file"] for e in entries] + [p["file"] for e in entries for p in e.get("previews", ())]


def session_job(job_id: str) -> tuple[storage.Workspace, storage.Job]:
    """The requesting session's workspace and its job ``job_id``; 404 if the session has no such job."""
    ws = current_workspace()
    job = storage.find_job(storage.load_manifest(ws), job_id) if storage.is_valid_id(job_id) else None
    if job is None:
        abort(404)
    return ws, job


#: How long a browser keeps a job's file without asking again: a year, the longest HTTP caches honour.
FOREVER = 365 * 24 * 3600


def private(response: Response) -> Response:
    """A session's files are its own: browsers may keep them, shared caches not."""
    response.cache_control.public = False
    response.cache_control.private = True
    return response


def immutable(response: Response) -> Response:
    """A job's file never changes under its URL (job ids are never reused, a file never rewritten):
    the browser keeps it for a year and never asks again, even on reload; shared caches never keep it.
    Its ``ETag`` (Werkzeug's) still answers a revalidation with ``304``.
    """
    private(response)
    response.cache_control.no_cache = None  # send_file's answer to no max_age of its own
    response.cache_control.max_age = FOREVER
    response.cache_control.immutable = True
    return response


@bp.get("/files/<job_id>/<filename>")
def serve(job_id: str, filename: str) -> ResponseReturnValue:
    """Send one image listed in the requesting session's manifest; 404 for anything else.

    ``?download=1`` asks the browser to save it rather than show it. Either
    way the file is named after the user's file (RFC 6266 ``filename*`` for
    names beyond ASCII, see :func:`attachment`).
    """
    ws, job = session_job(job_id)
    if filename not in job_files(job):
        abort(404)
    try:
        path = ws.resolve_file(job_id, filename)
    except storage.NotFound:
        abort(404)
    # send_file rather than send_from_directory: resolve_file has already
    # checked the real path (symlinks included) stays inside the job directory.
    saved = request.args.get("download") == "1"
    response = send_file(path)
    # Named here, not by send_file: its plain-ASCII fallback name would not follow the rules download names do.
    response.headers.set("Content-Disposition", "attachment" if saved else "inline",
                         **attachment(download_name(job, filename)))
    return immutable(response)


def attachment(name: str) -> dict[str, str]:
    """``Content-Disposition`` parameters naming a download ``name``, whatever its script (RFC 6266).

    Browsers that read ``filename*`` get the name as it is; the plain
    ``filename`` is its closest ASCII, as Werkzeug's ``send_file`` writes it.
    """
    if name.isascii():
        return {"filename": name}
    stem, dot, extension = name.rpartition(".")
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    # What is left of "CON日本" is a device name again: the plain name follows the same rules.
    plain = names.file_name(plain if plain.strip(" ._") else "images", f"{dot}{extension}")
    return {"filename": plain, "filename*": "UTF-8''" + quote(name, safe="!#$&+-.^_`|~")}


def zip_response(archive: ZipStream, name: str) -> Response:
    """Stream ``archive`` as a download called ``name``; its length is known before the first byte."""
    response = Response(archive, mimetype="application/zip", direct_passthrough=True)
    response.content_length = len(archive)
    response.headers.set("Content-Disposition", "attachment", **attachment(name))
    return private(response)


def add_job(archive: ZipStream, ws: storage.Workspace, job: storage.Job, folder: str = "") -> None:
    """Add a job's source and outputs (not its previews) to ``archive``, under ``folder``."""
    for entry in (job["source"], *job["outputs"]):
        try:
            path = ws.resolve_file(job["id"], entry["file"])
        except storage.NotFound:
            continue  # deleted meanwhile
        archive.add_path(str(path), folder + download_name(job, entry["file"]))


def unique_folders(jobs: list[storage.Job]) -> Iterator[tuple[storage.Job, str]]:
    """Each job with a folder name of its own: ``holiday/``, then ``holiday (2)/``.

    Names that differ only in case are one folder on Windows and macOS, so they count as the same.
    """
    seen: dict[str, int] = {}
    for job in jobs:
        key = names.folder_name(user_stem(job)).casefold()
        count = seen[key] = seen.get(key, 0) + 1
        yield job, names.folder_name(user_stem(job), f" ({count})" if count > 1 else "") + "/"


@bp.get("/jobs/<job_id>/download.zip")
def download_job(job_id: str) -> ResponseReturnValue:
    """Stream one job's original and outputs as a ZIP (stored: images are compressed already)."""
    ws, job = session_job(job_id)
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    add_job(archive, ws, job)
    return zip_response(archive, names.file_name(user_stem(job), ".zip"))


@bp.get("/download.zip")
def download_all() -> ResponseReturnValue:
    """Stream every job of the session as a ZIP, one folder per job, oldest first."""
    # A client without a workspace has no images, and must not be given one by asking.
    if not has_workspace():
        abort(404, NO_IMAGES_YET)
    ws = current_workspace()
    jobs = storage.load_manifest(ws)["jobs"]
    if not jobs:
        abort(404, NO_IMAGES_YET)
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    for job, folder in unique_folders(jobs):
        add_job(archive, ws, job, folder)
    return zip_response(archive, "darkroom-images.zip")
