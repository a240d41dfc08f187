"""Sharing this machine's cores among the jobs that run on it at once.

A job may write its outputs on several threads. So that four jobs at once on
two cores do not run eight threads between them, every job holds one lock
file for each thread it runs, from a pool of a few per core in a folder of
this machine (never the shared storage: other nodes have cores of their own).
A job counts the locks others hold (the threads running), takes the cores
they leave, and always at least one thread. The locks (``flock``) are taken
without waiting, and end with their process however it ends: the kernel drops them.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Where the threads' lock files live: this machine's temporary folder, one folder per user.
CORES_DIR = Path(tempfile.gettempdir()) / f"darkroom-cores-{os.getuid()}"
#: Lock files per core: enough for every job running at once to hold one.
SLOTS_PER_CORE = 4


def machine_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def _acquired(slot: Path) -> int | None:
    """The slot's file, locked (its descriptor), or None if another job's thread holds it (or it cannot be had).

    ``flock`` itself: filelock's lock object costs a fifth of a millisecond
    each, a sixtieth of a tiny job, where this costs a few microseconds.
    """
    try:  # never through a link: the folder is in a place every user may write to
        fd = os.open(slot, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held
        os.close(fd)
        return None
    return fd


@contextmanager
def claimed_cores(wanted: int, folder: Path = CORES_DIR) -> Iterator[int]:
    """Hold the block's share of the cores: yields how many threads it may run, at most ``wanted``, at least 1.

    Where the slots cannot be had (no such folder can be made), the block runs on one thread.
    """
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        yield 1
        return
    cores = machine_cores()
    slots = [folder / f"slot-{n}.lock" for n in range(SLOTS_PER_CORE * cores)]
    taken: list[int] = []
    if wanted <= 1:  # one thread: the first free slot tells the other jobs it runs
        for slot in slots:
            if (fd := _acquired(slot)) is not None:
                taken.append(fd)
                break
        threads = 1
    else:  # every free slot, for a moment: the slots held are the threads other jobs run
        taken = [fd for slot in slots if (fd := _acquired(slot)) is not None]
        threads = max(1, min(wanted, cores - (len(slots) - len(taken))))
        for fd in taken[threads:]:
            os.close(fd)  # closing the file releases its lock
        del taken[threads:]
    try:
        yield threads
    finally:
        for fd in taken:
            os.close(fd)
