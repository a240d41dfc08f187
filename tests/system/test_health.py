"""The probes against real processes: liveness from memory, readiness naming the part that failed
(the storage under its reserve, a forkserver killed with SIGKILL, Redis stopped), and neither of
them ever writing a session row."""

import json
import os
import signal
import time

from tests.support import Client, RedisServer, Server, children_of, ready
from tests.support.machine import require
from tests.support.photos import image_bytes


def session_rows(app):
    with app.app_context():
        return app.session_interface.sql_session_model.query.count()


def test_probes_answer_without_a_session_and_readiness_lists_each_part(make_app):
    app = make_app()
    client = app.test_client()
    alive = client.get("/healthz")
    assert alive.status_code == 200 and alive.get_json() == {"status": "alive"}
    deadline = time.monotonic() + 20
    while (answer := client.get("/readyz")).status_code != 200:  # a new process starts its children
        assert time.monotonic() < deadline, answer.get_json()
        time.sleep(0.2)
    checks = answer.get_json()["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "database": "ok", "storage": "ok", "children": "ok", "limits": "ok"}
    assert checks["database"]["detail"] == "sqlite" and checks["children"]["detail"].endswith("busy")
    for path in ("/healthz", "/readyz"):
        assert "Set-Cookie" not in client.get(path).headers
    assert session_rows(app) == 0


def test_readiness_fails_when_the_storage_is_under_its_reserve(make_app):
    app = make_app(DARKROOM_MIN_FREE_MB=1024**3)  # a petabyte: more than any disk here has free
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    storage = answer.get_json()["checks"]["storage"]
    assert storage["status"] == "failed" and "under the reserve of 1048576 GB" in storage["detail"]
    assert answer.get_json()["checks"]["database"]["status"] == "ok"


def forkserver_of(server):
    """The forkserver the web process started (a child of it whose command line says so)."""
    for pid in children_of(server.web_pids()[0]):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"forkserver" in f.read():
                return pid
    return None


def test_readiness_fails_while_the_forkserver_is_down_and_recovers_by_itself():
    with Server("flask") as server:
        client = Client(server.port)
        assert ready(client)[0] == 200
        pid = forkserver_of(server)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            status, body = client.get("/readyz")
            children = json.loads(body)["checks"]["children"]
            if status == 503:
                break
            assert time.monotonic() < deadline, children
            time.sleep(0.05)
        assert children["status"] == "failed"
        assert "forkserver is down" in children["detail"] or "no child is waiting" in children["detail"]
        status, answer = ready(client)
        assert status == 200, answer
        assert forkserver_of(server) not in (None, pid)  # a new one
        assert client.upload(image_bytes(), ["invert"])[0] == 201


def test_with_redis_stopped_uploads_go_on_counted_per_process_and_shared_counting_resumes():
    if os.system("command -v redis-server >/dev/null") != 0:
        require("redis-server is not installed (apt-get install redis-server)")
    import redis as redis_client

    with RedisServer() as redis:
        env = {"FLASK_DARKROOM_CLIENT_LIMITS": "true", "FLASK_RATELIMIT_STORAGE_URI": redis.url,
               "FLASK_DARKROOM_CLIENT_JOB_RATE": "1000 per minute"}
        with Server("gunicorn", workers=2, env=env) as server:
            client = Client(server.port)
            limits = ready(client)[1]["checks"]["limits"]
            assert (limits["status"], limits["detail"]) == ("ok", "shared counting")
            assert client.upload(image_bytes(), ["invert"])[0] == 201
            counters = redis_client.Redis.from_url(redis.url)
            assert counters.keys("LIMITS*")  # counted in Redis
            redis.proc.terminate()
            redis.proc.wait(10)
            for _ in range(4):  # both workers, more than once each
                assert client.upload(image_bytes(), ["invert"])[0] == 201
            status, answer = client.get("/readyz")
            assert status == 200  # degraded, not down: jobs go on
            assert json.loads(answer)["checks"]["limits"]["status"] == "degraded"
            warnings = server.log_text().count("Rate limit storage unreachable")
            assert 1 <= warnings <= 2  # once per worker that met the outage, not once per request
            redis.__enter__()  # the same port again, empty
            counters = redis_client.Redis.from_url(redis.url)
            deadline = time.monotonic() + 30
            while not counters.keys("LIMITS*"):  # Flask-Limiter looks again with a backoff
                assert time.monotonic() < deadline, "shared counting did not resume"
                assert client.upload(image_bytes(), ["invert"])[0] == 201
                time.sleep(0.5)
            assert ready(client)[1]["checks"]["limits"]["status"] == "ok"
