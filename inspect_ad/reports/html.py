"""The batch report's page, ``index.html``, rendered from the report's rows.

Sections: counts, the calibration, a legend (the heatmaps' colour scale with its thresholds, what
the outline, the number after PASS/FAIL and the boxes mean), then, under one filter bar
(All/PASS/FAIL/INVALID/ERROR, which ``index.html#filter=FAIL`` also sets, so a filtered view can be
bookmarked or sent): the counts per input folder, the failure gallery, the parts nearest the
threshold (either side, with pictures: see ``batch.Pictures``) and the table of all rows
(sortable). The filter applies to all four, says how many it shows, and scrolls the page to them.

The page is one self-contained file (inline CSS and JS, nothing fetched) so it works offline from
file://; without JS everything simply stays visible. What it shows (thumbnails, full-size
overlays) lives in the report folder and is linked relatively, so the folder can be moved; links
to the original photos are relative to the report folder (they survive moving report and photos
together), or file:// URLs where no relative path exists, or point at the report's own copies
(``inspect --copy-photos``), which survive moving the report alone. Every value from a row or the
bundle is HTML-escaped, and every URL percent-encoded, so a crafted file name can inject neither
markup nor a ``javascript:`` link.
"""
from __future__ import annotations

import html
import json
import os
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from inspect_ad.scoring.calibration import ERROR, FAIL, INVALID, PASS, min_area_text

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
    """URL of the row's photo as seen from the report folder: its copy in the report, if there is
    one, else the original."""
    if row.get("photo"):
        return quote(row["photo"])
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
    """The full-size heat overlay (reports written before every pictured row had one: the heat thumbnail)."""
    if not row.get("thumb"):
        return None
    return _thumb(row, OVERLAY) if (out / f"{row['thumb']}{OVERLAY}").is_file() else _thumb(row, HEAT)


def _decision(row: dict) -> str:
    return f'<span class="{_fmt(row["decision"])}">{_fmt(row["decision"])}</span>'


def _card(row: dict, out: Path) -> str:
    src = _attr(file_url(row, out))
    if row.get("thumb"):
        pics = (f'<a href="{src}"><img src="{_attr(_thumb(row, IMAGE))}" alt="photo"></a> '
                f'<a href="{_attr(_overlay(row, out))}"><img src="{_attr(_thumb(row, HEAT))}" alt="heatmap"></a>')
    else:
        pics = '<div class="nopic">no picture</div>'
    return (f'<div class="card" data-decision="{_fmt(row["decision"])}">{pics}<br>{_decision(row)} '
            f'{_fmt(row["normalized_score"], ".3f")} <a href="{src}">{_fmt(row["path"])}</a></div>')


def _gallery(cards: list[str]) -> str:
    return f'<div class="gallery">{"".join(cards)}<p class="none">none{" with this filter" if cards else ""}</p></div>'


def _folder(row: dict) -> str:
    return row.get("folder", "(not recorded)")


def _folder_counts(rows: list[dict]) -> str:
    count = Counter((_folder(r), r["decision"]) for r in rows)
    folders = sorted({f for f, _ in count})
    head = "<th>folder</th>" + "".join(f'<th data-decision="{d}">{d}</th>' for d in DECISIONS) + "<th>total</th>"
    body = "".join(
        f"<tr><td>{_fmt(f)}</td>" + "".join(f'<td class="n" data-decision="{d}">{count[f, d] or ""}</td>'
                                            for d in DECISIONS)
        + f'<td class="n">{sum(count[f, d] for d in DECISIONS)}</td></tr>' for f in folders)
    return f'<table id="folders-table" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def near_threshold(rows: list[dict], n: int) -> list[dict]:
    """The ``n`` judged parts whose normalised score is closest to 1 (the threshold), highest first."""
    judged = [r for r in rows if r["decision"] in (PASS, FAIL) and r.get("normalized_score") is not None
              and not r.get("error")]
    closest = sorted(judged, key=lambda r: abs(r["normalized_score"] - 1.0))[:n]
    return sorted(closest, key=lambda r: -r["normalized_score"])


