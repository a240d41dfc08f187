"""Darkroom, Redis and a client, each real and each on a free local port of its own."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Self

from handoff._processes import CHILD_GLIBC_TUNABLES

from .processes import children_of, free_port, rss_kb, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class RedisServer:
    """A throw-away redis-server on a free local port, keeping nothing on disk."""

    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tempfile.gettempdir()],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, "redis-server")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc, seconds=10)


@dataclass
class Server:
    """The Darkroom app in its own process, as users run it, with its own folder and database.

    The per-client limits are on, as they are for users; a test that sends
    more than they let through turns them off in ``env``.
    """

    kind: str  # "flask" (the dev server) or "gunicorn"
    runner: str = "warm"  # HANDOFF_MODE
    threads: int = 4
    workers: int = 1
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    def __enter__(self) -> Self:
        self.tmp = Path(tempfile.mkdtemp(prefix="darkroom-server-"))
        self.stack = contextlib.ExitStack()
        env = {
            **os.environ,
            "FLASK_HANDOFF_MODE": self.runner,
            "FLASK_SQLALCHEMY_DATABASE_URI": self.database_url or f"sqlite:///{self.tmp}/sessions.db",
            "FLASK_DARKROOM_STORAGE_ROOT": str(self.tmp / "workspaces"),
            "FLASK_SECRET_KEY": uuid.uuid4().hex,
            "FLASK_HANDOFF_MAX_CHILDREN": "4",
            "DARKROOM_INSTANCE_PATH": str(self.tmp / "instance"),
            "DARKROOM_BIND": f"127.0.0.1:{self.port}",
            "DARKROOM_WORKERS": str(self.workers),
            "DARKROOM_THREADS": str(self.threads),
            "DARKROOM_ACCESS_LOG": "/dev/null",
            **self.env,
        }
        factory = self.prepare(env)
        if self.kind == "flask":
            cmd: list[str | Path] = [BIN / "flask", "--app", factory, "run", "--port", str(self.port),
                                     "--no-reload", "--no-debugger"]
        else:
            cmd = [BIN / "gunicorn", "--config", "gunicorn.conf.py", factory]
        self.log = open(self.tmp / "server.log", "w+")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                Client(self.port).get("/api/session")
                break
            except OSError:
                time.sleep(0.1)
        else:
            text = self.log_text()
            self.__exit__()
            raise RuntimeError(f"{self.kind} did not start: {text}")
        return self

    def prepare(self, env: dict[str, str]) -> str:
        """Finish the server's environment; return the app factory it serves."""
        if self.runner == "inline":
            # The inline web process does the pixel work itself: give it the
            # malloc setting handoff gives its children.
            env["GLIBC_TUNABLES"] = CHILD_GLIBC_TUNABLES
        return "app:create_app()"

    def web_pids(self) -> list[int]:
        """The processes that serve requests: the dev server itself, or gunicorn's workers."""
        return children_of(self.proc.pid) if self.kind == "gunicorn" else [self.proc.pid]

    def rss_kb(self) -> int:
        """RSS of the web process (of the single worker, under gunicorn)."""
        [pid] = self.web_pids()
        return rss_kb(pid)

    def log_text(self) -> str:
        self.log.flush()
        return (self.tmp / "server.log").read_text()

    def child_peaks_kb(self) -> list[int]:
        return [int(m) for m in re.findall(r"child_peak_rss_kb=(\d+)", self.log_text())]

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        self.log.close()
        self.stack.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Client:
    """A browser-less client with its own session cookie.

    ``tls`` speaks HTTPS (to a proxy with a self-signed certificate);
    ``address`` is the local address to connect from (any 127.x.y.z on Linux),
    so one machine can play several clients.
    """

    def __init__(self, port: int, *, tls: bool = False, address: str | None = None, timeout: float = 300) -> None:
        self.port = port
        self.timeout = timeout
        self.tls = tls
        self.address = address
        self.cookie = ""
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        source = (self.address, 0) if self.address else None
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=self.timeout, source_address=source, context=context
            )
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout, source_address=source)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request on the client's connection, keeping the session cookie; return status and body."""
        headers = {"Accept": "application/json", **(headers or {})}
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
        except (http.client.HTTPException, ConnectionError):
            self.conn.close()  # the dev server may close idle connections: reconnect once
            self.conn = self._connect()
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
        data = response.read()
        self.headers = response.headers
        for header in response.headers.get_all("Set-Cookie") or []:
            morsel = next(iter(SimpleCookie(header).values()))
            self.cookie = f"{morsel.key}={morsel.value}"
        return response.status, data

    def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path``; return status and body."""
        return self.request("GET", path)

    def upload(self, image: bytes, ops: list[str]) -> tuple[int, bytes]:
        """POST ``image`` as photo.jpg to /jobs with ``ops``; return status and body."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="ops"\r\n\r\n{op}\r\n'.encode() for op in ops
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", "/jobs", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def ready(client: Client, timeout: float = 20) -> tuple[int, Any]:
    """Poll /readyz until it says ready; return its last answer, status and JSON."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = client.get("/readyz")
        if status == 200 or time.monotonic() > deadline:
            return status, json.loads(body)
        time.sleep(0.2)
