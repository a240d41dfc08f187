"""The workspace manifest: the locked, crash-safe list of a workspace's finished jobs.

It is kept as two files, so that recording a job costs the same however many
the workspace holds:

- ``manifest.json``, a snapshot ``{"jobs": [...]}`` (oldest first), replaced
  atomically and only now and then (compaction);
- its log, ``manifest.<inode>.log``: one JSON line per change since that
  snapshot, ``{"add": job}`` or ``{"drop": [ids]}``, appended and fsynced
  under the workspace lock. The log is named after the snapshot's inode, so a
  reader holding a snapshot finds the log that belongs to it, and a
  compaction (a new snapshot, a new inode, a fresh log) never races a reader.

A line torn by a crash is never newline-terminated: readers ignore it and
the next writer cuts it off. Every write holds the workspace lock.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from handoff.files import write_json

from .records import Job, Manifest
from .workspace import Workspace, is_valid_id

#: One line of a manifest's log: a job added (``{"add": job}``) or jobs dropped (``{"drop": [id, ...]}``).
Entry = dict[str, Any]
#: Each finished job's own description, in its directory.
JOB_RECORD = "job.json"
log = logging.getLogger("darkroom.storage")


def empty_manifest() -> Manifest:
    """Return the manifest of a workspace with nothing in it."""
    return {"jobs": []}


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


#: A log longer than this and than its snapshot is folded into a new snapshot.
COMPACT_BYTES = 64 * 1024


class Damaged(ValueError):
    """The snapshot or a complete line of its log is not a manifest's."""


class _Replaced(Exception):
    """The snapshot was compacted away while being read: read again."""


def log_path(ws: Workspace, snapshot_inode: int) -> Path:
    """The log of changes since the snapshot with this inode."""
    return ws.path / f"manifest.{snapshot_inode}.log"


def _is_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    if "add" in entry:
        return is_valid_manifest({"jobs": [entry["add"]]})
    return isinstance(entry.get("drop"), list)


def _parse_log(data: bytes) -> tuple[list[Entry], int]:
    """The complete entries in ``data``, and the bytes they take (a torn last line is left out)."""
    end = data.rfind(b"\n") + 1
    entries = []
    for line in data[:end].splitlines():
        try:
            entry = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Damaged(f"a line of the log is not JSON: {line[:80]!r}") from exc
        if not _is_entry(entry):
            raise Damaged(f"a line of the log is not a change: {line[:80]!r}")
        entries.append(entry)
    return entries, end


def _replay(jobs: list[Job], entries: list[Entry]) -> list[Job]:
    """A new list: ``jobs`` with the log's entries applied, oldest first."""
    by_id = {job["id"]: job for job in jobs}
    for entry in entries:
        if "add" in entry:
            added: Job = entry["add"]
            by_id.pop(added["id"], None)
            by_id[added["id"]] = added
        else:
            for job_id in entry["drop"]:
                by_id.pop(job_id, None)
    return sorted(by_id.values(), key=lambda j: (j["created"], j["id"]))


@dataclass(frozen=True)
class _Read:
    """A manifest as read: the snapshot it started from (inode, mtime, size) and the log bytes applied."""

    snapshot: tuple[int, int, int] | None
    offset: int
    manifest: Manifest

    @property
    def bytes_read(self) -> int:
        """What was read to make this manifest: its snapshot and the log lines applied."""
        return (self.snapshot[2] if self.snapshot else 0) + self.offset


