"""The workspace manifest: the locked, atomically written source of truth.

``manifest.json`` holds ``{"jobs": [...]}``: the finished image jobs, oldest
first. Every read-modify-write holds the workspace lock, and every
write replaces the file atomically, so readers never see a torn manifest.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .workspace import Workspace, is_valid_id

Manifest = dict[str, Any]
#: Each finished job's own description, in its directory.
JOB_RECORD = "job.json"
log = logging.getLogger("darkroom.storage")


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


def is_valid_manifest(data: Any) -> bool:
    """Whether ``data`` has the manifest's shape: ``{"jobs": [job, ...]}``, each job with its fields."""
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        return False
    return all(
        isinstance(job, dict) and {"id", "created", "source", "outputs"} <= job.keys()
        and isinstance(job["outputs"], list)
        for job in data["jobs"]
    )


def _read_manifest(ws: Workspace) -> Manifest | None:
    """The manifest on disk, an empty one if there is none, or None if it is damaged."""
    try:
        data = read_json(ws.manifest_path)
    except (ValueError, UnicodeDecodeError):  # truncated, empty, not JSON
        return None
    if data is None and not ws.manifest_path.exists():
        return empty_manifest()
    return data if is_valid_manifest(data) else None


def rebuild_manifest(ws: Workspace) -> Manifest:
    """Set a damaged manifest aside and write a new one from the jobs' own records. Hold the lock."""
    damaged = ws.manifest_path.with_name(f"manifest.json.damaged-{int(time.time() * 1000)}")
    os.replace(ws.manifest_path, damaged)
    jobs = []
    for entry in ws.path.iterdir():
        record = read_job_record(entry) if is_valid_id(entry.name) and entry.is_dir() else None
        if record is not None:
            jobs.append(record)
    jobs.sort(key=lambda j: (j["created"], j["id"]))
    manifest = {"jobs": jobs}
    write_json_atomic(ws.manifest_path, manifest)
    log.warning("workspace %s: damaged manifest set aside as %s; rebuilt with %d jobs from their records",
                ws.id, damaged.name, len(jobs))
    return manifest


def _load_locked(ws: Workspace) -> Manifest:
    manifest = _read_manifest(ws)
    return manifest if manifest is not None else rebuild_manifest(ws)


