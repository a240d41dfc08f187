"""The browser tests' fixtures: the app on a real port, and a page of it in Chromium."""

import pytest

from tests.support.browser import open_page, serving


@pytest.fixture
def live_server(make_app):
    """The app on a free local port."""
    with serving(make_app()) as url:
        yield url


@pytest.fixture
def page(browser, live_server):
    """A desktop page of the live server that fails its test on any script or console error."""
    with open_page(browser, live_server) as page:
        yield page
