"""How a call reaches a child (``HANDOFF_MODE``), behind one interface.

- ``warm`` (default): children forked by a forkserver with the preload
  imported, each started *ahead of time* (and rehearsed, if the app gives a
  rehearsal) and waiting on a Pipe for its one call: the start-up cost is paid
  between requests, not during one.
- ``spawn``: a fresh ``spawn`` child per call (the naive fix).
- ``pool``: ``ProcessPoolExecutor(max_tasks_per_child=1)``.
- ``inline``: the call in the web process itself, no isolation (for tests and
  as the benchmark's anchor).

Every child makes exactly one call and exits, so the memory it touched goes
back to the system. No mode forks the (threaded) web process itself.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from . import _child
from ._child import Call, Outcome
from ._processes import collect, forkserver_alive, forkserver_pid, join, mp_context, outlive, pipe, start
from .errors import Busy, ChildFailed

log = logging.getLogger("handoff")

#: The longest pause, in seconds, between attempts to start a waiting child while starting fails.
RETRY_MAX = 60.0


class Runner:
    """Bounds how many calls of this process run at once."""

    def __init__(self, max_children: int, queue_timeout: float, preload: Sequence[str] = (),
                 rehearsal: str | None = None) -> None:
        self.max_children = max_children
        self.queue_timeout = queue_timeout
        self.preload = preload
        self.rehearsal = rehearsal
        self._slots = threading.BoundedSemaphore(max_children)
        self._busy = 0  # slots taken: calls running or starting
        self._busy_lock = threading.Lock()
        self.modules: dict[str, None] = {}  # of the functions called so far, in order

    def _acquire(self) -> float:
        """Take a slot (or raise Busy); return how long the call waited for it, in seconds."""
        asked = time.perf_counter()
        if not self._slots.acquire(timeout=self.queue_timeout):
            raise Busy(f"All {self.max_children} child slots stayed busy for {self.queue_timeout:g} s.")
        with self._busy_lock:
            self._busy += 1
        return time.perf_counter() - asked

    def _release(self) -> None:
        with self._busy_lock:
            self._busy -= 1
        self._slots.release()

    def status(self) -> dict[str, Any]:
        """How this process's calls stand now: ``slots`` in all, ``busy`` of them taken."""
        return {"slots": self.max_children, "busy": self._busy}

    def _note_module(self, call: Call) -> None:
        module = getattr(call.fn, "__module__", None)
        if module and module not in ("__main__", "__mp_main__") and module not in self.modules:
            self.modules[module] = None

    def run(self, call: Call, timeout: float) -> Outcome:
        """Make the call in a child once a slot is free; raise Busy if none frees in time.

        The outcome also says how long the call waited for its slot (``queue_s``).
        """
        waited = self._acquire()
        self._note_module(call)
        try:
            return {**self._run(call, timeout, threading.Event()), "queue_s": waited}
        finally:
            self._release()

    def start(self, call: Call, timeout: float, finished: Callable[[Outcome], None]) -> None:
        """Take a slot now (or raise Busy), make the call in a background thread, pass its outcome on.

        Returns once the call has reached its child (or could not): a web
        process that exits right after this request (a recycled worker)
        leaves a call that goes on without it, never one that was not sent.
        """
        self._acquire()
        self._note_module(call)
        sent = threading.Event()

        def background() -> None:
            try:
                outcome = self._run(call, timeout, sent)
            except ChildFailed as exc:  # no child could be started
                outcome = {"status": "unstarted", "exitcode": None, "detail": exc.message}
            except Exception as exc:  # the thread must not die silently
                outcome = {"status": "died", "exitcode": None, "detail": repr(exc)}
            finally:
                sent.set()
                self._release()
            finished(outcome)

        threading.Thread(target=background, name=f"handoff-call-{call.id}", daemon=True).start()
        sent.wait()

    def _run(self, call: Call, timeout: float, sent: threading.Event) -> Outcome:
        """Make the call and return its outcome; set ``sent`` once the call is in its child."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Get ready for the first call (start children ahead of time, if the mode keeps any)."""

    def close(self) -> None:
        """Stop any children kept waiting."""


class InlineRunner(Runner):
    """Makes the call in the web process: no isolation, no memory limit."""

    def _run(self, call: Call, timeout: float, sent: threading.Event) -> Outcome:
        sent.set()
        return {**_child.perform(replace(call, memory_mb=None)), "exitcode": None}


class SpawnRunner(Runner):
    """Starts a fresh ``spawn`` child for each call."""

    def _run(self, call: Call, timeout: float, sent: threading.Event) -> Outcome:
        ctx = mp_context("spawn")
        parent_end, child_end = pipe(ctx, duplex=False)
        proc = ctx.Process(target=_child.spawn_main, args=(child_end, call), daemon=True)
        start(proc)
        child_end.close()
        if call.detached:
            outlive(proc)
        sent.set()
        return collect(proc, parent_end, timeout)


