"""The page in a real Chromium, driven by Playwright: what a person sees and does."""

import re

import pytest
from PIL import Image

from tests.support.browser import PHONE, check_ops, expect, photo, shot, submit_photo, wait_until
from tests.support.photos import image_bytes

pytestmark = pytest.mark.browser


def test_upload_progress_gallery_download_and_clear(page, tmp_path):
    page.goto("/")
    assert page.get_by_text("No images yet").is_visible()
    page.set_input_files("#image", photo(tmp_path))
    expect(page.locator("#preview-info")).to_contain_text("1600×1200")
    assert page.locator("#preview").is_visible()
    check_ops(page, {"thumbnail", "grayscale", "nap", "sepia"})

    page.click("#submit")
    # While the child works: the queue is busy, more files may join it, and the running op is shown.
    expect(page.locator("#queue")).to_have_attribute("aria-busy", "true")
    expect(page.locator("#submit")).to_have_text("Add to this batch")
    row = page.locator("#queue li .queue-text")
    # The outputs begin costliest first, on the cores the job may use: while the slow op runs (3 s,
    # so that a poll every 300 ms meets it on a busy machine), the row names it with how many of the
    # others are done (all three, soon, on two threads).
    expect(row).to_have_text(re.compile(r"^Sleep 3 s \([0-3] of 4 done\)… "))
    shot(page, "desktop-progress")

    page.wait_for_selector("article.job")
    expect(row).to_have_text("Done: 4 images")
    assert page.locator("#queue progress").get_attribute("value") == "100"
    assert page.locator(".flash-error").count() == 0
    images = page.locator("article.job img")
    assert images.count() == 5  # the original and four outputs
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
    wait_until(page, "[...document.querySelectorAll('article.job img')].every(i => i.complete && i.naturalWidth > 0)")
    tiles = page.locator("article.job .tile-name").all_inner_texts()
    assert tiles == ["Original", "Thumbnail (320 px)", "Grayscale", "Sepia", "Sleep 3 s"]
    assert "320×240" in page.locator("article.job .tile").nth(1).inner_text()
    shot(page, "desktop-gallery")

    with page.expect_download() as download:
        page.locator("article.job a.download").nth(1).click()
    assert download.value.suggested_filename == "holiday-thumbnail.jpg"
    with Image.open(download.value.path()) as im:
        im.load()
        assert im.size == (320, 240)

    page.get_by_text("Clear all…").click()
    page.get_by_role("button", name="Yes, delete everything").click()
    page.wait_for_selector("text=All your images were deleted.")
    assert page.get_by_text("No images yet").is_visible()


