"""Darkroom's image job: what ``handoff.run`` runs in a child for each upload.

Kept light on purpose: a forkserver child imports this module (and Pillow),
never the Flask app. The job takes plain picklable data and records its
result in the workspace manifest, under the workspace lock.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path
from typing import NotRequired, TypedDict

from PIL import Image

from handoff import report
from storage import Job, Source, Upload, Workspace, record_job
from storage.cores import CORES_DIR, claimed_cores, machine_cores

from .encode import Encoding, EncodingFields
from .errors import BadImage
from .ops import BadOp, OpCall, load_plugins, parse_ops
from .pipeline import render

# Register Pillow's common codecs now: in the forkserver this runs once, and
# every child it forks starts with them (otherwise each child pays ~3 ms).
Image.preinit()

#: Decoding a photo and previewing it, relative to a grayscale op on it (see ``Op.cost``).
DECODE_COST = 2.7



class JobSpec(TypedDict):
    """What the web process hands a job's child: where, which ops, the stored upload, the settings it needs."""

    workspace: Workspace
    job_id: str
    ops: list[str]
    source: Upload
    created: str  # ISO 8601, UTC
    max_pixels: int
    encoding: NotRequired[EncodingFields]  # the defaults of imaging.Encoding where missing
    idempotency_key: NotRequired[str | None]
    threads: NotRequired[int | None]  # DARKROOM_JOB_THREADS; None: the machine's cores
    cores_dir: NotRequired[str | None]  # DARKROOM_CORES_DIR
    plugins: NotRequired[list[str]]  # DARKROOM_PLUGINS


class JobResult(TypedDict):
    """What a job's child returns: the job as the manifest now lists it, and the child's own figures."""

    job: Job
    pid: int
    threads: int
    ms: float
    peak_rss_kb: int


def progress_percent(calls: list[OpCall], done: list[OpCall]) -> int:
    """How far a job is once the source is decoded and the ``done`` of its ``calls`` are written.

    Weighted by each op's cost, so blur and sharpen move the bar as far as
    they take time; 100 once every op is done.
    """
    whole = DECODE_COST + sum(call.op.cost for call in calls)
    return round(100 * (DECODE_COST + sum(call.op.cost for call in done)) / whole)


def run_job(spec: JobSpec) -> JobResult:
    """Render one job's outputs into its directory, then record it in the manifest.

    Returns ``{"job": ...}`` and the child's figures. An upload Darkroom
    refuses raises :class:`BadImage`, which ``handoff`` raises again as itself
    in the web process (``HANDOFF_RERAISE``); anything else raises too, and
    reaches the web process as ``ChildFailed``: a bug, never the file's fault.
    Progress goes to the call's note (``handoff.report``), which the web
    process started with the job's id and name.
    """
    started = time.perf_counter()
    ws: Workspace = spec["workspace"]
    job_id: str = spec["job_id"]
    ops: list[str] = spec["ops"]

    load_plugins(spec.get("plugins", ()))
    try:
        calls = parse_ops(ops)
    except BadOp as exc:
        raise BadImage(str(exc)) from None

    def progress(working: OpCall | None, done: list[OpCall]) -> None:
        if working is not None:  # once all are done, the web process records the job
            report(op=working.spec, label=working.label, done=len(done), total=len(ops),
                   percent=progress_percent(calls, done))

    try:
        # The other jobs running on this machine keep the cores they claimed: this one takes what is left.
        with claimed_cores(min(len(calls), spec.get("threads") or machine_cores()),
                           Path(spec.get("cores_dir") or CORES_DIR)) as threads:
            decoded, outputs = render(
                ws.job_dir(job_id) / spec["source"]["file"], ws.job_dir(job_id), ops,
                spec["max_pixels"], progress, Encoding(**spec.get("encoding", {})), threads,
            )
    except BadOp as exc:
        raise BadImage(str(exc)) from None
    # The child has decoded the image: its size as shown, and how many frames it has.
    upload = spec["source"]
    source: Source = {"name": upload["name"], "file": upload["file"], "bytes": upload["bytes"],
                      "format": upload["format"], "width": decoded["width"], "height": decoded["height"],
                      "previews": decoded["previews"]}
    if "frames" in decoded:
        source["frames"] = decoded["frames"]
    if "pictures" in decoded:
        source["pictures"] = decoded["pictures"]
    job: Job = {"id": job_id, "created": spec["created"], "source": source, "outputs": outputs}
    if key := spec.get("idempotency_key"):
        job["idempotency_key"] = key
    # The derivatives are all on disk; only now does the job become visible.
    record_job(ws, job)
    return {
        "job": job,
        "pid": os.getpid(),
        "threads": decoded["threads"],
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def rehearse() -> None:
    """Run a whole 8×8 job in a scratch workspace, then delete it (``HANDOFF_REHEARSAL``).

    A forked child shares its memory with the forkserver copy-on-write, and
    the first run of any code path pays for copying the pages it touches.
    A child waiting for work pays that now, off the request's clock.
    """
    with tempfile.TemporaryDirectory(prefix="darkroom-rehearsal-") as scratch:
        # No fsyncs: a job running in another child would wait behind them for its own.
        ws = Workspace(scratch, "0" * 24, durable=False)
        job_dir = ws.create_job_dir("1" * 24)
        Image.new("RGB", (8, 8)).save(job_dir / "source.jpg")
        run_job({
            "workspace": ws, "job_id": "1" * 24, "ops": ["invert"], "created": "", "max_pixels": 64,
            "source": {"name": "source.jpg", "file": "source.jpg", "bytes": 0, "format": "JPEG",
                       "width": 8, "height": 8},
        })
