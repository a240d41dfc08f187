"""Functions the handoff tests run in children (at module level, so a child can import them)."""

import os
import signal
import time
from pathlib import Path

from handoff import report


def echo(value):
    return value


def write_to_session(session):
    session["inside_function"] = "inside"


def set_and_delete(session):
    session["added"] = [1, 2, 3]
    del session["doomed"]
    return sorted(session)


def write_own_key(session, i):
    time.sleep(0.05)
    session[f"key{i}"] = i
    return sorted(session)


def boom():
    raise ValueError("secret sauce")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_and_note(seconds, pid_file):
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)


_kept: list[bytearray] = []


def allocate(megabytes):
    """Fill ``megabytes`` in 64 kB blocks, as image code does, and keep one small object (a cache entry).

    In a long-lived process the kept object pins the top of the heap, so
    glibc cannot give the freed blocks back: the memory ratchet.
    """
    blocks = []
    for _ in range(megabytes * 16):
        block = bytearray(65536)
        block[::4096] = b"\x01" * 16  # touch every page, so it is really resident
        blocks.append(block)
    _kept.append(bytearray(100_000))  # bigger than any hole below: malloc puts it above the blocks
    return sum(len(b) for b in blocks)


def steps(total, pause):
    for done in range(total):
        report(step=f"step {done + 1}", done=done, total=total)
        time.sleep(pause)
    return total


def unpicklable():
    return lambda: None


def pid():
    return os.getpid()


def start_grandchild(pid_file, then_sleep):
    """Start a subprocess (as a call that shells out would), note its pid, then sleep or return."""
    import subprocess

    grandchild = subprocess.Popen(["sleep", "120"])
    Path(pid_file).write_text(str(grandchild.pid))
    time.sleep(then_sleep)
    return grandchild.pid


class Refused(Exception):
    """An expected failure an app names in HANDOFF_RERAISE, with fields of its own."""

    def __init__(self, message, kind):
        super().__init__(message, kind)
        self.message = message
        self.kind = kind


class Unrebuildable(Exception):
    """Pickles, but cannot be rebuilt: its __init__ wants an argument it never passes up."""

    def __init__(self, a, b):
        super().__init__(f"{a} {b}")


def refuse(kind):
    raise Refused(f"refused: {kind}", kind)


def refuse_unrebuildably():
    raise Unrebuildable(1, 2)


def hold(started, release, timeout=30):
    """Say that the child has begun (create ``started``), then wait until ``release`` exists.

    A test orders its requests with these two files rather than with sleeps.
    """
    Path(started).touch()
    deadline = time.monotonic() + timeout
    while not Path(release).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} was never created")
        time.sleep(0.01)


def write_key(session, key, value, pause, held=None):
    """Set one key of the session, after ``pause`` seconds or once ``held`` (started, release) is released."""
    if held:
        hold(*held)
    else:
        time.sleep(pause)
    session[key] = value


def delete_key(session, key, pause):
    time.sleep(pause)
    session.pop(key, None)


def pause(seconds, held=None):
    """Wait ``seconds``, or until ``held`` (started, release) is released."""
    if held:
        hold(*held)
    else:
        time.sleep(seconds)