def _near_section(rows: list[dict], out: Path, n: int) -> str:
    near = near_threshold(rows, n)
    parts = [f"<h2 id='near'>Nearest the threshold ({len(near)} closest to normalised 1, either side)</h2>"]
    for decision, side in ((FAIL, "just above: FAIL"), (PASS, "just below: PASS (no regions: a PASS has none)")):
        parts.append(f"<h3>{side}</h3>{_gallery([_card(r, out) for r in near if r['decision'] == decision])}")
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


def _colour_bar(scale: dict) -> str:
    """The heatmaps' colour scale as a CSS gradient, each mark a labelled line at its value."""
    stops = ", ".join(scale["colours"])
    lo, hi = scale["vmin"], scale["vmax"]
    # the FAIL line's label above the bar, the others below it: close marks would print over each other
    marks = "".join(f'<div class="mark" style="left:{100 * (v - lo) / (hi - lo):.2f}%"><span class='
                    f'"{"up" if v == 1.0 else "down"}">{_fmt(v, ".2g")} {_fmt(text)}</span></div>'
                    for v, text in sorted(scale["marks"]))
    ends = (f'<span class="end" style="left:0">{_fmt(lo, ".2g")}{" and below" if lo else ""}</span>'
            f'<span class="end" style="right:0">{_fmt(hi, ".2g")} and above</span>')
    return (f'<div id="colour-bar"><div class="bar" style="background:linear-gradient(to right, {stops})">'
            f'{marks}</div><div class="ends">{ends}</div></div>')


