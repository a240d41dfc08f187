"""Many tabs of one session at once: every accepted job survives Flask-Session's last-save-wins."""

import http.cookiejar
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.browser import serving
from tests.support.jobs import upload
from tests.support.photos import image_bytes

pytestmark = pytest.mark.slow  # eight jobs at once, each test


def test_eight_simultaneous_jobs_and_readers_lose_nothing(make_app, database_url):
    app = make_app(HANDOFF_QUEUE_TIMEOUT=60, SQLALCHEMY_DATABASE_URI=database_url)
    first = app.test_client()
    first.get("/api/session")  # the session and its workspace exist before the tabs open
    cookie = first.get_cookie("session").value

    def tab():
        client = app.test_client()
        client.set_cookie("session", cookie)
        return client

    barrier = threading.Barrier(8 + 2)
    created: list[dict] = []
    failures: list[dict] = []
    reads = []
    done = threading.Event()

    def submit(i):
        client = tab()
        barrier.wait()
        response = upload(client, image_bytes((400 + i, 300)), ops=["grayscale", "thumbnail"], name=f"tab{i}.jpg")
        (created if response.status_code == 201 else failures).append(response.get_json())

    def read():
        client = tab()
        barrier.wait()
        while not done.is_set():
            reads.append(len(client.get("/api/session").get_json()["jobs"]))

    writers = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()

    assert failures == []
    assert len(created) == 8
    listed = tab().get("/api/session").get_json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(j["id"] for j in created)
    assert sorted(j["source"]["name"] for j in listed) == [f"tab{i}.jpg" for i in range(8)]
    assert reads and max(reads) <= 8
    # The session row in the database agrees with the manifest once a request has read it.
    with app.app_context():
        interface = app.session_interface
        [row] = interface.sql_session_model.query.all()
        assert sorted(j["id"] for j in interface.serializer.decode(row.data)["jobs"]) == sorted(j["id"] for j in listed)


def test_an_api_client_that_starts_with_get_api_session_keeps_8_parallel_uploads_in_one_session(make_app):
    """A real HTTP client with a cookie jar: the first answer sets the cookie every upload then carries."""
    with serving(make_app(HANDOFF_QUEUE_TIMEOUT=60)) as base:
        api_client_uploads_in_parallel(base)


def api_client_uploads_in_parallel(base):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def call(path, body=None, content_type=None):
        request = urllib.request.Request(base + path, data=body, headers={"Accept": "application/json"})
        if content_type:
            request.add_header("Content-Type", content_type)
        with opener.open(request, timeout=120) as response:
            return response.status, json.load(response)

    assert call("/api/session") == (200, {"jobs": [], "next": None})
    assert [c.name for c in jar] == ["session"]

    def send(i):
        boundary = f"upload{i}"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="ops"\r\n\r\ngrayscale\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="api{i}.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n").encode()
        body += image_bytes((80 + i, 60)) + f"\r\n--{boundary}--\r\n".encode()
        return call("/jobs", body, f"multipart/form-data; boundary={boundary}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert [status for status, _ in answers] == [201] * 8
    status, session = call("/api/session")
    assert sorted(job["source"]["name"] for job in session["jobs"]) == [f"api{i}.jpg" for i in range(8)]
