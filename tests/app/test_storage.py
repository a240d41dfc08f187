"""Workspaces, manifests and locks, across real processes."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import filelock
import pytest

import storage
from handoff.files import write_json
from tests.support import ROOT


@pytest.fixture(params=sorted(storage.LOCK_TYPES))
def ws(request, tmp_path):
    return storage.Workspace(str(tmp_path), storage.new_id(), lock_type=request.param)


def job(job_id, created="2026-01-01T00:00:00", **fields):
    return {"id": job_id, "created": created, "source": {"file": "source.jpg"}, "outputs": [], **fields}


def record_many(ws, prefix, count):
    for i in range(count):
        job_id = f"{prefix}{i:04x}" + "0" * 12
        ws.create_job_dir(job_id)
        # 5 kB a job: 60 of them fold the log into a new snapshot several times.
        storage.record_job(ws, job(job_id, created=f"2026-01-01T00:00:{i:02d}", note="x" * 5000))


def test_concurrent_processes_lose_no_job(ws):
    ctx = multiprocessing.get_context("forkserver")
    procs = [ctx.Process(target=record_many, args=(ws, f"{p:04x}", 15)) for p in range(4)]
    for p in procs:
        p.start()
    seen = []  # a reader meanwhile, with no lock: never an error, never fewer jobs than before
    while any(p.is_alive() for p in procs):
        seen.append(len(storage.load_manifest(ws)["jobs"]))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert seen == sorted(seen)
    jobs = storage.read_manifest(ws)["jobs"]
    assert len(jobs) == 60
    assert [j["created"] for j in jobs] == sorted(j["created"] for j in jobs)
    assert len(list(ws.path.glob("manifest.*.log"))) <= 1, "every compaction removed the log it folded in"


def log_of(ws):
    return storage.manifest.log_path(ws, os.stat(ws.manifest_path).st_ino)


def test_a_job_is_a_line_appended_to_the_log_not_a_rewrite(ws):
    ids = [f"{i:024x}" for i in range(4)]
    ws.create_job_dir(ids[0])
    storage.record_job(ws, job(ids[0]))
    snapshot = os.stat(ws.manifest_path)
    for job_id in ids[1:]:
        ws.create_job_dir(job_id)
        storage.record_job(ws, job(job_id))
    storage.discard_job(ws, ids[1])
    after = os.stat(ws.manifest_path)
    assert (after.st_ino, after.st_mtime_ns) == (snapshot.st_ino, snapshot.st_mtime_ns)
    assert [json.loads(line) for line in log_of(ws).read_bytes().splitlines()][-1] == {"drop": [ids[1]]}
    assert [j["id"] for j in storage.read_manifest(ws)["jobs"]] == [ids[0], *ids[2:]]
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == [ids[0], *ids[2:]]


def test_a_long_log_is_folded_into_a_new_snapshot(ws):
    ids = [f"{i:024x}" for i in range(20)]
    for job_id in ids:  # 20 × 5 kB: past COMPACT_BYTES
        ws.create_job_dir(job_id)
        storage.record_job(ws, job(job_id, note="x" * 5000))
        assert log_of(ws).stat().st_size <= storage.manifest.COMPACT_BYTES if log_of(ws).exists() else True
    assert len(json.loads(ws.manifest_path.read_text())["jobs"]) >= 12, "the snapshot holds the folded jobs"
    assert len(list(ws.path.glob("manifest.*.log"))) <= 1
    assert [j["id"] for j in storage.read_manifest(ws)["jobs"]] == ids
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == ids


def test_a_line_torn_by_a_crash_is_ignored_then_cut_off(ws):
    ids = [f"{i:024x}" for i in range(3)]
    for job_id in ids[:2]:
        ws.create_job_dir(job_id)
        storage.record_job(ws, job(job_id))
    with open(log_of(ws), "ab") as f:
        f.write(b'{"add":{"id":"ab')  # a writer killed mid-line
    assert [j["id"] for j in storage.read_manifest(ws)["jobs"]] == ids[:2]
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == ids[:2]
    ws.create_job_dir(ids[2])
    storage.record_job(ws, job(ids[2]))
    assert all(json.loads(line) for line in log_of(ws).read_bytes().splitlines())
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == ids
    assert not list(ws.path.glob("manifest.*damaged*"))


def test_a_damaged_log_is_set_aside_and_the_manifest_rebuilt(ws, caplog):
    ids = [f"{i:024x}" for i in range(2)]
    for job_id in ids:
        ws.create_job_dir(job_id)
        storage.record_job(ws, job(job_id))
    with open(log_of(ws), "ab") as f:
        f.write(b"not json\n")
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == ids
    assert list(ws.path.glob("manifest.log.damaged-*"))
    assert "damaged manifest set aside" in caplog.text


def test_an_unchanged_manifest_is_parsed_once_and_a_changed_one_again(ws):
    for i in range(2):
        ws.create_job_dir(f"{i:024x}")
        storage.record_job(ws, job(f"{i:024x}"))
    first = storage.load_manifest(ws)
    assert storage.load_manifest(ws) is first  # one stat, no second parse
    ws.create_job_dir(f"{2:024x}")
    storage.record_job(ws, job(f"{2:024x}"))
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == [f"{i:024x}" for i in range(3)]
    storage.discard_job(ws, f"{0:024x}")
    assert len(storage.load_manifest(ws)["jobs"]) == 2
    # A file changed in place, not replaced (same inode): its new size and time are seen too.
    with open(ws.manifest_path, "w") as f:
        f.write("{not json")
    assert [j["id"] for j in storage.load_manifest(ws)["jobs"]] == [f"{i:024x}" for i in (1, 2)]
    assert list(ws.path.glob("manifest.json.damaged-*")), "the damaged file was read, set aside and rebuilt"


def test_lock_excludes_a_second_holder(ws):
    with ws.lock():
        other = storage.Workspace(ws.root, ws.id, ws.lock_type, lock_timeout=0.2)
        from filelock import Timeout

        with pytest.raises(Timeout):
            with other.lock():
                pass
    with storage.Workspace(ws.root, ws.id, ws.lock_type, lock_timeout=0.2).lock():
        pass


def test_native_lock_file_is_kept(tmp_path):
    ws = storage.Workspace(str(tmp_path), storage.new_id(), lock_type="file")
    storage.record_job(ws, job("a" * 16))
    assert ws.lock_path.exists()
    storage.clear_jobs(ws)
    assert ws.lock_path.exists()


def test_discard_and_clear(ws):
    for job_id in ("a" * 16, "b" * 16):
        ws.create_job_dir(job_id)
        storage.record_job(ws, job(job_id))
    assert storage.discard_job(ws, "a" * 16)
    assert not ws.job_dir("a" * 16).exists()
    assert not storage.discard_job(ws, "a" * 16)
    storage.clear_jobs(ws)
    assert storage.load_manifest(ws)["jobs"] == []
    assert not ws.job_dir("b" * 16).exists()


def writer(path):
    big = {"jobs": [job(f"{i:016x}") for i in range(2000)]}
    while True:
        write_json(path, big, durable=True)


@pytest.mark.slow
def test_killed_writer_never_leaves_a_torn_file(tmp_path):
    path = tmp_path / "manifest.json"
    write_json(path, {"jobs": []}, durable=True)
    ctx = multiprocessing.get_context("forkserver")
    for _ in range(8):
        proc = ctx.Process(target=writer, args=(path,))
        proc.start()
        time.sleep(0.15)
        assert proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        data = json.loads(path.read_text())
        assert len(data["jobs"]) in (0, 2000)


@pytest.mark.parametrize("bad", ["", "../x", "a.b" * 6, "a" * 15, "a" * 65, "/" + "a" * 16, "a\\" * 16])
def test_ids_from_outside_are_checked(tmp_path, bad):
    assert not storage.is_valid_id(bad)
    with pytest.raises(ValueError):
        storage.Workspace(str(tmp_path), bad)
    with pytest.raises(storage.NotFound):
        storage.Workspace(str(tmp_path), "a" * 16).job_dir(bad)


def test_resolve_file_refuses_escapes(tmp_path):
    ws = storage.Workspace(str(tmp_path), "a" * 16)
    job_dir = ws.create_job_dir("b" * 16)
    (job_dir / "ok.jpg").write_bytes(b"x")
    (tmp_path / "outside.txt").write_text("no")
    os.symlink(tmp_path / "outside.txt", job_dir / "link.jpg")
    assert ws.resolve_file("b" * 16, "ok.jpg") == (job_dir / "ok.jpg").resolve()
    for name in ("../outside.txt", "link.jpg", "/etc/passwd", "missing.jpg", "."):
        with pytest.raises(storage.NotFound):
            ws.resolve_file("b" * 16, name)


def test_a_soft_lock_of_a_killed_holder_is_reclaimed(tmp_path):
    ws = storage.Workspace(str(tmp_path), storage.new_id(), "soft")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, storage; ws = storage.Workspace(*sys.argv[1:4]); "
         "lock = ws.lock(); lock.acquire(); print('held', flush=True); time.sleep(60)", ws.root, ws.id, "soft"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert holder.stdout and holder.stdout.readline() == "held\n"
    with pytest.raises(filelock.Timeout):
        ws.lock().acquire(timeout=0.2)  # really held
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with ws.lock():
        assert time.monotonic() - started < 2


def test_the_strict_lock_type_is_refused(make_app):
    with pytest.raises(ValueError, match=r"DARKROOM_LOCK_TYPE must be one of \['file', 'soft'\], not 'strict'"):
        make_app(DARKROOM_LOCK_TYPE="strict")


def test_the_parsed_manifests_kept_are_bounded_in_bytes_and_the_one_in_use_is_kept(tmp_path):
    from storage.manifest import MANIFEST_CACHE_BYTES, _parsed

    # 12 manifests of about 60 kB of text each: together well past the bound.
    spaces = [storage.Workspace(str(tmp_path), storage.new_id()) for _ in range(12)]
    for i, space in enumerate(spaces):
        record_many(space, f"{i:08x}", 12)
    parsed = [storage.load_manifest(space) for space in spaces]
    assert _parsed.bytes_held <= MANIFEST_CACHE_BYTES
    assert storage.load_manifest(spaces[-1]) is parsed[-1]  # the newest is kept: no second parse
    assert storage.load_manifest(spaces[0]) is not parsed[0]  # the oldest went, and is parsed again
    # A manifest larger than the whole bound is still kept while it is the one in use.
    big = storage.Workspace(str(tmp_path), storage.new_id())
    record_many(big, "ffffffff", 60)
    first = storage.load_manifest(big)
    assert storage.load_manifest(big) is first and len(first["jobs"]) == 60
