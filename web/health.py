"""Probes for a load balancer or an orchestrator: is this process alive, and can it take a photo now?

``/healthz`` (liveness) answers from memory. ``/readyz`` (readiness) asks
each part a job needs and says which one failed: the session database, the
storage root (writable, with room), the children, and Redis when the limits
count there. Neither touches the session: a probe writes no row and sets no
cookie, however often it calls.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, current_app
from flask.typing import ResponseReturnValue
from sqlalchemy import text

import handoff

from .limits import LIMITER_KEY, human_size

bp = Blueprint("health", __name__)

#: A check's verdict: ``ok``; ``degraded`` (jobs go on, something is worse than it should be); ``failed``.
Check = tuple[str, str]


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers requests. No database, no disk."""
    return {"status": "alive"}


def check_database() -> Check:
    """The session database answers a query within ``DARKROOM_DB_TIMEOUT``."""
    engine = current_app.session_interface.client.engine  # type: ignore[attr-defined]
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any driver's error: the verdict, not a 500
        return "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return "ok", engine.dialect.name


def check_storage() -> Check:
    """The storage root takes a file, and has more free space than ``DARKROOM_MIN_FREE_MB``."""
    root = Path(current_app.config["DARKROOM_STORAGE_ROOT"])
    probe = root / f".readyz-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ready?")
        probe.unlink()
        free = shutil.disk_usage(root).free
    except OSError as exc:
        return "failed", f"{root} is not writable: {exc.strerror or exc}"
    reserve = current_app.config["DARKROOM_MIN_FREE_MB"] * 1024**2
    if free < reserve:
        return "failed", f"{human_size(free)} free, under the reserve of {human_size(reserve)}: uploads are refused"
    return "ok", f"{human_size(free)} free"


def check_children() -> Check:
    """In ``warm`` mode, a child is waiting for a job (or all are busy with one); else the mode needs none."""
    state = handoff.status()
    if "waiting" not in state:
        return "ok", f"{state['mode']} mode"
    summary = f"{state['waiting']} waiting, {state['busy']} of {state['slots']} busy"
    if state["forkserver"] == "down":
        handoff.Handoff.warm_up()
        return "failed", f"the forkserver is down (restarting it); {summary}"
    if state["waiting"] == 0 and state["busy"] < state["slots"]:
        handoff.Handoff.warm_up()  # a new process starts its children now, not on its first job
        return "failed", f"no child is waiting yet (starting them); {summary}"
    return "ok", summary


def check_limits() -> Check:
    """Where the limits count answers; if it does not, jobs go on, counted per process."""
    if not current_app.config["RATELIMIT_ENABLED"]:
        return "ok", "limits off"
    uri = current_app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith("memory://"):
        return "ok", "counted per process (memory://)"
    try:
        reachable = current_app.extensions[LIMITER_KEY].storage.check()
    except Exception:  # noqa: BLE001 - the storage's own errors vary
        reachable = False
    if not reachable:
        return "degraded", "the limits' storage does not answer: each process counts alone until it is back"
    return "ok", "shared counting"


CHECKS: dict[str, Callable[[], Check]] = {
    "database": check_database, "storage": check_storage, "children": check_children, "limits": check_limits,
}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: 200 if a job can be taken now, else 503; each part's verdict and how long it took."""
    results = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        verdict, detail = check()
        results[name] = {"status": verdict, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}
    ready = all(r["status"] != "failed" for r in results.values())
    return {"status": "ready" if ready else "not ready", "checks": results}, 200 if ready else 503
