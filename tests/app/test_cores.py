"""A job writes its outputs on the cores no other job of the machine has claimed, within its memory."""

import io
import json
import logging
from contextlib import ExitStack

import pytest
from PIL import Image

from storage.cores import claimed_cores, machine_cores
from tests.support.jobs import upload
from tests.support.photos import decode

OPS = ["blur", "sharpen", "edges", "sepia"]


def noise_jpeg(size):
    """A photo-like JPEG of noise (the costliest content to filter and encode)."""
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def threads_of_jobs(caplog):
    return [json.loads(r.getMessage())["threads"] for r in caplog.records if r.name == "darkroom.jobs"]


def test_each_job_counts_the_threads_of_the_others(tmp_path):
    cores = machine_cores()
    assert cores >= 2, "this test needs a machine of two cores or more"
    with claimed_cores(8, tmp_path) as alone:
        assert alone == min(8, cores)
    with ExitStack() as others:
        one_thread_jobs = [others.enter_context(claimed_cores(1, tmp_path)) for _ in range(cores - 1)]
        assert one_thread_jobs == [1] * (cores - 1)
        with claimed_cores(8, tmp_path) as last_core:
            assert last_core == 1
            with claimed_cores(8, tmp_path) as none_left:
                assert none_left == 1  # a job always runs, on one thread
    with claimed_cores(8, tmp_path) as again:  # every claim ended with its block
        assert again == min(8, cores)


def test_a_slot_is_never_opened_through_a_link_and_a_job_without_slots_runs_on_one_thread(tmp_path):
    folder = tmp_path / "cores"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (folder / "slot-0.lock").symlink_to(elsewhere)  # planted by another user of the shared folder
    with claimed_cores(8, folder) as threads:
        assert threads == min(8, machine_cores() - 1)  # the planted slot counts as taken
    assert not elsewhere.exists()
    (tmp_path / "a-file").write_text("")
    with claimed_cores(8, tmp_path / "a-file" / "cores") as threads:  # no folder can be made there
        assert threads == 1


def test_a_job_takes_the_cores_no_other_job_claimed(make_app, caplog, tmp_path):
    """Alone, it takes a core per output up to the machine's; among jobs of one thread each, it runs on one."""
    assert machine_cores() >= 2, "this test needs a machine of two cores or more"
    # A folder of its own: jobs left running by other tests on this machine do not hold its cores.
    cores = tmp_path / "cores"
    client = make_app(DARKROOM_LOG_FORMAT="json", DARKROOM_CORES_DIR=str(cores)).test_client()
    photo = noise_jpeg((600, 400))
    with caplog.at_level(logging.INFO, logger="darkroom.jobs"):
        alone = upload(client, photo, ops=OPS)
        with ExitStack() as others:  # as other jobs' children would, from this process
            held = [others.enter_context(claimed_cores(1, cores)) for _ in range(machine_cores())]
            crowded = upload(client, photo, ops=OPS)
        assert held == [1] * machine_cores()
        one_output = upload(client, photo, ops=["sepia"])
    assert [r.status_code for r in (alone, crowded, one_output)] == [201, 201, 201]
    assert threads_of_jobs(caplog) == [min(len(OPS), machine_cores()), 1, 1]
    # Made on several threads or on one, the outputs are the same images.
    for parallel, serial in zip(alone.get_json()["outputs"], crowded.get_json()["outputs"], strict=True):
        assert parallel["op"] == serial["op"]
        assert decode(client.get(parallel["url"]).data).tobytes() == decode(client.get(serial["url"]).data).tobytes()


def test_an_operator_may_keep_a_job_to_one_thread(make_app, caplog):
    client = make_app(DARKROOM_LOG_FORMAT="json", DARKROOM_JOB_THREADS=1).test_client()
    with caplog.at_level(logging.INFO, logger="darkroom.jobs"):
        assert upload(client, noise_jpeg((600, 400)), ops=OPS).status_code == 201
    assert threads_of_jobs(caplog) == [1]


@pytest.mark.slow
def test_a_job_writes_one_output_at_a_time_where_its_memory_would_not_hold_more(make_app, caplog):
    """500 MB of address space holds one 24 MP output in progress, not two: the job runs on one thread."""
    client = make_app(DARKROOM_LOG_FORMAT="json", HANDOFF_MEMORY_MB=500).test_client()
    with caplog.at_level(logging.INFO, logger="darkroom.jobs"):
        response = upload(client, noise_jpeg((6000, 4000)), ops=OPS)
    assert response.status_code == 201, response.get_json()
    assert threads_of_jobs(caplog) == [1]
