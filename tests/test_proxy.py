"""Cross-origin refusal by Go's CrossOriginProtection algorithm, trusted proxies, Secure cookies."""

import pytest
from conftest import upload
from flask import request

from app import create_app


def where(app):
    """Add a route that shows what the app believes about the request."""
    app.add_url_rule(
        "/where", "where", lambda: {"scheme": request.scheme, "host": request.host, "addr": request.remote_addr}
    )
    return app


# Behind a TLS proxy the app sees http://<upstream>; the browser's Origin is https://<public host>.
BEHIND_TLS_PROXY = {"Origin": "https://photos.example", "Host": "127.0.0.1:8000"}


@pytest.mark.parametrize("fetch_site", ["same-origin", "none"])
def test_fetch_metadata_same_origin_decides_alone(client, fetch_site):
    response = upload(client, **BEHIND_TLS_PROXY, **{"Sec-Fetch-Site": fetch_site})
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site"])
def test_fetch_metadata_cross_site_is_refused_even_with_a_matching_origin(client, fetch_site):
    response = upload(client, Origin="http://localhost", **{"Sec-Fetch-Site": fetch_site})
    assert response.status_code == 403


def test_older_browser_origin_is_compared_with_the_host_only(client):
    # Go's algorithm compares hosts, not schemes (HSTS covers http→https).
    assert upload(client, Origin="https://localhost").status_code == 201
    assert upload(client, Origin="https://elsewhere.example").status_code == 403


def test_trusted_origins_may_post(make_app):
    client = make_app(DARKROOM_TRUSTED_ORIGINS=["https://other.example"]).test_client()
    assert upload(client, Origin="https://other.example").status_code == 201
    assert upload(client, Origin="https://other.example", **{"Sec-Fetch-Site": "cross-site"}).status_code == 201
    assert upload(client, Origin="https://third.example", **{"Sec-Fetch-Site": "cross-site"}).status_code == 403


def test_trusted_origins_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_DARKROOM_TRUSTED_ORIGINS", "https://a.example, https://b.example/")
    app = create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    assert app.config["DARKROOM_TRUSTED_ORIGINS"] == {"https://a.example", "https://b.example"}


FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "photos.example",
    "X-Forwarded-Port": "443",
}


def test_forwarded_headers_are_ignored_by_default(app):
    client = where(app).test_client()
    assert client.get("/where", headers=FORWARDED).get_json() == {
        "scheme": "http", "host": "localhost", "addr": "127.0.0.1"
    }
    # A forged X-Forwarded-Host does not make a foreign Origin look like our own.
    assert upload(client, Origin="https://photos.example", **FORWARDED).status_code == 403


def test_forwarded_headers_of_the_configured_hops_are_trusted(make_app):
    client = where(make_app(DARKROOM_PROXY_HOPS=1)).test_client()
    assert client.get("/where", headers=FORWARDED).get_json() == {
        "scheme": "https", "host": "photos.example", "addr": "203.0.113.9"
    }
    assert upload(client, Origin="https://photos.example", **FORWARDED).status_code == 201
    # Only the last hop counts: a client cannot prepend an address of its choice.
    spoofed = {**FORWARDED, "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    assert client.get("/where", headers=spoofed).get_json()["addr"] == "203.0.113.9"


def test_negative_hops_are_refused(make_app):
    with pytest.raises(ValueError, match="DARKROOM_PROXY_HOPS"):
        make_app(DARKROOM_PROXY_HOPS=-1)


def test_https_scheme_makes_the_session_cookie_secure(make_app):
    client = make_app(PREFERRED_URL_SCHEME="https").test_client()
    set_cookie = client.get("/").headers["Set-Cookie"]
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie


def test_the_session_cookie_is_not_secure_on_plain_http(client):
    assert "Secure" not in client.get("/").headers["Set-Cookie"]