class PoolRunner(Runner):
    """``ProcessPoolExecutor`` with one call per child."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._pool = self._new_pool()

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            self.max_children, mp_context=mp_context("spawn"), max_tasks_per_child=1
        )

    def _run(self, call: Call, timeout: float, sent: threading.Event) -> Outcome:
        future = self._pool.submit(_child.perform, call)
        sent.set()  # a pool's exit waits for its calls
        try:
            return {**future.result(timeout), "exitcode": 0}
        except concurrent.futures.TimeoutError:
            # The pool cannot kill one task: replace the whole pool.
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.kill()
            self._pool = self._new_pool()
            return {"status": "timeout", "exitcode": None}
        except concurrent.futures.process.BrokenProcessPool:
            self._pool = self._new_pool()
            return {"status": "died", "exitcode": None}

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class WarmRunner(Runner):
    """Keeps ``max_children`` forkserver children started and waiting for a call each."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._ctx: ForkServerContext | SpawnContext | None = None
        self._ctx_lock = threading.Lock()
        self._ready: list[tuple[BaseProcess, Connection]] = []
        self._changed = threading.Condition()
        self._refiller: threading.Thread | None = None
        self._closed = False
        # Runs before multiprocessing's own exit hook (registered earlier, so run later). That hook
        # stops the children it knows of, then joins them without a time limit: a child the refill
        # thread started in between would wait for its call for ever, and so would the exit.
        atexit.register(self._close_at_exit, os.getpid())

    def _close_at_exit(self, pid: int) -> None:
        if os.getpid() == pid:  # not in a process forked from this one (gunicorn --preload)
            self.close()

    def _context(self) -> ForkServerContext | SpawnContext:
        # Asked for before every start: the first call starts the forkserver
        # (which takes a moment, usually in the refill thread), and a later
        # one replaces a forkserver that died, with the same environment.
        with self._ctx_lock:
            self._ctx = mp_context("forkserver", self.preload)
            return self._ctx

    def _start_one(self) -> tuple[BaseProcess, Connection]:
        ctx = self._context()
        parent_end, child_end = pipe(ctx)
        proc = ctx.Process(target=_child.warm_main, args=(child_end, self.rehearsal, list(self.modules)),
                           daemon=True)
        start(proc)
        child_end.close()
        return proc, parent_end

    def _refill_forever(self) -> None:
        # One background thread keeps the waiting children topped up: starting
        # one costs a few ms of the forkserver's time, none of a request's.
        # It must outlive any failure to start one (a forkserver killed under it),
        # and back off while starting fails, rather than try every second for ever.
        failures = 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or len(self._ready) < self.max_children)
                if self._closed:
                    return
            try:
                started = self._start_one()
            except Exception as exc:
                failures += 1
                pause = min(RETRY_MAX, 2.0 ** (failures - 1))
                if failures == 1:
                    log.exception("could not start a waiting child; trying again in %g s", pause)
                else:
                    log.warning("could not start a waiting child (%s attempts): %s; trying again in %g s",
                                failures, exc, pause)
                with self._changed:  # closing ends the pause
                    self._changed.wait_for(lambda: self._closed, timeout=pause)
                continue
            failures = 0
            with self._changed:
                self._ready.append(started)

    def _ensure_refiller(self) -> None:
        if self._refiller is not None and not self._refiller.is_alive() and not self._closed:
            log.error("the refill thread died; starting a new one")
            self._refiller = None
        if self._refiller is None:
            self._refiller = threading.Thread(target=self._refill_forever, name="handoff-refill", daemon=True)
            self._refiller.start()

    def _take(self) -> tuple[BaseProcess, Connection]:
        with self._changed:
            self._ensure_refiller()
            while self._ready:
                proc, conn = self._ready.pop(0)  # the longest waiting: past its start and rehearsal
                if proc.is_alive():
                    return proc, conn
                conn.close()
                join(proc, 5)
        return self._start_one()  # none waiting: start one now (a cold start)

    def _run(self, call: Call, timeout: float, sent: threading.Event) -> Outcome:
        proc, conn = self._take()
        try:
            conn.send(call)
        except OSError:  # the child died while waiting
            conn.close()
            proc.join(5)
            return {"status": "died", "exitcode": proc.exitcode}
        if call.detached:
            outlive(proc)
        sent.set()
        try:
            return collect(proc, conn, timeout)
        finally:
            # Replace the child only now, so starting it competes with no call for the CPU.
            with self._changed:
                self._changed.notify()

    def status(self) -> dict[str, Any]:
        """Also the children ``waiting`` for a call, and whether the ``forkserver`` that starts them is up."""
        with self._changed:
            waiting = sum(proc.is_alive() for proc, _ in self._ready)
        if forkserver_pid() is None:
            forkserver = "not started"
        else:  # a stopped forkserver is killed here, as before a start: the next start replaces it
            forkserver = "up" if forkserver_alive() else "down"
        return {**super().status(), "waiting": waiting, "forkserver": forkserver}

    def warm_up(self) -> None:
        """Start the waiting children now rather than on the first call (and replace any that died)."""
        with self._changed:
            alive = [(proc, conn) for proc, conn in self._ready if proc.is_alive()]
            for proc, conn in self._ready:
                if not proc.is_alive():  # its forkserver was killed, or the OOM killer took it
                    conn.close()
                    proc.join(0.1)
            self._ready = alive
            self._ensure_refiller()
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._refiller is not None:
            self._refiller.join(10)  # then it starts no more children: those waiting are all here
        with self._changed:
            ready, self._ready = self._ready, []
        for _, conn in ready:
            conn.close()  # a waiting child sees EOF and exits
        for proc, _ in ready:
            join(proc, 1)
            if proc.exitcode is None:  # still importing or rehearsing: it has no call to lose
                proc.kill()
                join(proc, 5)


MODES: dict[str, type[Runner]] = {
    "warm": WarmRunner, "spawn": SpawnRunner, "pool": PoolRunner, "inline": InlineRunner,
}
