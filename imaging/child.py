"""Entry points that run inside a child process.

Kept light on purpose: a spawned or forkserver child imports this module
(and Pillow), never the Flask app. Everything crosses the process boundary as
plain picklable data, and results come back through a Pipe or the manifest,
never through shared pointers such as ``Value(c_wchar_p)``.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import MutableMapping
from multiprocessing.connection import Connection
from typing import Any

from PIL import Image

from storage import Workspace, record_job, record_values, write_progress

from .ops import load_plugins
from .pipeline import BadImage, render

# Register Pillow's common codecs now: in the forkserver this runs once, and
# every child it forks starts with them (otherwise each child pays ~3 ms).
Image.preinit()

JobSpec = dict[str, Any]
Result = dict[str, Any]


def peak_rss_kb() -> int:
    """Return this process's peak resident set size in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space, so a runaway image fails here, not in the kernel's OOM killer."""
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_job(spec: JobSpec) -> Result:
    """Render one job's outputs into its directory, then record it in the manifest.

    Returns a small result dict; never raises for a bad image or an exhausted
    memory limit, so every runner reports failures the same way.
    """
    started = time.perf_counter()
    ws: Workspace = spec["workspace"]
    job_id: str = spec["job_id"]
    ops: list[str] = spec["ops"]

    def progress(op: str, done: int) -> None:
        write_progress(
            ws, job_id, pid=os.getpid(), op=op, done=done, total=len(ops), started=spec["started"]
        )

    try:
        load_plugins(spec.get("plugins", ()))
        if spec.get("memory_limit_mb"):
            limit_memory(spec["memory_limit_mb"])
        outputs = render(
            ws.job_dir(job_id) / spec["source"]["file"], ws.job_dir(job_id), ops,
            spec["max_pixels"], progress,
        )
        job = {"id": job_id, "created": spec["created"], "source": spec["source"], "outputs": outputs}
        # The derivatives are all on disk; only now does the job become visible.
        record_job(ws, job)
    except BadImage as exc:
        return {"status": "bad_image", "message": str(exc), "peak_rss_kb": peak_rss_kb()}
    except MemoryError:
        limit = spec.get("memory_limit_mb")
        message = "The image needs more memory than a job may use" + (f" ({limit} MB)." if limit else ".")
        return {"status": "oom", "message": message, "peak_rss_kb": peak_rss_kb()}
    except Exception as exc:  # reported to the parent, which logs it and answers 500
        return {
            "status": "error",
            "message": f"Processing failed inside the image worker ({type(exc).__name__}).",
            "detail": f"{type(exc).__name__}: {exc}",
            "peak_rss_kb": peak_rss_kb(),
        }
    return {
        "status": "ok",
        "pid": os.getpid(),
        "job": job,
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "peak_rss_kb": peak_rss_kb(),
    }


def job_main(conn: Connection, spec: JobSpec) -> None:
    """Entry point of a child started for one given job: run it and report."""
    conn.send(run_job(spec))
    conn.close()


def rehearse() -> None:
    """Run a whole 8×8 job in a scratch workspace, then delete it.

    A forked child shares its memory with the forkserver copy-on-write, and
    the first run of any code path pays for copying the pages it touches.
    A child waiting for work pays that now, off the request's clock.
    """
    with tempfile.TemporaryDirectory(prefix="darkroom-rehearsal-") as scratch:
        ws = Workspace(scratch, "0" * 24)
        job_dir = ws.create_job_dir("1" * 24)
        Image.new("RGB", (8, 8)).save(job_dir / "source.jpg")
        run_job({
            "workspace": ws, "job_id": "1" * 24, "ops": ["invert"], "source": {"file": "source.jpg"},
            "created": "", "started": 0.0, "max_pixels": 64, "memory_limit_mb": None,
        })


def warm_main(conn: Connection) -> None:
    """Entry point of a child started ahead of time: wait for one job, run it, report, exit."""
    rehearse()
    try:
        spec = conn.recv()
    except EOFError:  # the parent went away before it had work for us
        return
    job_main(conn, spec)


def write_to_session(session: MutableMapping[str, str]) -> None:
    """The seed example's function: write one value into a session-like mapping."""
    session["inside_function"] = "inside"


def write_to_manifest(ws: Workspace) -> None:
    """Child side of ``/multi``: run ``write_to_session`` and hand its writes back via the manifest."""
    values: dict[str, str] = {}
    write_to_session(values)
    record_values(ws, values)


def return_value(conn: Connection) -> None:
    """Child side of ``/value``: send a string back through a Pipe."""
    conn.send("inside")
    conn.close()
