"""The records a job leaves, as the manifest, the job's ``job.json`` and the session row hold them.

Plain JSON on disk, typed here: the web process writes the upload's part, the
child the rest (``imaging.job.run_job``), and every reader finds the same keys.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Preview(TypedDict):
    """One WebP preview of an image, for the gallery's tiles."""

    file: str
    width: int
    height: int
    bytes: int


class Written(TypedDict):
    """An encoded file: its name in the job's directory, size, format and length."""

    file: str
    width: int
    height: int
    format: str
    bytes: int
    frames: NotRequired[int]  # an animation's frames, as written


class Output(Written):
    """One op's output: the file, the op that made it, how long it took, and its previews."""

    op: str  # the op as the client asked for it, arguments and all ("thumbnail:320")
    label: str
    ms: float
    previews: list[Preview]


class Header(TypedDict):
    """What an image's header says, before any pixel is decoded (a HEIF's size may be unknown)."""

    format: str
    width: int | None
    height: int | None


class Upload(Header):
    """The source as the web process stored it, before a child decoded it."""

    name: str  # the client's file name, made safe to show
    file: str  # the source's name in the job's directory
    bytes: int


class Source(TypedDict):
    """The source once its child decoded it: its size as shown, previews, and frames or pictures."""

    name: str
    file: str
    bytes: int
    format: str
    width: int
    height: int
    previews: list[Preview]
    frames: NotRequired[int]  # an animation's
    pictures: NotRequired[int]  # a multi-picture file's (MPO, a TIFF's pages)


class Job(TypedDict):
    """A finished job, as the manifest lists it."""

    id: str
    created: str  # ISO 8601, UTC
    source: Source
    outputs: list[Output]
    idempotency_key: NotRequired[str]


class Manifest(TypedDict):
    """A workspace's finished jobs, oldest first."""

    jobs: list[Job]
