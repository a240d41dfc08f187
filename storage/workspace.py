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
from handoff.files import LOCK_TYPES, is_valid_id, new_lock
from handoff.files import new_id as new_id  # part of storage's API


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

    def create_job_dir(self, job_id: str) -> Path:
        """Create and return the directory of a new job."""
        path = self.job_dir(job_id)
        path.mkdir(parents=True)
        return path

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
