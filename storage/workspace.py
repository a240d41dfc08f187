"""Per-session workspaces: one directory per session, one subdirectory per job."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import BaseFileLock, FileLock, SoftFileLock

# Ids are generated here, never taken from a client; the pattern guards every
# id that comes back in a URL before it gets near the filesystem.
_ID = re.compile(r"^[0-9a-f]{16,64}$")

#: Lock types by config name. ``file`` is the kernel's ``flock`` (one machine);
#: ``soft`` is an existence lock for shared filesystems (NFS), whose marker a
#: later process reclaims when the holder's PID is dead. (filelock's strict
#: variant is not offered: a holder killed while holding it wedges the
#: workspace until someone deletes the file by hand.)
LOCK_TYPES: dict[str, type[BaseFileLock]] = {
    "file": FileLock,
    "soft": SoftFileLock,
}


class WorkspaceError(Exception):
    """Base class for storage errors."""


class NotFound(WorkspaceError):
    """A job or file that is not in this workspace."""


def new_id() -> str:
    """Return a fresh random id for a workspace or a job."""
    return secrets.token_hex(12)


def is_valid_id(value: str) -> bool:
    """Return whether ``value`` has the shape of an id made by :func:`new_id`."""
    return bool(_ID.match(value))


#: The folder of a workspace that holds its running jobs' progress notes.
NOTES_DIR = "running"


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
        Path(self.root).mkdir(parents=True, exist_ok=True)
        cls = LOCK_TYPES[self.lock_type]
        if cls is SoftFileLock:
            return cls(self.lock_path, timeout=self.lock_timeout)
        return cls(self.lock_path, timeout=self.lock_timeout, preserve_lock_file=True)

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

    def note_path(self, job_id: str) -> Path:
        """Where a running job's progress note is: one folder of notes, so that
        finding the running jobs never lists every job directory."""
        return self.path / NOTES_DIR / f"{self.job_dir(job_id).name}.json"

    def remove_job_dir(self, job_id: str) -> None:
        """Delete one job's directory and everything in it, and its progress note."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self.note_path(job_id).unlink(missing_ok=True)

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
