"""The Flask extension: settings, per-process state, ``run`` and its error answers."""

from __future__ import annotations

import base64
import inspect
import json
import logging
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import Flask, current_app, has_request_context, jsonify, request, session
from flask.typing import ResponseReturnValue

from ._child import Call, CallRecord, Outcome, SessionArgument, import_string, write_note
from ._processes import describe_exit
from ._runners import MODES, Runner
from ._sessions import install as install_merge
from .errors import Busy, ChildFailed, HandoffError, Timeout
from .files import LOCK_TYPES, is_live, is_valid_id, new_id

log = logging.getLogger("handoff")
T = TypeVar("T")

#: Every setting, with its default. ``Handoff(max_children=4)`` sets the default
#: of ``HANDOFF_MAX_CHILDREN``; a value in ``app.config`` wins over both.
DEFAULTS: dict[str, Any] = {
    "HANDOFF_MODE": "warm",  # warm, spawn, pool or inline
    "HANDOFF_MAX_CHILDREN": None,  # children at once per process; None: the CPUs this process may use
    "HANDOFF_QUEUE_TIMEOUT": 10.0,  # seconds a call waits for a free slot before Busy
    "HANDOFF_TIMEOUT": 60.0,  # seconds a call may take before Timeout
    "HANDOFF_MEMORY_MB": None,  # address-space limit (RLIMIT_AS) of each child; None: no limit
    "HANDOFF_STORAGE_ROOT": None,  # where session records live; None: <instance>/handoff
    "HANDOFF_LOCK_TYPE": "file",  # file (one machine) or soft (shared filesystems)
    "HANDOFF_PRELOAD": [],  # modules the forkserver imports once, for every child
    "HANDOFF_REHEARSAL": None,  # "module:function" a waiting child runs to warm itself up
    "HANDOFF_RERAISE": [],  # exception types (or "module:Name") raised in the parent as themselves
    "HANDOFF_SESSION_MERGE": None,  # save only what a request changed (None: on with a Flask-Session store)
}
OPTIONS = {key.removeprefix("HANDOFF_").lower(): key for key in DEFAULTS}


def default_max_children() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _State:
    """One app's settings and this process's runner (created on first use, never shared across a fork)."""

    def __init__(self, app: Flask, session_id: Callable[[], str] | None) -> None:
        config = app.config
        self.mode: str = config["HANDOFF_MODE"]
        self.max_children: int = config["HANDOFF_MAX_CHILDREN"] or default_max_children()
        self.queue_timeout = float(config["HANDOFF_QUEUE_TIMEOUT"])
        self.timeout = float(config["HANDOFF_TIMEOUT"])
        self.memory_mb: int | None = config["HANDOFF_MEMORY_MB"]
        self.root = Path(config["HANDOFF_STORAGE_ROOT"] or os.path.join(app.instance_path, "handoff"))
        self.lock_type: str = config["HANDOFF_LOCK_TYPE"]
        self.preload = list(config["HANDOFF_PRELOAD"])
        self.rehearsal: str | None = config["HANDOFF_REHEARSAL"]
        self.reraise = tuple(_exception_type(t) for t in config["HANDOFF_RERAISE"])
        self.custom_session_id = session_id
        self._lock = threading.Lock()
        self._runner: tuple[int, Runner] | None = None
        self.listeners: list[Callable[[CallRecord], None]] = []  # on_call()

    def runner(self) -> Runner:
        with self._lock:
            if self._runner is None or self._runner[0] != os.getpid():
                runner = MODES[self.mode](self.max_children, self.queue_timeout, self.preload, self.rehearsal)
                self._runner = (os.getpid(), runner)
            return self._runner[1]

    def session_id(self) -> str | None:
        """The id of this session's folder: the app's ``session_id()``, or a server-side session's id.

        Never stored in the session: a session handed to a child comes back
        with the child's writes and nothing else.
        """
        if self.custom_session_id is not None:
            custom = self.custom_session_id()
            if not is_valid_id(custom):  # it names a folder: nothing else may get near the filesystem
                raise ValueError(f"session_id() must return 16 to 64 of [0-9A-Za-z_-], not {custom!r}")
            return custom
        sid = getattr(session._get_current_object(), "sid", None)  # type: ignore[attr-defined]
        return sid if is_valid_id(sid) else None

    def folder(self, session_id: str | None) -> tuple[str, str]:
        """The folder of a session's call records and progress notes, and its lock file.

        Without a session id (Flask's cookie sessions) records go to one shared
        folder; they are per call either way.
        """
        if session_id is None:
            return str(self.root / "calls"), str(self.root / "calls.lock")
        return str(self.root / session_id / "calls"), str(self.root / f"{session_id}.lock")

    def close(self) -> None:
        with self._lock:
            if self._runner is not None and self._runner[0] == os.getpid():
                self._runner[1].close()
            self._runner = None


