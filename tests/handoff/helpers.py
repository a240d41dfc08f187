"""What the handoff tests need beside pytest: free ports, process checks, and an HTTP client with cookies."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn


def python_code(code: str, cwd: Path | str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a Python process of its own that imports from this folder; ``env`` adds variables."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent), **env})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    """A process's resident set size in KiB, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        found = re.search(r"VmRSS:\s+(\d+)", f.read())
    assert found is not None
    return int(found.group(1))


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, timeout: float = 30.0, pause: float = 0.02, what: str = "a condition") -> Any:
    """Poll ``condition()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def read_pid(path) -> int | None:
    """The pid a child wrote to ``path``, once it has written all of it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.strip() else None


class Response:
    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status_code = status
        self.data = body
        self.headers = headers

    def get_json(self) -> Any:
        return json.loads(self.data)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class Client:
    """A client of a real server on 127.0.0.1 with its own cookie jar (its own session)."""

    def __init__(self, port: int, timeout: float = 120) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, method: str, path: str, json_body: Any = None, headers: dict[str, str] | None = None,
                ) -> Response:
        data = None if json_body is None else json.dumps(json_body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return Response(r.status, r.read(), r.headers)
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read(), e.headers)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body=json, **kw)


@contextlib.contextmanager
def killed_submit_app(root: Path, secret: str, **env: str) -> Iterator[Client]:
    """``handoff_submit_app`` served by ``flask run`` in a process of its own; SIGKILLed (it and its
    forkserver) when the block ends, as a crash or the OOM killer would. ``env``: HANDOFF_TEST_* settings."""
    here = Path(__file__).parent
    port = free_port()
    environ = {**os.environ, "HANDOFF_TEST_ROOT": str(root), "HANDOFF_TEST_SECRET": secret,
               **{f"HANDOFF_TEST_{k.upper()}": v for k, v in env.items()},
               "PYTHONPATH": os.pathsep.join([str(here), os.getcwd()])}
    server = subprocess.Popen([Path(sys.executable).parent / "flask", "--app", "handoff_submit_app", "run",
                               "--port", str(port)], cwd=here, env=environ,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        remote = Client(port)
        wait_for(lambda: _answers(remote), what="the server")
        yield remote
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _answers(client: Client) -> bool:
    try:
        return client.post("/session", json={}).status_code == 200
    except OSError:
        return False


def require(reason: str) -> NoReturn:
    """Skip for a missing server on a developer's machine; never in CI."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"must not be skipped in CI: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def redis_server(work: Path) -> Iterator[str]:
    """A real ``redis-server`` on a free port, keeping nothing on disk; yield its URL."""
    import shutil

    if not shutil.which("redis-server"):
        require("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _connects(port), 10, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def gunicorn(module: str, env: dict[str, str], log: Path, workers: int = 2, threads: int = 16) -> Iterator[int]:
    """``module:app`` served by gunicorn's threaded worker from this folder, its log in ``log``; yield its port."""
    here = Path(__file__).parent
    port = free_port()
    environ = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(here), os.getcwd()])}
    with open(log, "wb") as stderr:
        server = subprocess.Popen(
            [Path(sys.executable).parent / "gunicorn", "-k", "gthread", "-w", str(workers),
             "--threads", str(threads), "-b", f"127.0.0.1:{port}", f"{module}:app"],
            cwd=here, env=environ, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        wait_for(lambda: server.poll() is not None or _connects(port), what="gunicorn")
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
