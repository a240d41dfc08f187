"""Gunicorn settings for ``make serve``; every value can be overridden from the environment."""

import os
import shutil
import tempfile

bind = os.environ.get("DARKROOM_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("DARKROOM_WORKERS", os.cpu_count() or 2))
threads = int(os.environ.get("DARKROOM_THREADS", 4))
# Threads let one worker wait on several children at once; with one thread
# the plain sync worker takes one request at a time.
worker_class = "gthread" if threads > 1 else "sync"
# Longer than the job timeout (HANDOFF_TIMEOUT, 60 s) plus the queue wait
# (10 s), so gunicorn never kills a worker that is waiting for a child.
timeout = int(os.environ.get("DARKROOM_WORKER_TIMEOUT", 120))
graceful_timeout = 75
# Idle connections stay open longer than the proxy keeps them (deploy/nginx.conf,
# keepalive_timeout in the upstream block): the proxy must be the one that closes
# them. With gunicorn's default of 2 s, nginx could send a request on a connection
# gunicorn was closing; nginx then counts that node as failed and sends it nothing
# for 10 s.
keepalive = 75
# Each worker starts its own forkserver and children lazily, after the fork:
# the app must not be loaded in the master.
preload_app = False
max_requests = int(os.environ.get("DARKROOM_MAX_REQUESTS", 0))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("DARKROOM_ACCESS_LOG", "-")
errorlog = "-"

# Prometheus's multiprocess mode: every worker writes its metrics into one folder, and a scrape
# of any worker adds them all up (web/metrics.py). raw_env puts it in the workers' environment
# before they import prometheus_client; the folder is this server's own, emptied when it starts.
METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
    tempfile.gettempdir(), f"darkroom-metrics-{bind.replace(':', '-').replace('/', '-')}")
raw_env = [f"PROMETHEUS_MULTIPROC_DIR={METRICS_DIR}"]


def on_starting(server):
    """Start the metrics afresh; warn when the workers would each count the per-client limits alone."""
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    os.makedirs(METRICS_DIR)
    shared = os.environ.get("FLASK_RATELIMIT_STORAGE_URI", "memory://") != "memory://"
    limits_on = os.environ.get("FLASK_DARKROOM_CLIENT_LIMITS", "true").lower() != "false"
    if workers > 1 and limits_on and not shared:
        server.log.warning(
            "%d workers count the per-client limits separately (RATELIMIT_STORAGE_URI is memory://): "
            "a client gets them %d times. Set FLASK_RATELIMIT_STORAGE_URI=redis://host:6379 to share them.",
            workers, workers,
        )


def child_exit(server, worker):
    """A worker that has exited no longer counts in the live gauges (children busy, waiting)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
