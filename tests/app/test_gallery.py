"""The gallery's server side: previews, pages, choices honoured, downloads, ZIPs and the view page."""

import io
import re
import zipfile
from urllib.parse import quote, unquote

import pytest
from PIL import Image

from imaging.job import progress_percent
from imaging.ops import parse_ops
from imaging.preview import save_previews
from tests.support.jobs import error_json, upload, workspace_of
from tests.support.photos import decode, image_bytes


def session_jobs(client):
    return client.get("/api/session").get_json()["jobs"]


def article_ids(page):
    return re.findall(r'<article class="job card" id="job-([0-9a-f]{24})"', page)


# Previews


def test_every_image_of_a_job_has_small_webp_previews(client):
    job = upload(client, image_bytes((3000, 2000)), ops=["grayscale", "rotate", "thumbnail:300"]).get_json()
    for entry in [job["source"], *job["outputs"]]:
        sizes = [(p["width"], p["height"]) for p in entry["previews"]]
        assert entry["preview_url"] == entry["previews"][-1]["url"]
        for preview in entry["previews"]:
            im = decode(client.get(preview["url"]).data)
            assert im.format == "WEBP" and im.size == (preview["width"], preview["height"])
        if entry.get("op") == "thumbnail:300":
            assert sizes == [(240, 160), (300, 200)]  # no copy larger than the image itself
        elif entry.get("op") == "rotate":
            assert sizes == [(160, 240), (320, 480)]
        else:
            assert sizes == [(240, 160), (480, 320)]


def test_an_image_no_larger_than_a_tile_is_its_own_preview(client):
    """A tile shows a small JPEG, PNG or still GIF itself: copying it to WebP would only cost the job time."""
    job = upload(client, image_bytes((200, 150)), ops=["grayscale", "thumbnail:100", "resize:480x480"]).get_json()
    small = [job["source"], *job["outputs"][:2]]
    assert [(e["format"], e["previews"]) for e in small] == [("JPEG", []), ("JPEG", []), ("JPEG", [])]
    assert all(e["preview_url"] == e["url"] for e in small)
    assert [(p["width"], p["height"]) for p in job["outputs"][2]["previews"]] == [(240, 180), (480, 360)]
    page = client.get("/").get_data(as_text=True)
    assert f'<img src="{job["outputs"][0]["url"]}"' in page
    # A HEIC is not shown by every browser: small as it is, it gets its preview.
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.new("RGB", (200, 150), (40, 120, 200)).save(buf, "HEIF")
    heic = upload(client, buf.getvalue(), ops=["grayscale"], name="IMG_2.HEIC").get_json()
    assert [(p["width"], p["height"]) for p in heic["source"]["previews"]] == [(200, 150)]


def test_a_jpeg_output_of_a_transparent_image_previews_on_white(tmp_path):
    im = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    [small, large] = save_previews(im, tmp_path, "x", opaque=True)
    with Image.open(tmp_path / large["file"]) as preview:
        assert preview.convert("RGB").getpixel((10, 10)) == (255, 255, 255)
    with Image.open(tmp_path / save_previews(im, tmp_path, "y")[1]["file"]) as preview:
        assert preview.getchannel("A").getpixel((10, 10)) == 0


def test_tiles_use_the_previews_and_link_the_full_file_only_to_view_and_download(client):
    job = upload(client, image_bytes((2000, 1500)), ops=["grayscale"]).get_json()
    page = client.get("/").get_data(as_text=True)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources == [job["source"]["preview_url"], job["outputs"][0]["preview_url"]]
    srcsets = re.findall(r'srcset="([^"]+)"', page)
    assert srcsets[0] == ", ".join(f"{p['url']} {p['width']}w" for p in job["source"]["previews"])
    assert f'href="{job["outputs"][0]["download_url"]}"' in page.replace("&amp;", "&")


