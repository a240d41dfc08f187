"""Run the README's ten lines as written: ``flask --app app run``, then ``curl localhost:5000/multi``.

Run with the Python of a fresh environment holding only the wheel (and what it depends on)::

    python readme_check.py path/to/README.md
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def main() -> int:
    readme = Path(sys.argv[1]).read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    answer = re.search(r"answers\s+`(\{.*?\})`", readme, re.S)
    assert code and answer, "the README's example or the answer it promises is gone"
    source = code.group(1)
    expected = json.loads(answer.group(1))
    work = Path(tempfile.mkdtemp(prefix="handoff-readme-"))
    (work / "app.py").write_text(source)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flask = Path(sys.executable).parent / "flask"
    server = subprocess.Popen([str(flask), "--app", "app", "run", "--port", str(port)], cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/multi", timeout=30) as r:
                    answer = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=20)[0].decode(errors="replace")
    print(f"GET /multi answered {answer}; the README says {expected}")
    if answer != expected:
        print(output)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
