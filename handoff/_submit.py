"""``submit``: work longer than a request, collected by a later request on any worker or node.

A submitted call leaves three files in the session's folder: a lease written
by the web process (who runs it, and until when it may), progress notes, and
the record the child writes when it ends (its value or error, and its session
writes). The web process writes the record itself if the child dies or is
killed first. ``Handle.result()`` in any later request of the session reads
the record, applies the writes to ``flask.session`` and removes all three.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import has_request_context

from ._child import Outcome, write_note
from ._extension import _error, _log, _new_call, _state, apply_writes, check_importable
from .errors import AlreadyCollected, ChildFailed, NoSuchCall, NotFinished
from .files import is_live, is_valid_id, lease, new_lock, write_json

#: How long after its deadline a call with no record counts as lost (its web process died).
LEASE_GRACE = 10.0


@dataclass(frozen=True)
class Handle:
    """A submitted call: ``done()``, ``progress()``, ``result(timeout)``."""

    id: str
    folder: str
    lock_path: str
    lock_type: str
    memory_mb: int | None = None

    def _path(self, suffix: str) -> Path:
        return Path(self.folder) / f"{self.id}{suffix}"

    @property
    def record_path(self) -> Path:
        return self._path(".json")

    @property
    def progress_path(self) -> Path:
        return self._path(".progress.json")

    @property
    def lease_path(self) -> Path:
        return self._path(".lease.json")

    def _lease(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads(self.lease_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return found

    def _lost(self) -> bool:
        # Lost once both its child and its web process (which records the child's end) are gone, on
        # this host; or some time after its deadline.
        found = self._lease()
        if found is None:
            return True
        deadline = found.get("deadline", 0) + LEASE_GRACE
        holders = [found, found["web"]] if found.get("web") else [found]
        return not any(is_live({**holder, "deadline": deadline}) for holder in holders)

    def done(self) -> bool:
        """Whether the call has ended (or was lost with the process that ran it)."""
        return self.record_path.exists() or self._lost()

    def progress(self) -> dict[str, Any] | None:
        """The call's latest ``report(...)``, or None."""
        try:
            note: dict[str, Any] = json.loads(self.progress_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return note

    def result(self, timeout: float | None = 0.0) -> Any:
        """Wait up to ``timeout`` seconds (None: forever) for the call, then collect it.

        Returns its value and applies its session writes to ``flask.session``
        (in a request); raises what ``run`` would, NotFinished if it has not
        finished yet, or AlreadyCollected if another request collected it
        first. A call is collected once: its files are removed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.record_path.exists():
            if self._lost():
                if not self.lease_path.exists() and not self.record_path.exists():
                    raise AlreadyCollected(f"Call {self.id} was collected by another request.")
                self._forget()
                raise ChildFailed("The call was lost: the process that ran it stopped before it finished.")
            if deadline is not None and time.monotonic() >= deadline:
                raise NotFinished(f"Call {self.id} has not finished yet.")
            time.sleep(0.05)
        with new_lock(self.lock_path, self.lock_type):
            try:
                record = json.loads(self.record_path.read_text(encoding="utf-8"))
            except FileNotFoundError:  # another request collected it first
                raise AlreadyCollected(f"Call {self.id} was collected by another request.") from None
            self._forget()
        outcome: Outcome = record["outcome"]
        if outcome["status"] != "ok":
            raise _error(record.get("fn", ""), outcome, outcome.get("timeout", 0.0), self.memory_mb)
        if has_request_context():
            apply_writes(record)
        return outcome["value"]

    def _forget(self) -> None:
        for path in (self.record_path, self.progress_path, self.lease_path):
            path.unlink(missing_ok=True)


def submit(fn: Callable[..., Any], /, *args: Any, timeout: float | None = None, note: dict[str, Any] | None = None,
           **kwargs: Any) -> Handle:
    """Start ``fn(*args, **kwargs)`` in a child and return its Handle at once.

    Like ``run``, with ``flask.session`` as an argument the child's writes
    come back, here to the session of whichever request collects the result
    (``handle(id).result()``; keep ``handle.id``, e.g. in the session).
    Raises Busy if no child slot frees within the queue timeout.
    """
    state = _state()
    if not has_request_context():
        check_importable(fn)  # the clearer error first
        raise RuntimeError("handoff.submit() needs a request: its result is collected by the session")
    limit = state.timeout if timeout is None else timeout
    call = _new_call(state, fn, args, kwargs, detached=True, timeout=limit, note=note)
    name = call.fn_name
    assert call.folder is not None and call.lock_path is not None  # in a request
    handle = Handle(call.id, call.folder, call.lock_path, state.lock_type, state.memory_mb)
    write_json(handle.lease_path, {"call": call.id, "fn": name, **lease(0), "deadline": call.deadline})
    if note is not None:
        write_note(call, {})
    started = time.perf_counter()

    def finished(outcome: Outcome) -> None:
        _log(call, outcome, state.mode, started)
        if outcome["status"] in ("timeout", "died") and not call.record_path.exists():
            # The child could not write its record: the web process writes it.
            with call.lock():
                write_json(call.record_path, {"call": call.id, "fn": name, "set": {}, "deleted": [],
                                              "outcome": {**outcome, "timeout": limit}})

    try:
        state.runner().start(call, limit, finished)
    except BaseException:
        handle._forget()
        raise
    return handle


def handle(call_id: str) -> Handle:
    """The Handle of a call this session submitted earlier (on any worker or node); NoSuchCall if there is none."""
    state = _state()
    folder, lock_path = state.folder(state.session_id())
    missing = NoSuchCall(f"This session has no call {call_id!r}.")
    if not is_valid_id(call_id):
        raise missing
    found = Handle(call_id, folder, lock_path, state.lock_type, state.memory_mb)
    if not (found.record_path.exists() or found.lease_path.exists()):
        raise missing
    return found
