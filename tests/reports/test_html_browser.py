"""The report page in a real browser (headless Chromium, one launch): it renders offline from
file:// and its JS filter, set from the URL, hides every row but the failures."""
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from inspect_ad.reports.batch import HTML, inspect_images
from inspect_ad.scoring.calibration import FAIL

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Chromium at /usr/bin/chromium (Debian: apt-get install chromium)")


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    done = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class ResultRows(HTMLParser):
    """(decision, hidden) of each row of the results table."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-decision" in a:
            self.rows.append((a["data-decision"], "hidden" in a))


def test_the_filter_from_the_url_shows_only_the_failures(qa_tree, tmp_path):
    root, det = qa_tree
    inspect_images(det, [root / "parts"], tmp_path / "rep", progress=False)
    dom = dump_dom((tmp_path / "rep" / HTML).as_uri() + "#filter=FAIL", tmp_path / "profile")
    parser = ResultRows()
    parser.feed(dom)
    fails = sum(d == FAIL for d, _ in parser.rows)
    assert len(parser.rows) == 5 and 0 < fails < 5  # the tree has failures, passes and an unreadable file
    assert all(hidden == (d != FAIL) for d, hidden in parser.rows)
    assert f"showing {fails} of 5" in dom and "nearest the threshold" in dom.lower()
