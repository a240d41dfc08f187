"""The viewer, in Chromium on both screens, with a real photo: it fills the window from a screen-sized
copy, compares with a slider moved by mouse, finger and keys or side by side, zooms to 100% with the
two in step, goes through a job's images by keyboard and says what each output saved."""

import re

import pytest

from tests.support.browser import BATCH_DONE, SCREENS, assert_accessible, check_ops, expect, open_page, shot, wait_until
from tests.support.corpus import corpus_dir
from tests.support.machine import require

pytestmark = pytest.mark.browser

ALL_IMAGES_LOADED = "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
#: view.js has run: it unhides the key hints (which CSS then hides again on a touch screen).
SCRIPT_STARTED = "!document.getElementById('keys').hidden"


@pytest.fixture(params=sorted(SCREENS))
def screen(request):
    return request.param


@pytest.fixture
def real_photo():
    """A real 2000×1072 camera photo of 1.8 MB from the outside corpus."""
    path = corpus_dir() / "xmp_test.jpg"
    if not path.is_file():
        require(f"the outside corpus is missing at {corpus_dir()} (set DARKROOM_CORPUS)")
    return path


def open_viewer(page, files, ops, link):
    """Upload ``files`` with ``ops`` and open the viewer by the gallery's link named ``link``."""
    page.goto("/")
    check_ops(page, ops)
    page.set_input_files("#image", files)
    page.click("#submit")
    wait_until(page, BATCH_DONE, timeout=60)
    page.get_by_role("link", name=link).first.click()
    page.wait_for_url("**/view/**")
    page.wait_for_selector(".stage")
    wait_until(page, ALL_IMAGES_LOADED)
    wait_until(page, SCRIPT_STARTED)


def split_state(page):
    """The split control's value and where the result's picture is cut, as the page draws it."""
    return page.evaluate("""() => ({
        value: Number(document.getElementById('split').value),
        cut: getComputedStyle(document.querySelector('.slider .frame')).getPropertyValue('--cut').trim(),
    })""")


def test_the_viewer_fills_the_window_from_screen_copies_and_says_what_was_saved(
        browser, live_server, screen, real_photo):
    size = SCREENS[screen]["viewport"]
    with open_page(browser, live_server, SCREENS[screen]) as page:
        loaded = []
        page.on("response", lambda r: loaded.extend(
            [r] if "/jobs/" in r.url and r.request.resource_type == "image" else []))
        open_viewer(page, real_photo, {"sepia"}, "Compare Sepia with the original")
        expect(page.locator("h1")).to_contain_text("Sepia of xmp_test.jpg")
        frame = page.locator(".slider .frame").bounding_box()
        # As large as the window allows, the photo's shape kept (2000×1072).
        assert frame["width"] >= 0.9 * size["width"] - 40 or frame["height"] >= 0.6 * size["height"]
        assert abs(frame["width"] / frame["height"] - 2000 / 1072) < 0.02
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        # Fitted, both come from their screen copies (1600 px WebP), not from the 1.8 MB files.
        urls = [r.url for r in loaded]
        assert sorted(re.sub(r".*/screen/", "screen/", u) for u in urls) == ["screen/0", "screen/1"]
        assert page.evaluate("[...document.querySelectorAll('.frame img')].map(i => i.naturalWidth)") == [1600, 1600]
        assert sum(len(r.body()) for r in loaded) < 600_000
        sizes = page.locator(".sizes").inner_text()
        assert "Before: the original · 2000×1072 JPEG · 1.7 MB" in sizes
        saving = page.locator(".saving").inner_text()
        assert re.fullmatch(r"[−+]\d+%", saving)
        shot(page, f"{screen}-viewer-slider")
        assert_accessible(page, f"the viewer's slider, {screen}")


def test_the_slider_moves_by_keys_by_mouse_and_by_finger(browser, live_server, screen, real_photo):
    with open_page(browser, live_server, SCREENS[screen]) as page:
        open_viewer(page, real_photo, {"grayscale"}, "Compare Grayscale with the original")
        assert split_state(page) == {"value": 50, "cut": "50%"}
        frame = page.locator(".slider .frame").bounding_box()
        y = frame["y"] + frame["height"] / 2
        if screen == "desktop":
            page.focus("#split")
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            assert split_state(page) == {"value": 55, "cut": "55%"}
            page.mouse.move(frame["x"] + frame["width"] / 2, y)
            page.mouse.down()
            page.mouse.move(frame["x"] + frame["width"] * 0.2, y, steps=5)
            page.mouse.up()
        else:  # a real touch swipe, sideways across the picture (Chromium's own touch events)
            touch = page.context.new_cdp_session(page)
            x0, x1 = frame["x"] + frame["width"] * 0.6, frame["x"] + frame["width"] * 0.2
            touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y}]})
            for step in range(1, 6):
                x = x0 + (x1 - x0) * step / 5
                touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        moved = split_state(page)
        assert 18 <= moved["value"] <= 22 and 18 <= float(moved["cut"].rstrip("%")) <= 22
        # What the eye sees: left of the split the original's colour, right of it the result's grey.
        pixels = page.screenshot(clip={"x": frame["x"], "y": y - 40, "width": frame["width"], "height": 80})
        from io import BytesIO

        from PIL import Image, ImageStat

        strip = Image.open(BytesIO(pixels)).convert("HSV")
        saturation = [ImageStat.Stat(strip.crop((int(strip.width * f), 0, int(strip.width * f) + 20, strip.height))
                                     .getchannel("S")).extrema[0][1] for f in (0.05, 0.15, 0.3, 0.9)]
        assert max(saturation[:2]) > 20, saturation  # the original's colours, left of 20%
        assert max(saturation[2:]) < 8, saturation  # grey from there on
        shot(page, f"{screen}-viewer-moved")
        page.reload()  # the split stays where it was put
        assert split_state(page)["value"] == moved["value"]


