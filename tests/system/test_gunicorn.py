"""Darkroom under gunicorn with several workers, on each session database."""

import io
import json
import re
import threading

import pytest
from PIL import Image

from tests.support import Client, Server, children_of, descendants, is_alive, wait_for
from tests.support.photos import image_bytes

pytestmark = pytest.mark.gunicorn


@pytest.fixture
def gunicorn(database_url):
    # One thread per worker (sync workers): a worker busy with a job takes no
    # more connections, so concurrent requests really spread over both.
    with Server("gunicorn", workers=2, threads=1, database_url=database_url,
                env={"FLASK_DARKROOM_PLUGINS": '["tests.support.faulty_ops"]'}) as server:
        yield server


def test_end_to_end_through_gunicorn(gunicorn):
    assert len(gunicorn.web_pids()) == 2
    client = Client(gunicorn.port)
    status, body = client.upload(image_bytes((900, 600)), ["thumbnail", "rotate"])
    assert status == 201, body
    status, body = client.get("/api/session")
    [job] = json.loads(body)["jobs"]
    for out in job["outputs"]:
        status, data = client.get(out["url"])
        assert status == 200
        assert Image.open(io.BytesIO(data)).size == (out["width"], out["height"])
    assert [o["op"] for o in job["outputs"]] == ["thumbnail", "rotate"]


def test_eight_concurrent_jobs_of_one_session_across_workers(gunicorn):
    first = Client(gunicorn.port)
    first.get("/api/session")
    barrier = threading.Barrier(8)
    statuses = []

    def tab(i):
        client = Client(gunicorn.port)
        client.cookie = first.cookie
        barrier.wait()
        status, body = client.upload(image_bytes((300 + i, 200)), ["grayscale", "slow"])
        statuses.append((status, body))

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in statuses] == [201] * 8, statuses
    created = sorted(json.loads(body)["id"] for _, body in statuses)
    listed = sorted(j["id"] for j in json.loads(first.get("/api/session")[1])["jobs"])
    assert listed == created
    log = gunicorn.log_text()
    web_pids = set(re.findall(r"status=ok .* web_pid=(\d+)", log))
    assert len(web_pids) == 2, "both workers should have taken jobs"
    assert "database is locked" not in log
    assert "Traceback" not in log


def test_waiting_children_go_when_their_worker_is_recycled_or_stopped(database_url):
    env = {"DARKROOM_MAX_REQUESTS": "3"}  # each worker exits after three requests
    with Server("gunicorn", workers=2, database_url=database_url, env=env) as server:
        client = Client(server.port)
        # Each worker's processes: its forkserver and the children waiting in it for a job.
        below: dict[int, set[int]] = {}
        for _ in range(10):
            client.get("/")  # starts the worker's waiting children
            for worker in children_of(server.proc.pid):
                below.setdefault(worker, set()).update(descendants(worker))
        recycled = [w for w in below if not is_alive(w)]
        assert recycled, "workers should have been recycled"
        assert any(below[w] for w in recycled), "recycled workers had waiting children"
        wait_for(lambda: not [p for w in recycled for p in below[w] if is_alive(p)],
                   "the waiting children of recycled workers must exit with them")
        final = descendants(server.proc.pid)
        assert final, "the current workers keep waiting children"
    wait_for(lambda: not [p for p in final if is_alive(p)], "everything exits with gunicorn")
