"""The fixtures every group of tests shares: apps under tmp_path, their clients, databases, Chromium.

The helpers live in ``tests/support``; ``tests/browser/conftest.py`` adds a live server and a page.
Darkroom itself is imported by the fixtures that build it, so ``tests/handoff`` runs without it.
"""

import os
import re
from pathlib import Path

import pytest
from flask import Flask

from tests.support.browser import CHROMIUM, FLAGS, missing_browser
from tests.support.machine import postgres_database, require

APP_TESTS = Path(__file__).parent / "app"
#: Settings a test must never take from the shell (``FLASK_DARKROOM_PROXY_HOPS=1`` exported
#: there would change what a proxy test sees), in the tests' apps and the servers they start.
SHELL_SETTINGS = re.compile(r"(FLASK|DARKROOM|HANDOFF)_")
#: The suite's own switches, which do come from the shell: test servers, the corpus, the wheel under test.
SUITE_SWITCHES = re.compile(r"(DARKROOM|HANDOFF)_TEST_|DARKROOM_(CORPUS|MUTATIONS|BENCH_)|HANDOFF_WHEEL$")


def pytest_collection_modifyitems(items):
    """Mark the fast subset: the tests of tests/app not marked slow (make test-fast; make test runs it first)."""
    for item in items:
        if item.path.parent == APP_TESTS and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session", autouse=True)
def no_settings_from_the_shell():
    """Run every test, and every server it starts, without the shell's Flask, Darkroom or handoff settings."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if SHELL_SETTINGS.match(n) and not SUITE_SWITCHES.match(n)]:
            patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright; one for the whole run."""
    reason = missing_browser()
    if reason:
        require(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


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
    from app import create_app
    from tests.support.jobs import PLUGINS, close_app

    apps: list[Flask] = []

    def make(**config):
        app = create_app(
            {"TESTING": True, "DARKROOM_PLUGINS": PLUGINS, **config},
            instance_path=str(tmp_path / f"instance{len(apps)}"),
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


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
