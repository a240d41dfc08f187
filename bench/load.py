"""Pieces of the benchmark: test images, a server under test, and an HTTP load."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from PIL import Image

from handoff._processes import CHILD_GLIBC_TUNABLES

ROOT = Path(__file__).resolve().parent.parent
#: The benchmark's names for the runners, and the HANDOFF_MODE each one is.
MODES = {"darkroom": "warm", "spawn": "spawn", "pool": "pool", "inline": "inline",
         "celery": "celery", "celery-reused": "celery", "rq": "rq"}
#: The runners that are other systems (bench/peers.py): a Redis and their own workers beside the web tier.
PEERS = ("celery", "celery-reused", "rq")
BIN = Path(sys.executable).parent


def make_photo(width: int, height: int, seed: int) -> bytes:
    """Return a JPEG that compresses like a photo (~0.2 bytes a pixel at quality 90)."""
    coarse = Image.effect_noise((max(1, width // 8), max(1, height // 8)), 40 + seed)
    coarse = coarse.resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.blend(coarse, Image.effect_noise((width, height), 12), 0.25)
    gradient = Image.linear_gradient("L").resize((width, height))
    im = Image.merge("RGB", (grain, gradient, coarse.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


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


@dataclass
class RedisServer:
    """A throw-away redis-server on a free local port, keeping nothing on disk."""

    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def __enter__(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tempfile.gettempdir()],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, "redis-server")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc, seconds=10)


def rss_kb(pid: int) -> int:
    """Return a process's resident set size in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


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


@dataclass
class Server:
    """The Darkroom app in its own process, as users run it."""

    kind: str  # "flask" (the dev server) or "gunicorn"
    runner: str = "darkroom"
    threads: int = 4
    workers: int = 1
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    def __enter__(self) -> Server:
        self.tmp = Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
        self.stack = contextlib.ExitStack()
        self.peer = None
        env = {
            **os.environ,
            "FLASK_HANDOFF_MODE": MODES[self.runner],
            "FLASK_SQLALCHEMY_DATABASE_URI": self.database_url or f"sqlite:///{self.tmp}/sessions.db",
            "FLASK_DARKROOM_STORAGE_ROOT": str(self.tmp / "workspaces"),
            "FLASK_SECRET_KEY": uuid.uuid4().hex,
            "FLASK_HANDOFF_MAX_CHILDREN": "4",
            "DARKROOM_INSTANCE_PATH": str(self.tmp / "instance"),
            # One client sends every job here: the per-client limits would refuse a load test.
            "FLASK_DARKROOM_CLIENT_LIMITS": "false",
            "DARKROOM_BIND": f"127.0.0.1:{self.port}",
            "DARKROOM_WORKERS": str(self.workers),
            "DARKROOM_THREADS": str(self.threads),
            "DARKROOM_ACCESS_LOG": "/dev/null",
            **self.env,
        }
        factory = "app:create_app()"
        if self.runner == "inline":
            # The inline web process does the pixel work itself: give it the
            # malloc setting darkroom gives its children, for a fair anchor.
            env["GLIBC_TUNABLES"] = CHILD_GLIBC_TUNABLES
        elif self.runner in PEERS:
            from bench.peers import Workers

            redis = self.stack.enter_context(RedisServer())
            env["DARKROOM_BENCH_REDIS_URL"] = redis.url
            factory = "bench.peers:create_app()"
            # The peers' workers do the pixel work: the same malloc setting as darkroom's children.
            self.peer = self.stack.enter_context(Workers(
                self.runner, redis.url, int(env["FLASK_HANDOFF_MAX_CHILDREN"]), self.tmp / "workers.log",
                env={"GLIBC_TUNABLES": CHILD_GLIBC_TUNABLES}))
            self.redis = redis
        if self.kind == "flask":
            cmd = [BIN / "flask", "--app", factory, "run", "--port", str(self.port), "--no-reload", "--no-debugger"]
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

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
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

    def get(self, path: str):
        return self.request("GET", path)

    def upload(self, image: bytes, ops: list[str]):
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


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def run_load(port: int, images: list[bytes], ops: list[str], jobs: int, clients: int) -> dict:
    """Send ``jobs`` uploads from ``clients`` concurrent clients; return latencies and throughput."""
    latencies: list[float] = []
    op_ms: dict[str, list[float]] = {}
    errors: list[str] = []
    counter = iter(range(jobs))
    lock = threading.Lock()

    def client_loop() -> None:
        client = Client(port)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            image = images[i % len(images)]
            ms, (status, data) = timed(lambda: client.upload(image, ops))  # noqa: B023 (called at once)
            with lock:
                if status != 201:
                    errors.append(f"{status} {data[:200]!r}")
                    continue
                latencies.append(ms)
                for out in json.loads(data)["outputs"]:
                    op_ms.setdefault(out["op"], []).append(out["ms"])

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - started, "op_ms": op_ms}


def summarize(*loads: dict) -> dict:
    """Combine load results into throughput and latency figures."""
    latencies = [ms for load in loads for ms in load["latencies"]]
    op_ms: dict[str, list[float]] = {}
    for load in loads:
        for op, times in load["op_ms"].items():
            op_ms.setdefault(op, []).extend(times)
    return {
        "ok": len(latencies),
        "errors": [e for load in loads for e in load["errors"]],
        "jobs_per_s": len(latencies) / sum(load["wall"] for load in loads),
        "median_ms": statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": quantile(latencies, 0.95),
        "op_ms": {op: statistics.median(v) for op, v in op_ms.items()},
    }


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tiny_rounds(port: int, tiny: bytes, rounds: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of ``rounds`` 64×48 jobs and of as many plain GET /api/session, interleaved."""
    client = Client(port)
    client.get("/api/session")
    jobs, reads = [], []
    for _ in range(rounds):
        ms, (status, _data) = timed(lambda: client.upload(tiny, ["invert"]))
        assert status == 201, status
        jobs.append(ms)
        reads.append(timed(lambda: client.get("/api/session"))[0])
        client.request("POST", "/session/clear")  # keep the session small and constant
    return jobs, reads


def overhead(port: int, tiny: bytes, rounds: int) -> dict:
    """Median latency of a 64×48 job and of a plain GET /api/session, interleaved."""
    jobs, reads = tiny_rounds(port, tiny, rounds)
    return {"tiny_ms": statistics.median(jobs), "get_ms": statistics.median(reads)}
