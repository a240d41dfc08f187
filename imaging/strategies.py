"""The four runners: the shipped one (``darkroom``) and the three it is measured against."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from . import child
from .processes import collect, describe_exit, mp_context
from .runner import Runner


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
        self._ctx: BaseContext | None = None
        self._ctx_lock = threading.Lock()
        self._ready: list[tuple[BaseProcess, Connection]] = []
        self._changed = threading.Condition()
        self._refiller: threading.Thread | None = None
        self._closed = False

    def _context(self) -> BaseContext:
        # Created on first use (usually in the refill thread), because the
        # first call starts the forkserver, which takes a moment.
        with self._ctx_lock:
            if self._ctx is None:
                self._ctx = mp_context("forkserver")
            return self._ctx

    def _start_one(self) -> tuple[BaseProcess, Connection]:
        ctx = self._context()
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=child.warm_main, args=(child_end,), daemon=True)
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


def check_runner(kind: str) -> None:
    """Raise ValueError unless ``kind`` names one of :data:`RUNNERS`."""
    if kind not in RUNNERS:
        raise ValueError(f"DARKROOM_RUNNER must be one of {sorted(RUNNERS)}, not {kind!r}")


def create_runner(kind: str, max_children: int, queue_timeout: float, job_timeout: float) -> Runner:
    """Return the runner named ``kind`` (one of :data:`RUNNERS`)."""
    check_runner(kind)
    return RUNNERS[kind](max_children, queue_timeout, job_timeout)


def default_max_children() -> int:
    """Return the default number of concurrent children: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
