"""The production setup, for real: nginx with TLS in front of two gunicorn nodes.

The nodes share one PostgreSQL database, one storage root (with the NFS-safe
``soft`` lock) and one Redis for the rate limits; each has its own instance
folder. nginx runs ``deploy/nginx.conf`` as shipped, with only its addresses,
ports and certificate paths changed.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import ROOT, Client, RedisServer, Server, free_port, ready, stop_process, wait_for_port
from tests.support.browser import CHROMIUM, FLAGS, expect_visible
from tests.support.machine import postgres_database, require
from tests.support.photos import image_bytes

pytestmark = pytest.mark.deploy

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
#: The job rate every client address gets in this cluster (checked across both nodes below).
JOB_RATE = 40


def needs(*programs: str) -> None:
    for program in programs:
        if not shutil.which(program) and not Path(f"/usr/sbin/{program}").exists():
            require(f"{program} is not installed (apt-get install nginx redis-server openssl)")


def replace_once(text: str, old: str, new: str) -> str:
    """Replace ``old``, which must occur exactly once: the shipped file and this test must agree."""
    assert text.count(old) == 1, f"deploy/nginx.conf should contain {old!r} exactly once"
    return text.replace(old, new)


@dataclass
class Nginx:
    """deploy/nginx.conf in front of ``upstreams``, on free local ports, with a self-signed certificate."""

    tmp: Path
    upstreams: list[int]

    def __enter__(self) -> Nginx:
        self.port, self.http_port = free_port(), free_port()
        cert, key = self.tmp / "cert.pem", self.tmp / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-keyout", key, "-out", cert],
            check=True, capture_output=True,
        )
        site = NGINX_CONF.read_text()
        site = replace_once(site, "    server 127.0.0.1:8000;\n",
                            "".join(f"    server 127.0.0.1:{port};\n" for port in self.upstreams))
        site = replace_once(site, "listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;")
        site = replace_once(site, "listen 80;", f"listen 127.0.0.1:{self.http_port};")
        site = replace_once(site, "/etc/ssl/certs/darkroom.pem", str(cert))
        site = replace_once(site, "/etc/ssl/private/darkroom.key", str(key))
        (self.tmp / "darkroom.conf").write_text(site)
        # The main file a distribution ships (/etc/nginx/nginx.conf), reduced to what a test needs.
        temp_paths = "".join(f"    {kind}_temp_path {self.tmp}/{kind};\n"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.tmp / "nginx.conf").write_text(
            f"user root;\nworker_processes 1;\ndaemon off;\npid {self.tmp}/nginx.pid;\n"
            f"error_log {self.tmp}/error.log info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    access_log {self.tmp}/access.log;\n{temp_paths}"
            f"    include {self.tmp}/darkroom.conf;\n}}\n"
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        check = subprocess.run([nginx, "-t", "-c", self.tmp / "nginx.conf"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([nginx, "-c", self.tmp / "nginx.conf"])
        wait_for_port(self.port, "nginx")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc, signal.SIGQUIT, 10)  # nginx's graceful stop


@dataclass
class Cluster:
    nodes: list[Server]
    port: int  # nginx's HTTPS port
    database_url: str  # the nodes' one PostgreSQL database

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, address: str | None = None, timeout: float = 300) -> Client:
        return Client(self.port, tls=True, address=address, timeout=timeout)

    def nodes_that_ran(self, job_ids: set[str]) -> int:
        """How many nodes' logs record one of these jobs as finished."""
        return sum(
            bool(job_ids & set(re.findall(r"job ([0-9a-f]{24}) ops=\S+ status=done", node.log_text())))
            for node in self.nodes
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    needs("nginx", "redis-server", "openssl")
    tmp = tmp_path_factory.mktemp("cluster")
    with postgres_database() as database_url, RedisServer() as redis:
        env = {
            "FLASK_SECRET_KEY": uuid.uuid4().hex,
            "FLASK_DARKROOM_STORAGE_ROOT": str(tmp / "shared-storage"),
            "FLASK_DARKROOM_LOCK_TYPE": "soft",
            # No PREFERRED_URL_SCHEME: what nginx says (X-Forwarded-Proto) makes the cookie __Host- and Secure.
            "FLASK_DARKROOM_PROXY_HOPS": "1",
            "FLASK_DARKROOM_CLIENT_LIMITS": "true",
            "FLASK_DARKROOM_CLIENT_JOB_RATE": f"{JOB_RATE} per minute",
            "FLASK_RATELIMIT_STORAGE_URI": redis.url,
            "FLASK_HANDOFF_MAX_CHILDREN": "2",
            "DARKROOM_ACCESS_LOG": "-",
        }
        # Each Server has its own temporary directory and so its own instance folder.
        with Server("gunicorn", workers=1, threads=4, database_url=database_url, env=env) as a, \
             Server("gunicorn", workers=1, threads=4, database_url=database_url, env=env) as b, \
             Nginx(tmp, [a.port, b.port]) as proxy:
            yield Cluster([a, b], proxy.port, database_url)


def test_browser_uploads_with_and_without_javascript(cluster, browser, tmp_path):
    photo = tmp_path / "harbour.jpg"
    photo.write_bytes(image_bytes((1200, 800)))
    context = browser.new_context(base_url=cluster.url, ignore_https_errors=True)
    page = context.new_page()
    page.goto("/")
    page.set_input_files("#image", photo)
    page.click("#submit")
    expect_visible(page.locator("article.job h3", has_text="harbour.jpg"))
    assert page.locator(".flash-error").count() == 0
    [cookie] = [c for c in context.cookies() if c["name"].endswith("session")]
    assert cookie["name"] == "__Host-session" and cookie["path"] == "/"
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    context.close()

    plain = browser.new_context(base_url=cluster.url, ignore_https_errors=True, java_script_enabled=False)
    page = plain.new_page()
    page.goto("/")
    page.set_input_files("#image", photo)
    with page.expect_navigation():
        page.click("#submit")
    expect_visible(page.get_by_text("Done: 3 images from harbour.jpg."))
    assert page.locator("article.job").count() == 1
    (ROOT / "tests" / "screenshots").mkdir(exist_ok=True)
    page.screenshot(path=ROOT / "tests" / "screenshots" / "through-nginx.png", full_page=True)
    plain.close()


def test_sixteen_concurrent_jobs_of_one_session_spread_over_both_nodes(cluster):
    first = cluster.client()
    status, body = first.upload(image_bytes((320, 240)), ["invert"])
    assert status == 201, body
    assert first.cookie.startswith("__Host-session=") and "Secure" in first.headers["Set-Cookie"]
    created = {json.loads(body)["id"]}
    barrier = threading.Barrier(16)
    answers = []

    def tab(i):
        client = cluster.client()
        client.cookie = first.cookie
        barrier.wait()
        answers.append(client.upload(image_bytes((300 + i, 200)), ["grayscale"]))

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in answers] == [201] * 16, answers
    created |= {json.loads(body)["id"] for _, body in answers}
    listed = {job["id"] for job in json.loads(first.get("/api/session")[1])["jobs"]}
    assert listed == created
    assert cluster.nodes_that_ran(created) == 2


