"""The batch report's page, ``index.html``, rendered from the report's rows.

Sections: counts, the calibration, counts per input folder, the failure gallery, the parts nearest
the threshold (either side, with pictures: see ``batch.Pictures``), and the table of all rows
(sortable, with an All/PASS/FAIL/INVALID/ERROR filter that ``index.html#filter=FAIL`` also sets, so
a filtered view can be bookmarked or sent).

The page is one self-contained file (inline CSS and JS, nothing fetched) so it works offline from
file://; without JS every row simply stays visible. Links to the original images are relative to the
report folder (they survive moving report and images together), or file:// URLs where no relative
path exists. Every value from a row or the bundle is HTML-escaped, and every URL percent-encoded, so a
crafted file name can inject neither markup nor a ``javascript:`` link.
"""
from __future__ import annotations

import html
import json
import os
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from inspect_ad.scoring.calibration import ERROR, FAIL, INVALID, PASS

# pictures per row, written next to the report as thumbs/NNNNNN + suffix
IMAGE, HEAT, OVERLAY = "_image.jpg", "_heat.jpg", "_overlay.jpg"
DECISIONS = (PASS, FAIL, INVALID, ERROR)
NEAR = 20  # parts shown nearest the threshold


def _fmt(v, spec: str = ".5g") -> str:
    """Any value as HTML-safe text: every value is escaped, whatever a crafted bundle or row holds."""
    text = "" if v is None else format(v, spec) if isinstance(v, float) else str(v)
    return html.escape(text, quote=True)


def _attr(url: str) -> str:
    return html.escape(url, quote=True)


def file_url(row: dict, out: Path) -> str:
    """URL of the row's original image as seen from the report folder."""
    target = row.get("resolved") or os.path.abspath(row["path"])
    try:
        rel = os.path.relpath(target, os.path.abspath(out))
    except ValueError:  # another drive on Windows: no relative path
        return Path(target).as_uri()
    # ':' is encoded too, so no name reads as a URL scheme; a name that is not UTF-8 by its own bytes
    return quote(os.fsencode(Path(rel).as_posix()))


def _thumb(row: dict, suffix: str) -> str:
    return quote(f"{row['thumb']}{suffix}")


def _overlay(row: dict, out: Path) -> str | None:
    """The full-size heat overlay when one was written (FAILs), else the heat thumbnail."""
    if not row.get("thumb"):
        return None
    return _thumb(row, OVERLAY) if (out / f"{row['thumb']}{OVERLAY}").is_file() else _thumb(row, HEAT)


def _decision(row: dict) -> str:
    return f'<span class="{_fmt(row["decision"])}">{_fmt(row["decision"])}</span>'


def _card(row: dict, out: Path) -> str:
    src = _attr(file_url(row, out))
    if row.get("thumb"):
        pics = (f'<a href="{src}"><img src="{_attr(_thumb(row, IMAGE))}" alt="image"></a> '
                f'<a href="{_attr(_overlay(row, out))}"><img src="{_attr(_thumb(row, HEAT))}" alt="heatmap"></a>')
    else:
        pics = '<div class="nopic">no picture</div>'
    return (f'<div class="card">{pics}<br>{_decision(row)} {_fmt(row["normalized_score"], ".3f")} '
            f'<a href="{src}">{_fmt(row["path"])}</a></div>')


def _folder(row: dict) -> str:
    return row.get("folder", "(not recorded)")


def _folder_counts(rows: list[dict]) -> str:
    count = Counter((_folder(r), r["decision"]) for r in rows)
    folders = sorted({f for f, _ in count})
    head = "".join(f"<th>{d}</th>" for d in ("folder",) + DECISIONS + ("total",))
    body = "".join(
        f"<tr><td>{_fmt(f)}</td>" + "".join(f'<td class="n">{count[f, d] or ""}</td>' for d in DECISIONS)
        + f'<td class="n">{sum(count[f, d] for d in DECISIONS)}</td></tr>' for f in folders)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def near_threshold(rows: list[dict], n: int) -> list[dict]:
    """The ``n`` judged parts whose normalised score is closest to 0.5, highest score first."""
    judged = [r for r in rows if r["decision"] in (PASS, FAIL) and r.get("normalized_score") is not None
              and not r.get("error")]
    closest = sorted(judged, key=lambda r: abs(r["normalized_score"] - 0.5))[:n]
    return sorted(closest, key=lambda r: -r["normalized_score"])


def _near_section(rows: list[dict], out: Path, n: int) -> str:
    near = near_threshold(rows, n)
    parts = [f"<h2 id='near'>Nearest the threshold ({len(near)} closest to normalised 0.5, either side)</h2>"]
    for decision, side in ((FAIL, "just above: FAIL"), (PASS, "just below: PASS")):
        cards = "".join(_card(r, out) for r in near if r["decision"] == decision)
        parts.append(f"<h3>{side}</h3>{cards or '<p>none</p>'}")
    return "".join(parts)


_COLUMNS = ("#", "picture", "decision", "normalized_score", "score", "folder", "path", "defect_area",
            "n_regions", "boxes", "error")


def _cell(row: dict, column: str, out: Path) -> str:
    if column == "picture":
        return (f'<a href="{_attr(file_url(row, out))}"><img class="mini" loading="lazy" '
                f'src="{_attr(_thumb(row, IMAGE))}" alt=""></a>' if row.get("thumb") else "")
    if column == "decision":
        return _decision(row)
    if column == "path":
        heat = _overlay(row, out)
        return (f'<a href="{_attr(file_url(row, out))}">{_fmt(row["path"])}</a>'
                + (f' <a class="heat" href="{_attr(heat)}">heatmap</a>' if heat else ""))
    if column == "folder":
        return _fmt(_folder(row))
    return _fmt(json.dumps(row.get(column)) if column == "boxes" else row.get(column))


