"""What a person using the page for real meets, in Chromium on both screens: long batches under
the limits, leaving mid-batch, Back, remembered choices and presets, paste, the dark theme."""

import pytest

from tests.support.browser import (
    BATCH_DONE,
    SCREENS,
    assert_accessible,
    check_ops,
    expect,
    open_page,
    photo,
    serving,
    shot,
    submit_photo,
    wait_until,
)
from tests.support.photos import image_bytes

pytestmark = pytest.mark.browser


@pytest.fixture(params=sorted(SCREENS))
def screen(request):
    return request.param


def photos(count, prefix="photo"):
    """``count`` small JPEGs as Playwright file payloads (set_input_files takes them without a disk)."""
    return [{"name": f"{prefix}{i:02}.jpg", "mimeType": "image/jpeg", "buffer": image_bytes((64 + i, 48))}
            for i in range(count)]


def test_a_batch_of_70_photos_that_meets_the_rate_limit_finishes_with_all_70_done(browser, make_app, screen):
    # 10 per 5 s: the 70 are refused more than once however fast the machine runs them.
    app = make_app(DARKROOM_CLIENT_JOB_RATE="10 per 5 seconds")
    with serving(app) as base, open_page(browser, base, SCREENS[screen], allowed=("429 (TOO MANY REQUESTS)",)) as page:
        refused = []
        page.on("response", lambda r: refused.extend([r.url] if r.status == 429 else []))
        page.goto("/")
        check_ops(page, {"grayscale"})
        page.set_input_files("#image", photos(70))
        page.click("#submit")
        waiting = page.locator("#queue li.waiting")
        expect(waiting).to_have_count(1, timeout=60_000)
        expect(waiting.locator(".queue-text")).to_contain_text("The server's limit for your address is reached.")
        expect(page.locator("#status")).to_contain_text("The batch goes on by itself.")
        expect(page.locator("#status")).to_have_class("status waiting")
        expect(page.locator("#batch-text")).to_contain_text(" of 70 files done")
        shot(page, f"{screen}-batch-waiting")
        assert_accessible(page, "a batch waiting out the rate limit")
        wait_until(page, BATCH_DONE, timeout=240)
        assert len(refused) >= 2  # the limit was met, more than once, and waited out each time
        rows = page.locator("#queue li")
        assert [rows.nth(i).get_attribute("class") for i in range(70)] == ["ok"] * 70
        expect(page.locator("#status")).to_have_text("Done: all 70 files processed.")
        assert page.locator("#messages .flash").count() == 0
        expect(page.locator("#gallery-title .count")).to_have_text("(70)")


def test_more_files_join_a_running_batch(page, tmp_path):
    page.goto("/")
    check_ops(page, {"grayscale", "slow"})
    page.set_input_files("#image", [photo(tmp_path, (300, 200), "one.jpg"), photo(tmp_path, (300, 200), "two.jpg")])
    page.click("#submit")
    expect(page.locator("#submit")).to_have_text("Add to this batch")
    page.set_input_files("#image", photo(tmp_path, (300, 200), "three.jpg"))
    page.click("#submit")
    expect(page.locator("#queue li")).to_have_count(3)
    wait_until(page, BATCH_DONE, timeout=60)
    assert page.locator("#queue li.ok").count() == 3
    assert sorted(page.locator("article.job h3").all_inner_texts()) == ["one.jpg", "three.jpg", "two.jpg"]
    expect(page.locator("#submit")).to_have_text("Process")


def test_leaving_with_files_not_yet_sent_asks_first(page, tmp_path):
    page.goto("/")
    check_ops(page, {"grayscale", "slow"})
    page.set_input_files("#image", [photo(tmp_path, (300, 200), f"{i}.jpg") for i in range(3)])
    page.click("#submit")
    expect(page.locator("#queue li")).to_have_count(3)
    dialogs = []

    def answer(dialog):
        dialogs.append(dialog.type)
        dialog.dismiss()  # stay

    page.on("dialog", answer)
    page.close(run_before_unload=True)
    wait_until(page, "true")
    assert dialogs == ["beforeunload"]
    wait_until(page, BATCH_DONE, timeout=60)  # still here, and the batch finished
    assert page.locator("#queue li.ok").count() == 3
    page.close(run_before_unload=True)  # nothing left to send: no question
    assert dialogs == ["beforeunload"]


def test_back_shows_the_gallery_as_it_is_now(page, tmp_path):
    page.goto("/")
    check_ops(page, {"grayscale"})
    submit_photo(page, tmp_path, "first.jpg")
    assert page.evaluate("fetch('/').then(r => r.headers.get('Cache-Control'))") == "no-cache, private"
    page.goto("/about")
    # Meanwhile another tab of the same session adds a photo.
    other = page.context.new_page()
    other.goto("/")
    submit_photo(other, tmp_path, "second.jpg")
    other.close()
    page.go_back()
    expect(page.locator("article.job h3")).to_have_text(["second.jpg", "first.jpg"])
    expect(page.locator("#gallery-title .count")).to_have_text("(2)")


