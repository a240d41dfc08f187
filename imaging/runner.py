"""Runs image jobs outside the web process and reports how each one ended.

Four strategies share one interface so they can be compared on the same code
path (``DARKROOM_RUNNER``):

- ``darkroom`` (default): children forked by a forkserver that has Pillow
  preloaded, each started *ahead of time* and waiting on a Pipe for its one
  job; the start-up cost is paid between requests, not during one.
- ``spawn``: a fresh ``spawn`` child per job (the naive fix).
- ``pool``: ``ProcessPoolExecutor(max_tasks_per_child=1)``.
- ``inline``: the pipeline in the web process itself (the memory ratchet).

Every child does exactly one job and exits, so the memory it touched goes
back to the system. No strategy forks the (threaded) web process itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from . import child
from .pipeline import BadImage
from .processes import describe_exit

log = logging.getLogger("darkroom.jobs")


class Busy(Exception):
    """Every child slot stayed taken for the whole queue timeout."""


class JobFailed(Exception):
    """A child failed for a reason that is the server's, not the upload's."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JobTimedOut(JobFailed):
    """The child ran past its time limit and was killed."""

    status_code = 504


def raise_for_result(result: dict[str, Any]) -> None:
    """Turn a failed job's result into the matching exception; do nothing on success."""
    status = result["status"]
    if status == "ok":
        return
    if status == "bad_image":
        raise BadImage(result["message"])
    if status == "timeout":
        raise JobTimedOut(result["message"])
    raise JobFailed(result.get("message") or describe_exit(result.get("exitcode")))


class Runner:
    """Base runner: bounds concurrency, times and logs every job."""

    name = "base"

    def __init__(self, max_children: int, queue_timeout: float, job_timeout: float) -> None:
        self.max_children = max_children
        self.queue_timeout = queue_timeout
        self.job_timeout = job_timeout
        self._slots = threading.BoundedSemaphore(max_children)

    def run(self, spec: child.JobSpec) -> dict[str, Any]:
        """Run one job and return its result dict (``status`` is ``ok`` or why not)."""
        if not self._slots.acquire(timeout=self.queue_timeout):
            raise Busy()
        started = time.perf_counter()
        try:
            result = self._run(spec)
        finally:
            self._slots.release()
        result["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "job %s ops=%s status=%s duration_ms=%.1f exit=%s child_pid=%s child_peak_rss_kb=%s "
            "runner=%s web_pid=%s",
            spec["job_id"], ",".join(spec["ops"]), result["status"], result["duration_ms"],
            result.get("exitcode"), result.get("pid"), result.get("peak_rss_kb"), self.name, os.getpid(),
        )
        if result["status"] != "ok":
            log.warning("job %s failed: %s", spec["job_id"], result.get("detail") or result.get("message"))
        return result

    def _run(self, spec: child.JobSpec) -> dict[str, Any]:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Get ready for the first job (start children ahead of time, if the runner keeps any)."""

    def close(self) -> None:
        """Stop any children kept waiting."""