def _exception_type(value: type[BaseException] | str) -> type[BaseException]:
    found = import_string(value) if isinstance(value, str) else value
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise TypeError(f"HANDOFF_RERAISE lists exception types, not {value!r}")
    return found


class Handoff:
    """Run functions in fresh child processes from Flask views, and hand their session writes back.

    ``Handoff(app)`` or ``handoff = Handoff()`` then ``handoff.init_app(app)``.
    ``session_id``, if given, returns the id of the current session's folder
    (an app with its own per-session workspaces can share them); otherwise a
    server-side session's ``sid`` (Flask-Session) is used. Progress notes
    (``report``/``running``) need one of the two; returning values and
    session writes work with any session.
    """

    def __init__(self, app: Flask | None = None, *, session_id: Callable[[], str] | None = None,
                 **options: Any) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"Handoff() got unknown options {unknown}; known: {sorted(OPTIONS)}")
        self.options = options
        self.session_id = session_id
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the settings from ``app.config`` and register the default error answers.

        An app has one Handoff: a second ``init_app`` on it raises RuntimeError.
        """
        if "handoff" in app.extensions:
            raise RuntimeError(f"handoff is already set up on the app {app.name!r}; an app has one Handoff")
        for name, key in OPTIONS.items():
            app.config.setdefault(key, self.options.get(name, DEFAULTS[key]))
        if app.config["HANDOFF_MODE"] not in MODES:
            raise ValueError(f"HANDOFF_MODE must be one of {sorted(MODES)}, not {app.config['HANDOFF_MODE']!r}")
        if app.config["HANDOFF_LOCK_TYPE"] not in LOCK_TYPES:
            raise ValueError(f"HANDOFF_LOCK_TYPE must be one of {sorted(LOCK_TYPES)}")
        app.extensions["handoff"] = state = _State(app, self.session_id)
        _merge_sessions(app, state)
        handlers = app.error_handler_spec[None][None]  # handlers by exception class, for the whole app
        for exc_class in (ChildFailed, Timeout, Busy):
            if exc_class not in handlers:  # the app's own handler, registered earlier, wins
                app.register_error_handler(exc_class, _default_answer)

    @staticmethod
    def warm_up() -> None:
        """Start this process's waiting children now rather than on the first call."""
        _state().runner().warm_up()

    @staticmethod
    def close() -> None:
        """Stop this process's waiting children (they start again on the next call)."""
        _state().close()


def _merge_sessions(app: Flask, state: _State) -> None:
    """Install the merging save on the app's Flask-Session store (``HANDOFF_SESSION_MERGE``).

    Off: never. On: the app must have a Flask-Session store already. Unset:
    on as soon as one is seen, at the latest on the first request (so that
    ``Session(app)`` may come after ``Handoff(app)``).
    """
    setting = app.config["HANDOFF_SESSION_MERGE"]
    if setting is False or install_merge(app, state.root, state.lock_type):
        return
    if setting:
        raise RuntimeError("HANDOFF_SESSION_MERGE is on, but the app has no Flask-Session store: "
                           "call Session(app) before Handoff(app), or leave the setting unset")
    pending = [True]

    def install_late() -> None:
        if pending:
            pending.clear()
            install_merge(app, state.root, state.lock_type)

    app.before_request(install_late)


