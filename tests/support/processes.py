"""Processes the tests start and watch: free ports, stopping, the process tree, RSS, from /proc."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, seconds: float = 20) -> None:
    """Ask ``proc`` to stop with ``sig``; SIGKILL it if it has not within ``seconds``."""
    proc.send_signal(sig)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_port(port: int, what: str, seconds: float = 10) -> None:
    """Wait until something accepts connections on ``port`` of this machine; RuntimeError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start listening on port {port}") from None
            time.sleep(0.05)


def rss_kb(pid: int) -> int:
    """Return a process's resident set size in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        found = re.search(r"VmRSS:\s+(\d+)", f.read())
    assert found, f"no VmRSS for {pid}"
    return int(found.group(1))


def children_of(pid: int) -> list[int]:
    """Return the pids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError):
                pass
    return found


def descendants(pid: int) -> set[int]:
    """Return every process below ``pid`` in the process tree."""
    found = set()
    for child in children_of(pid):
        found |= {child} | descendants(child)
    return found


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition: Callable[[], T], what: str, timeout: float = 15, pause: float = 0.05) -> T:
    """Poll ``condition()`` until it returns something true, and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(pause)
    return result
