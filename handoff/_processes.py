"""Starting children without forking the web process, and collecting what they report."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

from ._child import Outcome
from .errors import ChildFailed, HandoffError

log = logging.getLogger("handoff")

#: Imported once by the forkserver, so every child starts with them loaded.
PRELOAD = ["handoff._child"]

#: glibc tunables for the forkserver and so for every child it forks: malloc
#: asks for transparent huge pages on its large mappings, which cuts the page
#: faults of filling fresh memory by about a quarter (see bench/RESULTS.md).
CHILD_GLIBC_TUNABLES = "glibc.malloc.hugetlb=1"

_forkserver_lock = threading.Lock()


def main_imports() -> list[str]:
    """Return the modules the main script (``flask``, ``gunicorn``...) takes its names from.

    Every forkserver child re-runs the parent's main script before its
    target (as ``__mp_main__``). Python 3.11 ignores ``"__main__"`` in the
    preload list, so preloading what that script imports instead turns the
    re-run from ~100 ms of imports into a few lookups.
    """
    main = sys.modules.get("__main__")
    names = set()
    for value in vars(main).values() if main else ():
        name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and name not in ("__main__", "builtins") and name in sys.modules:
            names.add(name)
    return sorted(names)


def _is_python(path: str) -> bool:
    return Path(path).name.lower().startswith(("python", "pypy"))


def interpreter() -> str:
    """The Python interpreter to start children with.

    Usually ``sys.executable``. Under an embedding server (uWSGI, mod_wsgi)
    that is the server's own binary, which cannot run a child: then the
    interpreter of this environment, found beside its prefix (a virtualenv's
    ``bin/python``, then the base installation's).
    """
    if sys.executable and _is_python(sys.executable):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    names = ["python.exe"] if os.name == "nt" else [f"python{version}", "python3", "python"]
    prefixes = dict.fromkeys([sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix])
    for prefix in prefixes:
        for folder in ("bin", "Scripts", ""):
            for name in names:
                candidate = Path(prefix, folder, name)
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return str(candidate)
    raise ChildFailed(
        f"No child process can be started: this process runs in {sys.executable or 'an unknown program'}, "
        f"not a Python interpreter, and none was found under {', '.join(prefixes)}. Tell the server where "
        "Python is (uWSGI: --py-sys-executable /path/to/python)."
    )


def start(proc: BaseProcess) -> None:
    """Start a child, or raise ChildFailed saying why it could not be started."""
    try:
        proc.start()
    except HandoffError:
        raise
    except Exception as exc:
        raise ChildFailed(f"No child process could be started: {type(exc).__name__}: {exc}") from exc


def pipe(ctx: ForkServerContext | SpawnContext, duplex: bool = True) -> tuple[Connection, Connection]:
    """A Pipe whose two ends block, as multiprocessing expects.

    gevent and eventlet, once they have patched ``socket``, make the
    socketpair behind a duplex Pipe non-blocking: a large message would then
    be read in part, and a child waiting for its call would fail at once.
    """
    ends = ctx.Pipe(duplex=duplex)
    if os.name == "posix":  # elsewhere a Pipe is not a socket pair, and its ends are handles
        for end in ends:
            os.set_blocking(end.fileno(), True)
    return ends


def mp_context(method: str = "forkserver", preload: Sequence[str] = ()) -> ForkServerContext | SpawnContext:
    """Return a multiprocessing context that never forks the threaded web process.

    The forkserver is started once per process, with ``preload`` imported.
    Where there is no forkserver (Windows), ``forkserver`` falls back to ``spawn``.
    """
    if method not in ("forkserver", "spawn"):
        raise ValueError(f"a child must not be forked from the threaded web process: {method!r}")
    if method == "forkserver" and method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    executable = interpreter()
    if executable != sys.executable:
        multiprocessing.set_executable(executable)
    ctx = cast(ForkServerContext | SpawnContext, multiprocessing.get_context(method))
    if method == "forkserver":
        _start_forkserver(ctx, preload)
    return ctx


def forkserver_pid() -> int | None:
    """The pid of this process's forkserver, if it has started one."""
    pid: int | None = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    return pid


def _process_state(pid: int) -> str | None:
    """A process's state letter from /proc (``R``, ``S``, ``T`` stopped, ``Z`` zombie...), None if gone.

    Read without reaping it: the standard library waits for its forkserver itself.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:  # gone, or no /proc: ask the process table
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return "?"


def _kill_if_stopped(pid: int) -> bool:
    # A stopped (SIGSTOP) forkserver leaves every start and every join waiting for it: kill it,
    # and the next start replaces it; the joins of its children then return at once.
    if _process_state(pid) not in ("T", "t"):
        return False
    log.warning("the forkserver (pid %s) is stopped; killing it", pid)
    os.kill(pid, signal.SIGKILL)
    # Until it has died, the standard library still takes it for alive and
    # would send the next start to its closed socket: wait (briefly) for that.
    deadline = time.monotonic() + 2
    while _process_state(pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.005)
    return True


def forkserver_alive() -> bool:
    """Whether this process's forkserver is running (one found stopped is killed, and is not)."""
    pid = forkserver_pid()
    if pid is None or _kill_if_stopped(pid):
        return False
    return _process_state(pid) not in (None, "Z")


def kill_stopped_forkserver() -> None:
    """Kill this process's forkserver if it is stopped (it would never report its children's exits)."""
    pid = forkserver_pid()
    if pid is not None:
        with _forkserver_lock:
            _kill_if_stopped(pid)


def _start_forkserver(ctx: ForkServerContext | SpawnContext, preload: Sequence[str]) -> None:
    # Called before every child start; touches os.environ only when a
    # forkserver must be (re)started, which is rare, and under the lock.
    with _forkserver_lock:
        if forkserver_alive():
            return
        if forkserver_pid() is not None:
            log.warning("the forkserver (pid %s) is gone; starting a new one", forkserver_pid())
        ctx.set_forkserver_preload(list(dict.fromkeys([*PRELOAD, *preload, *main_imports()])))
        # The tunables are read when a program starts, so they must be in the
        # environment the forkserver is executed with; the web process keeps its own.
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
        return f"The child process was killed by signal {-exitcode}."
    return f"The child process stopped unexpectedly (exit status {exitcode})."


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Wait until ``fd`` can be read (or is closed at the other end); False after ``timeout`` seconds.

    ``select`` is looked up at each call, so that under gevent or eventlet,
    whenever they patched it, the wait lets other greenlets run. Where a
    pipe is a handle, not a file descriptor (Windows), multiprocessing waits.
    """
    if os.name != "posix":
        return bool(multiprocessing.connection.wait([fd], timeout))
    poll = getattr(select, "poll", None)
    if poll is not None:
        poller = poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))
    return bool(select.select([fd], [], [], timeout)[0])


#: How often ``join`` looks again for an exit the sentinel has already announced.
REAP_POLL = 0.002


def join(proc: BaseProcess, timeout: float) -> None:
    """``proc.join(timeout)``, waiting in a way gevent and eventlet can switch away from.

    A child's sentinel reads as closed when the kernel closes its files, a
    moment before the child becomes a zombie that ``waitpid`` can reap: so
    after the sentinel, the exit is polled for until ``timeout`` runs out.
    """
    deadline = time.monotonic() + timeout
    if proc.exitcode is None and proc.sentinel is not None:
        wait_readable(proc.sentinel, timeout)
    while proc.exitcode is None and time.monotonic() < deadline:  # exitcode polls without blocking
        time.sleep(REAP_POLL)
    proc.join(0)


def outlive(proc: BaseProcess) -> None:
    """Let ``proc`` go on when this process exits cleanly.

    At a clean exit (a gunicorn worker recycled by ``--max-requests``, a
    reload) multiprocessing terminates every daemonic child it still knows
    of. A submitted call's child must finish its call and record it for a
    later request: it is forgotten here, and its call's deadline bounds it.
    """
    children = getattr(multiprocessing.process, "_children", None)  # the set multiprocessing's exit hook reads
    if children is not None:
        children.discard(proc)


def kill_group(proc: BaseProcess) -> None:
    """Kill the child's process group (the child and whatever it started), or the child alone.

    A child leads a group of its own (see ``_child._settle``); a group that
    is already empty, or one the child did not get to make, is left alone.
    """
    if proc.pid is not None and hasattr(os, "killpg"):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.exitcode is None:
        proc.kill()


def collect(proc: BaseProcess, conn: Connection, timeout: float) -> Outcome:
    """Read a child's outcome (before joining it, so a large value cannot deadlock), then join it.

    A child past ``timeout`` is killed with its process group; a child that
    dies without answering is reported as ``died``. Either way it has been
    joined when this returns, and nothing it started is left running.
    """
    outcome: Outcome
    try:
        if wait_readable(conn.fileno(), timeout):
            outcome = conn.recv()
        else:
            kill_group(proc)
            outcome = {"status": "timeout"}
    except (EOFError, OSError):  # the child died before it could answer
        outcome = {"status": "died"}
    finally:
        conn.close()
    # Every wait is bounded. A forkserver child's exit is reported by the
    # forkserver, so a child that does not seem to exit may be the forkserver's fault.
    join(proc, 1)
    if proc.exitcode is None:
        kill_stopped_forkserver()
        join(proc, 4)
    if proc.exitcode is None:
        proc.kill()
        join(proc, 5)
    kill_group(proc)  # what the call started and left behind ends with it
    outcome["exitcode"] = proc.exitcode
    return outcome
