"""Driving Debian's Chromium: the browser, the app on a real port, pages that fail on script errors, helpers."""

import shutil
import threading
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server

from .photos import image_bytes
from .processes import wait_for
from .servers import ROOT

SCREENSHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing_browser():
    """Why Chromium cannot be driven here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not shutil.which(CHROMIUM):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


DESKTOP = {"viewport": {"width": 1280, "height": 900}}
#: A 390×844 phone (an iPhone 12 to 14's viewport) at three device pixels per CSS pixel.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
SCREENS: dict[str, dict[str, Any]] = {"desktop": DESKTOP, "phone": PHONE}


@contextmanager
def serving(app):
    """Serve ``app`` on a free local port with Werkzeug in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@contextmanager
def open_page(browser, base_url, screen=DESKTOP, allowed=("400 (BAD REQUEST)", "415 (UNSUPPORTED MEDIA TYPE)"),
              **options):
    """A page in a new context on ``screen`` that fails the test on any script or console error.

    No script error, no Content-Security-Policy violation, no missing file;
    the only errors are those a test provokes on purpose (``allowed``), such as the 400 or 415 it asserts on.
    """
    context = browser.new_context(base_url=base_url, accept_downloads=True, **screen, **options)
    page = context.new_page()
    problems = []
    page.on("console", lambda msg: problems.extend([msg.text] if msg.type == "error" else []))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert [p for p in problems if not any(a in p for a in allowed)] == []


def expect_visible(locator, timeout=30_000):
    """Wait (Playwright's auto-retrying assertion) until ``locator`` is visible."""
    expect(locator).to_be_visible(timeout=timeout)


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def photo(tmp_path, size=(1600, 1200), name="holiday.jpg"):
    path = tmp_path / name
    path.write_bytes(image_bytes(size))
    return path


def submit_photo(page, tmp_path, name, size=(300, 200)):
    """Choose a photo called ``name`` in the page's form, press Process and wait for its job in the gallery."""
    page.set_input_files("#image", photo(tmp_path, size, name))
    page.click("#submit")
    page.wait_for_selector(f"article.job h3:text-is('{name}')")


def assert_accessible(page, state):
    """axe-core finds no violation in the page as it is now (``state`` names it in the failure)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.violations_count == 0, f"{state}: {results.generate_report()}"


def shot(page, name):
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


#: True once the page has sent every file of its batch (the queue is busy while it sends).
BATCH_DONE = "document.getElementById('queue').getAttribute('aria-busy') !== 'true'"


def wait_until(page, script, timeout=30):
    """Poll a JavaScript expression until it is true.

    (Playwright's wait_for_function evaluates a string inside the page, which
    the app's Content-Security-Policy rightly forbids.)
    """
    wait_for(lambda: page.evaluate(script), script, timeout)


def check_ops(page, wanted):
    for box in page.locator("input[name=ops][type=checkbox]").all():
        box.set_checked(box.get_attribute("value") in wanted)