def _legend(cal: dict, scale: dict) -> str:
    return (f"<div id='legend'><h2>Legend</h2>"
            f"<p>Every picture pair is the photo and its heatmap; click the heatmap for a larger one over the "
            f"photo, the photo for the original. Heatmap colours: {_fmt(scale['label'])}:</p>{_colour_bar(scale)}"
            f"<ul><li><b>PASS/FAIL and the number after it</b>: the decision and the normalised score, the image "
            f"score ÷ the image threshold ({_fmt(cal.get('image_threshold'), '.5g')}). A part FAILs when it is "
            f"above 1 (for the default max-pooled score: when its heatmap goes above the 1.0 line anywhere); "
            f"else it PASSes.</li>"
            f"<li><b>White outline</b>: the defect regions the model found, on FAILs only: where the map is "
            f"above the pixel threshold ({_fmt(cal.get('pixel_threshold'), '.5g')}), around the peak, wherever "
            f"it passes the image threshold, and any region of at least {_fmt(min_area_text(cal))}. It is the "
            f"model's estimate, not a measured defect. A PASS has no regions.</li>"
            f"<li><b>boxes</b>: one <code>[x0, y0, x1, y1]</code> per region, in pixels of the photo from its "
            f"top-left corner, x1 and y1 exclusive, largest region first; <b>defect_area</b>: the pixels inside "
            f"the outlines; <b>n_regions</b>: how many.</li></ul></div>")


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
// filter: index.html#filter=FAIL shows the failures only, in the table, the galleries and the
// per-folder counts; the buttons set the hash, and a filter that is set scrolls the page to it
const rows = [...document.querySelectorAll('#results tbody tr')];
const cards = [...document.querySelectorAll('.card')];
const columns = [...document.querySelectorAll('#folders-table [data-decision]')];
const buttons = [...document.querySelectorAll('#filter button')];
function applyFilter(show) {
  const hide = e => { e.hidden = show !== 'ALL' && e.dataset.decision !== show; };
  rows.forEach(hide); cards.forEach(hide); columns.forEach(hide);
  document.querySelectorAll('.gallery').forEach(g => {
    g.querySelector('.none').hidden = [...g.querySelectorAll('.card')].some(c => !c.hidden); });
  buttons.forEach(b => b.setAttribute('aria-pressed', String(b.dataset.show === show)));
  document.getElementById('shown').textContent = `showing ${rows.filter(r => !r.hidden).length} of ${rows.length} ` +
    `images, ${cards.filter(c => !c.hidden).length} of ${cards.length} pictures`;
}
buttons.forEach(b => b.addEventListener('click', () => { location.hash = 'filter=' + b.dataset.show; }));
// a hash without a filter (a link to a section) leaves the filter as it is
function fromHash(otherwise) {
  const m = /filter=(\\w+)/.exec(location.hash);
  const show = m && buttons.some(b => b.dataset.show === m[1]) ? m[1] : otherwise;
  if (show) applyFilter(show);
  if (m && show) document.getElementById('filter').scrollIntoView();
}
window.addEventListener('hashchange', () => fromHash(null));
fromHash('ALL');
</script>"""

_STYLE = ("[hidden]{display:none!important}body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1em}"
          "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}th{cursor:pointer;background:#eee}"
          "td.n{text-align:right}.FAIL{color:#b00;font-weight:bold}.ERROR,.INVALID{color:#a60}"
          "img.mini{height:48px;display:block}a.heat{font-size:11px}"
          ".card{display:inline-block;margin:4px;font-size:11px;vertical-align:top;max-width:330px;"
          "word-break:break-all}.card img{width:160px;height:auto}"
          ".nopic{width:160px;height:40px;color:#888;border:1px dashed #ccc}"
          "p.none{color:#888;font-size:12px}.card:not([hidden])~p.none{display:none}"
          "#filter{position:sticky;top:0;background:#fff;padding:4px 0;margin:0;border-bottom:1px solid #ccc;"
          "z-index:1}#filter button[aria-pressed=true]{background:#333;color:#fff}"
          "#legend{border:1px solid #ccc;padding:0 1em;margin:1em 0;max-width:60em;font-size:13px}"
          "#legend h2{font-size:16px}#colour-bar{width:32em;margin:2em 0 2.6em 1em}"
          "#colour-bar .bar{position:relative;height:18px;border:1px solid #555}"
          "#colour-bar .mark{position:absolute;top:-4px;bottom:-4px;border-left:2px dashed #000}"
          "#colour-bar .mark span{position:absolute;left:-2em;white-space:nowrap;font-size:11px}"
          "#colour-bar .mark .up{bottom:26px}#colour-bar .mark .down{top:26px}"
          "#colour-bar .ends{position:relative;font-size:11px;height:1em}#colour-bar .end{position:absolute}")


_CONTENTS = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in (
    ("legend", "legend"), ("folders", "per folder"), ("failures", "failures"), ("near", "nearest the threshold"),
    ("results-title", "all results")))


def render_html(rows: list[dict], cal: dict, out: Path, scale: dict, gallery: int = 200, near: int = NEAR) -> str:
    """The whole page; ``out`` is the report folder, which links and thumbnails are relative to;
    ``scale``: the pictures' colour scale (``ColourScale.to_dict()``), for the legend."""
    count = Counter(r["decision"] for r in rows)
    fails = sorted((r for r in rows if r["decision"] == FAIL and r.get("thumb")),
                   key=lambda r: -(r["normalized_score"] or 0))[:gallery]
    c = {k: _fmt(cal.get(k), spec) for k, spec in (("target_frr", "g"), ("n", ""), ("date", ""),
                                                  ("image_threshold", ".5g"), ("pixel_threshold", ".5g"),
                                                  ("guarantee", ""))}
    counts = ", ".join(f"<a href='#filter={d}'><b class='{d}'>{count[d]}</b> {label}</a>" for d, label in (
        (PASS, "PASS"), (FAIL, "FAIL"), (INVALID, "invalid input"), (ERROR, "unreadable")))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>inspect-ad report</title>"
            f"<style>{_STYLE}</style></head><body><h1>inspect-ad report</h1>"
            f"<p id='counts'><b>{len(rows)}</b> images: {counts}.</p>"
            f"<p>Calibration: target false-reject rate {c['target_frr']} on {c['n']} good images "
            f"({c['date']}); image threshold {c['image_threshold']} (normalised 1), pixel threshold "
            f"{c['pixel_threshold']}, min area {_fmt(min_area_text(cal))}.<br>{c['guarantee']}</p>"
            f"<p>{_CONTENTS}</p>{_legend(cal, scale)}{_filter_buttons(count, len(rows))}"
            f"<h2 id='folders'>Per folder</h2>{_folder_counts(rows)}"
            f"<h2 id='failures'>Failures ({count[FAIL]}; highest normalised score first, at most {gallery})</h2>"
            f"{_gallery([_card(r, out) for r in fails])}"
            f"{_near_section(rows, out, near)}"
            f"<h2 id='results-title'>All results (click a column to sort)</h2>"
            f"{_results_table(rows, out)}{_SCRIPT}</body></html>\n")
