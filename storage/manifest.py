"""The workspace manifest: the locked, atomically written source of truth.

``manifest.json`` holds ``{"jobs": [...]}``: the finished image jobs, oldest
first. Every read-modify-write holds the workspace lock, and every
write replaces the file atomically, so readers never see a torn manifest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .workspace import Workspace

Manifest = dict[str, Any]


def empty_manifest() -> Manifest:
    """Return the manifest of a workspace with nothing in it."""
    return {"jobs": []}


def write_json_atomic(path: Path, data: Any, *, durable: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see old or new, never half.

    ``durable`` also fsyncs the data before the rename, so a power cut cannot
    leave an empty file behind; ephemeral files (progress notes) skip it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: Path) -> Any:
    """Return the JSON in ``path``, or None when there is no such file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def load_manifest(ws: Workspace) -> Manifest:
    """Return the workspace's manifest (an empty one if it has none yet).

    Reading needs no lock: writes are atomic replacements.
    """
    data = read_json(ws.manifest_path)
    return data if data is not None else empty_manifest()


@contextmanager
def edit_manifest(ws: Workspace) -> Iterator[Manifest]:
    """Hold the workspace lock, yield the manifest, and write it back on success."""
    with ws.lock():
        manifest = load_manifest(ws)
        yield manifest
        write_json_atomic(ws.manifest_path, manifest)


def _update(ws: Workspace, change: Callable[[Manifest], Any]) -> Manifest:
    with edit_manifest(ws) as manifest:
        change(manifest)
    return manifest


def record_job(ws: Workspace, job: dict[str, Any]) -> Manifest:
    """Append a finished job to the manifest, keeping jobs ordered oldest first."""

    def add(manifest: Manifest) -> None:
        jobs = [j for j in manifest["jobs"] if j["id"] != job["id"]]
        jobs.append(job)
        jobs.sort(key=lambda j: (j["created"], j["id"]))
        manifest["jobs"] = jobs

    return _update(ws, add)


def discard_job(ws: Workspace, job_id: str) -> bool:
    """Remove a job from the manifest and delete its directory.

    Returns whether the manifest listed it. The directory goes after the
    manifest entry, so no reader ever finds a listed job without its files.
    """
    listed = False

    def remove(manifest: Manifest) -> None:
        nonlocal listed
        jobs = manifest["jobs"]
        manifest["jobs"] = [j for j in jobs if j["id"] != job_id]
        listed = len(manifest["jobs"]) != len(jobs)

    _update(ws, remove)
    ws.remove_job_dir(job_id)
    return listed


def clear_jobs(ws: Workspace) -> None:
    """Forget every job of the workspace and delete their directories."""
    with edit_manifest(ws) as manifest:
        job_ids = [j["id"] for j in manifest["jobs"]]
        manifest["jobs"] = []
    for job_id in job_ids:
        ws.remove_job_dir(job_id)


def stored_bytes(manifest: Manifest) -> int:
    """Return the bytes a workspace's finished jobs keep on disk (sources and outputs)."""
    return sum(
        job["source"].get("bytes", 0) + sum(o.get("bytes", 0) for o in job["outputs"])
        for job in manifest["jobs"]
    )


def find_job(manifest: Manifest, job_id: str) -> dict[str, Any] | None:
    """Return the job with this id from a loaded manifest, or None."""
    return next((j for j in manifest["jobs"] if j["id"] == job_id), None)
