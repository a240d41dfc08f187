"""/metrics: refused to strangers, and after real jobs of every outcome under gunicorn with two
workers, counts that add up across both workers."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import Client, Server, wait_for
from tests.support.photos import image_bytes

pytestmark = pytest.mark.gunicorn


def sample(text, name, **labels):
    """The value of one sample in Prometheus's text format (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_are_refused_to_other_addresses_and_to_a_wrong_token(make_app):
    app = make_app(DARKROOM_METRICS_TOKEN="s3cret-for-the-scraper")
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # from 127.0.0.1, allowed by default
    stranger = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=stranger).status_code == 403
    assert client.get("/metrics", environ_base=stranger, headers={"Authorization": "Bearer nope"}).status_code == 403
    scraped = client.get("/metrics", environ_base=stranger, headers={"Authorization": "Bearer s3cret-for-the-scraper"})
    assert scraped.status_code == 200 and scraped.mimetype == "text/plain"
    assert "# TYPE darkroom_jobs_total counter" in scraped.get_data(as_text=True)


def scrape(client):
    """The text of one /metrics scrape."""
    status, body = client.get("/metrics")
    assert status == 200
    return body.decode()


OUTCOMES = {  # ops (or a file), and the outcome a job of them counts as
    "done": (["invert"], None),
    "refused_damaged": (["invert"], image_bytes((400, 300))[:600]),
    "refused_unsupported_format": (["invert"], b"just some text, not an image\n" * 10),
    "failed": (["explode"], None),
    "killed": (["die"], None),
    "out_of_memory": (["hog"], None),
    "timeout": (["stall"], None),
}


def test_after_real_jobs_of_every_outcome_the_counts_add_up_over_both_workers():
    env = {"FLASK_DARKROOM_PLUGINS": '["tests.support.faulty_ops"]', "FLASK_HANDOFF_TIMEOUT": "2",
           "FLASK_DARKROOM_CLIENT_LIMITS": "true",
           "FLASK_DARKROOM_CLIENT_JOB_RATE": "16 per minute"}
    # Sync workers take one request at a time: of two requests sent at once, each worker gets one.
    with Server("gunicorn", workers=2, threads=1, env=env) as server:
        expected: dict[str, int] = {}

        def send(job):
            outcome, (ops, data) = job
            status, body = Client(server.port).upload(data if data is not None else image_bytes((64, 48)), ops)
            assert status < 600, body
            return outcome

        with ThreadPoolExecutor(2) as pool:
            for outcome in pool.map(send, list(OUTCOMES.items()) * 2):
                expected[outcome] = expected.get(outcome, 0) + 1
        clients = [Client(server.port), Client(server.port)]
        refused = 0
        while refused < 2:  # the job rate, counted by each worker alone (memory://): then 429s
            status, _ = clients[refused % 2].upload(image_bytes((64, 48)), ["invert"])
            refused += status == 429
            expected["done"] += status == 201

        def settled_scrape():  # a worker may count a job or a refusal just after its answer went out
            text = scrape(clients[1])
            jobs = sum(sample(text, "darkroom_jobs_total", outcome=outcome) for outcome in OUTCOMES)
            refusals = sample(text, "darkroom_limit_refusals_total", limit="job_rate")
            return text if (jobs, refusals) == (sum(expected.values()), refused) else ""

        text = wait_for(settled_scrape, what="every job and refusal in the metrics")
        workers = {int(pid) for pid in re.findall(r'darkroom_web_rss_bytes\{pid="(\d+)"\}', text)}
        assert len(workers) == 2  # both workers' numbers are in one scrape
        assert all(sample(text, "darkroom_web_rss_bytes", pid=pid) > 0 for pid in workers)  # both served
        counted = {outcome: sample(text, "darkroom_jobs_total", outcome=outcome) for outcome in OUTCOMES}
        assert counted == expected
        assert sample(text, "darkroom_limit_refusals_total", limit="job_rate") == refused
        calls = sum(sample(text, "handoff_calls_total", fn="imaging.job.run_job", status=s)
                    for s in ("ok", "raised", "died", "timeout"))
        # Every job reached a child but the text file and the cut-off JPEG, refused from their headers.
        assert calls == sum(expected.values()) - expected["refused_unsupported_format"] - expected["refused_damaged"]
        assert sample(text, "handoff_call_seconds_count") == calls
        assert sample(text, "handoff_child_peak_rss_bytes_count") >= expected["done"]
        assert sample(text, "handoff_children", state="slots") == 8  # 4 per worker, both alive
        assert sample(text, "darkroom_stored_bytes_total") > 0
        assert sample(text, "darkroom_storage_free_bytes") > sample(text, "darkroom_storage_reserve_bytes") > 0
        print("\n".join(line for line in text.splitlines()
                        if line.startswith(("darkroom_jobs_total", "darkroom_limit", "handoff_calls_total",
                                            "handoff_children"))))
