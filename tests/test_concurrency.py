"""Many tabs of one session at once: every accepted job survives Flask-Session's last-save-wins."""

import threading

from conftest import image_bytes, upload


def test_eight_simultaneous_jobs_and_readers_lose_nothing(make_app, database_url):
    app = make_app(HANDOFF_QUEUE_TIMEOUT=60, SQLALCHEMY_DATABASE_URI=database_url)
    first = app.test_client()
    first.get("/")  # the session and its workspace exist before the tabs open
    cookie = first.get_cookie("session").value

    def tab():
        client = app.test_client()
        client.set_cookie("session", cookie)
        return client

    barrier = threading.Barrier(8 + 2)
    created, failures, reads = [], [], []
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