def test_a_session_id_planted_by_a_sibling_host_or_over_plain_http_is_not_adopted(cluster, browser, tmp_path):
    """A victim's browser given an attacker's session id keeps its uploads out of the attacker's session.

    Chromium resolves ``*.darkroom.test`` to this machine: ``app.`` is the
    site behind nginx, ``www.`` a sibling subdomain over https, and ``app.``
    on a node's own port the site's name over plain HTTP. Both try to plant
    the attacker's id; the browser refuses a ``__Host-`` cookie from either,
    and the app ignores the plain ``session`` cookie it lets through.
    """
    attacker = cluster.client()
    assert attacker.upload(image_bytes((200, 150)), ["invert"])[0] == 201
    name, sid = attacker.cookie.split("=", 1)
    assert name == "__Host-session"
    resolving = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*FLAGS, "--host-resolver-rules=MAP *.darkroom.test 127.0.0.1"])
    try:
        context = resolving.new_context(ignore_https_errors=True)
        page = context.new_page()
        plants = [f"session={sid}; Domain=darkroom.test; Path=/", f"__Host-session={sid}; Path=/; Secure",
                  f"__Host-session={sid}; Domain=darkroom.test; Path=/; Secure"]
        for url in (f"https://www.darkroom.test:{cluster.port}/healthz",
                    f"http://app.darkroom.test:{cluster.nodes[0].port}/healthz"):
            page.goto(url)
            page.evaluate("plants => plants.forEach(cookie => { document.cookie = cookie; })", plants)
        planted = {(c["name"], c["domain"]) for c in context.cookies() if c["value"] == sid}
        # The sibling keeps its own __Host- cookie; only the plain one reaches app.darkroom.test.
        assert planted == {("session", ".darkroom.test"), ("__Host-session", "www.darkroom.test")}

        photo = tmp_path / "private.jpg"
        photo.write_bytes(image_bytes((640, 480)))
        site = f"https://app.darkroom.test:{cluster.port}"
        page.goto(site + "/")
        page.set_input_files("#image", photo)
        page.click("#submit")
        expect_visible(page.locator("article.job h3", has_text="private.jpg"))
        [own] = [c for c in context.cookies(site) if c["name"] == "__Host-session"]
        assert own["value"] != sid
    finally:
        resolving.close()
    status, body = attacker.get("/api/session")
    assert status == 200 and [j["source"]["name"] for j in json.loads(body)["jobs"]] == ["photo.jpg"]