def test_drag_and_drop_selects_the_file(page):
    page.goto("/")
    transfer = page.evaluate_handle(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"}));
            return transfer;
        }""",
        list(image_bytes((640, 480))),
    )
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": transfer})
    assert "dragover" in page.locator("#dropzone").get_attribute("class")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#preview-info")).to_contain_text("dropped.jpg · 640×480 px")
    sent = []
    page.on("request", lambda r: sent.extend([r.headers.get("idempotency-key")] if r.method == "POST" else []))
    page.click("#submit")
    expect(page.locator("article.job h3")).to_have_text("dropped.jpg")
    # The page sends a key per chosen file, so a retried upload cannot run twice.
    assert len(sent) == 1 and re.fullmatch(r"[0-9a-f]{32}", sent[0])


def test_bad_file_shows_a_message_next_to_the_form(page, tmp_path):
    page.goto("/")
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is not a picture")
    page.set_input_files("#image", notes)
    page.click("#submit")
    message = page.locator("#messages .flash-error")
    message.wait_for()
    assert "not an image Darkroom reads" in message.inner_text()
    assert page.locator("#preview-img").is_hidden()
    assert "(no preview)" in page.locator("#preview-info").inner_text()
    assert page.locator("#submit").is_enabled()
    assert page.locator("article.job").count() == 0
    shot(page, "desktop-error")


def test_double_click_submits_once(page, tmp_path):
    page.goto("/")
    page.set_input_files("#image", photo(tmp_path, (400, 300)))
    check_ops(page, {"slow"})
    page.locator("#submit").dispatch_event("click")
    page.locator("#upload-form").dispatch_event("submit")
    page.wait_for_selector("article.job")
    assert page.evaluate("fetch('/api/session').then(r => r.json()).then(d => d.jobs.length)") == 1


def job_names(page):
    return page.locator("article.job:visible h3").all_inner_texts()


def server_job_names(page):
    return page.evaluate("fetch('/api/session').then(r => r.json()).then(d => d.jobs.map(j => j.source.name))")


def test_delete_in_place_with_undo_and_focus_on_the_next_photo(page, tmp_path):
    page.goto("/")
    check_ops(page, {"grayscale"})
    for name in ("first.jpg", "second.jpg", "third.jpg"):
        page.set_input_files("#image", photo(tmp_path, (300, 200), name))
        page.click("#submit")
        page.wait_for_selector(f"article.job h3:text-is('{name}')")
    assert job_names(page) == ["third.jpg", "second.jpg", "first.jpg"]
    second = page.locator("article.job").nth(1)
    # Escape closes the question without deleting, and focus goes back to what opened it.
    second.get_by_text("Delete…").click()
    expect(second).to_contain_text("Delete second.jpg and its 1 images?")
    page.keyboard.press("Escape")
    assert second.locator("details").get_attribute("open") is None
    assert page.evaluate("document.activeElement.textContent") == "Delete…"

    second.get_by_text("Delete…").click()
    page.get_by_role("button", name="Yes, delete second.jpg").click()
    # Gone from the page at once, where it was; focus on the next photo; the page does not reload.
    assert job_names(page) == ["third.jpg", "first.jpg"]
    assert page.evaluate("document.activeElement.id") == page.locator("article.job h3").nth(2).get_attribute("id")
    expect(page.locator("#gallery-title .count")).to_have_text("(2)")
    toast = page.locator("#toasts .toast")
    expect(toast).to_contain_text("Deleted second.jpg.")
    shot(page, "desktop-deleted-undo")
    toast.get_by_role("button", name="Undo: keep second.jpg").click()
    assert job_names(page) == ["third.jpg", "second.jpg", "first.jpg"]
    assert page.evaluate("document.activeElement.textContent") == "second.jpg"
    page.wait_for_timeout(9000)  # past the undo time: nothing was deleted
    assert sorted(server_job_names(page)) == ["first.jpg", "second.jpg", "third.jpg"]

    second.get_by_text("Delete…").click()
    page.get_by_role("button", name="Yes, delete second.jpg").click()
    expect(toast).to_have_count(0, timeout=15000)  # the undo time ran out: deleted on the server
    assert sorted(server_job_names(page)) == ["first.jpg", "third.jpg"]
    page.reload()
    assert job_names(page) == ["third.jpg", "first.jpg"]


def test_a_deletion_not_yet_committed_is_committed_when_the_page_is_left(page, tmp_path):
    page.goto("/")
    check_ops(page, {"grayscale"})
    submit_photo(page, tmp_path, "leaving.jpg")
    page.get_by_text("Delete…").click()
    page.get_by_role("button", name="Yes, delete leaving.jpg").click()
    expect(page.locator("#toasts .toast")).to_contain_text("Deleted leaving.jpg.")
    page.goto("/about")
    wait_until(page, "fetch('/api/session').then(r => r.json()).then(d => d.jobs.length === 0)")


def test_form_works_without_javascript(browser, live_server, tmp_path):
    context = browser.new_context(java_script_enabled=False, base_url=live_server)
    page = context.new_page()
    page.goto("/")
    page.set_input_files("#image", photo(tmp_path, (500, 400)))
    page.click("#submit")
    page.wait_for_selector("article.job")
    assert "Done: 3 images from holiday.jpg." in page.locator("#messages").inner_text()
    context.close()


def test_phone_width_is_readable_and_accessible(browser, live_server, tmp_path):
    context = browser.new_context(base_url=live_server, **PHONE)
    page = context.new_page()
    page.goto("/")
    page.set_input_files("#image", photo(tmp_path, (1200, 900)))
    page.click("#submit")
    page.wait_for_selector("article.job")
    page.wait_for_load_state("load")  # the reloaded page's stylesheet is applied
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Every control is labelled and every image has alt text.
    unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unlabelled == []
    assert page.evaluate("[...document.images].every(i => i.alt.trim().length > 0)")
    shot(page, "phone-gallery")
    context.close()


def test_keyboard_reaches_every_control(page):
    page.goto("/")
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("(e => e.id || e.name || e.tagName)(document.activeElement)"))
    assert {"image", "ops", "submit"} <= reached


def test_a_heic_photo_with_chosen_arguments_and_format(page, tmp_path):
    import pillow_heif

    pillow_heif.register_heif_opener()
    heic = tmp_path / "IMG_0001.HEIC"
    Image.new("RGB", (1200, 900), (40, 120, 200)).save(heic, "HEIF")
    page.goto("/")
    page.set_input_files("#image", heic)
    check_ops(page, {"thumbnail", "rotate"})
    page.fill("input[name=arg-thumbnail]", "200")
    page.fill("input[name=arg-rotate]", "30")
    page.select_option("select[name=format]", "webp")
    page.fill("input[name=quality]", "60")
    page.click("#submit")
    page.wait_for_selector("article.job")
    job = page.locator("article.job")
    assert "1200×900 HEIC" in job.locator(".job-head").inner_text()
    assert page.locator("article.job .tile-name").all_inner_texts() == [
        "Original", "Thumbnail (200 px)", "Rotate (30° clockwise)"]
    wait_until(page, "[...document.querySelectorAll('article.job img')].every(i => i.complete && i.naturalWidth > 0)")
    assert "200×150 WebP" in job.locator(".tile").nth(1).inner_text()
    # Chromium cannot show HEIC: the original's tile shows its WebP preview, and the view page says so.
    assert job.locator("img").count() == 3
    job.locator(".tile.original a.view").click()
    expect(page.locator(".viewer")).to_contain_text(
        "Browsers do not show HEIC files: this image is shown from a WebP copy. Download it to see the file itself.")
    wait_until(page, "[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator(".stage img").get_attribute("src").endswith("/screen/0")