def _state() -> _State:
    try:
        state: _State = current_app.extensions["handoff"]
    except KeyError:
        raise RuntimeError("handoff is not set up on this app: call Handoff(app) or handoff.init_app(app)") from None
    return state


def _default_answer(exc: HandoffError) -> ResponseReturnValue:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else {}
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json":
        return jsonify(error=exc.message), exc.status_code, headers
    return exc.message, exc.status_code, {"Content-Type": "text/plain; charset=utf-8", **headers}


def check_importable(fn: Callable[..., Any]) -> str:
    """Return ``module.qualname`` of ``fn``, or raise TypeError if a child could not import it by that name."""
    target = fn.__func__ if inspect.ismethod(fn) else fn
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if not callable(fn) or not module or not qualname:
        raise TypeError(f"handoff.run() needs a function defined at module level, not {fn!r}")
    name = f"{module}.{qualname}"
    if "<" in qualname:
        raise TypeError(
            f"handoff.run() cannot send {name} to a child: the child imports the function by its name, "
            f"and a nested function or a lambda has none. Define {qualname.rsplit('.', 1)[-1]} at module level."
        )
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not target:
        raise TypeError(
            f"handoff.run() cannot send {name} to a child: that name does not import to this function "
            "(decorated without functools.wraps, or replaced). Define it at module level."
        )
    return name


def _is_session(value: object) -> bool:
    return value is session or value is session._get_current_object()  # type: ignore[attr-defined]


def _new_call(state: _State, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
              detached: bool, timeout: float, note: dict[str, Any] | None = None) -> Call:
    """The Call for ``fn(*args, **kwargs)``: ``flask.session`` among the arguments becomes a snapshot.

    In a request the call gets the session's folder (records, progress);
    outside one it has none, and no argument can be the session.
    """
    name = check_importable(fn)
    in_request = has_request_context()

    def carry(value: Any) -> Any:
        return SessionArgument() if in_request and _is_session(value) else value

    uses_session = in_request and any(_is_session(v) for v in (*args, *kwargs.values()))
    folder, lock_path = state.folder(state.session_id()) if in_request else (None, None)
    return Call(
        id=new_id(), fn=fn,
        args=tuple(carry(a) for a in args), kwargs={k: carry(v) for k, v in kwargs.items()},
        session=dict(session) if uses_session else None,
        folder=folder, lock_path=lock_path, lock_type=state.lock_type, memory_mb=state.memory_mb, fn_name=name,
        detached=detached, reraise=state.reraise, deadline=time.time() + state.queue_timeout + timeout, note=note,
    )


