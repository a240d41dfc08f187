"""Per-session workspaces: one directory per session, one subdirectory per job."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import BaseFileLock

# Ids, locks and lock types are handoff's, whose call records live beside the
# jobs: ids are made by new_id, never taken from a client, and is_valid_id
# guards every id that comes back in a URL before it gets near the filesystem.
# (filelock's strict variant is not offered as a lock type: a holder killed
# while holding it wedges the workspace until someone deletes the file by hand.)
from handoff.files import LOCK_TYPES as LOCK_TYPES  # these three are part of storage's API
from handoff.files import is_live, lease, new_lock, read_json, write_json
from handoff.files import is_valid_id as is_valid_id
from handoff.files import new_id as new_id

#: The file in a job directory naming the process that made it (a lease: host, pid, deadline).
OWNER_FILE = "owner.json"


class WorkspaceError(Exception):
    """Base class for storage errors."""


class NotFound(WorkspaceError):
    """A job or file that is not in this workspace."""


@dataclass(frozen=True)
class Workspace:
    """A session's directory under ``root``, its manifest and its lock.

    Plain data, so it can be pickled to a child. ``durable=False`` skips the
    fsyncs, for scratch workspaces whose contents nobody needs after a crash.
    """

    root: str
    id: str
    lock_type: str = "file"
    lock_timeout: float = 30.0
    durable: bool = True

    def __post_init__(self) -> None:
        if not is_valid_id(self.id):
            raise ValueError(f"not a workspace id: {self.id!r}")
        if self.lock_type not in LOCK_TYPES:
            raise ValueError(f"lock type must be one of {sorted(LOCK_TYPES)}")

    @property
    def path(self) -> Path:
        """The workspace directory."""
        return Path(self.root) / self.id

    @property
    def manifest_path(self) -> Path:
        """The workspace's ``manifest.json``."""
        return self.path / "manifest.json"

    @property
    def lock_path(self) -> Path:
        # Beside the directory, not in it: clearing the workspace must never
        # delete a lock file that another process may be holding.
        return Path(self.root) / f"{self.id}.lock"

    def lock(self) -> BaseFileLock:
        """Return a new (unacquired) lock object guarding this workspace."""
        return new_lock(self.lock_path, self.lock_type, self.lock_timeout)

    def job_dir(self, job_id: str) -> Path:
        """Return the directory of one job (which may not exist yet)."""
        if not is_valid_id(job_id):
            raise NotFound(job_id)
        return self.path / job_id

    def create_job_dir(self, job_id: str, hold_for: float | None = None) -> Path:
        """Create and return the directory of a new job.

        ``hold_for`` names this process as the directory's owner for that many
        seconds: until the job is recorded, the cleanup spares the directory
        while its owner lives and takes it as soon as the owner has died, at
        whatever point of the job (see :func:`storage.reclaim_abandoned`).
        """
        path = self.job_dir(job_id)
        path.mkdir(parents=True)
        if hold_for is not None:
            write_json(path / OWNER_FILE, lease(hold_for))
        return path

    def release_job_dir(self, job_id: str) -> None:
        """Drop the hold on a job's directory (``create_job_dir(hold_for=...)``), if any."""
        (self.job_dir(job_id) / OWNER_FILE).unlink(missing_ok=True)

    def job_owner_alive(self, job_id: str) -> bool | None:
        """Whether the process holding a job's directory can still be at work on it; None if none holds it."""
        owner = read_json(self.job_dir(job_id) / OWNER_FILE)
        return is_live(owner) if isinstance(owner, dict) else None

    def remove_job_dir(self, job_id: str) -> None:
        """Delete one job's directory and everything in it."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def resolve_file(self, job_id: str, filename: str) -> Path:
        """Return the real path of a file in a job directory, or raise NotFound.

        Refuses anything whose real path leaves the job directory (``..``,
        absolute names, symlinks pointing out).
        """
        job_dir = self.job_dir(job_id).resolve()
        candidate = (job_dir / filename).resolve()
        if candidate.parent != job_dir or not candidate.is_file():
            raise NotFound(filename)
        return candidate

    def destroy(self) -> None:
        """Delete the whole workspace directory and its lock file."""
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            pass
