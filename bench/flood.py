"""``python -m bench.flood``: one anonymous client floods the server; what does it manage to store?

Starts gunicorn (2 workers) three times: client limits on with the default
``memory://`` counters (each worker counts alone), on with one Redis shared by
both workers (the documented production setting), and off. For ``--seconds``
each run sends, from 4 cookie-less connections of one address,
the three abusive requests the limits exist for: an 8×8 PNG with 39 MB of junk
appended, a 56 kB checkerboard PNG that decodes to 49 megapixels with every
op, and a job naming 950 unknown ops. Prints the statuses seen, the bytes
stored and the session rows written.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import shutil
import sqlite3
import threading
import time
import uuid

from PIL import Image

from bench.load import Client, RedisServer, Server

OPS = ["thumbnail", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate", "invert"]


def junk_png() -> bytes:
    """An 8×8 PNG with 39 MB appended: valid to the header check, 39 MB to store."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue() + os.urandom(39 * 1024 * 1024)


def checkerboard_png(side: int = 7000) -> bytes:
    """A one-pixel checkerboard: tiny as PNG, huge once decoded and re-encoded."""
    row = b"\x00\xff" * (side // 2)
    flipped = b"\xff\x00" * (side // 2)
    im = Image.frombytes("L", (side, side), (row + flipped) * (side // 2))
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def multipart(image: bytes, ops: list[str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="ops"\r\n\r\n{op}\r\n'.encode() for op in ops]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def stored_bytes(root: str | os.PathLike[str]) -> int:
    """Bytes of every file under ``root``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


def flood(env: dict[str, str], seconds: float, connections: int, payloads: list[tuple[str, bytes, str]]) -> dict:
    env = {"FLASK_HANDOFF_MAX_CHILDREN": "2", **env}
    with Server("gunicorn", workers=2, threads=4, env=env) as server:
        statuses: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def connection(offset: int) -> None:
            client = Client(server.port)
            i = offset
            while time.monotonic() < deadline:
                name, body, content_type = payloads[i % len(payloads)]
                i += 1
                client.cookie = ""  # never keep a session: every request is a new visitor
                status: int | str
                try:
                    status, _ = client.request("POST", "/jobs", body, {"Content-Type": content_type})
                except OSError:  # answered (429/413) and closed before the whole body was sent
                    status = "refused unread (connection closed)"
                with lock:
                    statuses[f"{name} {status}"] += 1

        threads = [threading.Thread(target=connection, args=(i,)) for i in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with sqlite3.connect(server.tmp / "sessions.db") as db:
            rows = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
        return {"statuses": dict(sorted(statuses.items())), "stored": stored_bytes(server.tmp / "workspaces"),
                "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    payloads = [
        ("junk-appended PNG (39 MB)", *multipart(junk_png(), ["thumbnail"])),
        ("checkerboard PNG (7000×7000, all ops)", *multipart(checkerboard_png(), OPS)),
        ("950 unknown ops", *multipart(checkerboard_png(64), [f"op{i}" * 20 for i in range(950)])),
    ]
    for name, body, _ in payloads:
        print(f"payload: {name}: {len(body):,} bytes per request")
    runs = [("client limits on, memory:// (per worker)", {"FLASK_DARKROOM_CLIENT_LIMITS": "true"})]
    with contextlib.ExitStack() as stack:
        if shutil.which("redis-server"):
            redis = stack.enter_context(RedisServer())
            runs.append(("client limits on, Redis shared by the workers",
                         {"FLASK_DARKROOM_CLIENT_LIMITS": "true", "FLASK_RATELIMIT_STORAGE_URI": redis.url}))
        else:
            print("redis-server not found: skipping the shared-counter run (apt-get install redis-server)")
        runs.append(("client limits off", {"FLASK_DARKROOM_CLIENT_LIMITS": "false"}))
        for title, env in runs:
            result = flood(env, args.seconds, args.connections, payloads)
            print(f"\n{title}: {args.seconds:g} s, {args.connections} connections, one address")
            for key, count in result["statuses"].items():
                print(f"  {count:5d} × {key}")
            print(f"  stored: {result['stored'] / 1024**2:,.1f} MB; session rows: {result['rows']}")

if __name__ == "__main__":
    main()
