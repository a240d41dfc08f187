import io
import os
import re
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from PIL import Image

from app import create_app
from handoff import Handoff

PLUGINS = ["tests.faulty_ops"]
#: The browser tests' fixtures (live_server, page), shared by every test module that drives Chromium.
pytest_plugins = ["browsing"]
POSTGRES_URL = os.environ.get("DARKROOM_TEST_POSTGRES_URL")

#: Settings a test must never take from the shell (``FLASK_DARKROOM_PROXY_HOPS=1`` exported
#: there would change what a proxy test sees), in the tests' apps and the servers they start.
SHELL_SETTINGS = re.compile(r"(FLASK|DARKROOM|HANDOFF)_")
#: The suite's own switches, which do come from the shell: test servers, the corpus, the wheel under test.
SUITE_SWITCHES = re.compile(r"(DARKROOM|HANDOFF)_TEST_|DARKROOM_(CORPUS|MUTATIONS|BENCH_)|HANDOFF_WHEEL$")


@pytest.fixture(scope="session", autouse=True)
def no_settings_from_the_shell():
    """Run every test, and every server it starts, without the shell's Flask, Darkroom or handoff settings."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if SHELL_SETTINGS.match(n) and not SUITE_SWITCHES.match(n)]:
            patch.delenv(name)
        yield


def require(reason):
    """Skip for a missing tool on a developer's machine; never in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"must not be skipped in CI: {reason}")
    pytest.skip(reason)


CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not shutil.which(CHROMIUM):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def browser():
    reason = _missing()
    if reason:
        require(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@contextmanager
def postgres_database():
    """Create an empty PostgreSQL database on the test server; yield its URL; drop it after."""
    if not POSTGRES_URL:
        require("no PostgreSQL server: export DARKROOM_TEST_POSTGRES_URL=$(.ci/start-postgres)")
    name = f"darkroom_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A fresh, empty session database: SQLite under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def make_app(tmp_path):
    """Build apps whose instance folder (database, workspaces, secret) lives under tmp_path."""
    apps = []

    def make(**config):
        app = create_app(
            {"TESTING": True, "DARKROOM_PLUGINS": PLUGINS, **config},
            instance_path=str(tmp_path / f"instance{len(apps)}"),
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            Handoff.close()
            app.session_interface.client.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def db_app(make_app, database_url):
    """An app whose sessions live in each supported database in turn."""
    return make_app(SQLALCHEMY_DATABASE_URI=database_url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def image_bytes(size=(640, 480), fmt="JPEG", color=(180, 90, 40), mode="RGB"):
    """Return an encoded test image made with Pillow."""
    buf = io.BytesIO()
    im = Image.new(mode, size, color)
    # A gradient, so filters and encoders have real work to do.
    for x in range(0, size[0], max(1, size[0] // 32)):
        im.paste((x % 256, 120, 255 - x % 256) if mode == "RGB" else 128, (x, 0, x + 2, size[1]))
    im.save(buf, fmt)
    return buf.getvalue()


def upload(client, data=None, ops=None, name="photo.jpg", json=True, fields=None, **headers):
    """POST an image to /jobs (with more form ``fields``, e.g. ``format``) and return the response."""
    form = {"image": (io.BytesIO(image_bytes() if data is None else data), name), **(fields or {})}
    if ops is not None:
        form["ops"] = ops
    if json:
        headers.setdefault("Accept", "application/json")
    return client.post("/jobs", data=form, headers=headers, content_type="multipart/form-data")


def error_json(response):
    """An error answer's JSON without its ``request_id``, once that is checked against ``X-Request-ID``."""
    body = dict(response.get_json())
    assert body.pop("request_id") == response.headers["X-Request-ID"]
    return body


def workspace_of(app, client):
    """The workspace of a test client's session, or None if it has none yet."""
    import storage

    with client.session_transaction() as sess:
        workspace_id = sess.get("_workspace")
    return storage.Workspace(app.config["DARKROOM_STORAGE_ROOT"], workspace_id) if workspace_id else None


def decode(data):
    """Return a fully decoded Pillow image from bytes."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@contextmanager
def tmpfs(folder, options):
    """Mount a tmpfs with ``options`` (e.g. ``size=2m`` or ``ro``) on a new ``folder``; unmount after."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        require(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); this test needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def wait_for_child_at_work(client, timeout=10):
    """Wait until a job of the client's session is inside its child (which has taken a slot).

    The web process writes the job's first note (no op yet) before the job
    waits for a slot; only the child names the op it is on.
    """
    deadline = time.monotonic() + timeout
    while not any(note["op"] for note in client.get("/api/progress").get_json()["running"]):
        assert time.monotonic() < deadline, "no job reached its child"
        time.sleep(0.02)


def expect_visible(locator, timeout=30_000):
    """Wait (Playwright's auto-retrying assertion) until ``locator`` is visible."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible(timeout=timeout)
