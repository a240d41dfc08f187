"""Ctrl-C on the development server, on a real terminal: it stops at once, says nothing more, and
leaves no child behind, whether the children are waiting for work or one is busy with a photo."""

import contextlib
import os
import pty
import re
import select
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.photos import image_bytes


def descendants(pid):
    """Every live process whose parent chain leads to ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cpu_seconds(pid):
    """The processor time ``pid`` has used so far (0 if it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


class Terminal:
    """A program on a pseudo-terminal, as a person at a shell runs it: Ctrl-C reaches its whole group."""

    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the program
            os.chdir(ROOT)
            os.execvpe(argv[0], argv, env)
        self.output = b""
        self.status = None  # its exit status, once it has ended

    def read(self, until=None, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (until and until in self.output):
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:  # the program has ended and the terminal closed
                    break
        return self.output.decode(errors="replace")

    def exit_status(self, timeout):
        deadline = time.monotonic() + timeout
        while self.status is None and time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
            self.read(timeout=0.1)
        return self.status


@pytest.fixture
def server(tmp_path):
    with socket.socket() as probe:  # a port free now (the server binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DARKROOM_INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"}
    terminal = Terminal([sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)], env)
    assert "Press CTRL+C to quit" in terminal.read(until=b"CTRL+C")
    yield terminal, f"http://127.0.0.1:{port}"
    if terminal.exit_status(0.2) is None:
        os.kill(terminal.pid, signal.SIGKILL)
        os.waitpid(terminal.pid, 0)


def post_photo(base, ops, size):
    boundary = "photo"
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="ops"\r\n\r\n{op}\r\n'.encode()
                    for op in ops)
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
             "Content-Type: image/jpeg\r\n\r\n").encode() + image_bytes(size) + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{base}/jobs", body, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                            "Accept": "application/json"})
    return urllib.request.urlopen(request, timeout=60)


@pytest.mark.parametrize("moment", ["children waiting", "a photo being processed"])
def test_ctrl_c_stops_the_development_server_quietly_and_leaves_no_child(server, moment):
    terminal, base = server
    assert post_photo(base, ["grayscale"], (320, 240)).status == 201  # children started, and now waiting
    terminal.read(until=b'201 -')  # its log lines, said before Ctrl-C
    if moment == "a photo being processed":
        def upload_big_photo():
            with contextlib.suppress(OSError):  # the server stops before it answers
                post_photo(base, ["blur", "sharpen"], (6000, 4000))

        threading.Thread(target=upload_big_photo, daemon=True).start()
        deadline = time.monotonic() + 20
        while max(cpu_seconds(pid) for pid in descendants(terminal.pid)) < 0.5:  # until a child is at work
            assert time.monotonic() < deadline, "no child took the big photo"
            terminal.read(timeout=0.1)
    family = descendants(terminal.pid)
    assert len(family) >= 3  # the forkserver, its resource tracker, waiting children
    before = len(terminal.output)
    os.write(terminal.fd, b"\x03")  # Ctrl-C, as typed: the terminal sends SIGINT to its foreground group
    status = terminal.exit_status(timeout=10)
    assert status is not None, "the server did not stop within 10 s of Ctrl-C"
    terminal.read(timeout=1)  # anything a child still has to say
    said = terminal.output[before:].decode(errors="replace").replace("^C", "").strip()
    # At most the app's own log lines (the interrupted job's call and job lines) and the answer to its
    # request, where it went out before the server stopped: no traceback, no "Process
    # ForkServerProcess-2:" from a child that got the terminal's SIGINT.
    quiet = re.compile(r'\[\d{4}-\d\d-\d\d [\d:,]+\] INFO in \w+ \[\w+\]: '
                       r'|127\.0\.0\.1 - - \[.*\] ".*POST /jobs HTTP/1\.1.*" 500 -$')
    assert all(quiet.match(line) for line in said.splitlines()), said
    if moment == "children waiting":
        assert said == ""
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in family if alive(pid)] == []
