"""Sharing this machine's cores among the jobs that run on it at once.

A job may write its outputs on several threads. So that four jobs at once on
two cores do not run eight threads between them, a job claims the cores it
uses: one lock file per core in a folder of this machine (never the shared
storage: other nodes have cores of their own), each taken without waiting. A
job that finds every core claimed still runs, on one thread. A claim ends with
its process, however that process ends: the kernel drops its locks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from filelock import Timeout, UnixFileLock

#: Where the cores' lock files live: this machine's temporary folder, one folder per user.
CORES_DIR = Path(tempfile.gettempdir()) / f"darkroom-cores-{os.getuid()}"


def machine_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


@contextmanager
def claimed_cores(wanted: int, folder: Path = CORES_DIR) -> Iterator[int]:
    """Claim up to ``wanted`` of the free cores for the block; yields how many threads it may run (at least 1)."""
    if wanted <= 1:  # one thread needs no claim: a job always has its own share
        yield 1
        return
    folder.mkdir(mode=0o700, exist_ok=True)
    with ExitStack() as held:
        claimed = 0
        for core in range(machine_cores()):
            if claimed == wanted:
                break
            # Kept on release, and never a soft lock: only a kernel's lock ends with a killed process.
            lock = UnixFileLock(folder / f"core-{core}.lock", timeout=0, preserve_lock_file=True,
                                fallback_to_soft=False)
            try:
                held.enter_context(lock)
            except Timeout:  # another job runs on this one
                continue
            claimed += 1
        yield max(1, claimed)
