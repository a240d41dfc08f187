"""The merging save: concurrent requests of one server-side session compose instead of overwriting.

Flask-Session saves a request's whole session, so of two requests that
loaded the same copy the later save wins and the other's writes are lost.
:class:`MergingSessionInterface` wraps Flask-Session's interface: it notes
what each request loaded, and at save time works out which keys the request
set or deleted (its view's writes and its children's), then, under a lock on
that session, reads the stored session again, applies only those changes and
saves the result. A request that changed nothing writes nothing.

The lock is the backend's own where it has one that reaches every web
process: a PostgreSQL advisory lock for the sqlalchemy backend on
PostgreSQL, a Redis lock (redis-py's ``Lock``) for redis. Every other backend
(SQLite, filesystem, cachelib, memcached, ...) locks a file under
``HANDOFF_STORAGE_ROOT``: right on one machine, and across machines only on a
shared filesystem with ``HANDOFF_LOCK_TYPE = "soft"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from .files import new_lock

log = logging.getLogger("handoff")

#: Where a request notes the copy of the session it loaded: its id, and each key's value pickled.
_LOADED = "_handoff_loaded"
#: Seconds a save waits for another request's save of the same session; and a Redis lock's lease.
LOCK_WAIT = 10.0
#: File locks are shared by the sessions whose ids hash alike: a bounded number of files, however many sessions.
FILE_LOCKS = 256

Lock = Callable[[str], AbstractContextManager[object]]
Changes = tuple[dict[str, Any], list[str]]


def is_server_side(interface: SessionInterface) -> bool:
    """Whether ``interface`` is one of Flask-Session's stores (not Flask's signed cookie, not its null store)."""
    mro = type(interface).__mro__
    from_flask_session = any(cls.__module__.startswith("flask_session") for cls in mro)
    return from_flask_session and not any(cls.__name__ == "NullSessionInterface" for cls in mro)


def install(app: Flask, storage_root: Path, lock_type: str) -> bool:
    """Wrap ``app``'s Flask-Session interface in the merging save; return whether it is wrapped now."""
    interface = app.session_interface
    if isinstance(interface, MergingSessionInterface):
        return True
    if not is_server_side(interface):
        return False
    app.session_interface = MergingSessionInterface(interface, _lock_for(interface, storage_root, lock_type))
    return True


def _snapshot(values: Mapping[str, Any]) -> dict[str, bytes | None]:
    return {key: _pickled(value) for key, value in values.items()}


def _pickled(value: Any) -> bytes | None:
    try:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception:  # not picklable: compared as changed, and the store's serializer decides
        return None


def changes(loaded: Mapping[str, bytes | None], now: Mapping[str, Any]) -> Changes:
    """The keys set (to a value other than the loaded one, or new) and the keys deleted since ``loaded``.

    Values are compared pickled, so a list changed in place counts as set.
    """
    written = {}
    for key, value in now.items():
        before = loaded.get(key)
        if before is None or _pickled(value) != before:
            written[key] = value
    return written, [key for key in loaded if key not in now]


class MergingSessionInterface(SessionInterface):
    """Flask-Session's interface, saving only what the request changed, onto what is stored now."""

    def __init__(self, inner: SessionInterface, lock: Lock) -> None:
        self.inner = inner
        self.lock = lock

    def __getattr__(self, name: str) -> Any:  # regenerate(), serializer, ...: Flask-Session's own
        return getattr(self.inner, name)

    def make_null_session(self, app: Flask) -> Any:
        return self.inner.make_null_session(app)

    def is_null_session(self, obj: object) -> bool:
        return self.inner.is_null_session(obj)

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        session = self.inner.open_session(app, request)
        if session is not None:
            setattr(session, _LOADED, (getattr(session, "sid", None), _snapshot(session)))
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        loaded = getattr(session, _LOADED, None)
        sid = getattr(session, "sid", None)
        if loaded is None or sid is None or loaded[0] != sid:
            # Opened before the merge was installed, or regenerated: a new id holds the whole session.
            self.inner.save_session(app, session, response)
            return
        if session.accessed:
            response.vary.add("Cookie")
        if not session.modified:  # as Flask's rule: nothing was assigned, or the app chose not to save
            return
        written, deleted = changes(loaded[1], session)
        if not written and not deleted:
            return  # nothing to merge, nothing to write: a stale copy never goes back
        from flask import request

        with self.lock(sid):
            # What is stored now; a new session (default keys only) if it is gone or was never stored.
            stored = self.inner.open_session(app, request)
            merged = dict(stored) if stored is not None else {}
            merged.update(written)
            for key in deleted:
                merged.pop(key, None)
            session.clear()
            session.update(merged)
            session.modified = True
            self.inner.save_session(app, session, response)


def _lock_for(interface: SessionInterface, storage_root: Path, lock_type: str) -> Lock:
    """The lock that serialises the merging saves of one session, for this Flask-Session backend."""
    names = {cls.__name__ for cls in type(interface).__mro__}
    if "RedisSessionInterface" in names:
        client = getattr(interface, "client", None) or interface.redis  # type: ignore[attr-defined]
        prefix = getattr(interface, "key_prefix", "session:")
        return lambda sid: client.lock(f"{prefix}handoff-merge:{sid}", timeout=LOCK_WAIT, blocking_timeout=LOCK_WAIT)
    folder = storage_root / "session-locks"

    def file_lock(sid: str) -> AbstractContextManager[object]:
        return new_lock(folder / f"{_digest(sid) % FILE_LOCKS:02x}.lock", lock_type, timeout=LOCK_WAIT)

    if "SqlAlchemySessionInterface" in names:
        db = getattr(interface, "client", None) or interface.db  # type: ignore[attr-defined]
        model = interface.sql_session_model  # type: ignore[attr-defined]

        def database_lock(sid: str) -> AbstractContextManager[object]:
            # The engine is the app context's: known only in a request.
            if db.session.get_bind(mapper=model).dialect.name == "postgresql":
                return _advisory_lock(db, model, sid)
            return file_lock(sid)  # SQLite: every process that writes it is on this machine

        return database_lock
    return file_lock


def _digest(sid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"handoff-session:{sid}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(db: Any, model: Any, sid: str) -> Iterator[None]:
    """PostgreSQL's transaction-level advisory lock on this session, in the request's own transaction.

    Flask-Session's save commits that transaction, which releases the lock;
    on the same connection, so a request never waits for a second one.
    """
    from sqlalchemy import text

    session = db.session()  # this app context's Session, behind Flask-SQLAlchemy's scoped_session
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _digest(sid)},
                    bind_arguments={"mapper": model})
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    if session.in_transaction():  # the save returned without committing: release the lock
        session.commit()
