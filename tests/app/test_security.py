"""Cross-site requests, other sessions' files, cookies and the secret key."""

import os
import stat

import pytest

import storage
from app import create_app
from handoff import Handoff
from tests.support.jobs import error_json, upload
from tests.support.machine import tmpfs
from tests.support.photos import image_bytes


def test_cross_site_origin_is_refused(app, client):
    response = upload(client, Origin="https://evil.example")
    assert response.status_code == 403
    assert "another site" in response.get_json()["error"]
    assert client.get("/api/session").get_json() == {"jobs": [], "next": None}


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_cross_site_fetch_metadata_is_refused(client, site):
    assert upload(client, **{"Sec-Fetch-Site": site}).status_code == 403


def test_cross_site_clear_is_refused_and_keeps_jobs(client):
    job = upload(client).get_json()
    response = client.post("/session/clear", headers={"Origin": "https://evil.example", "Accept": "application/json"})
    assert response.status_code == 403
    assert [j["id"] for j in client.get("/api/session").get_json()["jobs"]] == [job["id"]]


def test_null_origin_is_refused(client):
    assert client.post("/session/clear", headers={"Origin": "null"}).status_code == 403


def test_same_origin_browser_requests_work(client):
    response = upload(client, Origin="http://localhost", **{"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 201
    form = upload(client, json=False, Origin="http://localhost", **{"Sec-Fetch-Site": "same-origin"})
    assert form.status_code == 303
    assert client.post("/session/clear", headers={"Origin": "http://localhost"}).status_code == 303


def test_clients_without_browser_headers_work(client):
    assert upload(client).status_code == 201


def test_reads_are_not_blocked_by_origin(client):
    assert client.get("/api/session", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


@pytest.fixture
def two_sessions(app):
    owner, stranger = app.test_client(), app.test_client()
    job = upload(owner).get_json()
    stranger.get("/api/session")  # a session (and workspace) of its own
    return owner, stranger, job


def test_another_session_gets_404_for_files(two_sessions):
    owner, stranger, job = two_sessions
    for out in job["outputs"] + [job["source"]]:
        assert owner.get(out["url"]).status_code == 200
        assert stranger.get(out["url"]).status_code == 404
    assert stranger.get("/api/session").get_json() == {"jobs": [], "next": None}
    delete = stranger.post(f"/jobs/{job['id']}/delete", headers={"Accept": "application/json"})
    assert delete.status_code == 404
    assert owner.get(job["outputs"][0]["url"]).status_code == 200


@pytest.mark.parametrize("path", [
    "/files/{job}/..%2Fmanifest.json",
    "/files/{job}/%2E%2E%2F%2E%2E%2F{ws}.lock",
    "/files/{job}/../manifest.json",
    "/files/{job}/progress.json",
    "/files/{job}//etc/passwd",
    "/files/{job}/%2Fetc%2Fpasswd",
    "/files/..%2F{job}/source.jpg",
    "/files/{job}/source.jpg%00.png",
    "/files/not-an-id/source.jpg",
    "/files/{job}/upload",
])
def test_paths_outside_the_listed_files_are_404(app, client, path):
    job = upload(client).get_json()
    with client.session_transaction() as sess:
        workspace = sess["_workspace"]
    response = client.get(path.format(job=job["id"], ws=workspace), headers={"Accept": "application/json"})
    assert response.status_code == 404
    body = error_json(response)
    assert set(body) == {"error"} and "Nothing here" in body["error"]


def test_symlinks_are_not_followed_out_of_the_workspace(app, client, tmp_path):
    job = upload(client, ops=["grayscale"]).get_json()
    with client.session_transaction() as sess:
        workspace = sess["_workspace"]
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    listed = os.path.join(app.config["DARKROOM_STORAGE_ROOT"], workspace, job["id"], "grayscale.jpg")
    os.unlink(listed)
    os.symlink(secret, listed)
    response = client.get(job["outputs"][0]["url"])
    assert response.status_code == 404
    assert b"top secret" not in response.data


def test_session_cookie_is_httponly_and_samesite_lax(client):
    client.get("/api/session")
    cookie = client.get_cookie("session")
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    assert not cookie.secure


def test_session_cookie_is_secure_when_configured(make_app):
    client = make_app(SESSION_COOKIE_SECURE=True).test_client()
    set_cookie = client.get("/api/session").headers["Set-Cookie"]  # plain HTTP: the plain name, but Secure
    assert set_cookie.startswith("session=")
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie


def test_session_id_is_not_the_workspace_name(app, client):
    upload(client)
    cookie = client.get_cookie("session").value
    names = [n.removesuffix(".lock") for n in os.listdir(app.config["DARKROOM_STORAGE_ROOT"])]
    workspaces = [n for n in names if storage.is_valid_id(n)]
    assert workspaces and not any(cookie in name or name in cookie for name in workspaces)


def test_secret_key_is_generated_once_with_mode_0600(tmp_path):
    first = create_app({"TESTING": True}, instance_path=str(tmp_path))
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = create_app({"TESTING": True}, instance_path=str(tmp_path))
    assert first.secret_key == second.secret_key
    assert isinstance(first.secret_key, str) and len(first.secret_key) == 64


def test_secret_key_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASK_SECRET_KEY", "from-the-environment")
    app = create_app({"TESTING": True}, instance_path=str(tmp_path))
    assert app.secret_key == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()


def test_sessions_survive_a_restart(tmp_path):
    first = create_app({"TESTING": True}, instance_path=str(tmp_path)).test_client()
    first.get("/multi")
    sent = first.get_cookie("session")
    assert sent
    cookie = sent.value
    second = create_app({"TESTING": True}, instance_path=str(tmp_path)).test_client()
    second.set_cookie("session", cookie)
    text = second.get("/multi").get_data(as_text=True)
    assert "inside_function" in text.split("Session after function call")[0]


def test_security_headers_on_pages_and_files(client):
    job = upload(client).get_json()
    for path in ("/", job["outputs"][0]["url"], "/api/session"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"



def test_a_jobs_files_are_cached_for_good_by_the_browser_only_and_pages_never(client):
    job = upload(client, image_bytes((2400, 1600))).get_json()
    screen = f"/jobs/{job['id']}/screen/1"
    for url in (job["source"]["url"], job["outputs"][0]["url"], job["outputs"][0]["preview_url"], screen):
        image = client.get(url)
        assert sorted(image.headers["Cache-Control"].split(", ")) == ["immutable", "max-age=31536000", "private"], url
        assert image.headers["Vary"] == "Cookie" and image.headers["ETag"]
        again = client.get(url, headers={"If-None-Match": image.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""
    for path in ("/", "/api/session", f"/jobs/{job['id']}/view/1"):
        page = client.get(path)
        assert page.headers["Cache-Control"] == "no-cache, private" and page.headers["Vary"] == "Cookie"
    style = client.get("/static/style.css")
    assert "Cookie" not in style.headers.get("Vary", "") and "private" not in style.headers.get("Cache-Control", "")


@pytest.fixture
def read_only_instance(tmp_path):
    """An instance folder on a read-only file system (root ignores permission bits, not this)."""
    with tmpfs(tmp_path / "ro-instance", "ro,size=1m") as folder:
        yield folder


def test_a_read_only_instance_folder_is_fine_when_nothing_lives_there(read_only_instance, tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "from the environment",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db' / 'sessions.db'}",
                      "DARKROOM_STORAGE_ROOT": str(tmp_path / "storage")}, instance_path=str(read_only_instance))
    try:
        assert upload(app.test_client()).status_code == 201
    finally:
        with app.app_context():
            Handoff.close()


def test_a_read_only_instance_folder_that_is_needed_is_named_at_start(read_only_instance):
    with pytest.raises(RuntimeError, match=r"instance folder .* is not writable, and it holds the generated secret"):
        create_app({"TESTING": True}, instance_path=str(read_only_instance))
