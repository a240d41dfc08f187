"""Per-session workspaces, their manifests and locks. Knows nothing of Flask."""

from .manifest import (
    DISK_FULL_ERRNOS,
    clear_jobs,
    discard_job,
    find_job,
    is_disk_full,
    load_manifest,
    read_manifest,
    record_job,
    stored_bytes,
)
from .progress import reclaim_abandoned, running_jobs
from .records import Job, Manifest, Output, Preview, Source, Upload
from .workspace import (
    LOCK_TYPES,
    NotFound,
    Workspace,
    WorkspaceError,
    is_valid_id,
    new_id,
)

__all__ = [
    "DISK_FULL_ERRNOS",
    "Job",
    "Manifest",
    "Output",
    "Preview",
    "Source",
    "Upload",
    "LOCK_TYPES",
    "NotFound",
    "Workspace",
    "WorkspaceError",
    "clear_jobs",
    "discard_job",
    "find_job",
    "is_disk_full",
    "is_valid_id",
    "load_manifest",
    "read_manifest",
    "new_id",
    "reclaim_abandoned",
    "record_job",
    "running_jobs",
    "stored_bytes",
]
