"""A real PostgreSQL stopped and started again under a running server."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import ROOT, Client, Server, ready
from tests.support.machine import require
from tests.support.photos import image_bytes

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_cluster():
    """A PostgreSQL cluster of this test's own, so stopping it disturbs no other test."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        require("PostgreSQL is not installed (apt-get install postgresql)")
    # Under /tmp itself: the server runs as the postgres user, who cannot enter pytest's folders.
    pgdir = Path(tempfile.mkdtemp(prefix="darkroom-pg-"))
    started = subprocess.run([ROOT / ".ci" / "start-postgres"], env={**os.environ, "PGDIR": str(pgdir)},
                             capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    yield started.stdout.strip(), pgdir
    subprocess.run([pgdir / "stop"], check=False, capture_output=True)
    shutil.rmtree(pgdir, ignore_errors=True)


def test_the_app_answers_while_postgresql_is_down_and_recovers_after(own_cluster):
    url, pgdir = own_cluster
    with Server("flask", database_url=url) as server:
        client = Client(server.port)
        status, body = client.upload(image_bytes(), ["invert"])
        assert status == 201, body
        subprocess.run([pgdir / "stop"], check=True)
        for accept in ("application/json", "text/html"):
            status, body = client.request("GET", "/", headers={"Accept": accept})
            assert status == 503, body  # the app's own answer, as asked for, not a bare server error
            assert b"session store is busy" in body
        subprocess.run([pgdir / "start"], check=True)
        # The first request after the restart works: stale pooled connections are replaced, not used.
        status, body = client.get("/api/session")
        assert status == 200, body
        assert len(json.loads(body)["jobs"]) == 1
        status, body = client.upload(image_bytes(), ["invert"])
        assert status == 201, body
        # A restart between two requests: the pooled connections are stale, and must not be used.
        subprocess.run([pgdir / "stop"], check=True)
        subprocess.run([pgdir / "start"], check=True)
        status, body = client.get("/api/session")
        assert status == 200, body
        assert len(json.loads(body)["jobs"]) == 2


def test_readiness_fails_while_postgresql_is_down_and_recovers(own_cluster):
    url, pgdir = own_cluster
    with Server("flask", database_url=url) as server:
        client = Client(server.port)
        assert ready(client)[0] == 200
        subprocess.run([pgdir / "stop"], check=True)
        status, body = client.get("/readyz")
        assert status == 503
        database = json.loads(body)["checks"]["database"]
        assert database["status"] == "failed" and "OperationalError" in database["detail"]
        assert client.get("/healthz")[0] == 200  # alive all along
        subprocess.run([pgdir / "start"], check=True)
        status, answer = ready(client)
        assert status == 200 and answer["checks"]["database"]["detail"] == "postgresql"
