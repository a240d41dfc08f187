"""The merging save, on real Flask-Session stores behind a real threaded server (gunicorn, 2 workers × 16 threads).

Every test runs with the merge on, and again with it off to show that the
store on its own loses what the merge keeps (the last whole-session save wins).
"""

import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from helpers import Client, gunicorn, redis_server, require, wait_for

pytestmark = pytest.mark.gunicorn
HERE = Path(__file__).parent
BACKENDS = ["sqlite", "postgresql", "redis", "filesystem", "cachelib"]
POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES_URL")


@contextmanager
def postgres_database():
    """A new, empty PostgreSQL database on the test server; its URL; dropped after."""
    if not POSTGRES_URL:
        require("no PostgreSQL server: set HANDOFF_TEST_POSTGRES_URL")
    import sqlalchemy as sa

    name = f"handoff_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def store(request, tmp_path_factory):
    """Each backend's own server (PostgreSQL database, redis-server), shared by both servers of the app."""
    work = tmp_path_factory.mktemp(request.param)
    with ExitStack() as stack:
        env = {"HANDOFF_TEST_BACKEND": request.param}
        if request.param == "postgresql":
            env["HANDOFF_TEST_DATABASE_URL"] = stack.enter_context(postgres_database())
        if request.param == "redis":
            env["HANDOFF_TEST_REDIS_URL"] = stack.enter_context(redis_server(work))
        yield work, env


@pytest.fixture(scope="module", params=["merge", "no merge"])
def server(request, store):
    """The app on ``store``, with the merge on or off: yields (client factory, merging)."""
    work, env = store
    merging = request.param == "merge"
    root = work / request.param.replace(" ", "-")
    env = {**env, "HANDOFF_TEST_ROOT": str(root), "HANDOFF_TEST_SECRET": secrets.token_hex(16),
           "HANDOFF_TEST_MERGE": "1" if merging else "0"}
    root.mkdir()
    # Imported once first, so that the sessions table exists before two workers would race to create it.
    subprocess.run([sys.executable, "-c", "import handoff_session_app"], cwd=HERE, check=True,
                   env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(HERE), os.getcwd()])})
    with gunicorn("handoff_session_app", env, log=root / "gunicorn.log") as port:

        def new_client() -> Client:
            client = Client(port)
            assert client.post("/session", json={"base": "kept"}).status_code == 200  # a stored session
            return client

        yield new_client, merging
    assert "Traceback" not in (root / "gunicorn.log").read_text()


def at_once(requests):
    """Send every ``(method, path, json)`` request from a thread of its own, all released together."""
    start = threading.Barrier(len(requests))
    statuses = [None] * len(requests)

    def send(i, client, method, path, body):
        start.wait()
        statuses[i] = client.request(method, path, json_body=body).status_code

    threads = [threading.Thread(target=send, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def stored(client):
    return client.get("/session").get_json()


@pytest.mark.parametrize("count", [8, 32])
def test_concurrent_children_each_keep_their_key(server, count):
    new_client, merging = server
    client = new_client()
    statuses = at_once([(client, "POST", f"/write/k{i}", i) for i in range(count)])
    assert statuses == [204] * count
    kept = {k: v for k, v in stored(client).items() if k.startswith("k")}
    if merging:
        assert kept == {f"k{i}": i for i in range(count)}
        assert stored(client)["base"] == "kept"
    else:  # the store alone: the last whole-session save wins
        assert len(kept) < count


def test_a_delete_composes_with_concurrent_sets(server):
    new_client, merging = server
    client = new_client()
    client.post("/session", json={"doomed": 1, "other": 2})
    statuses = at_once([(client, "POST", "/delete/doomed", None)]
                       + [(client, "POST", f"/write/k{i}", i) for i in range(8)])
    assert statuses == [204] * 9
    keys = set(stored(client)) - {"_permanent"}
    expected = {"base", "other", *(f"k{i}" for i in range(8))}
    if merging:
        assert keys == expected
    else:
        assert keys != expected


def test_a_request_that_only_reads_writes_nothing(server, tmp_path):
    """A reader that loaded ``value=old`` ends after a writer stored ``new``: ``new`` stays.

    Flask's default ``SESSION_REFRESH_EACH_REQUEST`` makes the store save the
    reader's stale copy of every key; the merge saves nothing for it.
    """
    new_client, merging = server
    client = new_client()
    client.post("/session", json={"value": "old"})
    answers = {}
    started, release = tmp_path / "started", tmp_path / "release"

    def read():
        answers["read"] = client.get("/read/value?" + urlencode({"started": started, "release": release}))

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(started.exists, what="the reader's child")  # the reader has loaded the session
    assert client.post("/write/value?pause=0", json="new").status_code == 204
    release.touch()
    reader.join()
    assert answers["read"].get_json() == {"value": "old"}
    if merging:
        assert stored(client)["value"] == "new"
        assert "Set-Cookie" not in answers["read"].headers
    else:
        assert stored(client)["value"] == "old"


def test_of_two_sets_of_one_key_the_later_commit_wins(server, tmp_path):
    new_client, merging = server
    client = new_client()
    answers = {}
    started, release = tmp_path / "started", tmp_path / "release"

    def slow():
        answers["slow"] = client.post("/write/same?" + urlencode({"started": started, "release": release}),
                                      json="slow, committed last")

    first = threading.Thread(target=slow)
    first.start()
    wait_for(started.exists, what="the slow writer's child")  # it has loaded the session
    assert client.post("/write/same?pause=0", json="fast, committed first").status_code == 204
    release.touch()
    first.join()
    assert answers["slow"].status_code == 204
    assert stored(client)["same"] == "slow, committed last"


@contextmanager
def held_lock(backend, env, root, sid):
    """Hold the lock on session ``sid`` from this process, as a request on another node would."""
    from handoff._sessions import FILE_LOCKS, _digest

    if backend == "postgresql":
        import sqlalchemy as sa

        engine = sa.create_engine(env["HANDOFF_TEST_DATABASE_URL"])
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _digest(sid)})
            yield
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _digest(sid)})
        engine.dispose()
    elif backend == "redis":
        import redis

        with redis.Redis.from_url(env["HANDOFF_TEST_REDIS_URL"]).lock(f"session:handoff-merge:{sid}", timeout=30):
            yield
    else:
        from filelock import FileLock

        with FileLock(root / "handoff" / "session-locks" / f"{_digest(sid) % FILE_LOCKS:02x}.lock"):
            yield


@pytest.mark.parametrize("server", ["merge"], indirect=True)
def test_a_save_waits_while_another_process_holds_the_session_lock(server, store):
    new_client, _ = server
    work, env = store
    client = new_client()
    sid = next(c.value for c in client.jar if c.name == "session")
    answers = {}
    with held_lock(env["HANDOFF_TEST_BACKEND"], env, work / "merge", sid):
        def write():
            answers["write"] = client.post("/write/late?pause=0", json=1)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(1.0)
        assert writer.is_alive(), "the save did not wait for the lock"
        assert "late" not in stored(client)
    writer.join()
    assert answers["write"].status_code == 204
    assert stored(client)["late"] == 1
