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

import concurrent.futures
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import sys
import threading
import time
import types
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from . import child
from .pipeline import BadImage

log = logging.getLogger("darkroom.jobs")

#: Imported once by the forkserver, so a child starts with Pillow loaded.
PRELOAD = ["imaging.child", "PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin"]


def main_imports() -> list[str]:
    """Return the modules the main script (``flask``, ``gunicorn``...) takes its names from.

    Every forkserver child re-runs the parent's main script before its
    target (as ``__mp_main__``). Python 3.11 ignores ``"__main__"`` in
    the preload list, so preloading what that script imports instead turns
    the re-run from ~100 ms of imports into a few lookups.
    """
    main = sys.modules.get("__main__")
    names = set()
    for value in vars(main).values() if main else ():
        name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and name not in ("__main__", "builtins") and name in sys.modules:
            names.add(name)
    return sorted(names)


class Busy(Exception):
    """Every child slot stayed taken for the whole queue timeout."""


#: glibc tunables for the forkserver and so for every child it forks: malloc
#: asks for transparent huge pages on its large mappings, which cuts the page
#: faults of decoding a photo into fresh memory by ~25% (see bench/RESULTS.md).
CHILD_GLIBC_TUNABLES = "glibc.malloc.hugetlb=1"

_forkserver_lock = threading.Lock()


def mp_context(method: str = "forkserver") -> BaseContext:
    """Return a multiprocessing context that never forks the threaded web process."""
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD + main_imports())
        _start_forkserver()
    return ctx


def _start_forkserver() -> None:
    # The tunables are read when a program starts, so they must be in the
    # environment the forkserver is executed with; the web process keeps its own.
    with _forkserver_lock:
        before = os.environ.get("GLIBC_TUNABLES")
        os.environ["GLIBC_TUNABLES"] = ":".join(filter(None, [before, CHILD_GLIBC_TUNABLES]))
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if before is None:
                del os.environ["GLIBC_TUNABLES"]
            else:
                os.environ["GLIBC_TUNABLES"] = before


def describe_exit(exitcode: int | None) -> str:
    """Return a person's description of a child's exit code."""
    if exitcode is not None and exitcode < 0:
        return f"The image worker was killed by signal {-exitcode}."
    return f"The image worker stopped unexpectedly (exit status {exitcode})."


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

    def close(self) -> None:
        """Stop any children kept waiting."""


def collect(proc: BaseProcess, conn: Connection, timeout: float) -> dict[str, Any]:
    """Read a child's result (before joining it, so a large result cannot deadlock), then join it."""
    result: dict[str, Any]
    try:
        if conn.poll(timeout):
            result = conn.recv()
        else:
            proc.kill()
            result = {"status": "timeout", "message": f"The job took longer than {timeout:g} s and was stopped."}
    except (EOFError, OSError):  # the child died before it could answer
        result = {"status": "killed"}
    finally:
        conn.close()
    proc.join(5)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    result["exitcode"] = proc.exitcode
    if result["status"] == "killed":
        result["message"] = describe_exit(proc.exitcode)
    return result


class InlineRunner(Runner):
    """Runs the pipeline in the web process: no isolation (the benchmark's anchor)."""

    name = "inline"

    def _run(self, spec: child.JobSpec) -> dict[str, Any]:
        return child.run_job({**spec, "memory_limit_mb": None})


class SpawnRunner(Runner):
    """Starts a fresh ``spawn`` child for each job."""

    name = "spawn"

    def __init__(self, *args: Any, method: str = "spawn") -> None:
        super().__init__(*args)
        self._ctx = mp_context(method)

    def _run(self, spec: child.JobSpec) -> dict[str, Any]:
        parent_end, child_end = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=child.job_main, args=(child_end, spec), daemon=True)
        proc.start()
        child_end.close()
        return collect(proc, parent_end, self.job_timeout)


class PoolRunner(Runner):
    """``ProcessPoolExecutor`` with one task per child."""

    name = "pool"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            self.max_children, mp_context=mp_context("spawn"), max_tasks_per_child=1
        )

    def _run(self, spec: child.JobSpec) -> dict[str, Any]:
        future = self._pool.submit(child.run_job, spec)
        try:
            return future.result(self.job_timeout)
        except concurrent.futures.TimeoutError:
            return {"status": "timeout", "message": f"The job took longer than {self.job_timeout:g} s."}
        except concurrent.futures.process.BrokenProcessPool:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.max_children, mp_context=mp_context("spawn"), max_tasks_per_child=1
            )
            return {"status": "killed", "message": describe_exit(None)}

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class WarmRunner(Runner):
    """Keeps ``max_children`` forkserver children started and waiting for a job each."""

    name = "darkroom"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._ctx = mp_context("forkserver")
        self._ready: list[tuple[BaseProcess, Connection]] = []
        self._changed = threading.Condition()
        self._refiller: threading.Thread | None = None
        self._closed = False

    def _start_one(self) -> tuple[BaseProcess, Connection]:
        parent_end, child_end = self._ctx.Pipe()
        proc = self._ctx.Process(target=child.warm_main, args=(child_end,), daemon=True)
        proc.start()
        child_end.close()
        return proc, parent_end

    def _refill_forever(self) -> None:
        # One background thread keeps the waiting children topped up: starting
        # one costs a few ms of the forkserver's time, none of a request's.
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or len(self._ready) < self.max_children)
                if self._closed:
                    return
            started = self._start_one()
            with self._changed:
                self._ready.append(started)

    def _ensure_refiller(self) -> None:
        if self._refiller is None:
            self._refiller = threading.Thread(target=self._refill_forever, name="darkroom-refill", daemon=True)
            self._refiller.start()

    def _take(self) -> tuple[BaseProcess, Connection]:
        with self._changed:
            self._ensure_refiller()
            while self._ready:
                proc, conn = self._ready.pop()
                if proc.is_alive():
                    return proc, conn
                conn.close()
                proc.join()
        return self._start_one()  # none waiting: start one now (a cold start)

    def _run(self, spec: child.JobSpec) -> dict[str, Any]:
        proc, conn = self._take()
        try:
            conn.send(spec)
        except (BrokenPipeError, OSError):
            conn.close()
            proc.join(5)
            return {"status": "killed", "message": describe_exit(proc.exitcode), "exitcode": proc.exitcode}
        try:
            return collect(proc, conn, self.job_timeout)
        finally:
            # Replace the child only now, so starting it competes with no job for the CPU.
            with self._changed:
                self._changed.notify()

    def warm_up(self) -> None:
        """Start the waiting children now rather than on the first job."""
        with self._changed:
            self._ensure_refiller()
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            ready, self._ready = self._ready, []
            self._changed.notify_all()
        if self._refiller is not None:
            self._refiller.join(10)
        for proc, conn in ready:
            conn.close()  # the child sees EOF and exits
            proc.join(5)


RUNNERS: dict[str, type[Runner]] = {
    r.name: r for r in (InlineRunner, SpawnRunner, PoolRunner, WarmRunner)
}


def create_runner(kind: str, max_children: int, queue_timeout: float, job_timeout: float) -> Runner:
    """Return the runner named ``kind`` (one of :data:`RUNNERS`)."""
    try:
        cls = RUNNERS[kind]
    except KeyError:
        raise ValueError(f"DARKROOM_RUNNER must be one of {sorted(RUNNERS)}, not {kind!r}") from None
    return cls(max_children, queue_timeout, job_timeout)


def default_max_children() -> int:
    """Return the default number of concurrent children: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