def run(fn: Callable[..., T], /, *args: Any, timeout: float | None = None, note: dict[str, Any] | None = None,
        **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a fresh child process and return its value.

    If an argument is ``flask.session``, the child gets a mapping with the
    session's contents, and every key it sets or deletes is applied to
    ``flask.session`` when it has finished. Raises ChildFailed, Timeout or
    Busy, or an exception type named in ``HANDOFF_RERAISE`` as the child raised it.

    ``note``: fields of a progress note written now, so that ``running()``
    shows the call while it waits for a child; every ``report()`` keeps them.
    ``timeout`` and ``note`` are the only keywords not passed on to ``fn``.
    """
    state = _state()
    limit = state.timeout if timeout is None else timeout
    call = _new_call(state, fn, args, kwargs, detached=False, timeout=limit, note=note)
    name, folder, uses_session = call.fn_name, call.folder, call.session is not None
    started = time.perf_counter()
    if folder and note is not None:
        write_note(call, {})
    try:
        outcome = state.runner().run(call, limit)
    except Busy:
        log.warning("call %s fn=%s status=busy web_pid=%s", call.id, name, os.getpid())
        _tell(state, call, {"status": "busy", "queue_s": state.queue_timeout}, started)
        raise
    finally:
        if folder:
            call.progress_path.unlink(missing_ok=True)
    _log(call, outcome, state.mode, started)
    _tell(state, call, outcome, started)
    if outcome["status"] == "ok":
        if uses_session:
            _merge(call)
        return cast(T, outcome["value"])
    if folder:
        call.record_path.unlink(missing_ok=True)  # a failed call's writes are never applied
    raise _error(call.fn_name, outcome, limit, state.memory_mb)


def on_call(listener: Callable[[CallRecord], None]) -> Callable[[CallRecord], None]:
    """Have ``listener(record)`` called after every ``run()`` of the current app, in the web process.

    For metrics or tracing without a dependency: ``record`` has ``id``, ``fn``,
    ``status`` (``ok``, ``raised``, ``timeout``, ``died`` with a negative
    ``exitcode`` if a signal killed it, ``unstarted``, or ``busy`` when no
    slot freed in time), ``seconds`` (the
    whole call), ``queue_seconds`` (waiting for a slot), ``exitcode``,
    ``child_pid``, ``peak_rss_kb`` (the child's) and ``mode``. A listener that
    raises is logged and skipped; the call's result is unchanged. Returns
    ``listener``, so it can be used as a decorator inside ``app.app_context()``.
    """
    _state().listeners.append(listener)
    return listener


def _tell(state: _State, call: Call, outcome: Outcome, started: float) -> None:
    if not state.listeners:
        return
    record: CallRecord = {
        "id": call.id, "fn": call.fn_name, "status": outcome["status"], "seconds": time.perf_counter() - started,
        "queue_seconds": outcome.get("queue_s"), "exitcode": outcome.get("exitcode"),
        "child_pid": outcome.get("pid"), "peak_rss_kb": outcome.get("peak_rss_kb"), "mode": state.mode,
    }
    for listener in state.listeners:
        try:
            listener(record)
        except Exception:
            log.exception("a call listener failed on call %s", call.id)


def _log(call: Call, outcome: Outcome, mode: str, started: float) -> None:
    log.info(
        "call %s fn=%s status=%s duration_ms=%.1f exit=%s child_pid=%s child_peak_rss_kb=%s mode=%s web_pid=%s",
        call.id, call.fn_name, outcome["status"], (time.perf_counter() - started) * 1000, outcome.get("exitcode"),
        outcome.get("pid"), outcome.get("peak_rss_kb"), mode, os.getpid(),
    )
    if outcome["status"] == "raised" and outcome.get("exception") is None:  # HANDOFF_RERAISE types are expected
        log.warning("call %s fn=%s raised in the child:\n%s", call.id, call.fn_name,
                    outcome.get("traceback") or f"{outcome['type']}: {outcome['detail']}")


def _merge(call: Call) -> None:
    """Apply the call's record to ``flask.session``, then remove the record."""
    with call.lock():
        with open(call.record_path, encoding="utf-8") as f:
            record = json.load(f)
        call.record_path.unlink()
    apply_writes(record)


def apply_writes(record: dict[str, Any]) -> None:
    """Apply a call record's session writes (keys set, keys deleted) to ``flask.session``."""
    for key, value in record["set"].items():
        session[key] = value
    for key in record["deleted"]:
        session.pop(key, None)


class RemoteTraceback(Exception):
    """The ``__cause__`` of an exception re-raised from a child: the child's traceback, as text."""

    def __str__(self) -> str:
        return f"\n\n(in the child process)\n{self.args[0]}"


def _error(fn_name: str, outcome: Outcome, timeout: float, memory_mb: int | None) -> BaseException:
    status, exitcode = outcome["status"], outcome.get("exitcode")
    if status == "timeout":
        return Timeout(f"The call took longer than {timeout:g} s and was stopped.", timeout=timeout)
    if status == "unstarted":
        return ChildFailed(outcome.get("detail") or "No child process could be started.")
    if status == "raised" and outcome.get("exception") is not None:
        try:
            exc: BaseException = pickle.loads(base64.b64decode(outcome["exception"]))
        except Exception:  # e.g. a class whose __init__ takes other arguments than it passed up
            log.warning("could not rebuild %s from the child; raising ChildFailed", outcome["type"])
        else:
            exc.__cause__ = RemoteTraceback(outcome.get("traceback") or "")
            return exc
    if status == "raised":
        if outcome["type"] == "MemoryError":
            limit = f" ({memory_mb} MB)" if memory_mb else ""
            message = f"{fn_name} needed more memory than a call may use{limit}."
        else:
            message = f"{fn_name} raised {outcome['type']}: {outcome['detail']}"
        return ChildFailed(message, type_name=outcome["type"], detail=outcome["detail"],
                           traceback=outcome.get("traceback"), exitcode=exitcode, errno=outcome.get("errno"))
    return ChildFailed(describe_exit(exitcode), exitcode=exitcode)


def _notes(session_id: str | None) -> list[tuple[Path, dict[str, Any]]]:
    """Every progress note in a session's folder (``None``: this request's session), with its path."""
    state = _state()
    if session_id is None:
        session_id = state.session_id() if has_request_context() else None
    elif not is_valid_id(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    if not session_id:  # progress is kept per session: there is no telling whose calls these are
        return []
    folder = Path(state.folder(session_id)[0])
    notes = []
    for path in folder.glob("*.progress.json") if folder.is_dir() else ():
        try:
            notes.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (FileNotFoundError, ValueError):  # finished meanwhile, or being replaced
            continue
    return sorted(notes, key=lambda found: found[1].get("updated", 0))


def status() -> dict[str, Any]:
    """How this process's children stand, for a readiness probe or a metrics scrape.

    ``mode``; ``slots`` (``HANDOFF_MAX_CHILDREN``) and ``busy`` (calls running
    now); in ``warm`` mode also ``waiting`` (children started and waiting for
    a call) and ``forkserver`` (``up``, ``down`` or ``not started``). Cheap:
    no child is started or asked, and no file is read.
    """
    state = _state()
    with state._lock:
        runner = state._runner[1] if state._runner and state._runner[0] == os.getpid() else None
    if runner is None:  # no call yet in this process: nothing started, and asking starts nothing
        idle: dict[str, Any] = {"mode": state.mode, "slots": state.max_children, "busy": 0}
        return {**idle, "waiting": 0, "forkserver": "not started"} if state.mode == "warm" else idle
    return {"mode": state.mode, **runner.status()}


def running(session_id: str | None = None) -> list[dict[str, Any]]:
    """Return the progress notes (``report(...)``) of this session's calls that are running now.

    Each note is a lease on whoever runs its call (the web process while the
    call waits for a child, then the child): a note whose process is gone, or
    whose call is past its deadline, is never returned. ``session_id`` names
    a session's folder as ``session_id()`` would, and then needs no request.
    """
    return [note for _, note in _notes(session_id) if is_live(note)]


def abandoned(session_id: str | None = None) -> list[dict[str, Any]]:
    """Return, and forget, the notes of this session's calls that ended without finishing.

    Their web process or child died (a crash, SIGKILL, the OOM killer), so
    nothing will ever remove them: an app that keeps files for a call (named
    in its ``note``) cleans them up from here. Each note is returned once.
    """
    ended = []
    for path, note in _notes(session_id):
        if not is_live(note):
            path.unlink(missing_ok=True)
            ended.append(note)
    return ended