def test_cross_site_post_through_the_proxy_is_refused(cluster, browser):
    owner = cluster.client()
    assert owner.upload(image_bytes((200, 150)), ["invert"])[0] == 201
    forged = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert owner.request("POST", "/session/clear", headers=forged)[0] == 403
    assert len(json.loads(owner.get("/api/session")[1])["jobs"]) == 1

    # A real page of another site posting a form to Darkroom.
    context = browser.new_context(ignore_https_errors=True)
    context.route("http://evil.test/", lambda route: route.fulfill(content_type="text/html", body=(
        f'<form method="post" action="{cluster.url}/session/clear"><button>Win a prize</button></form>'
    )))
    page = context.new_page()
    page.goto("http://evil.test/")
    with page.expect_response(lambda r: r.url.endswith("/session/clear")) as answer:
        page.click("button")
    assert answer.value.status == 403
    assert "another site" in page.content()
    context.close()


def test_limits_are_shared_by_both_nodes_and_keyed_by_the_real_address(cluster):
    client = cluster.client(address="127.0.0.2")
    tiny = image_bytes((64, 48))
    created = set()
    for _ in range(JOB_RATE):
        status, body = client.upload(tiny, ["invert"])
        assert status == 201, body
        created.add(json.loads(body)["id"])
    assert cluster.nodes_that_ran(created) == 2  # both nodes counted into one budget
    status, body = client.upload(tiny, ["invert"])
    assert status == 429, body
    assert 1 <= int(client.headers["Retry-After"]) <= 60
    # A client cannot pass as another by sending its own X-Forwarded-For.
    other = cluster.client(address="127.0.0.3")
    status, _ = other.request("POST", "/jobs", headers={"X-Forwarded-For": "127.0.0.2"})
    assert status == 400  # let in (no file sent), not 429: keyed by 127.0.0.3


def slow_post(port: int, address: str) -> ssl.SSLSocket:
    """Open a connection that sends a POST's headers and then trickles its body."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), source_address=(address, 0))
    conn = context.wrap_socket(raw)
    conn.sendall(
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 100000\r\n\r\n--x\r\n"
    )
    return conn


def test_slow_clients_do_not_delay_a_normal_request(cluster):
    client = cluster.client(timeout=5)

    def latency() -> float:
        started = time.perf_counter()
        assert client.get("/api/session")[0] == 200
        return time.perf_counter() - started

    baseline = statistics.median(latency() for _ in range(5))
    slow = [slow_post(cluster.port, "127.0.0.4") for _ in range(40)]
    stop = threading.Event()

    def trickle():
        while not stop.wait(5):
            for conn in slow:
                conn.sendall(b"x")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(2)  # let every slow request reach whatever would hold it
        worst = max(latency() for _ in range(5))
        time.sleep(4)  # and past the first trickled byte
        worst = max(worst, *(latency() for _ in range(5)))
    finally:
        stop.set()
        trickler.join()
        for conn in slow:
            conn.close()
    print(f"normal request with 40 slow clients: baseline {baseline * 1000:.1f} ms, worst {worst * 1000:.1f} ms")
    assert worst < baseline + 1.0


def test_nginx_body_limit_matches_the_app(app):
    [value] = re.findall(r"^\s*client_max_body_size\s+(\d+)m;", NGINX_CONF.read_text(), re.M)
    assert int(value) * 1024 * 1024 == app.config["MAX_CONTENT_LENGTH"]


def test_gunicorn_keeps_idle_connections_longer_than_nginx_reuses_them():
    # Otherwise nginx may send a request on a connection gunicorn is closing:
    # "upstream prematurely closed connection", and the node is shunned for 10 s.
    [nginx] = re.findall(r"^\s*keepalive_timeout\s+(\d+)s;", NGINX_CONF.read_text().split("upstream darkroom", 1)[1]
                         .split("}", 1)[0], re.M)
    settings: dict[str, Any] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), settings)
    assert settings["keepalive"] > int(nginx)


@contextmanager
def database_refusing_connections(url: str):
    """The database itself refuses every connection (its open ones are ended) until the block ends."""
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                         {"name": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_readiness_fails_on_every_node_while_the_database_refuses_and_recovers(cluster):
    nodes = [Client(node.port) for node in cluster.nodes]
    assert [ready(node)[0] for node in nodes] == [200, 200]
    assert cluster.client().get("/readyz")[0] == 200  # through the proxy, from this machine
    with database_refusing_connections(cluster.database_url):
        for node in nodes:
            status, body = node.get("/readyz")
            database = json.loads(body)["checks"]["database"]
            assert status == 503 and database["status"] == "failed", database
            assert node.get("/healthz")[0] == 200  # alive all along: restarting it would not help
        assert cluster.client().get("/readyz")[0] == 503
    assert [ready(node)[0] for node in nodes] == [200, 200]
    status, body = cluster.client().upload(image_bytes(), ["invert"])
    assert status == 201, body


def test_readiness_and_metrics_are_for_this_host_only_through_the_proxy(cluster):
    here, elsewhere = cluster.client(), cluster.client(address="127.0.0.2")  # another machine, as nginx sees it
    assert here.get("/readyz")[0] == 200
    status, body = here.get("/metrics")
    assert status == 200 and b"darkroom_storage_free_bytes" in body
    for path in ("/readyz", "/metrics"):
        assert elsewhere.get(path)[0] == 403  # nginx's refusal
    assert elsewhere.get("/healthz")[0] == 200  # liveness tells a stranger nothing
