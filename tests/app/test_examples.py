"""examples/seed_app.py, copied out of the repository and run as its own server over HTTP."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT, Client, free_port

EXPECTED_MULTI = (
    "Initial session data dict_items([('outside_function', 'outside')])\n"
    "Session after function call dict_items([('outside_function', 'outside'), ('inside_function', 'inside')])\n"
)
EXPECTED_VALUE = "Initial Value: Hello initial!\nValue after function call: inside\n"


def test_seed_app_answers_the_question_from_outside_the_repository(tmp_path):
    shutil.copy(ROOT / "examples" / "seed_app.py", tmp_path)  # imports handoff as an installed package
    port = free_port()
    flask = Path(sys.executable).parent / "flask"
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen([flask, "--app", "seed_app", "run", "--port", str(port)],
                              cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = Client(port)
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = client.get("/multi")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.1)
        assert (status, body.decode()) == (200, EXPECTED_MULTI)
        assert client.get("/value") == (200, EXPECTED_VALUE.encode())
    finally:
        server.terminate()
        server.wait(10)
    printed = (tmp_path / "server.log").read_text()
    assert EXPECTED_MULTI in printed and EXPECTED_VALUE in printed
