"""Every file of an outside corpus is processed or refused truthfully: no 500, no hang, nothing left behind.

The files go to a real gunicorn worker, as users run Darkroom, so its RSS is the web process's own.
"""

from pathlib import Path

import pytest

from tests.support import Server
from tests.support.corpus import Tally, corpus_dir, leftovers, pinned_files, upload_each
from tests.support.machine import require

#: The whole corpus is sent once before the web process's RSS is first read: the first file of a
#: kind imports a plugin or fills a pool, which is not growth with jobs. Then every MEASURED-th
#: file is sent again, and the RSS must stay where it was.
MEASURED = 4  # every 4th file goes again, for the web process's RSS after the whole corpus


@pytest.fixture(scope="module")
def corpus():
    folder = corpus_dir()
    if not folder.is_dir():
        require(f"the outside corpus is missing at {folder} (set DARKROOM_CORPUS)")
    return pinned_files(folder)


@pytest.mark.gunicorn
def test_every_corpus_file_is_processed_or_refused_with_a_reason(corpus, capsys):
    # One client sends every file: the per-client limits would refuse most of them.
    env = {"FLASK_HANDOFF_TIMEOUT": "30", "FLASK_HANDOFF_MAX_CHILDREN": "2", "FLASK_DARKROOM_MIN_FREE_MB": "0",
           "FLASK_DARKROOM_CLIENT_LIMITS": "false"}
    tally, again = Tally(), Tally()
    with Server("gunicorn", env=env) as server:
        upload_each(server.port, corpus, tally)
        before = server.rss_kb()
        upload_each(server.port, corpus[::MEASURED], again)
        grown_mb = (server.rss_kb() - before) / 1024
        left = leftovers(Path(server.tmp) / "workspaces")
        errors = [line for line in server.log_text().splitlines() if "Traceback" in line]
    with capsys.disabled():
        print(f"\n{tally.report()}\nweb process RSS {before / 1024:.1f} MB after the corpus, "
              f"then {grown_mb:+.1f} MB over {len(corpus[::MEASURED])} of its files again")
    assert tally.problems + again.problems == [], "\n".join(tally.problems + again.problems)
    assert sum(tally.answers.values()) == len(corpus)
    assert left == []
    assert errors == []
    assert grown_mb < 4
