"""Refusing cross-site state changes, trusting proxies, and the headers every response carries."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, abort, current_app, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.middleware.proxy_fix import ProxyFix

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_cross_origin() -> bool:
    """Whether a browser says this state-changing request comes from another origin.

    The algorithm of Go's ``net/http`` CrossOriginProtection: ``Sec-Fetch-Site``,
    when present, decides alone (every current browser sends it, and no page
    can forge it); only older browsers fall back to comparing ``Origin`` with
    the request's own host. A request with neither header is not from a
    browser page, so no other site can have sent it on the user's behalf.
    """
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none") and not is_trusted(origin)
    if origin is None:
        return False
    if urlsplit(origin).netloc == request.host:
        return False
    return not is_trusted(origin)


def is_trusted(origin: str | None) -> bool:
    """Whether ``origin`` is one of ``DARKROOM_TRUSTED_ORIGINS`` (other sites serving this app)."""
    return origin is not None and origin in current_app.config["DARKROOM_TRUSTED_ORIGINS"]


def refuse_cross_origin() -> None:
    """Answer 403 to a state-changing request sent from another site."""
    if request.method not in SAFE_METHODS and is_cross_origin():
        abort(403, "Refused: this request came from another site.")


#: Sent with every response. The page uses no inline script or style, and
#: previews the chosen file through a ``blob:`` URL.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    """Add the security headers every response carries."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def revalidate_pages(response: Response) -> Response:
    """Pages and JSON answers are the session's state of now: a browser asks again before showing one.

    ``no-cache`` rather than ``no-store``: Back may still restore the page
    from memory, and the page's script then fetches the gallery again.
    Files set their own caching (web/files.py); ``private`` keeps every
    answer of one session out of shared caches.
    """
    if response.mimetype in ("text/html", "application/json") and "Cache-Control" not in response.headers:
        response.cache_control.no_cache = True
        response.cache_control.private = True
    if request.endpoint != "static":  # what the cookie names differs by cookie; the stylesheet does not
        response.vary.add("Cookie")
    return response


def trust_proxies(app: Flask) -> None:
    """Believe ``X-Forwarded-*`` from ``DARKROOM_PROXY_HOPS`` proxies in front of the app, and no more.

    With 0 (the default) the headers are ignored: anyone could send them.
    """
    hops = int(app.config["DARKROOM_PROXY_HOPS"])
    if hops < 0:
        raise ValueError(f"DARKROOM_PROXY_HOPS must be 0 or more, not {hops}")
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )


#: The cookie prefix that binds a cookie to this host, https and the whole site (RFC 6265bis).
HOST_PREFIX = "__Host-"


def served_over_https(app: Flask) -> bool:
    """Whether this request reached the user over https: configured so, or seen (through a trusted proxy)."""
    return app.config["PREFERRED_URL_SCHEME"] == "https" or request.is_secure


class HostOnlyCookie(SessionInterface):
    """Over https the session cookie is ``__Host-session``: ``Secure``, ``Path=/``, no ``Domain``.

    Browsers refuse a cookie of that name set over plain HTTP or by another
    host (a sibling subdomain), which is how a session id is planted in
    someone else's browser to see what they upload; over https a cookie
    without the prefix is ignored. Over plain HTTP (development) the cookie
    is the plain ``session`` and can be planted (said in the log at start).
    Wraps the app's session interface (Flask-Session's, behind handoff's
    merge), translating the cookie's name at its two ends.
    """

    def __init__(self, inner: SessionInterface) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # regenerate(), sql_session_model, ...: the inner interface's
        return getattr(self.inner, name)

    def make_null_session(self, app: Flask) -> Any:
        return self.inner.make_null_session(app)

    def is_null_session(self, obj: object) -> bool:
        return self.inner.is_null_session(obj)

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if served_over_https(app):
            name = app.config["SESSION_COOKIE_NAME"]
            cookies = [(key, value) for key, value in request.cookies.items(multi=True) if key != name]
            if (value := request.cookies.get(HOST_PREFIX + name)) is not None:
                cookies.append((name, value))
            # What the inner interface reads, now and when it saves: only the prefixed cookie counts.
            request.cookies = ImmutableMultiDict(cookies)
        return self.inner.open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        self.inner.save_session(app, session, response)
        if not served_over_https(app):
            return
        name = app.config["SESSION_COOKIE_NAME"]
        headers = response.headers.getlist("Set-Cookie")
        if not any(header.startswith(f"{name}=") for header in headers):
            return
        del response.headers["Set-Cookie"]
        for header in headers:
            if header.startswith(f"{name}="):
                header = HOST_PREFIX + header + ("" if "; Secure" in header else "; Secure")
            response.headers.add("Set-Cookie", header)


def protect_session_cookie(app: Flask) -> None:
    """Put :class:`HostOnlyCookie` around the session interface; over plain HTTP, say what that leaves open."""
    if app.config["SESSION_COOKIE_DOMAIN"] or app.config["SESSION_COOKIE_PATH"] not in (None, "/"):
        raise ValueError("SESSION_COOKIE_DOMAIN and SESSION_COOKIE_PATH must stay unset: over https the session "
                         "cookie is __Host-session, which browsers accept for this host and the whole site only")
    app.session_interface = HostOnlyCookie(app.session_interface)
    if app.config["PREFERRED_URL_SCHEME"] != "https" and not app.config["DARKROOM_PROXY_HOPS"]:
        app.logger.warning(
            "Serving over plain HTTP: session cookies can be planted (by another site on this host name's "
            "domain, or anyone on the network), letting whoever planted one see what its victim uploads. "
            "Serve over https: set PREFERRED_URL_SCHEME=https, or DARKROOM_PROXY_HOPS behind a TLS proxy."
        )


def init_app(app: Flask) -> None:
    """Check every request before any view runs, and label every response."""
    origins = app.config["DARKROOM_TRUSTED_ORIGINS"]
    if isinstance(origins, str):  # FLASK_DARKROOM_TRUSTED_ORIGINS=https://a.example,https://b.example
        origins = [o.strip() for o in origins.split(",") if o.strip()]
    app.config["DARKROOM_TRUSTED_ORIGINS"] = frozenset(o.rstrip("/") for o in origins)
    if app.config["SESSION_COOKIE_SECURE"] is None:  # Secure whenever the public scheme is https
        app.config["SESSION_COOKIE_SECURE"] = app.config["PREFERRED_URL_SCHEME"] == "https"
    trust_proxies(app)
    protect_session_cookie(app)
    app.before_request(refuse_cross_origin)
    app.after_request(add_security_headers)
    app.after_request(revalidate_pages)
