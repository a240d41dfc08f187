"""Prometheus metrics at ``/metrics``, for operators only.

Counted where they happen: jobs by outcome (web/jobs.py), every handoff call
(through ``handoff.on_call``), limit refusals (web/errors.py), bytes stored.
Under gunicorn every worker writes its numbers to ``PROMETHEUS_MULTIPROC_DIR``
(gunicorn.conf.py sets it) and a scrape of any worker adds them all up
(prometheus-client's multiprocess mode); with one process, its own registry.

``/metrics`` is refused (403) unless the request comes from an address in
``DARKROOM_METRICS_ALLOW`` or carries ``Authorization: Bearer`` with
``DARKROOM_METRICS_TOKEN``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import shutil
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, request
from flask.typing import ResponseReturnValue
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

import handoff

bp = Blueprint("metrics", __name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # gunicorn.conf.py's, normally made already
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

MB = 1024**2
JOBS = Counter("darkroom_jobs", "Jobs by outcome: done, refused_<kind>, failed, timeout, killed, "
               "out_of_memory, busy, storage_full", ["outcome"])
STORED = Counter("darkroom_stored_bytes", "Bytes stored by accepted jobs (their sources and outputs)")
REFUSALS = Counter("darkroom_limit_refusals", "Requests (and files of a form) refused by a limit: job_rate, "
                   "zip_rate, bytes, session_quota, disk_reserve, new_session (a session not started)", ["limit"])
CALLS = Counter("handoff_calls", "handoff.run calls by function and status", ["fn", "status"])
CALL_SECONDS = Histogram("handoff_call_seconds", "Whole handoff.run calls (queue wait included)",
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
QUEUE_SECONDS = Histogram("handoff_queue_wait_seconds", "How long a call waited for a free child slot",
                          buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30))
CHILD_PEAK = Histogram("handoff_child_peak_rss_bytes", "Peak RSS of each call's child",
                       buckets=tuple(m * MB for m in (32, 64, 128, 256, 512, 1024, 2048, 4096)))
CHILDREN = Gauge("handoff_children", "Child slots of the web processes: busy (running a call), waiting "
                 "(started, ready for one), slots (all)", ["state"], multiprocess_mode="livesum")
WEB_RSS = Gauge("darkroom_web_rss_bytes", "Resident memory of each web process", multiprocess_mode="all")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def count_job(outcome: str) -> None:
    """One job ended: ``done``, ``refused_<kind>``, ``failed``, ``timeout``, ``killed``, ``out_of_memory``..."""
    JOBS.labels(outcome).inc()


def count_refusal(limit: str, count: int = 1) -> None:
    REFUSALS.labels(limit).inc(count)


def count_stored(nbytes: int) -> None:
    STORED.inc(nbytes)


def _on_call(record: handoff.CallRecord) -> None:
    CALLS.labels(record["fn"], record["status"]).inc()
    CALL_SECONDS.observe(record["seconds"])
    if record["queue_seconds"] is not None:
        QUEUE_SECONDS.observe(record["queue_seconds"])
    if record["peak_rss_kb"]:
        CHILD_PEAK.observe(record["peak_rss_kb"] * 1024)


def _sample_process(response: Response) -> Response:
    """After each request, this process's children and memory as they are now (a scrape reads every process's)."""
    with open("/proc/self/statm") as f:
        WEB_RSS.set(int(f.read().split()[1]) * _PAGE)
    state = handoff.status()
    CHILDREN.labels("busy").set(state["busy"])
    CHILDREN.labels("slots").set(state["slots"])
    CHILDREN.labels("waiting").set(state.get("waiting", 0))
    return response


class _Storage:
    """The storage root's disk, read at scrape time (it is shared: the same for every process)."""

    def collect(self) -> Any:
        root = current_app.config["DARKROOM_STORAGE_ROOT"]
        os.makedirs(root, exist_ok=True)  # as the first upload would
        usage = shutil.disk_usage(root)
        yield GaugeMetricFamily("darkroom_storage_free_bytes", "Free space under the storage root", usage.free)
        reserve = GaugeMetricFamily("darkroom_storage_reserve_bytes", "DARKROOM_MIN_FREE_MB: uploads stop below it",
                                    current_app.config["DARKROOM_MIN_FREE_MB"] * MB)
        yield reserve


def _allowed() -> bool:
    token = current_app.config["DARKROOM_METRICS_TOKEN"]
    sent = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(allowed) for allowed in current_app.config["DARKROOM_METRICS_ALLOW"])


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Every process's numbers, in Prometheus's text format; 403 for anyone not allowed."""
    if not _allowed():
        abort(403, "The metrics are for the server's operators.")
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    storage = CollectorRegistry()
    storage.register(_Storage())
    body = generate_latest(registry) + generate_latest(storage)
    return Response(body, mimetype=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    """Count this app's handoff calls and sample its processes; serve /metrics."""
    with app.app_context():
        handoff.on_call(_on_call)
    app.after_request(_sample_process)
    app.register_blueprint(bp)
