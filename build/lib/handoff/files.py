"""The file primitives handoff keeps its records with, for apps that keep theirs beside them.

Atomic JSON files, the session lock, ids safe to use as file names, and
leases: a note that names the process working on something and the time by
which it will have finished, so that a reader can tell a live note from one
left behind by a process that died.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import BaseFileLock, FileLock, SoftFileLock

#: ``file``: the kernel's flock (one machine); ``soft``: an existence lock for shared
#: filesystems, reclaimed from a dead holder by its PID.
LOCK_TYPES: dict[str, type[BaseFileLock]] = {"file": FileLock, "soft": SoftFileLock}

_ID = re.compile(r"[0-9A-Za-z_-]{16,64}")


def new_id() -> str:
    """A fresh random id (24 hex digits), safe as a file name."""
    return secrets.token_hex(12)


def is_valid_id(value: object) -> bool:
    """Whether ``value`` can name a file or folder: 16 to 64 of ``[0-9A-Za-z_-]``, so no dots, no slashes."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def new_lock(path: str | os.PathLike[str], lock_type: str = "file", timeout: float = 30.0) -> BaseFileLock:
    """A new, unacquired lock of ``lock_type`` on ``path`` (a ``file`` lock's file is kept, never deleted).

    Deleting a flock file on release lets two processes hold "the" lock on
    two different inodes; a soft lock's marker file is what holds it, so it goes.
    """
    cls = LOCK_TYPES[lock_type]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if cls is SoftFileLock:
        return cls(path, timeout=timeout)
    return cls(path, timeout=timeout, preserve_lock_file=True)


def write_json(path: Path, data: Any, *, durable: bool = False,
               on_inode: Callable[[int], None] | None = None) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader sees the old file or the new one, never half.

    ``durable`` also fsyncs the data before the rename, so a power cut cannot
    leave an empty file behind. ``on_inode`` is called with the new file's
    inode just before it takes ``path``'s place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            if durable:
                f.flush()
                os.fsync(f.fileno())
            if on_inode is not None:
                on_inode(os.fstat(f.fileno()).st_ino)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The JSON in ``path``; None if there is no such file or it does not parse (being replaced, or torn)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def lease(seconds: float, pid: int | None = None) -> dict[str, Any]:
    """The fields that make a note a lease: this host, ``pid`` (default: this process), a deadline ``seconds`` away."""
    return {"host": socket.gethostname(), "pid": os.getpid() if pid is None else pid,
            "deadline": time.time() + seconds}


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the process table
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    except OSError:  # e.g. Windows, for a pid that is gone
        return False
    return True


def is_live(note: Mapping[str, Any]) -> bool:
    """Whether the work a lease names can still be going on.

    Not once its deadline has passed; not if its process, on this host, is
    gone. A process on another host is taken at its word until the deadline.
    """
    deadline = note.get("deadline")
    if not isinstance(deadline, (int, float)) or time.time() > deadline:
        return False
    pid = note.get("pid")
    return not (note.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid))