def _results_table(rows: list[dict], out: Path) -> str:
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = "".join(f'<tr data-decision="{_fmt(r["decision"])}"><td>{i}</td>'
                   + "".join(f"<td>{_cell(r, c, out)}</td>" for c in _COLUMNS[1:]) + "</tr>"
                   for i, r in enumerate(rows))
    return f'<table id="results" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _filter_buttons(count: Counter, total: int) -> str:
    buttons = "".join(f' <button data-show="{d}">{d} ({count[d]})</button>' for d in DECISIONS)
    return (f'<p id="filter">Show: <button data-show="ALL">All ({total})</button>{buttons} '
            f'<span id="shown"></span></p>')


_SCRIPT = """<script>
// sort: numbers before text, empty cells last; each table sorts by its own column index
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], col = th.cellIndex, asc = th.dataset.asc !== '1';
  const key = r => { const t = r.cells[col].textContent.trim(), n = Number(t);
    return t === '' ? [2, ''] : isNaN(n) ? [1, t] : [0, n]; };
  [...body.rows].map(r => [key(r), r]).sort(([x], [y]) => (x[0] - y[0]) ||
    (x[1] > y[1] ? 1 : x[1] < y[1] ? -1 : 0) * (asc ? 1 : -1)).forEach(([, r]) => body.appendChild(r));
  th.dataset.asc = asc ? '1' : '0';
}));
// filter: index.html#filter=FAIL shows the FAIL rows only; the buttons set the hash
const rows = [...document.querySelectorAll('#results tbody tr')];
const buttons = [...document.querySelectorAll('#filter button')];
function applyFilter(show) {
  rows.forEach(r => { r.hidden = show !== 'ALL' && r.dataset.decision !== show; });
  buttons.forEach(b => b.setAttribute('aria-pressed', String(b.dataset.show === show)));
  document.getElementById('shown').textContent = `showing ${rows.filter(r => !r.hidden).length} of ${rows.length}`;
}
buttons.forEach(b => b.addEventListener('click', () => { location.hash = 'filter=' + b.dataset.show; }));
// a hash without a filter (a link to a section) leaves the filter as it is
function fromHash(otherwise) {
  const m = /filter=(\\w+)/.exec(location.hash);
  const show = m && buttons.some(b => b.dataset.show === m[1]) ? m[1] : otherwise;
  if (show) applyFilter(show);
}
window.addEventListener('hashchange', () => fromHash(null));
fromHash('ALL');
</script>"""

_STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1em}"
          "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}th{cursor:pointer;background:#eee}"
          "td.n{text-align:right}.FAIL{color:#b00;font-weight:bold}.ERROR,.INVALID{color:#a60}"
          "img.mini{height:48px;display:block}a.heat{font-size:11px}"
          ".card{display:inline-block;margin:4px;font-size:11px;vertical-align:top;max-width:330px;"
          "word-break:break-all}.nopic{width:160px;height:40px;color:#888;border:1px dashed #ccc}"
          "#filter button[aria-pressed=true]{background:#333;color:#fff}")


_CONTENTS = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in (
    ("folders", "per folder"), ("failures", "failures"), ("near", "nearest the threshold"),
    ("results-title", "all results")))


def render_html(rows: list[dict], cal: dict, out: Path, gallery: int = 200, near: int = NEAR) -> str:
    """The whole page; ``out`` is the report folder, which links and thumbnails are relative to."""
    count = Counter(r["decision"] for r in rows)
    fails = sorted((r for r in rows if r["decision"] == FAIL and r.get("thumb")),
                   key=lambda r: -(r["normalized_score"] or 0))[:gallery]
    c = {k: _fmt(cal.get(k), spec) for k, spec in (("target_frr", "g"), ("n", ""), ("date", ""),
                                                  ("image_threshold", ".5g"), ("pixel_threshold", ".5g"),
                                                  ("min_area", ""), ("guarantee", ""))}
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>inspect-ad report</title>"
            f"<style>{_STYLE}</style></head><body><h1>inspect-ad report</h1>"
            f"<p><b>{len(rows)}</b> images: <b>{count[PASS]}</b> PASS, <b class='FAIL'>{count[FAIL]}</b> FAIL, "
            f"<b class='INVALID'>{count[INVALID]}</b> invalid input, <b class='ERROR'>{count[ERROR]}</b> "
            f"unreadable.</p>"
            f"<p>Calibration: target false-reject rate {c['target_frr']} on {c['n']} good images "
            f"({c['date']}); image threshold {c['image_threshold']} "
            f"(normalised 0.5), pixel threshold {c['pixel_threshold']}, min area {c['min_area']} px.<br>"
            f"{c['guarantee']}</p>"
            f"<p>{_CONTENTS}</p><h2 id='folders'>Per folder</h2>{_folder_counts(rows)}"
            f"<h2 id='failures'>Failures ({count[FAIL]}; highest normalised score first, at most {gallery})</h2>"
            f"{''.join(_card(r, out) for r in fails)}"
            f"{_near_section(rows, out, near)}"
            f"<h2 id='results-title'>All results (click a column to sort)</h2>{_filter_buttons(count, len(rows))}"
            f"{_results_table(rows, out)}{_SCRIPT}</body></html>\n")