def _read(ws: Workspace, known: _Read | None) -> _Read:
    """Read the manifest, from ``known`` on if its snapshot is still the current one.

    Raises Damaged, or _Replaced if a compaction replaced the snapshot mid-read.
    The snapshot is read through one open file, and its log is named after
    that file's inode: the pair always belongs together.
    """
    try:
        f = open(ws.manifest_path, "rb")  # on NFS, open revalidates what a bare stat may cache
    except FileNotFoundError:
        return _Read(None, 0, empty_manifest())
    with f:
        st = os.fstat(f.fileno())
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        if known is None or known.snapshot != identity:
            try:
                data = json.loads(f.read())
            except (ValueError, UnicodeDecodeError) as exc:
                raise Damaged("the snapshot is not JSON") from exc
            if not is_valid_manifest(data):
                raise Damaged("the snapshot is not a manifest")
            known = _Read(identity, 0, {"jobs": data["jobs"]})
    try:
        with open(log_path(ws, st.st_ino), "rb") as log_file:
            size = os.fstat(log_file.fileno()).st_size
            if size == known.offset:
                return known
            if size < known.offset:  # shortened behind our back: read it all again
                return _read(ws, None)
            log_file.seek(known.offset)
            tail = log_file.read()
    except FileNotFoundError:
        try:
            current = os.stat(ws.manifest_path)
        except FileNotFoundError:
            current = None
        if current is None or current.st_ino != st.st_ino:
            raise _Replaced from None
        return known  # no change since the snapshot
    entries, used = _parse_log(tail)
    if not entries:
        return known
    return _Read(identity, known.offset + used, {"jobs": _replay(known.manifest["jobs"], entries)})


def rebuild_manifest(ws: Workspace) -> Manifest:
    """Set a damaged manifest (and its log) aside and write a new one from the jobs' own records. Hold the lock."""
    stamp = int(time.time() * 1000)
    damaged = ws.manifest_path.with_name(f"manifest.json.damaged-{stamp}")
    inode = os.stat(ws.manifest_path).st_ino
    os.replace(ws.manifest_path, damaged)
    if log_path(ws, inode).exists():
        os.replace(log_path(ws, inode), ws.path / f"manifest.log.damaged-{stamp}")
    jobs: list[Job] = []
    for entry in ws.path.iterdir():
        record = read_job_record(entry) if is_valid_id(entry.name) and entry.is_dir() else None
        if record is not None:
            jobs.append(record)
    jobs.sort(key=lambda j: (j["created"], j["id"]))
    manifest: Manifest = {"jobs": jobs}
    _write_snapshot(ws, jobs)
    log.warning("workspace %s: damaged manifest set aside as %s; rebuilt with %d jobs from their records",
                ws.id, damaged.name, len(jobs))
    return manifest


def _load_locked(ws: Workspace) -> Manifest:
    """The manifest, rebuilt first if it is damaged. Hold the lock (no compaction can race this read)."""
    try:
        found = _read(ws, _parsed.get(ws.manifest_path))
    except Damaged:
        return rebuild_manifest(ws)
    _parsed.put(ws.manifest_path, found)
    return found.manifest


#: How much manifest text (snapshot and log bytes) this process keeps parsed, all workspaces together.
#: Parsed, a job takes a few times its text: a few MB in all, whatever the sessions and their jobs.
MANIFEST_CACHE_BYTES = 256 * 1024


class _ParsedManifests:
    """What this process last read of each manifest: a read that finds the same snapshot
    reads only the log lines added since.

    Bounded in bytes (of the text read), least recently used first out, so
    the web process keeps as much whatever number of sessions or jobs it has
    seen. The manifest used last is kept whatever its size: a large gallery
    being looked at is parsed once, not at every request.
    """

    def __init__(self, max_bytes: int = MANIFEST_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes_held = 0
        self.entries: OrderedDict[Path, _Read] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path) -> _Read | None:
        with self.lock:
            found = self.entries.get(path)
            if found is not None:
                self.entries.move_to_end(path)
            return found

    def put(self, path: Path, found: _Read) -> None:
        with self.lock:
            replaced = self.entries.pop(path, None)
            self.bytes_held += found.bytes_read - (replaced.bytes_read if replaced else 0)
            self.entries[path] = found
            while self.bytes_held > self.max_bytes and len(self.entries) > 1:
                _, gone = self.entries.popitem(last=False)
                self.bytes_held -= gone.bytes_read


_parsed = _ParsedManifests()


def load_manifest(ws: Workspace) -> Manifest:
    """Return the workspace's manifest (an empty one if it has none yet); treat it as read-only.

    Reading needs no lock: the snapshot is replaced atomically and the log
    only grows by whole lines. A read after an earlier one of this process
    costs two opens and the new lines, whatever the job count; callers share
    the object returned and must not modify it. A damaged manifest is set
    aside and rebuilt, under the lock, from the record each finished job
    keeps in its directory.
    """
    for _ in range(3):
        try:
            found = _read(ws, _parsed.get(ws.manifest_path))
        except _Replaced:  # compacted meanwhile: the new snapshot is there now
            continue
        except Damaged:
            break
        _parsed.put(ws.manifest_path, found)
        return found.manifest
    with ws.lock():
        return _load_locked(ws)