def chosen(page):
    """The form's ops, arguments and output settings as the server would read them."""
    return page.evaluate("""() => {
        const data = new FormData(document.getElementById('upload-form'));
        data.delete('image');
        return Array.from(data.entries()).map(([k, v]) => k + '=' + v);
    }""")


def test_choices_are_remembered_across_a_reload_and_presets_fill_the_form(page):
    page.goto("/")
    defaults = chosen(page)
    check_ops(page, {"thumbnail", "blur"})
    page.fill("input[name=arg-thumbnail]", "640")
    page.fill("input[name=arg-blur]", "2.5")
    page.select_option("select[name=format]", "webp")
    page.fill("input[name=quality]", "70")
    page.check("input[name=metadata]")
    mine = chosen(page)
    assert mine != defaults
    page.reload()
    assert chosen(page) == mine
    page.goto("/about")
    page.go_back()
    assert chosen(page) == mine

    page.get_by_role("button", name="Web: 1600 px WebP").click()
    form = chosen(page)
    assert [f for f in form if f.startswith("ops=")] == ["ops=", "ops=resize"]
    assert "arg-resize=1600x1600" in form and "arg-resize=contain" in form and "format=webp" in form
    assert "quality=" in form and not any(f.startswith("metadata=") for f in form)
    expect(page.locator("#status")).to_have_text("The form is set to “Web: 1600 px WebP”.")
    assert_accessible(page, "the form after a preset")
    page.reload()
    assert chosen(page) == form
    page.get_by_role("button", name="Thumbnail 320").click()
    assert [f for f in chosen(page) if f.startswith(("ops=", "arg-thumbnail=", "format="))] == [
        "ops=", "ops=thumbnail", "arg-thumbnail=320", "format=auto"]


def test_a_post_without_javascript_keeps_the_choices(browser, live_server, tmp_path):
    context = browser.new_context(java_script_enabled=False, base_url=live_server)
    page = context.new_page()
    page.goto("/")
    check_ops(page, {"rotate", "invert"})
    page.fill("input[name=arg-rotate]", "180")
    page.select_option("select[name=format]", "png")
    page.set_input_files("#image", photo(tmp_path, (300, 200)))
    page.click("#submit")
    page.wait_for_selector("article.job")
    assert sorted(chosen(page)) == ["arg-blur=4", "arg-resize=1024x768", "arg-resize=contain", "arg-rotate=180",
                                    "arg-thumbnail=320", "format=png", "ops=", "ops=invert", "ops=rotate", "quality="]
    context.close()


def test_paste_chooses_the_image_on_the_clipboard(page):
    page.goto("/")
    page.evaluate("""bytes => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], "image.png", {type: "image/png"}));
        document.body.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true}));
    }""", list(image_bytes((120, 80), "PNG")))
    expect(page.locator("#preview-info")).to_contain_text("image.png · 120×80 px")
    expect(page.locator("#status")).to_have_text("Pasted image.png.")
    page.click("#submit")
    expect(page.locator("article.job h3")).to_have_text("image.png")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_both_themes_on_both_screens_with_a_transparent_image(browser, live_server, screen, scheme, tmp_path):
    from PIL import Image, ImageDraw

    clear = tmp_path / "logo.png"
    im = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((50, 25, 250, 175), fill=(200, 60, 30, 255))
    im.save(clear)
    with open_page(browser, live_server, SCREENS[screen], color_scheme=scheme) as page:
        page.goto("/")
        check_ops(page, {"grayscale"})
        page.set_input_files("#image", [clear, photo(tmp_path, (800, 600))])
        page.click("#submit")
        wait_until(page, BATCH_DONE, timeout=60)
        wait_until(page, "[...document.querySelectorAll('article.job img')].every(i => i.complete && i.naturalWidth)")
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert (background == "rgb(22, 20, 18)") == (scheme == "dark")
        tile = page.locator("article.job img").first
        assert "conic-gradient" in tile.evaluate("i => getComputedStyle(i).backgroundImage")
        chooser = page.evaluate("getComputedStyle(document.getElementById('image'), '::file-selector-button').color")
        accent = page.evaluate("getComputedStyle(document.querySelector('.tile a.download')).color")
        assert chooser == accent
        heading = page.locator("article.job h3").first
        heading.focus()
        assert heading.evaluate("h => getComputedStyle(h).outlineStyle") == "none"
        assert heading.evaluate("h => getComputedStyle(h).boxShadow") != "none"
        shot(page, f"{screen}-{scheme}-gallery")
        assert_accessible(page, f"the gallery, {scheme} theme, {screen}")
