"""The gallery in a real Chromium, on a desktop and on a phone: weight, queue, focus, layout, ZIPs."""

import io
import zipfile

import playwright.sync_api
import pytest
from flask import request
from PIL import Image

from tests.support import make_photo
from tests.support.browser import (
    BATCH_DONE,
    DESKTOP,
    PHONE,
    SCREENS,
    check_ops,
    expect,
    open_page,
    photo,
    serving,
    shot,
    wait_until,
)
from tests.support.photos import image_bytes

pytestmark = pytest.mark.browser

ALL_IMAGES_LOADED = ("[...document.querySelectorAll('img:not(#preview-img)')]"
                     ".every(i => i.complete && i.naturalWidth > 0)")
BUILT_IN_OPS = {"thumbnail", "resize", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate", "invert"}
LONG_NAME = "IMG_20261202_143512_" + "HDR_PORTRAIT_NIGHT_MODE_" * 5 + "final.jpg"


@pytest.fixture(params=sorted(SCREENS))
def screen(request):
    return SCREENS[request.param]


@pytest.fixture
def screen_page(browser, live_server, screen):
    with open_page(browser, live_server, screen) as page:
        yield page


def scroll_everything_into_view(page):
    """Scroll down the whole page (lazy images load), then back to the top."""
    height = page.evaluate("document.documentElement.scrollHeight")
    for y in range(0, height + 900, 600):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(30)
    wait_until(page, ALL_IMAGES_LOADED, timeout=60)
    page.evaluate("window.scrollTo(0, 0)")


def submit_and_wait(page):
    page.click("#submit")
    wait_until(page, BATCH_DONE, timeout=180)


def test_a_gallery_of_three_large_photos_transfers_under_2_mb(browser, live_server, tmp_path):
    files = []
    for i, (width, height) in enumerate([(6000, 4000), (4000, 6000), (6000, 4000)]):
        files.append(tmp_path / f"IMG_{i}.jpg")
        files[-1].write_bytes(make_photo(width, height, i))
    with open_page(browser, live_server) as page:
        page.goto("/")
        check_ops(page, BUILT_IN_OPS)  # 9 outputs and the original per photo
        page.set_input_files("#image", [str(f) for f in files])
        submit_and_wait(page)
        assert page.locator("article.job").count() == 3
        state = page.context.storage_state()
    for name, screen in (("desktop", DESKTOP), ("phone", PHONE)):
        # A new context: an empty cache, the same session cookie.
        with open_page(browser, live_server, screen, storage_state=state) as page:
            requests: list[playwright.sync_api.Request] = []
            page.on("requestfinished", lambda request, seen=requests: seen.append(request))
            page.goto("/", wait_until="networkidle")  # the tiles in view; the others load as they scroll in
            first_view = sum(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"] for r in requests)
            scroll_everything_into_view(page)
            whole = sum(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"] for r in requests)
            images = [r.url for r in requests if r.resource_type == "image"]
            print(f"{name}: first view {first_view / 1e6:.2f} MB, whole gallery {whole / 1e6:.2f} MB, "
                  f"{len(images)} images")
            assert len(images) == 30
            assert all("/preview-" in url for url in images), "a tile loaded a full-size file"
            assert whole < 2_000_000


def test_several_files_are_queued_one_job_each(screen_page, tmp_path):
    page = screen_page
    page.goto("/")
    check_ops(page, {"grayscale", "nap"})
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    page.set_input_files("#image", [photo(tmp_path, (800, 600), "one.jpg"), notes,
                                    photo(tmp_path, (600, 800), "two.jpg")])
    expect(page.locator("#preview-info")).to_have_text(
        f"3 photos · {round(sum(f.stat().st_size for f in (tmp_path / 'one.jpg', notes, tmp_path / 'two.jpg')) / 1024)}"
        " kB in all")
    page.click("#submit")
    rows = page.locator("#queue li")
    expect(rows).to_have_count(3)
    assert rows.nth(0).locator("progress").get_attribute("aria-label") == "Progress of one.jpg"
    wait_until(page, "document.querySelector('#queue .queue-text').textContent.startsWith('Sleep 3 s (1 of 2 done)')")
    assert rows.nth(2).locator(".queue-text").inner_text() == "Waiting for its turn"
    wait_until(page, BATCH_DONE, timeout=60)
    assert [rows.nth(i).get_attribute("class") for i in range(3)] == ["ok", "error", "ok"]
    # One summary in the colour of a partial success; the refusal's reason once, in its file's row.
    summary = page.locator("#messages .flash")
    expect(summary).to_have_text("2 of 3 files done; 1 was not processed (the reasons are in the list below).")
    assert summary.get_attribute("class") == "flash flash-partial"
    assert rows.nth(1).locator(".queue-text").inner_text().startswith("This file is not an image Darkroom reads")
    assert page.locator("body").inner_text().count("This file is not an image") == 1
    expect(page.locator("#status")).to_have_text("")
    assert page.locator("article.job h3").all_inner_texts() == ["two.jpg", "one.jpg"]
    # The chosen operations applied to every file, and are still chosen.
    assert page.locator("article.job .tile-name").all_inner_texts() == ["Original", "Grayscale", "Sleep 3 s"] * 2
    assert [b.get_attribute("value") for b in page.locator("input[name=ops]:checked").all()] == ["grayscale", "nap"]


def test_choosing_no_operation_is_refused_before_sending(page, tmp_path):
    page.goto("/")
    check_ops(page, set())
    page.set_input_files("#image", photo(tmp_path))
    sent = []
    page.on("request", lambda r: sent.extend([r.url] if r.method == "POST" else []))
    page.click("#submit")
    expect(page.locator("#messages")).to_have_text("Choose at least one operation.")
    assert page.evaluate("document.activeElement.name") == "ops"
    assert sent == []


def test_completion_is_announced_focused_and_keeps_the_choices(screen_page, tmp_path):
    page = screen_page
    page.goto("/")
    for _ in range(2):  # a job below the new one, as in a gallery in use
        page.set_input_files("#image", photo(tmp_path, (400, 300), "older.jpg"))
        submit_and_wait(page)
    check_ops(page, {"grayscale", "blur"})
    page.fill("input[name=arg-blur]", "2")
    page.select_option("select[name=format]", "png")
    page.set_input_files("#image", photo(tmp_path, (1600, 1200)))
    expect(page.locator("#preview-info")).to_contain_text("1600×1200 px")
    chosen_size = page.locator("#preview-info").inner_text().rsplit(" · ", 1)[1]
    submit_and_wait(page)
    expect(page.locator("#status")).to_have_text("Done: 2 images from holiday.jpg.")
    newest = page.locator("article.job").first
    assert page.evaluate("document.activeElement.id") == "title-" + newest.get_attribute("id").removeprefix("job-")
    box = newest.locator("h3").bounding_box()
    assert 0 <= box["y"] < page.viewport_size["height"] - box["height"], "the new job is not in view"
    assert [b.get_attribute("value") for b in page.locator("input[name=ops]:checked").all()] == ["grayscale", "blur"]
    assert page.input_value("input[name=arg-blur]") == "2" and page.input_value("select[name=format]") == "png"
    # One size convention on the page and in the gallery; times in the visitor's zone, not UTC.
    meta = newest.locator(".meta").first.inner_text()
    assert f", {chosen_size} · " in meta and "UTC" not in meta
    shot(page, f"{'phone' if page.viewport_size['width'] < 500 else 'desktop'}-done")


def tab_stops(page, limit=200):
    """Tab through the page from the top; return the stops, each with its screenshots focused and not."""
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("body").focus()
    stops: list[tuple[str, bool]] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        handle = page.evaluate_handle("document.activeElement")
        described = page.evaluate("e => e === document.body ? null : e.outerHTML.slice(0, 90)", handle)
        if described is None or (stops and described == stops[0][0]):
            break
        page.evaluate("e => e.scrollIntoView({block: 'center'})", handle)
        box = page.evaluate("e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }",
                            handle)
        clip = {"x": max(0, box[0] - 6), "y": max(0, box[1] - 6), "width": box[2] + 12, "height": box[3] + 12}
        focused = page.screenshot(clip=clip, animations="disabled", caret="hide")
        page.evaluate("e => e.blur()", handle)
        unfocused = page.screenshot(clip=clip, animations="disabled", caret="hide")
        page.evaluate("e => e.focus()", handle)
        stops.append((described, focused != unfocused))
    return stops


def test_every_tab_stop_shows_a_focus_ring(screen_page, tmp_path):
    page = screen_page
    page.goto("/")
    check_ops(page, {"thumbnail", "sepia"})
    page.set_input_files("#image", photo(tmp_path, (900, 600)))
    submit_and_wait(page)
    page.goto("/")
    gallery_stops = tab_stops(page)
    page.locator("article.job a.view").nth(1).click()
    page.wait_for_selector(".stage img")
    view_stops = tab_stops(page)
    for stops in (gallery_stops, view_stops):
        assert len(stops) > 10
        assert [described for described, visible in stops if not visible] == []
    assert sum('class="view"' in d for d, _ in gallery_stops) == 3  # each tile's image link is a stop


def test_no_sideways_scroll_at_390_px(browser, live_server, tmp_path):
    with open_page(browser, live_server, PHONE) as page:
        page.goto("/")
        wide = "document.documentElement.scrollWidth"
        check_ops(page, {"thumbnail", "nap"})
        page.set_input_files("#image", photo(tmp_path, (1200, 900), LONG_NAME))
        assert page.evaluate(wide) <= 390
        page.click("#submit")
        wait_until(page, "document.querySelector('#queue .queue-text').textContent.startsWith('Sleep 3 s')")
        assert page.evaluate(wide) <= 390, "while processing"
        # The progress is on screen, not below the fold.
        assert page.locator("#queue li").bounding_box()["y"] < 844
        wait_until(page, BATCH_DONE)
        scroll_everything_into_view(page)
        assert page.evaluate(wide) <= 390, "the gallery"
        page.get_by_text("Delete…").first.click()
        assert page.evaluate(wide) <= 390, "asking to delete"
        shot(page, "phone-gallery")
        page.locator("article.job a.view").nth(1).click()
        page.wait_for_selector(".stage img")
        assert page.evaluate(wide) <= 390, "the view page"
        page.get_by_text("Actual size (100%)").click()
        page.wait_for_url("**zoom=100")  # the new page, not the one being left
        wait_until(page, ALL_IMAGES_LOADED)
        assert page.evaluate(wide) <= 390  # a 100% image scrolls inside its pane, not the page


def test_zip_downloads_of_a_job_and_of_the_gallery(page, tmp_path):
    page.goto("/")
    check_ops(page, {"grayscale", "thumbnail"})
    for name in ("beach.jpg", "Été.png"):
        page.set_input_files("#image", photo(tmp_path, (640, 480), name))
        submit_and_wait(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all images of beach.jpg (ZIP)").click()
    assert download.value.suggested_filename == "beach.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        assert archive.namelist() == ["beach.jpg", "beach-thumbnail.jpg", "beach-grayscale.jpg"]
        with Image.open(io.BytesIO(archive.read("beach-thumbnail.jpg"))) as im:
            assert im.size == (320, 240)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all (ZIP)").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
        assert names[:3] == ["beach/beach.jpg", "beach/beach-thumbnail.jpg", "beach/beach-grayscale.jpg"]
        assert [n.rsplit(".", 1)[0] for n in names[3:]] == ["Été/Été", "Été/Été-thumbnail", "Été/Été-grayscale"]


def test_a_job_still_running_after_a_reload_is_shown_until_it_is_done(page, tmp_path):
    page.goto("/")
    check_ops(page, {"grayscale", "nap"})
    page.set_input_files("#image", photo(tmp_path, (800, 600), "sleepy.jpg"))
    page.click("#submit")
    expect(page.locator("#queue .queue-text")).to_contain_text("Sleep 3 s")
    page.reload()
    card = page.locator("article.running")
    expect(card).to_contain_text("sleepy.jpg")
    assert card.locator("progress").get_attribute("aria-label") == "Progress of sleepy.jpg"
    assert 0 < int(card.locator("progress").get_attribute("value")) < 100
    page.wait_for_selector("article.job:not(.running) h3:text-is('sleepy.jpg')", timeout=20000)
    assert page.locator("article.running").count() == 0
    expect(page.locator("#status")).to_have_text("A photo that was being processed is done.")


def test_a_second_visit_of_a_gallery_of_30_images_transfers_no_image_bytes(browser, make_app, tmp_path):
    app = make_app()
    served = []  # every job file the server answered for, counted where it answers

    @app.after_request
    def count_files(response):
        if request.path.startswith("/files/"):
            served.append(request.path)
        return response

    with serving(app) as base, open_page(browser, base) as page:
        page.goto("/")
        check_ops(page, {"grayscale", "sepia"})
        page.set_input_files("#image", [photo(tmp_path, (400 + i, 300), f"p{i}.jpg") for i in range(10)])
        submit_and_wait(page)
        page.goto("/about")
        page.goto("/")
        scroll_everything_into_view(page)
        assert page.locator("article.job img").count() == 30
        first = len(served)
        assert first >= 30  # the first visit fetched every tile's preview
        page.goto("/about")
        page.goto("/")  # a second visit, by a link: every image comes from the browser's cache
        scroll_everything_into_view(page)
        page.reload()  # even a reload asks for none of them again (immutable)
        scroll_everything_into_view(page)
        assert served[first:] == []


def test_the_page_checks_the_same_limit_as_the_server(browser, make_app, tmp_path):
    limit = 200_000
    app = make_app(MAX_CONTENT_LENGTH=limit)
    with serving(app) as url, open_page(browser, url, allowed=("413 (REQUEST ENTITY TOO LARGE)",)) as page:
        page.goto("/")
        check_ops(page, {"invert"})
        # What the form adds to a file of this name: the same for every size.
        (tmp_path / "probe").mkdir()
        probe = tmp_path / "probe" / "big.jpg"
        probe.write_bytes(image_bytes((64, 48)))
        page.set_input_files("#image", probe)
        overhead = page.evaluate("""(async () => {
            const data = new FormData(document.getElementById('upload-form'));
            return (await new Response(data).blob()).size - data.get('image').size; })()""")
        fits = tmp_path / "big.jpg"
        fits.write_bytes(image_bytes((64, 48)).ljust(limit - overhead, b"\0"))
        page.set_input_files("#image", fits)
        submit_and_wait(page)
        assert page.locator("#queue li").get_attribute("class") == "ok"
        fits.write_bytes(fits.read_bytes() + b"\0")  # one byte more than the server takes
        page.set_input_files("#image", fits)
        submit_and_wait(page)
        assert page.locator("#queue li").get_attribute("class") == "error"
        expect(page.locator("#messages")).to_contain_text("the limit is 195 kB")
        # And the server indeed refuses that body.
        status = page.evaluate("""async size => {
            const form = document.getElementById('upload-form');
            const data = new FormData(form);
            data.set('image', new File([new Uint8Array(size)], 'big.jpg', {type: 'image/jpeg'}));
            const headers = {Accept: 'application/json'};
            return (await fetch(form.action, {method: 'POST', body: data, headers: headers})).status;
        }""", limit - overhead + 1)
        assert status == 413


@pytest.mark.parametrize(("name", "saved_as"), [
    ("Café été 日本.jpg", "Café été 日本.zip"),
    ('say "cheese" 🧀.jpg', "say _cheese_ 🧀.zip"),
])
def test_zips_of_names_beyond_ascii_download_under_the_users_name(page, name, saved_as):
    page.goto("/")
    check_ops(page, {"invert"})
    page.set_input_files("#image", {"name": name, "mimeType": "image/jpeg", "buffer": image_bytes((64, 48))})
    submit_and_wait(page)
    for link in (page.locator("article.job a[href$='/download.zip']").first,
                 page.get_by_role("link", name="Download all (ZIP)")):
        with page.expect_download() as download:
            link.click()
        assert download.value.failure() is None
        with zipfile.ZipFile(download.value.path()) as archive:
            assert len(archive.namelist()) == 2
    with page.expect_download() as download:
        page.locator("article.job a[href$='/download.zip']").first.click()
    assert download.value.suggested_filename == saved_as