def test_a_heic_original_gets_a_preview_browsers_can_show(client):
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.new("RGB", (800, 600), (40, 120, 200)).save(buf, "HEIF")
    job = upload(client, buf.getvalue(), ops=["grayscale"], name="IMG_1.HEIC").get_json()
    assert job["source"]["format"] == "HEIF"
    assert decode(client.get(job["source"]["preview_url"]).data).size == (480, 360)


def test_previews_are_served_only_to_their_session(app, client):
    job = upload(client, ops=["grayscale"]).get_json()
    stranger = app.test_client()
    for url in (job["source"]["preview_url"], job["outputs"][0]["previews"][0]["url"]):
        assert client.get(url).status_code == 200
        assert stranger.get(url).status_code == 404


# Pages


def test_the_gallery_shows_a_page_of_jobs_newest_first_with_a_cursor(make_app):
    client = make_app(DARKROOM_PAGE_SIZE=2).test_client()
    ids = [upload(client, image_bytes((64, 48)), ops=["invert"]).get_json()["id"] for _ in range(5)]
    pages, url = [], "/"
    while url:
        page = client.get(url).get_data(as_text=True)
        pages.append(article_ids(page))
        older = re.search(r'href="(/\?before=[0-9a-f]{24})#gallery">Older images', page)
        url = older.group(1) if older else ""
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
    # A job added meanwhile does not shift the pages already being read.
    upload(client, image_bytes((64, 48)), ops=["invert"])
    assert article_ids(client.get(f"/?before={ids[3]}").get_data(as_text=True)) == ids[2:0:-1]
    assert "(6)" in client.get("/").get_data(as_text=True)


def test_the_page_size_bounds_the_html_however_many_jobs(make_app):
    client = make_app(DARKROOM_PAGE_SIZE=3).test_client()
    sizes = []
    for count in (3, 12):
        while len(session_jobs(client)) < count:
            upload(client, image_bytes((64, 48)), ops=["invert"])
        sizes.append(len(client.get("/").data))
    assert sizes[1] < sizes[0] * 1.1


# Choices honoured


def test_unticking_every_operation_is_refused_not_defaulted(app, client):
    response = upload(client, fields={"ops": [""]})
    assert response.status_code == 400
    assert error_json(response) == {"error": "Choose at least one operation."}
    assert session_jobs(client) == []
    response = upload(client, fields={"ops": ["", "invert"]})
    assert [o["op"] for o in response.get_json()["outputs"]] == ["invert"]


def test_unticking_every_operation_in_the_plain_form_says_so(client):
    client.get("/api/session")
    response = upload(client, fields={"ops": [""]}, json=False)
    assert response.status_code == 303
    assert "Choose at least one operation." in client.get("/").get_data(as_text=True)


def test_several_files_in_one_plain_form_make_one_job_each(client):
    client.get("/api/session")
    form = {"ops": ["", "grayscale"], "image": [
        (io.BytesIO(image_bytes((300, 200))), "one.jpg"),
        (io.BytesIO(b"not a picture"), "notes.jpg"),
        (io.BytesIO(image_bytes((200, 300))), "two.png"),
    ]}
    response = client.post("/jobs", data=form, content_type="multipart/form-data")
    assert response.status_code == 303
    assert [j["source"]["name"] for j in session_jobs(client)] == ["one.jpg", "two.png"]
    page = client.get("/").get_data(as_text=True)
    assert "Done: 1 image from one.jpg." in page and "Done: 1 image from two.png." in page
    assert "notes.jpg: This file is not an image Darkroom reads" in page


def test_several_files_with_no_operation_get_one_refusal(client):
    client.get("/api/session")
    form = {"ops": [""], "image": [(io.BytesIO(image_bytes()), "a.jpg"), (io.BytesIO(image_bytes()), "b.jpg")]}
    assert client.post("/jobs", data=form, content_type="multipart/form-data").status_code == 303
    assert client.get("/").get_data(as_text=True).count("Choose at least one operation.") == 1
    assert session_jobs(client) == []


