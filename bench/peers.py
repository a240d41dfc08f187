"""Celery and RQ as the web tier's runner, for ``python -m bench peers``.

The same app, the same route and the same pipeline (``imaging.job.run_job``
through ``handoff``'s ``perform``): only the way a call reaches another
process changes. ``create_app()`` here is Darkroom's factory with two more
``HANDOFF_MODE`` values:

- ``celery``: ``apply_async`` to a Celery prefork worker over Redis (broker
  and result backend), then ``get()``. The worker runs with
  ``--max-tasks-per-child 1`` (a fresh child per task, as isolated as
  Darkroom) or Celery's default (children reused for every task).
- ``rq``: ``enqueue`` on an RQ queue, then a blocking ``latest_result()``.
  RQ's ``Worker`` forks a work horse for every job.

Both workers import the pipeline before their first job, as Darkroom's
forkserver does, so no system pays imports per job. Nothing here is part of
the app: Celery and RQ are pinned in ``requirements-bench.txt`` only.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import celery
import celery.exceptions
import redis
import rq
from rq.results import Result

import imaging
from handoff import _child, _runners
from handoff._child import Call, Outcome

# What Darkroom's forkserver preloads, loaded before any job here too (in
# the web tier, which does no pixel work, it only costs a constant few MB).
for _module in imaging.CHILD_PRELOAD:
    importlib.import_module(_module)

#: Where the peers meet: set by the benchmark for the web tier and the workers alike.
REDIS_URL = os.environ.get("DARKROOM_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
QUEUE = "darkroom-bench"

queue_app = celery.Celery("darkroom-bench", broker=REDIS_URL, backend=REDIS_URL)
queue_app.conf.update(
    # A Call holds a function and a Workspace: only pickle carries them (RQ's default too).
    task_serializer="pickle", result_serializer="pickle", accept_content=["pickle"],
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,  # a busy child does not hold jobs another could run
    task_acks_late=False,
    result_expires=600,
    broker_connection_retry_on_startup=True,
)


@queue_app.task(name="darkroom.perform")
def perform(call: Call) -> Outcome:
    return _child.perform(call)


class CeleryRunner(_runners.Runner):
    """Sends each call to the Celery worker and waits for its result."""

    def _run(self, call: Call, timeout: float, sent: threading.Event) -> Outcome:
        result = perform.apply_async((call,))
        sent.set()  # queued: the broker holds it now
        try:
            return cast(Outcome, {**result.get(timeout=timeout), "exitcode": 0})
        except celery.exceptions.TimeoutError:
            result.revoke(terminate=True)
            return {"status": "timeout", "exitcode": None}
        finally:
            result.forget()


class RQRunner(_runners.Runner):
    """Enqueues each call for RQ's workers and blocks until its result is written."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._queue = rq.Queue(QUEUE, connection=redis.Redis.from_url(REDIS_URL))

    def _run(self, call: Call, timeout: float, sent: threading.Event) -> Outcome:
        job = self._queue.enqueue(_child.perform, call, job_timeout=math.ceil(timeout), result_ttl=600)
        sent.set()  # queued: the broker holds it now
        result = job.latest_result(timeout=math.ceil(timeout))
        if result is None:
            job.cancel()
            return {"status": "timeout", "exitcode": None}
        if result.type != Result.Type.SUCCESSFUL:
            return {"status": "died", "exitcode": None, "detail": (result.exc_string or "")[-2000:]}
        return cast(Outcome, {**result.return_value, "exitcode": 0})


class PreloadedWorker(rq.Worker):
    """RQ's forking worker; being defined here, it makes ``rq worker-pool`` import the pipeline first."""


_runners.MODES.update(celery=CeleryRunner, rq=RQRunner)


def create_app():
    """Darkroom's app, able to hand calls to Celery or RQ (``FLASK_HANDOFF_MODE=celery`` or ``rq``)."""
    from app import create_app as darkroom_app

    return darkroom_app()


#: The benchmark's peer rows: how each worker is started (``{n}``: its concurrency).
WORKERS = {
    "celery": ["-m", "celery", "-A", "bench.peers:queue_app", "worker", "--pool", "prefork", "-c", "{n}",
               "--max-tasks-per-child", "1", "-O", "fair", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "-l", "WARNING"],
    "celery-reused": ["-m", "celery", "-A", "bench.peers:queue_app", "worker", "--pool", "prefork", "-c", "{n}",
                      "-O", "fair", "--without-gossip", "--without-mingle", "--without-heartbeat",
                      "-l", "WARNING"],
    "rq": ["-m", "rq.cli", "worker-pool", "-n", "{n}", "-u", "{redis}", "-w", "bench.peers.PreloadedWorker",
           "-q", QUEUE],
}


@dataclass
class Workers:
    """One peer's worker processes, started beside a web tier and stopped with it."""

    runner: str  # a key of WORKERS
    redis_url: str
    concurrency: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> Workers:
        args = [a.format(n=self.concurrency, redis=self.redis_url) for a in WORKERS[self.runner]]
        env = {**os.environ, **self.env, "DARKROOM_BENCH_REDIS_URL": self.redis_url,
               # Celery refuses pickle as root unless told; the benchmark's machine may only have root.
               "C_FORCE_ROOT": "true"}
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, *args], cwd=Path(__file__).resolve().parent.parent,
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        from bench.load import stop_process

        stop_process(self.proc)
