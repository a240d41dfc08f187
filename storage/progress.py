"""Progress files: a running child's note of which op it is on."""

from __future__ import annotations

from typing import Any

from .manifest import Manifest, read_json, write_json_atomic
from .workspace import Workspace, is_valid_id

PROGRESS_FILE = "progress.json"


def write_progress(ws: Workspace, job_id: str, **progress: Any) -> None:
    """Replace the progress note of a running job."""
    write_json_atomic(ws.job_dir(job_id) / PROGRESS_FILE, {"id": job_id, **progress}, durable=False)


def clear_progress(ws: Workspace, job_id: str) -> None:
    """Remove a finished job's progress note."""
    (ws.job_dir(job_id) / PROGRESS_FILE).unlink(missing_ok=True)


def running_jobs(ws: Workspace, manifest: Manifest) -> list[dict[str, Any]]:
    """Return the progress notes of jobs that have a directory but no manifest entry yet."""
    if not ws.path.is_dir():
        return []
    finished = {j["id"] for j in manifest["jobs"]}
    notes = []
    for entry in ws.path.iterdir():
        if entry.name in finished or not is_valid_id(entry.name):
            continue
        note = read_json(entry / PROGRESS_FILE)
        if note is not None:
            notes.append(note)
    return sorted(notes, key=lambda n: n.get("started", 0))