def test_the_api_takes_one_file_per_request(client):
    form = {"image": [(io.BytesIO(image_bytes()), "a.jpg"), (io.BytesIO(image_bytes()), "b.jpg")]}
    response = client.post("/jobs", data=form, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "one image per request" in response.get_json()["error"]
    assert session_jobs(client) == []


def test_progress_advances_by_each_ops_cost():
    calls = parse_ops(["thumbnail", "grayscale", "sharpen"])
    percents = [progress_percent(calls, calls[:done]) for done in range(len(calls) + 1)]
    assert percents == sorted(percents) and percents[-1] == 100
    # Sharpen takes most of the time: the bar is well short of 2/3 once the two cheap ops are done.
    assert percents[2] < 50


@pytest.mark.slow
def test_running_jobs_are_listed_with_their_name_and_percent(make_app, tmp_path):
    import threading

    app = make_app()
    client = app.test_client()
    client.get("/api/session")
    worker = threading.Thread(target=upload, args=(client, image_bytes((300, 200)), ["nap"]),
                              kwargs={"name": "sleepy.jpg"})
    worker.start()
    try:
        for _ in range(100):
            running = client.get("/api/progress").get_json()["running"]
            if running and running[0]["label"]:
                break
            threading.Event().wait(0.05)
        assert running[0]["name"] == "sleepy.jpg" and running[0]["label"] == "Sleep 3 s"
        assert 0 < running[0]["percent"] < 100
        page = client.get("/").get_data(as_text=True)
        assert f'data-running="{running[0]["id"]}"' in page and "Processing: Sleep 3 s" in page
    finally:
        worker.join()
    assert "data-running" not in client.get("/").get_data(as_text=True)


# Downloads


@pytest.mark.parametrize(("name", "ascii_name", "utf8_name"), [
    ("holiday.jpg", "holiday{}.jpg", None),
    ("Été à Paris.JPG", "Ete a Paris{}.jpg", "Été à Paris{}.jpg"),
    ("..\\a:b*c?.jpeg", "a_b_c{}.jpg", None),
])
def test_downloads_are_named_after_the_users_file(client, name, ascii_name, utf8_name):
    job = upload(client, ops=["sepia", "thumbnail:64"], name=name).get_json()
    expected = {job["source"]["url"]: "", job["outputs"][0]["url"]: "-sepia",
                job["outputs"][1]["url"]: "-thumbnail-64"}
    for url, suffix in expected.items():
        disposition = client.get(url + "?download=1").headers["Content-Disposition"]
        assert disposition.startswith("attachment;")
        assert f'filename="{ascii_name.format(suffix)}"' in disposition or \
            f"filename={ascii_name.format(suffix)}" in disposition
        if utf8_name:
            assert f"filename*=UTF-8''{quote(utf8_name.format(suffix))}" in disposition
        assert client.get(url).headers["Content-Disposition"].startswith("inline;")


def read_zip(response):
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert int(response.headers["Content-Length"]) == len(response.data)
    return zipfile.ZipFile(io.BytesIO(response.data))


def test_a_job_downloads_as_a_zip_of_its_original_and_outputs(client):
    job = upload(client, ops=["grayscale", "thumbnail"], name="beach.jpg").get_json()
    response = client.get(job["zip_url"])
    assert 'filename=beach.zip' in response.headers["Content-Disposition"]
    archive = read_zip(response)
    assert archive.namelist() == ["beach.jpg", "beach-grayscale.jpg", "beach-thumbnail.jpg"]
    for entry, name in zip([job["source"], *job["outputs"]], archive.namelist(), strict=True):
        assert archive.read(name) == client.get(entry["url"]).data
        assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED


@pytest.mark.parametrize(("name", "ascii_name", "utf8_name"), [
    ("Café été.jpg", "Cafe ete.zip", "Café été.zip"),
    ("Café été 日本.jpg", "Cafe ete.zip", "Café été 日本.zip"),
    ("日本.jpg", "images.zip", "日本.zip"),
    ("🌅 sunrise.png", "sunrise.zip", "🌅 sunrise.zip"),
    ("a:b*c?.jpg", "a_b_c.zip", None),
    ("holiday/Été 2024.jpg", "holiday_Ete 2024.zip", "holiday_Été 2024.zip"),  # quotes: the browser test
])
def test_a_jobs_zip_is_named_after_the_users_file_in_any_script(client, name, ascii_name, utf8_name):
    job = upload(client, ops=["invert"], name=name).get_json()
    response = client.get(job["zip_url"])
    read_zip(response)
    disposition = response.headers["Content-Disposition"]
    assert f'filename="{ascii_name}"' in disposition or f"filename={ascii_name};" in disposition + ";"
    if utf8_name:
        assert f"filename*=UTF-8''{quote(utf8_name)}" in disposition
    else:
        assert "filename*" not in disposition


def test_the_gallery_downloads_as_one_zip_with_a_folder_per_job(app, client):
    for name in ("a.jpg", "b.jpg", "a.jpg"):
        upload(client, ops=["invert"], name=name)
    archive = read_zip(client.get("/download.zip"))
    assert archive.namelist() == ["a/a.jpg", "a/a-invert.jpg", "b/b.jpg", "b/b-invert.jpg",
                                  "a (2)/a.jpg", "a (2)/a-invert.jpg"]
    assert app.test_client().get("/download.zip").status_code == 404  # a stranger has nothing to download


#: What Windows calls its devices: a file or folder of that name, whatever its extension, cannot be made.
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789¹²³")}


def assert_windows_extracts(paths):
    """Every path is one Windows' Explorer extracts as it is (the rules of Microsoft's "Naming Files" page)."""
    for path in paths:
        assert len(path) < 255, path
        for part in path.split("/"):
            assert part and len(part.encode()) < 255, part
            assert part[-1] not in ". ", part
            assert part.split(".")[0].rstrip(" ").upper() not in WINDOWS_DEVICES, part
            assert not any(c in '<>:"\\|?*' or ord(c) < 32 for c in part), part
    assert len({p.casefold() for p in paths}) == len(paths)  # no two the same to a case-blind file system


def disposition_name(response):
    """The name a browser saves a download as: the UTF-8 ``filename*`` if there is one, else ``filename``."""
    disposition = response.headers["Content-Disposition"]
    if "filename*=UTF-8''" in disposition:
        return unquote(disposition.split("filename*=UTF-8''", 1)[1].split(";")[0])
    return disposition.split("filename=", 1)[1].split(";")[0].strip('"')


@pytest.mark.slow
def test_a_galleries_zip_extracts_under_windows_rules(client):
    long_cjk = "東京の夏休みの写真" * 22 + "終.jpg"  # 199 characters, 595 bytes of UTF-8
    names = [long_cjk, "CON.jpg", "com1.backup.png", "aux .jpg", "trailing dot..jpg", "Holiday.jpg", "holiday.jpg",
             ". . ..jpg"]
    jobs = [upload(client, ops=["invert", "thumbnail:64"], name=name).get_json() for name in names]
    entries = read_zip(client.get("/download.zip")).namelist()
    assert len(entries) == 3 * len(names)
    assert_windows_extracts(entries)
    folders = list(dict.fromkeys(entry.split("/")[0] for entry in entries))
    assert folders[1:] == ["_CON", "_com1.backup", "_aux", "trailing dot", "Holiday", "holiday (2)", "image"]
    assert folders[0].startswith("東京の夏休みの写真") and len(folders[0].encode()) < 255
    # A job's own ZIP and each single file are named by the same rules.
    for job in jobs:
        saved = [disposition_name(client.get(job["zip_url"]))]
        saved += [disposition_name(client.get(e["url"] + "?download=1")) for e in (job["source"], *job["outputs"])]
        assert_windows_extracts(saved)
    assert disposition_name(client.get(jobs[1]["source"]["url"] + "?download=1")) == "_CON.jpg"


def test_the_plain_fallback_of_a_name_beyond_ascii_follows_the_same_rules(client):
    job = upload(client, ops=["sepia"], name="CON日本.jpg").get_json()
    for url, plain, utf8 in ((job["source"]["url"] + "?download=1", "_CON.jpg", "CON日本.jpg"),
                             (job["zip_url"], "_CON.zip", "CON日本.zip")):
        disposition = client.get(url).headers["Content-Disposition"]
        assert f"filename={plain};" in disposition + ";" or f'filename="{plain}"' in disposition
        assert f"filename*=UTF-8''{quote(utf8)}" in disposition


def test_names_lose_the_characters_that_reorder_or_hide_text(client):
    # U+202E shows "invoice\u202egpj.exe" as "invoiceexe.jpg"; the others hide or turn text likewise.
    hidden = "\u202e\u202a\u2066\u2069\u200e\u200f\u061c\ufeff\u00ad\u2028"
    job = upload(client, ops=["invert"], name="invoice\u202egpj.exe").get_json()
    other = upload(client, ops=["invert"], name=f"a{hidden}b.jpg").get_json()
    family = upload(client, ops=["invert"], name="\U0001f468\u200d\U0001f469\u200d\U0001f467.jpg").get_json()
    assert job["source"]["name"] == "invoicegpj.exe" and other["source"]["name"] == "ab.jpg"
    assert family["source"]["name"] == "\U0001f468\u200d\U0001f469\u200d\U0001f467.jpg"  # the joiners stay
    sent = [client.get("/").get_data(as_text=True), client.get("/api/session").get_data(as_text=True)]
    sent += [disposition_name(client.get(url)) for url in (job["source"]["url"] + "?download=1", job["zip_url"])]
    sent += read_zip(client.get("/download.zip")).namelist()
    assert not [text for text in sent if any(c in text for c in hidden)]
    assert disposition_name(client.get(job["source"]["url"] + "?download=1")) == "invoicegpj.jpg"


def test_a_zip_holds_only_the_sessions_own_job(app, client):
    job = upload(client, ops=["invert"]).get_json()
    assert app.test_client().get(job["zip_url"]).status_code == 404
    assert client.get("/jobs/" + "0" * 24 + "/download.zip").status_code == 404


# The view page


def test_the_view_page_compares_an_output_with_its_original(client):
    job = upload(client, image_bytes((1200, 800)), ops=["thumbnail:600", "rotate:90"]).get_json()

    def images(url):
        page = client.get(url).get_data(as_text=True)
        return page, re.findall(r'<img class="(before|after)" src="([^"]+)"[^>]*?width="(\d+)"\s+height="(\d+)"', page)

    page, fitted = images(f"/jobs/{job['id']}/view/1")
    assert 'class="stage slider fit"' in page  # the same shape: a slider
    assert "Before: the original · 1200×800 JPEG" in page and "After: Thumbnail (600 px) · 600×400 JPEG" in page
    # Both no larger than a screen: the files themselves.
    source, thumbnail = job["source"]["url"], job["outputs"][0]["url"]
    assert fitted == [("before", source, "1200", "800"), ("after", thumbnail, "600", "400")]
    saving = round(100 * (1 - job["outputs"][0]["bytes"] / job["source"]["bytes"]))
    assert re.search(rf'<strong class="saving smaller"\s+title="smaller than the original">−{saving}%</strong>', page)
    # At 100%, the original is drawn at the output's size, so the two line up.
    _, actual = images(f"/jobs/{job['id']}/view/1?zoom=100")
    assert actual == [("before", source, "600", "400"), ("after", thumbnail, "600", "400")]
    rotated = client.get(f"/jobs/{job['id']}/view/2").get_data(as_text=True)
    assert 'class="stage side fit"' in rotated  # another shape: side by side
    assert 'class="stage slider fit"' in client.get(f"/jobs/{job['id']}/view/2?mode=slider").get_data(as_text=True)
    original = client.get(f"/jobs/{job['id']}/view/0").get_data(as_text=True)
    assert "Before:" not in original and "1 of 3" in original and 'class="stage single fit"' in original
    assert client.get(f"/jobs/{job['id']}/view/3").status_code == 404


def test_a_large_image_is_viewed_from_a_screen_copy_made_once(app, client):
    job = upload(client, image_bytes((3000, 2000)), ops=["sepia"]).get_json()
    page = client.get(f"/jobs/{job['id']}/view/1").get_data(as_text=True)
    screens = [f"/jobs/{job['id']}/screen/0", f"/jobs/{job['id']}/screen/1"]
    assert all(f'src="{url}"' in page for url in screens)
    first = client.get(screens[1])
    assert first.status_code == 200 and first.mimetype == "image/webp"
    assert "private" in first.headers["Cache-Control"]
    assert decode(first.data).size == (1600, 1067)
    ws = workspace_of(app, client)
    assert ws
    made = ws.job_dir(job["id"]) / "screen-1.webp"
    stamp = made.stat().st_mtime_ns
    assert client.get(screens[1]).data == first.data and made.stat().st_mtime_ns == stamp  # made once
    assert app.test_client().get(screens[1]).status_code == 404  # another session's
    assert client.get(f"/jobs/{job['id']}/screen/2").status_code == 404
    # A file that no longer decodes is shown as the gallery shows it.
    stored = ws.job_dir(job["id"]) / job["source"]["url"].rsplit("/", 1)[1]
    stored.write_bytes(stored.read_bytes()[:2000])
    answer = client.get(screens[0])
    assert answer.status_code == 302 and answer.location == job["source"]["url"]


def test_the_view_page_is_the_sessions_own(app, client):
    job = upload(client, ops=["sepia"]).get_json()
    assert app.test_client().get(f"/jobs/{job['id']}/view/1").status_code == 404


def test_sizes_use_one_convention_and_times_carry_their_zone(client):
    job = upload(client, image_bytes((2000, 1500)), ops=["grayscale"]).get_json()
    page = client.get("/").get_data(as_text=True)
    assert f'<time datetime="{job["created"]}">' in page  # the page's script shows it in local time
    size = job["source"]["bytes"]
    assert f"{round(size / 1024)} kB" in page or f"{size / 1048576:.1f}".removesuffix(".0") + " MB" in page
    assert "up to 40 MB each" in page
    assert "kept for 7 days after your last visit" in page


# However many jobs a session holds


def test_the_session_row_holds_only_the_newest_jobs(make_app):
    app = make_app(DARKROOM_SESSION_JOBS=3)
    client = app.test_client()
    ids = [upload(client, image_bytes((64, 48)), ops=["invert"]).get_json()["id"] for _ in range(5)]
    with client.session_transaction() as sess:
        assert [j["id"] for j in sess["jobs"]] == ids[-3:]
    assert [j["id"] for j in session_jobs(client)] == ids  # the manifest still has them all


def test_the_api_pages_the_sessions_jobs_with_a_cursor(client):
    ids = [upload(client, image_bytes((64, 48)), ops=["invert"]).get_json()["id"] for _ in range(5)]
    seen, url = [], "/api/session?limit=2"
    while url:
        answer = client.get(url).get_json()
        assert len(answer["jobs"]) <= 2
        seen += [j["id"] for j in answer["jobs"]]
        url = answer["next"] and f"/api/session?limit=2&after={answer['next']}"
    assert seen == ids
    assert client.get("/api/session?limit=0").status_code == 400
    assert client.get("/api/session?limit=101").status_code == 400
    assert error_json(client.get("/api/session?limit=ten")) == {"error": "limit must be a whole number from 1 to 100."}
    unknown = client.get("/api/session?after=" + "0" * 24)
    assert unknown.status_code == 400 and "start again without it" in unknown.get_json()["error"]
