"""Which jobs are running, and which were abandoned, from the progress notes ``handoff`` keeps.

Every job's call carries a note naming its job (``handoff.run(..., note=...)``);
``handoff`` keeps the note as a lease on whoever runs the job and hands back
the live ones (``handoff.running``) and, once, those whose owner died
(``handoff.abandoned``). This module matches them to the workspace's job
directories; it reads no note file itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .manifest import load_manifest
from .records import Manifest
from .workspace import Workspace, is_valid_id

Note = dict[str, Any]


def _unlisted(ws: Workspace, manifest: Manifest) -> list[Path]:
    if not ws.path.is_dir():
        return []
    finished = {j["id"] for j in manifest["jobs"]}
    return [e for e in ws.path.iterdir() if e.is_dir() and is_valid_id(e.name) and e.name not in finished]


def running_jobs(ws: Workspace, notes: Iterable[Note], manifest: Manifest | None = None) -> list[Note]:
    """The live notes of ``ws``'s jobs that are running now: a directory, no manifest entry yet.

    The manifest (loaded here if not given) is read only when some job has a
    note, so the cost follows the running jobs, not all of them.
    """
    jobs = [n for n in notes if is_valid_id(n.get("job"))]
    if not jobs:
        return []
    finished = {j["id"] for j in (manifest or load_manifest(ws))["jobs"]}
    found = [n for n in jobs if n["job"] not in finished and ws.job_dir(n["job"]).is_dir()]
    return sorted(found, key=lambda n: n.get("started", 0))


def reclaim_abandoned(ws: Workspace, manifest: Manifest, grace_seconds: float, running: Iterable[Note],
                      abandoned: Iterable[Note]) -> int:
    """Delete job directories no finished job lists and no running job owns; return how many went.

    A directory stays while its job's note is live or the process holding it
    (``create_job_dir(hold_for=...)``) lives. It goes now if its note was
    abandoned or its holder has died, whether that was while the upload was
    stored, the call ran, or its failure was being cleaned up; one with neither
    note nor holder is spared for ``grace_seconds`` after its last change.
    Read the notes before the manifest: a job that finishes in between is
    then in the manifest.
    """
    live = {n.get("job") for n in running}
    ended = {n.get("job") for n in abandoned}
    reclaimed = 0
    for entry in _unlisted(ws, manifest):
        held = ws.job_owner_alive(entry.name)
        if entry.name in live or held:
            continue
        if entry.name not in ended and held is None and entry.stat().st_mtime > time.time() - grace_seconds:
            continue
        ws.remove_job_dir(entry.name)
        reclaimed += 1
    return reclaimed
