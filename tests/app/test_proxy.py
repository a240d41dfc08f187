"""Cross-origin refusal by Go's CrossOriginProtection algorithm, trusted proxies, Secure cookies."""

import pytest
from flask import request

from app import create_app
from tests.support.jobs import upload


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


def attributes(set_cookie):
    """A Set-Cookie header's attributes, lower-cased, without the name=value."""
    return [part.strip().lower() for part in set_cookie.split(";")[1:]]


def assert_host_only(set_cookie):
    assert set_cookie.startswith("__Host-session=")
    parts = attributes(set_cookie)
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= set(parts)
    assert not [p for p in parts if p.startswith("domain=")]
    assert [p for p in parts if p.startswith("expires=")]  # the images are kept for days, not until the browser closes


def test_https_scheme_makes_the_session_cookie_host_only(make_app):
    client = make_app(PREFERRED_URL_SCHEME="https").test_client()
    assert_host_only(client.get("/api/session").headers["Set-Cookie"])


def test_behind_a_trusted_tls_proxy_the_session_cookie_is_host_only_with_no_setting(make_app):
    app = make_app(DARKROOM_PROXY_HOPS=1)
    client = app.test_client()
    response = upload(client, **FORWARDED)
    assert response.status_code == 201
    assert_host_only(response.headers["Set-Cookie"])
    # The prefixed cookie names the session from then on; the same app over plain HTTP uses the plain name.
    assert len(client.get("/api/session", headers=FORWARDED).get_json()["jobs"]) == 1
    plain = app.test_client().get("/api/session").headers["Set-Cookie"]
    assert plain.startswith("session=") and "secure" not in attributes(plain)


def test_over_https_a_planted_cookie_without_the_prefix_is_ignored(make_app):
    app = make_app(DARKROOM_PROXY_HOPS=1)
    attacker = app.test_client()
    assert upload(attacker, **FORWARDED).status_code == 201
    planted = attacker.get_cookie("__Host-session").value
    victim = app.test_client()
    victim.set_cookie("session", planted)  # as a sibling subdomain or a plain-HTTP page could
    response = upload(victim, name="private.jpg", **FORWARDED)
    assert response.status_code == 201
    assert victim.get_cookie("__Host-session").value != planted
    seen = [j["source"]["name"] for j in attacker.get("/api/session", headers=FORWARDED).get_json()["jobs"]]
    assert seen == ["photo.jpg"]


def test_plain_http_says_at_start_that_sessions_can_be_planted(make_app, caplog):
    make_app()
    assert "Serving over plain HTTP: session cookies can be planted" in caplog.text
    caplog.clear()
    make_app(DARKROOM_PROXY_HOPS=1)
    make_app(PREFERRED_URL_SCHEME="https")
    assert "planted" not in caplog.text


def test_the_session_cookie_is_not_secure_on_plain_http(client):
    set_cookie = client.get("/api/session").headers["Set-Cookie"]
    assert set_cookie.startswith("session=") and "secure" not in attributes(set_cookie)
