"""Every file of an outside corpus is processed or refused truthfully: no 500, no hang, nothing left behind."""


import pytest
from conftest import require
from corpus import Tally, corpus_dir, leftovers, pinned_files, rss_kb, upload_each


@pytest.fixture(scope="module")
def corpus():
    folder = corpus_dir()
    if not folder.is_dir():
        require(f"the outside corpus is missing at {folder} (set DARKROOM_CORPUS)")
    return pinned_files(folder)


def test_every_corpus_file_is_processed_or_refused_with_a_reason(make_app, corpus, capsys):
    app = make_app(DARKROOM_CLIENT_LIMITS=False, HANDOFF_TIMEOUT=30.0, HANDOFF_MAX_CHILDREN=2,
                   DARKROOM_SESSION_QUOTA_MB=100_000, DARKROOM_MIN_FREE_MB=0)
    tally = Tally()
    warm, rest = corpus[:100], corpus[100:]
    upload_each(app, warm, tally)
    before = rss_kb()
    upload_each(app, rest, tally)
    grown_mb = (rss_kb() - before) / 1024
    with capsys.disabled():
        print(f"\n{tally.report()}\nweb process RSS grew {grown_mb:.1f} MB over {len(rest)} files")
    assert tally.problems == [], "\n".join(tally.problems)
    assert leftovers(app.config["DARKROOM_STORAGE_ROOT"]) == []
    assert grown_mb < 40
