"""Progress files: a running job's note of which op it is on, and of who runs it until when.

Every note names its owner (the web process that started the job: host and
pid) and a deadline past which no job can still be running. A note whose owner
is dead (on this host) or whose deadline has passed belongs to a job that will
never finish: it is not reported, and its directory is reclaimed.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from .manifest import Manifest, load_manifest, read_json, write_json_atomic
from .workspace import NOTES_DIR, Workspace, is_valid_id


def lease(seconds: float) -> dict[str, Any]:
    """The owner and deadline fields of a note for a job that may take ``seconds`` at most."""
    return {"host": socket.gethostname(), "owner_pid": os.getpid(), "deadline": time.time() + seconds}


def write_progress(ws: Workspace, job_id: str, **progress: Any) -> None:
    """Replace the progress note of a running job."""
    path = ws.note_path(job_id)
    path.parent.mkdir(exist_ok=True)
    write_json_atomic(path, {"id": job_id, **progress}, durable=False)


def clear_progress(ws: Workspace, job_id: str) -> None:
    """Remove a finished job's progress note."""
    ws.note_path(job_id).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def is_live(note: dict[str, Any]) -> bool:
    """Whether the job of this note can still be running."""
    if time.time() > note.get("deadline", 0):
        return False
    pid = note.get("owner_pid")
    return not (note.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid))


def _unlisted(ws: Workspace, manifest: Manifest) -> list[Path]:
    if not ws.path.is_dir():
        return []
    finished = {j["id"] for j in manifest["jobs"]}
    return [e for e in ws.path.iterdir() if e.is_dir() and is_valid_id(e.name) and e.name not in finished]


def _read_note(ws: Workspace, job_id: str) -> dict[str, Any] | None:
    """A job's note, or None if it has none (or an unreadable one)."""
    try:
        return read_json(ws.note_path(job_id))
    except ValueError:
        return None


def running_jobs(ws: Workspace, manifest: Manifest | None = None) -> list[dict[str, Any]]:
    """Return the notes of jobs that are running now: a directory, no manifest entry yet, a live note.

    Only the folder of notes is listed, so the cost follows the running jobs,
    not all of them; the manifest (loaded here if not given) is read only when
    some job has a note.
    """
    folder = ws.path / NOTES_DIR
    ids = [p.stem for p in folder.iterdir() if is_valid_id(p.stem)] if folder.is_dir() else []
    if not ids:
        return []
    finished = {j["id"] for j in (manifest or load_manifest(ws))["jobs"]}
    notes = []
    for job_id in ids:
        note = None if job_id in finished else _read_note(ws, job_id)
        if note is not None and is_live(note) and ws.job_dir(job_id).is_dir():
            notes.append(note)
    return sorted(notes, key=lambda n: n.get("started", 0))


def reclaim_abandoned(ws: Workspace, manifest: Manifest, grace_seconds: float) -> int:
    """Delete job directories no finished job lists and no running job owns; return how many went.

    A directory without a note (a request that died while storing its upload)
    is spared for ``grace_seconds`` after its last change.
    """
    reclaimed = 0
    for entry in _unlisted(ws, manifest):
        note = _read_note(ws, entry.name)
        if note is not None and is_live(note):
            continue
        if note is None and entry.stat().st_mtime > time.time() - grace_seconds:
            continue
        ws.remove_job_dir(entry.name)
        reclaimed += 1
    # A note whose directory has gone (removed by hand, say) and whose job can no longer run.
    folder = ws.path / NOTES_DIR
    for path in folder.glob("*.json") if folder.is_dir() else ():
        orphan = is_valid_id(path.stem) and not ws.job_dir(path.stem).is_dir()
        if orphan and not is_live(_read_note(ws, path.stem) or {}):
            path.unlink(missing_ok=True)
    return reclaimed
