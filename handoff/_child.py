"""What runs inside the child: the call, the session it may write to, its record and progress.

Light on purpose (no Flask app, no request): a forkserver preloads it, and
every child starts with it imported.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal, Required, TypedDict

from filelock import BaseFileLock

from .files import lease, new_lock, read_json, write_json

#: How a call ended: ``ok`` (its value), ``raised`` (its function raised), ``timeout`` (killed at its
#: deadline), ``died`` (the child ended without an answer), ``unstarted`` (no child could be started)
#: or ``busy`` (no slot freed in time).
Status = Literal["ok", "raised", "timeout", "died", "unstarted", "busy"]


class Outcome(TypedDict, total=False):
    """A call's outcome, as its child (or the runner that watched it) reports it to the web process."""

    status: Required[Status]
    value: Any  # ok: what the function returned
    type: str  # raised: the exception's type name, its message, traceback and errno
    detail: str
    traceback: str | None
    errno: int | None
    exception: str  # raised, with a HANDOFF_RERAISE type: the exception pickled, in base64
    pid: int  # the child's pid and peak RSS
    peak_rss_kb: int | None
    exitcode: int | None
    queue_s: float  # busy: how long the call waited for a slot
    timeout: float  # a submitted call's deadline in seconds, kept in its record


class CallRecord(TypedDict):
    """What ``on_call`` listeners are told after every ``run()``."""

    id: str
    fn: str
    status: Status
    seconds: float  # the whole call
    queue_seconds: float | None  # waiting for a slot
    exitcode: int | None
    child_pid: int | None
    peak_rss_kb: int | None
    mode: str

#: How often, in seconds, a child checks that its parent is still there.
ORPHAN_CHECK = 0.5


class SessionArgument:
    """Stands in for ``flask.session`` among a call's arguments on its way to the child."""

    def __repr__(self) -> str:
        return "<flask.session>"


@dataclass(frozen=True)
class Call:
    """One call of a function in a child: plain, picklable data."""

    id: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    session: dict[str, Any] | None = None  # the session's contents, if it is an argument
    folder: str | None = None  # this session's folder of call records and progress notes
    lock_path: str | None = None
    lock_type: str = "file"
    memory_mb: int | None = None
    fn_name: str = field(default="")
    detached: bool = False  # submitted: the outcome is recorded for a later request
    reraise: tuple[type[BaseException], ...] = ()  # exception types sent back as themselves
    deadline: float = 0.0  # time.time() by which the call has ended, however it ends
    note: dict[str, Any] | None = None  # the fields of its progress note, written before it starts

    @property
    def record_path(self) -> Path:
        assert self.folder is not None
        return Path(self.folder) / f"{self.id}.json"

    @property
    def lease_path(self) -> Path:
        """A submitted call's lease: who runs it (its web process, then its child) and until when."""
        assert self.folder is not None
        return Path(self.folder) / f"{self.id}.lease.json"

    @property
    def progress_path(self) -> Path:
        assert self.folder is not None
        return Path(self.folder) / f"{self.id}.progress.json"

    def lock(self) -> BaseFileLock:
        """The session's lock (a new, unacquired object)."""
        assert self.lock_path is not None
        return new_lock(self.lock_path, self.lock_type)


class ChildSession(MutableMapping[str, Any]):
    """The child's ``session``: the parent's contents at the call, with every change recorded."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = dict(data)
        self.changed: set[str] = set()
        self.deleted: set[str] = set()
        self.modified = False  # accepted, like Flask's session attribute; changes are tracked anyway

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self.changed.add(key)
        self.deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.deleted.add(key)
        self.changed.discard(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ChildSession({self._data!r})"

    def writes(self) -> dict[str, Any]:
        """The record of this call: keys set (with their values) and keys deleted."""
        return {"set": {k: self._data[k] for k in sorted(self.changed)}, "deleted": sorted(self.deleted)}


_current: Call | None = None  # the call this child is running
_outlives_parent_until = 0.0  # a submitted call not yet recorded: its deadline, else 0


def report(**fields: Any) -> None:
    """Tell the parent (and any other request of the session) how the call is getting on.

    Call it from the function running in the child, e.g. ``report(step="blur",
    done=2, total=5)``; ``handoff.running()`` reads it. Does nothing outside a
    child or in a call made without a session.

    The note is a lease (:func:`handoff.files.lease`): it names this child and
    the call's deadline, so ``running()`` never reports a call whose child is gone.
    """
    call = _current
    if call is not None and call.folder is not None:
        write_note(call, fields)


def write_note(call: Call, fields: dict[str, Any], pid: int | None = None) -> None:
    """Replace the call's progress note: its ``note`` fields, then ``fields``, under a lease on ``pid``."""
    note = {**(call.note or {}), **fields, "call": call.id, "fn": call.fn_name, "updated": time.time(),
            **lease(0, pid), "deadline": call.deadline}
    write_json(call.progress_path, note)


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space: a runaway call fails with MemoryError, not the OOM killer."""
    import resource  # Unix only: imported where it is used, so the package imports everywhere

    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def peak_rss_kb() -> int | None:
    """This process's peak resident set size in KiB (None where there is no ``resource`` module)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def failure(exc: BaseException, reraise: tuple[type[BaseException], ...] = ()) -> Outcome:
    """The outcome of a call whose function raised ``exc``.

    An instance of a ``reraise`` type goes back pickled, to be raised as itself
    in the parent (if it cannot be pickled, it is reported like any other).
    """
    try:
        text = traceback.format_exc()
    except MemoryError:  # formatting needs memory too
        text = None
    outcome: Outcome = {"status": "raised", "type": type(exc).__name__, "detail": str(exc)[:2000], "traceback": text,
               "errno": getattr(exc, "errno", None)}
    if reraise and isinstance(exc, reraise):
        try:
            outcome["exception"] = base64.b64encode(pickle.dumps(exc)).decode("ascii")  # JSON holds it too
        except Exception:
            pass
    return outcome


