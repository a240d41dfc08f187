"""Take the README's screenshots: the page with a finished photo, and the viewer comparing one output.

    python docs/screenshots.py PHOTO [PHOTO ...]

PHOTO is a real photo whose licence allows it to be shown; the README's are
scikit-image's ``coffee.png`` (CC0, Rachel Michetti). The app runs from a
throw-away instance folder on a free port, Chromium (Debian's, through
Playwright) drives it as a visitor would, and the pictures are written to
docs/hero.png and docs/viewer.png.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPS = ["thumbnail", "grayscale", "edges", "sepia"]


def main(photos: list[str]) -> None:
    with tempfile.TemporaryDirectory() as instance:
        app = create_app(instance_path=instance)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            shoot(f"http://127.0.0.1:{server.server_port}", photos)
        finally:
            server.shutdown()


def shoot(base: str, photos: list[str]) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(base_url=base, viewport={"width": 1280, "height": 1000}).new_page()
        page.goto("/")
        for box in page.locator("input[name=ops][type=checkbox]").all():
            box.set_checked(box.get_attribute("value") in OPS)
        page.set_input_files("#image", photos)
        page.click("#submit")
        page.wait_for_selector(f"article.job >> nth={len(photos) - 1}", timeout=60_000)
        page.wait_for_timeout(500)  # the previews' fade-in
        page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
        bottom = page.locator("article.job").last.bounding_box()
        page.screenshot(path=ROOT / "docs" / "hero.png", full_page=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": bottom["y"] + bottom["height"] + 24})
        page.get_by_role("link", name="Compare Sepia with the original").first.click()
        page.wait_for_selector(".stage img")
        page.wait_for_timeout(500)
        page.screenshot(path=ROOT / "docs" / "viewer.png")
        browser.close()
    print("wrote docs/hero.png and docs/viewer.png")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