def press(page, key):
    """Press ``key`` once the page's script listens."""
    wait_until(page, SCRIPT_STARTED)
    page.keyboard.press(key)


def test_the_keyboard_goes_through_a_jobs_images_zooms_and_goes_back(page, real_photo):
    open_viewer(page, real_photo, {"sepia", "grayscale"}, "Compare Grayscale with the original")
    expect(page.locator("h1")).to_contain_text("Grayscale")
    expect(page.locator("#keys")).to_be_visible()  # on a desktop, the page says which keys do what
    press(page, "ArrowRight")
    expect(page.locator("h1")).to_contain_text("Sepia")
    expect(page.locator(".steps")).to_contain_text("3 of 3")
    press(page, "ArrowRight")  # the last: nowhere further
    expect(page.locator("h1")).to_contain_text("Sepia")
    press(page, "z")
    expect(page).to_have_url(re.compile(r"zoom=100"))
    expect(page.locator(".zoom [aria-current]")).to_have_text("Actual size (100%)")
    press(page, "ArrowLeft")  # the page, not a scrolled picture, has focus: the previous image
    expect(page.locator("h1")).to_contain_text("Grayscale")
    expect(page).to_have_url(re.compile(r"zoom=100"))  # the zoom is kept from image to image
    press(page, "ArrowLeft")
    expect(page.locator("h1")).to_contain_text("Original")
    press(page, "Escape")
    expect(page).to_have_url(re.compile(r"/#job-[0-9a-f]{24}$"))
    expect(page.locator("article.job")).to_have_count(1)


def test_at_100_percent_the_split_follows_the_scroll_and_side_by_side_panes_scroll_together(page, real_photo):
    open_viewer(page, real_photo, {"invert"}, "Compare Invert colours with the original")
    page.get_by_role("link", name="Actual size (100%)").click()
    page.wait_for_url("**zoom=100")
    wait_until(page, ALL_IMAGES_LOADED)
    # Pixel for pixel: the files themselves, both drawn 2000 px wide.
    assert page.evaluate("[...document.querySelectorAll('.frame img')].map(i => [i.clientWidth, "
                         "i.currentSrc.includes('/files/')])") == [[2000, True], [2000, True]]
    stage = page.locator(".stage")
    width = page.evaluate("document.querySelector('.stage').clientWidth")
    assert split_state(page)["cut"] == f"{width / 2:g}px"
    stage.evaluate("s => s.scrollLeft = 600")
    wait_until(page, f"getComputedStyle(document.querySelector('.frame')).getPropertyValue('--cut').trim() === "
                     f"'{600 + width / 2:g}px'")  # still in the middle of what is on screen
    assert_accessible(page, "the slider at 100%")
    page.get_by_role("link", name="Side by side").click()
    page.wait_for_url("**mode=side**")
    wait_until(page, ALL_IMAGES_LOADED)
    assert page.evaluate("[...document.querySelectorAll('.stage img')].map(i => i.clientWidth)") == [2000, 2000]
    page.evaluate("document.querySelectorAll('.scroller')[1].scrollLeft = 500")
    wait_until(page, "document.querySelectorAll('.scroller')[0].scrollLeft === 500")
    shot(page, "desktop-viewer-side-100")
    assert_accessible(page, "side by side at 100%")


def test_side_by_side_on_a_phone_puts_one_above_the_other(browser, live_server, real_photo):
    with open_page(browser, live_server, SCREENS["phone"]) as page:
        open_viewer(page, real_photo, {"rotate"}, "Compare Rotate (90° clockwise) with the original")
        # A rotated result has another shape: side by side is the default, the slider one click away.
        expect(page.locator(".modes [aria-current]")).to_have_text("Side by side")
        boxes = [page.locator(".pane").nth(i).bounding_box() for i in (0, 1)]
        assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1  # stacked
        assert all(b["width"] > 300 for b in boxes)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "phone-viewer-side")
        assert_accessible(page, "side by side on a phone")