def perform(call: Call) -> Outcome:
    """Run the call here and return its outcome.

    Its session writes are recorded if it succeeded; a detached call
    (``submit``) records its whole outcome, success or not, for a later request.
    """
    global _current, _outlives_parent_until
    _current = call
    if call.detached and call.folder is not None:
        # From now on the call lives as long as this child, not its web process: the lease says so.
        # The web process that wrote the lease until now still records this child's exit, if it is alive.
        web = {k: v for k, v in (read_json(call.lease_path) or {}).items() if k in ("host", "pid")}
        write_json(call.lease_path, {"call": call.id, "fn": call.fn_name, **lease(0), "deadline": call.deadline,
                                     "web": web})
        _outlives_parent_until = call.deadline
    sessions: list[ChildSession] = []

    def bind(value: Any) -> Any:
        if isinstance(value, SessionArgument):
            sessions.append(ChildSession(call.session or {}))
            return sessions[-1]
        return value

    try:
        if call.memory_mb:
            limit_memory(call.memory_mb)
        value = call.fn(*[bind(a) for a in call.args], **{k: bind(v) for k, v in call.kwargs.items()})
        outcome: Outcome = {"status": "ok", "value": value}
    except BaseException as exc:  # reported to the parent, which raises ChildFailed (or exc itself)
        outcome = failure(exc, call.reraise)
    finally:
        _current = None
    if call.folder is not None and (call.detached or (sessions and outcome["status"] == "ok")):
        try:
            write_record(call, sessions, outcome)
        except Exception as exc:  # e.g. a session value JSON cannot hold
            outcome = failure(exc)
            if call.detached:
                write_record(call, [], outcome)
    _outlives_parent_until = 0.0  # recorded: nothing is lost if the child ends now
    return {**outcome, "pid": os.getpid(), "peak_rss_kb": peak_rss_kb()}


def write_record(call: Call, sessions: list[ChildSession], outcome: Outcome) -> None:
    """Write the call's record: the session writes of a successful call, and for a detached call its outcome."""
    record: dict[str, Any] = {"call": call.id, "fn": call.fn_name, "set": {}, "deleted": []}
    if outcome["status"] == "ok":
        for child_session in sessions:
            writes = child_session.writes()
            record["set"].update(writes["set"])
            record["deleted"] += writes["deleted"]
    if call.detached:
        record["outcome"] = outcome
    text = json.dumps(record)  # fails here, before anything is written, if JSON cannot hold a value
    with call.lock():
        write_json(call.record_path, json.loads(text))


def send(conn: Connection, outcome: Outcome) -> None:
    """Send an outcome to the parent; a value that cannot be pickled becomes a failure."""
    try:
        conn.send(outcome)
    except Exception as exc:
        conn.send({**failure(exc), "type": "PicklingError",
                   "detail": f"the return value could not be sent to the parent: {exc}"[:2000]})
    conn.close()


def import_string(path: str) -> Callable[[], Any]:
    """Return the object named by ``"package.module:attribute"``."""
    module_name, _, attribute = path.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    found: Callable[[], Any] = getattr(module, attribute)
    return found


def _settle(conn: Connection) -> None:
    """Make this child the leader of its own process group, and its end of the pipe blocking.

    The parent kills the whole group when the call ends, so whatever the call
    started ends with it. A parent monkey-patched by gevent or eventlet made
    the pipe non-blocking; a child is neither, and waits on it.
    """
    if hasattr(os, "setpgrp"):
        os.setpgrp()
        threading.Thread(target=_end_with_parent, args=(os.getppid(),), name="handoff-orphan-watch",
                         daemon=True).start()
        os.set_blocking(conn.fileno(), True)


def _end_with_parent(parent: int) -> None:
    # In a group of its own, the child no longer hears what ends its parent's
    # group. When the parent (the forkserver, which ends with the web process)
    # is gone, a call made with run() is of no use to anyone: end it and its
    # group. A submitted call records its own outcome for a later request, so
    # it goes on, but only until its deadline, which nobody else enforces now.
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK)
    while time.time() < _outlives_parent_until:
        time.sleep(ORPHAN_CHECK)
    os.killpg(os.getpid(), signal.SIGKILL)


def warm_main(conn: Connection, rehearsal: str | None, modules: Sequence[str] = ()) -> None:
    """Entry point of a child started ahead of time: import, rehearse, wait for one call, run it, exit.

    ``modules`` are those of the functions this process has called before:
    the call would import its function's module anyway (the app's, often,
    with all it imports), so a waiting child does it before the call comes.
    """
    _settle(conn)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the call itself will report it, if it needs the module
            pass
    if rehearsal:
        import_string(rehearsal)()
    try:
        call = conn.recv()
    except EOFError:  # the parent went away before it had work for us
        return
    send(conn, perform(call))


def spawn_main(conn: Connection, call: Call) -> None:
    """Entry point of a child started for one given call."""
    _settle(conn)
    send(conn, perform(call))