class _ParsedManifests:
    """The last manifests this process parsed, each under the identity of the file it came from.

    Every write replaces the file (a new inode, mtime and size), so a file
    whose identity is unchanged holds the manifest already parsed: one open and
    fstat instead of reading and parsing a file that grows with the job count.
    Bounded, least recently used first out.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.entries: OrderedDict[Path, tuple[tuple[int, int, int], Manifest]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path, identity: tuple[int, int, int]) -> Manifest | None:
        with self.lock:
            entry = self.entries.get(path)
            if entry is None or entry[0] != identity:
                return None
            self.entries.move_to_end(path)
            return entry[1]

    def put(self, path: Path, identity: tuple[int, int, int], manifest: Manifest) -> None:
        with self.lock:
            self.entries[path] = (identity, manifest)
            self.entries.move_to_end(path)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


_parsed = _ParsedManifests()


def load_manifest(ws: Workspace) -> Manifest:
    """Return the workspace's manifest (an empty one if it has none yet); treat it as read-only.

    Reading needs no lock: writes are atomic replacements. A damaged manifest
    (not JSON, or not the manifest's shape) is set aside and rebuilt, under the
    lock, from the record each finished job keeps in its directory. The same
    unchanged file is parsed once per process (see ``_ParsedManifests``), so
    callers share the object returned and must not modify it.
    """
    try:
        # open, then fstat: on NFS, opening a file revalidates its attributes
        # (close-to-open consistency) where a bare stat may answer from a cache.
        fd = os.open(ws.manifest_path, os.O_RDONLY)
    except FileNotFoundError:
        st = None
    else:
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
    identity = (st.st_ino, st.st_mtime_ns, st.st_size) if st else None
    if identity and (cached := _parsed.get(ws.manifest_path, identity)) is not None:
        return cached
    manifest = _read_manifest(ws)
    if manifest is None:
        with ws.lock():
            return _load_locked(ws)  # another process may have rebuilt it meanwhile
    if identity:
        # Parsed from the file stat() saw, unless it was replaced in between: then
        # the identity no longer matches the file, and the next call parses again.
        _parsed.put(ws.manifest_path, identity, manifest)
    return manifest


@contextmanager
def edit_manifest(ws: Workspace) -> Iterator[Manifest]:
    """Hold the workspace lock, yield the manifest, and write it back on success."""
    with ws.lock():
        manifest = _load_locked(ws)
        yield manifest
        write_json_atomic(ws.manifest_path, manifest)


def write_job_record(ws: Workspace, job: dict[str, Any]) -> None:
    """Keep a finished job's description in its own directory, so a damaged manifest can be rebuilt."""
    write_json_atomic(ws.job_dir(job["id"]) / JOB_RECORD, job)


def read_job_record(job_dir: Path) -> dict[str, Any] | None:
    """The job record in ``job_dir``, or None if it has none (still running) or it is unreadable."""
    try:
        record = read_json(job_dir / JOB_RECORD)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if is_valid_manifest({"jobs": [record]}) and record["id"] == job_dir.name else None


def _update(ws: Workspace, change: Callable[[Manifest], Any]) -> Manifest:
    with edit_manifest(ws) as manifest:
        change(manifest)
    return manifest


def record_job(ws: Workspace, job: dict[str, Any]) -> Manifest:
    """Append a finished job to the manifest, keeping jobs ordered oldest first.

    The job's own record is written first: a job in the manifest always has one.
    """
    write_job_record(ws, job)

    def add(manifest: Manifest) -> None:
        jobs = [j for j in manifest["jobs"] if j["id"] != job["id"]]
        jobs.append(job)
        jobs.sort(key=lambda j: (j["created"], j["id"]))
        manifest["jobs"] = jobs

    return _update(ws, add)


#: The error numbers of a file system (or a quota) with no room left.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system (or the quota) has no room left."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def _forget_jobs(ws: Workspace, job_ids: Callable[[Manifest], list[str]]) -> list[str]:
    """Drop jobs from the manifest, then delete their directories; return the ids dropped.

    The manifest changes first, so no reader finds a listed job without its
    files. On a full disk, writing the manifest fails: then the directories go
    first, to make the room the manifest needs (a reader may briefly find a
    listed job whose files are gone, and gets a 404 for them).
    """
    with ws.lock():
        manifest = _load_locked(ws)
        gone = job_ids(manifest)
        if not gone:
            return []
        manifest["jobs"] = [j for j in manifest["jobs"] if j["id"] not in gone]
        try:
            write_json_atomic(ws.manifest_path, manifest)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            for job_id in gone:
                ws.remove_job_dir(job_id)
            write_json_atomic(ws.manifest_path, manifest)
    for job_id in gone:
        ws.remove_job_dir(job_id)
    return gone


def discard_job(ws: Workspace, job_id: str) -> bool:
    """Remove a job from the manifest and delete its directory; return whether the manifest listed it."""
    listed = bool(_forget_jobs(ws, lambda m: [job_id] if find_job(m, job_id) else []))
    ws.remove_job_dir(job_id)  # listed or not (a job that failed before it was recorded)
    return listed


def clear_jobs(ws: Workspace) -> None:
    """Forget every job of the workspace and delete their directories."""
    _forget_jobs(ws, lambda m: [j["id"] for j in m["jobs"]])


def stored_bytes(manifest: Manifest) -> int:
    """Return the bytes a workspace's finished jobs keep on disk (sources and outputs)."""
    return sum(
        job["source"].get("bytes", 0) + sum(o.get("bytes", 0) for o in job["outputs"])
        for job in manifest["jobs"]
    )


def find_job(manifest: Manifest, job_id: str) -> dict[str, Any] | None:
    """Return the job with this id from a loaded manifest, or None."""
    return next((j for j in manifest["jobs"] if j["id"] == job_id), None)
