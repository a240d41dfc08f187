"""Progress files: a running job's note of which op it is on, and of who runs it until when.

Every note names its owner (the web process that started the job: host and
pid) and a deadline past which no job can still be running. A note whose owner
is dead (on this host) or whose deadline has passed belongs to a job that will
never finish: it is not reported, and its directory is reclaimed.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from .manifest import Manifest, read_json, write_json_atomic
from .workspace import Workspace, is_valid_id

PROGRESS_FILE = "progress.json"


def lease(seconds: float) -> dict[str, Any]:
    """The owner and deadline fields of a note for a job that may take ``seconds`` at most."""
    return {"host": socket.gethostname(), "owner_pid": os.getpid(), "deadline": time.time() + seconds}


def write_progress(ws: Workspace, job_id: str, **progress: Any) -> None:
    """Replace the progress note of a running job."""
    write_json_atomic(ws.job_dir(job_id) / PROGRESS_FILE, {"id": job_id, **progress}, durable=False)


def clear_progress(ws: Workspace, job_id: str) -> None:
    """Remove a finished job's progress note."""
    (ws.job_dir(job_id) / PROGRESS_FILE).unlink(missing_ok=True)


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


def _read_note(job_dir: Path) -> dict[str, Any] | None:
    """A job directory's note, or None if it has none (or an unreadable one)."""
    try:
        return read_json(job_dir / PROGRESS_FILE)
    except ValueError:
        return None


def running_jobs(ws: Workspace, manifest: Manifest) -> list[dict[str, Any]]:
    """Return the notes of jobs that are running now: a directory, no manifest entry yet, a live note."""
    notes = []
    for entry in _unlisted(ws, manifest):
        note = _read_note(entry)
        if note is not None and is_live(note):
            notes.append(note)
    return sorted(notes, key=lambda n: n.get("started", 0))


def reclaim_abandoned(ws: Workspace, manifest: Manifest, grace_seconds: float) -> int:
    """Delete job directories no finished job lists and no running job owns; return how many went.

    A directory without a note (a request that died while storing its upload)
    is spared for ``grace_seconds`` after its last change.
    """
    reclaimed = 0
    for entry in _unlisted(ws, manifest):
        note = _read_note(entry)
        if note is not None and is_live(note):
            continue
        if note is None and entry.stat().st_mtime > time.time() - grace_seconds:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        reclaimed += 1
    return reclaimed