def read_manifest(ws: Workspace) -> Manifest:
    """The manifest as on disk now, read whole (no cache); raises Damaged. For checks and tests."""
    return _read(ws, None).manifest


def _write_snapshot(ws: Workspace, jobs: list[Job]) -> None:
    """Replace the snapshot with ``jobs`` and start its log afresh. Hold the lock."""
    try:
        old: int | None = os.stat(ws.manifest_path).st_ino
    except FileNotFoundError:
        old = None
    # A log left by an older snapshot that had the new one's inode (a crash
    # between a compaction and its clean-up) must not be taken for this one's.
    write_json(ws.manifest_path, {"jobs": jobs}, durable=ws.durable,
                      on_inode=lambda inode: log_path(ws, inode).unlink(missing_ok=True))
    if old is not None:
        log_path(ws, old).unlink(missing_ok=True)


def _append(ws: Workspace, entry: Entry) -> None:
    """Add one change to the log, durably; fold the log into a new snapshot once it outgrows it. Hold the lock."""
    try:
        snapshot = os.stat(ws.manifest_path)
    except FileNotFoundError:
        _write_snapshot(ws, [])
        snapshot = os.stat(ws.manifest_path)
    line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
    with open(log_path(ws, snapshot.st_ino), "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # a line torn by a crash: cut it off before adding ours
                f.seek(0)
                size = f.read().rfind(b"\n") + 1
                f.truncate(size)
        f.write(line)
        f.flush()
        if ws.durable:
            os.fsync(f.fileno())
    if size + len(line) > max(COMPACT_BYTES, snapshot.st_size):
        try:
            _write_snapshot(ws, _load_locked(ws)["jobs"])
        except OSError as exc:  # the change is recorded; folding the log can wait for the next one
            if not is_disk_full(exc):
                raise
            log.warning("workspace %s: no room to fold the manifest's log into a snapshot yet", ws.id)


def write_job_record(ws: Workspace, job: Job) -> None:
    """Keep a finished job's description in its own directory, so a damaged manifest can be rebuilt.

    Not fsynced: the log line that lists the job is, and holds the same description.
    """
    write_json(ws.job_dir(job["id"]) / JOB_RECORD, job, durable=False)


def read_job_record(job_dir: Path) -> Job | None:
    """The job record in ``job_dir``, or None if it has none (still running) or it is unreadable."""
    try:
        record = read_json(job_dir / JOB_RECORD)
    except (ValueError, UnicodeDecodeError):
        return None
    if is_valid_manifest({"jobs": [record]}) and record["id"] == job_dir.name:
        return cast(Job, record)
    return None


def record_job(ws: Workspace, job: Job) -> None:
    """Add a finished job to the manifest: one line appended to its log.

    The job's own record is written first: a job in the manifest always has one.
    """
    write_job_record(ws, job)
    with ws.lock():
        _append(ws, {"add": job})
    ws.release_job_dir(job["id"])  # listed now: no cleanup asks who holds it


#: The error numbers of a file system (or a quota) with no room left.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system (or the quota) has no room left."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def _forget_jobs(ws: Workspace, job_ids: Callable[[Manifest], list[str]]) -> list[str]:
    """Drop jobs from the manifest, then delete their directories; return the ids dropped.

    The manifest changes first, so no reader finds a listed job without its
    files. On a full disk, the log cannot grow: then the directories go
    first, to make the room it needs (a reader may briefly find a listed job
    whose files are gone, and gets a 404 for them).
    """
    with ws.lock():
        gone = job_ids(_load_locked(ws))
        if not gone:
            return []
        try:
            _append(ws, {"drop": gone})
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            for job_id in gone:
                ws.remove_job_dir(job_id)
            _append(ws, {"drop": gone})
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


def find_job(manifest: Manifest, job_id: str) -> Job | None:
    """Return the job with this id from a loaded manifest, or None."""
    return next((j for j in manifest["jobs"] if j["id"] == job_id), None)
