"""The report page in a real browser (headless Chromium; CI installs it, see .ci/run): it renders
offline from file://, its legend is there, its JS filter, set from the URL, hides every row,
picture and count but the failures', and no link on it is broken, also after the report folder
is moved."""
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from inspect_ad.reports.batch import HTML, inspect_images
from inspect_ad.scoring.calibration import FAIL

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Chromium (Debian: apt-get install chromium; .ci/run installs it)")


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    done = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(HTMLParser):
    """What the tests read of the DOM: each table row, card and per-folder count cell as (decision,
    hidden); every link and picture source; the element ids; the legend's text."""

    def __init__(self, dom: str):
        super().__init__()
        self.rows, self.cards, self.counts, self.urls, self.ids = [], [], [], [], set()
        self.legend, self._in_legend = "", 0
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids.add(a.get("id"))
        if "data-decision" in a:
            kind = self.rows if tag == "tr" else self.cards if "card" in (a.get("class") or "") else self.counts
            kind.append((a["data-decision"], "hidden" in a))
        self.urls += [a[k] for k in ("href", "src") if k in a]
        if a.get("id") == "legend" or self._in_legend and tag == "div":
            self._in_legend += 1

    def handle_endtag(self, tag):
        if self._in_legend and tag == "div":
            self._in_legend -= 1

    def handle_data(self, data):
        if self._in_legend:
            self.legend += data


def broken_links(page: Page, html_file: Path) -> list[str]:
    """Links and pictures of the page that lead nowhere: a file that is not there, an anchor
    without its element."""
    base = html_file.as_uri()
    broken = []
    for url in page.urls:
        if url.startswith("#"):
            if url[1:] not in page.ids and not url.startswith("#filter="):
                broken.append(url)
            continue
        target = urlparse(urljoin(base, url))
        if target.scheme != "file" or not Path(unquote(target.path)).exists():
            broken.append(url)
    return broken


@pytest.fixture(scope="module")
def report(qa_tree, tmp_path_factory):
    """A report of the tree (failures, passes, an unreadable file) with the photos copied in."""
    root, det = qa_tree
    out = tmp_path_factory.mktemp("browser") / "rep"
    inspect_images(det, [root / "parts"], out, progress=False, copy_photos=True)
    return out


def test_the_filter_from_the_url_shows_only_the_failures_everywhere(report, tmp_path):
    page = Page(dump_dom((report / HTML).as_uri() + "#filter=FAIL", tmp_path / "profile"))
    fails = sum(d == FAIL for d, _ in page.rows)
    assert len(page.rows) == 5 and 0 < fails < 5  # the tree has failures, passes and an unreadable file
    for shown in (page.rows, page.cards, page.counts):
        assert shown and all(hidden == (d != FAIL) for d, hidden in shown)
    assert any(d == FAIL for d, _ in page.cards) and any(d != FAIL for d, _ in page.cards)   # some were hidden


def test_the_legend_explains_colours_outline_number_and_boxes(report, tmp_path):
    page = Page(dump_dom((report / HTML).as_uri(), tmp_path / "profile"))
    assert "FAIL threshold" in page.legend and "outline (pixel threshold)" in page.legend
    assert "normalised score" in page.legend and "White outline" in page.legend and "[x0, y0, x1, y1]" in page.legend
    assert "colour-bar" in page.ids


def test_no_link_is_broken_before_or_after_the_report_folder_is_moved(report, tmp_path):
    moved = tmp_path / "elsewhere" / "qa"
    for folder in (report, moved):
        if folder == moved:
            shutil.copytree(report, moved)   # a copy: the module's other tests read the original
        page = Page(dump_dom((folder / HTML).as_uri(), tmp_path / f"profile{folder == moved}"))
        assert len(page.urls) > 20 and broken_links(page, folder / HTML) == []


def test_without_copies_the_links_survive_moving_report_and_photos_together(qa_tree, tmp_path):
    root, det = qa_tree
    shutil.copytree(root / "parts", tmp_path / "line" / "parts")
    inspect_images(det, [tmp_path / "line" / "parts"], tmp_path / "line" / "rep", progress=False)
    shutil.move(tmp_path / "line", tmp_path / "archive")
    page = Page(dump_dom((tmp_path / "archive" / "rep" / HTML).as_uri(), tmp_path / "profile"))
    assert broken_links(page, tmp_path / "archive" / "rep" / HTML) == []
