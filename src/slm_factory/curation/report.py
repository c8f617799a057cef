"""report.html from data_analysis.json: one file that opens from disk with no server and no
network -- inline CSS, plots as inline SVG drawn here, a few lines of script for sorting and
filtering tables. Every piece of text from the data is escaped (a question may hold markup)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from importlib import resources
from string import Template
from typing import Any

CHART_WIDTH = 560
LABEL_WIDTH = 190
ROW_HEIGHT = 22
MAX_BARS = 25


def render_report(analysis: dict[str, Any]) -> str:
    meta = analysis.get("meta", {})
    title = f"Dataset report · {meta.get('project', '')}"
    body = "\n".join((
        _header(title, meta),
        "<main>",
        _warnings(analysis["warnings"]),
        _figures(analysis["totals"]),
        _composition(analysis),
        _lengths(analysis["lengths"], meta),
        _documents(analysis["by_document"]),
        _rejections(analysis["rejections"]),
        _scores(analysis["scores"]),
        _cut(analysis["cut_answers"], analysis["warnings"]),
        _examples(analysis["examples"]),
        "</main>",
        "<footer>Every figure is also in <code>data_analysis.json</code>, written with this report by "
        "<code>slm-factory analyze</code>.</footer>",
    ))
    template = Template(resources.files("slm_factory.curation").joinpath("templates/report.html").read_text("utf-8"))
    from slm_factory import assets

    return template.substitute(lang=escape(meta.get("language", "en")), title=escape(title), body=body,
                               base_css=assets.text("base.css"), sortable_js=assets.text("sortable.js"))


# -- sections ------------------------------------------------------------------------------------


def _header(title: str, meta: dict[str, Any]) -> str:
    facts = [f"pairs from {_e(meta.get('source', ''))}", f"made {_e(meta.get('created', ''))}",
             f"student {_e(meta.get('student', ''))}"]
    return f'<header><h1>{_e(title)}</h1><p>{" · ".join(facts)}</p></header>'


def _section(anchor: str, heading: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(heading)}</h2>{"".join(parts)}</section>'


def _warnings(warnings: list[dict[str, str]]) -> str:
    if not warnings:
        return _section("warnings", "Warnings", '<p class="ok">No warnings: nothing in the figures below calls for a look.</p>')
    items = "".join(f'<li class="warning" data-code="{_e(w["code"])}">{_e(w["message"])}</li>' for w in warnings)
    return _section("warnings", f"Warnings ({len(warnings)})", f'<ul class="warnings">{items}</ul>')


def _figures(totals: dict[str, Any]) -> str:
    coverage = _percent(totals["coverage"])
    cards = [
        (totals["pairs"], "training pairs"),
        (totals["probes"], "held-out probes"),
        (totals["documents"], "documents"),
        (coverage, f"chunk coverage ({totals['covered_chunks']} of {totals['chunks']})"),
        (totals["rejected"], "rejected pairs"),
    ]
    html = "".join(f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>' for value, label in cards)
    return _section("figures", "In figures", f'<div class="cards">{html}</div>')


def _composition(analysis: dict[str, Any]) -> str:
    origin = _figure(bar_chart(list(analysis["by_origin"].items())), "pairs by origin (probes: qa_test.json)")
    category = _figure(bar_chart(list(analysis["by_category"].items())), "training pairs by category")
    return _section("composition", "Origins and categories", f'<div class="grid">{origin}{category}</div>')


_LENGTH_PLOTS = (("question_chars", "question length (characters)"), ("answer_chars", "answer length (characters)"),
                 ("question_tokens", "question length (student tokens)"), ("answer_tokens", "answer length (student tokens)"))


def _lengths(lengths: dict[str, Any], meta: dict[str, Any]) -> str:
    plots = []
    for key, label in _LENGTH_PLOTS:
        figures = lengths.get(key)
        if not figures:
            continue
        summary = (f"{label}: median {figures['median']}, 90% under {figures['p90']}, "
                   f"range {figures['min']}–{figures['max']}") if figures["count"] else f"{label}: no pairs"
        plots.append(_figure(histogram_chart(figures["histogram"], label), summary))
    note = f'<p class="note">{_e(meta["tokens_note"])}</p>' if meta.get("tokens_note") else ""
    return _section("lengths", "Lengths", note, f'<div class="grid">{"".join(plots)}</div>')


def _documents(rows: list[dict[str, Any]]) -> str:
    chart = _figure(bar_chart([(row["name"], row["pairs"]) for row in rows]), "training pairs per document")
    head = _thead(("document", ""), ("language", ""), ("pairs", "num"), ("probes", "num"), ("chunks", "num"),
                  ("with a pair", "num"), ("coverage", "num"))
    body = "".join(
        "<tr>"
        f'<td title="{_e(row["title"] or row["doc_id"])}">{_e(row["name"])}</td><td>{_e(row["language"])}</td>'
        f'{_num(row["pairs"])}{_num(row["probes"])}{_num(row["chunks"])}{_num(row["covered_chunks"])}'
        f'<td class="num" data-v="{row["coverage"] if row["coverage"] is not None else -1}">{_meter(row["coverage"])}'
        f"{_percent(row['coverage'])}</td></tr>"
        for row in rows
    )
    table = (f'<input class="filter" type="search" data-table="documents-table" placeholder="filter documents" aria-label="filter documents">'
             f'<div class="scroll"><table id="documents-table" class="sortable">{head}<tbody>{body}</tbody></table></div>')
    note = '<p class="note">Coverage: the share of a document\'s chunks that at least one training pair was written from.</p>'
    return _section("documents", "Documents and coverage", chart, note, table)


def _rejections(rejections: dict[str, dict[str, int]]) -> str:
    if not rejections:
        return _section("rejections", "Rejections", '<p class="note">No rejection records (rejected/*.json) yet.</p>')
    charts = "".join(_figure(bar_chart(list(rules.items()), alt=True), f"{stage}: {sum(rules.values())} rejected")
                     for stage, rules in rejections.items())
    head = _thead(("stage", ""), ("rule", ""), ("pairs", "num"))
    body = "".join(f"<tr><td>{_e(stage)}</td><td>{_e(rule)}</td>{_num(n)}</tr>"
                   for stage, rules in rejections.items() for rule, n in rules.items())
    table = f'<table id="rejections-table" class="sortable">{head}<tbody>{body}</tbody></table>'
    return _section("rejections", "Rejections", f'<div class="grid">{charts}</div>', table)


def _scores(scores: dict[str, Any] | None) -> str:
    if not scores:
        return _section("scores", "Scores", '<p class="note">No pair has a score (scoring.enabled is off or score has not run).</p>')
    chart = grouped_chart(scores["labels"], [("kept", scores["kept"], ""), ("dropped by score", scores["rejected"], "alt")])
    mean = f", mean of kept {scores['mean_kept']}" if scores["mean_kept"] is not None else ""
    return _section("scores", "Scores", _figure(chart, f"teacher scores (1-5){mean}"))


def _cut(cut: list[dict[str, Any]], warnings: list[dict[str, str]]) -> str:
    if not cut:
        return _section("cut", "Answers cut short", '<p class="note">No answer looks cut short.</p>')
    head = _thead(("document", ""), ("question", ""), ("end of the answer", ""), ("chars", "num"), ("why", ""))
    body = "".join(
        f'<tr data-id="{_e(row["id"])}"><td>{_e(row["source_doc"])}</td><td class="text">{_e(row["question"])}</td>'
        f'<td class="text">…{_e(row["ending"])}</td>{_num(row["length"])}<td>{_e(row["reason"])}</td></tr>'
        for row in cut
    )
    total = next((int(w["message"].split(" ", 1)[0]) for w in warnings if w["code"] == "cut_answers"), len(cut))
    note = f'<p class="note">{total} in all; the first {len(cut)} are listed.</p>' if total > len(cut) else ""
    return _section("cut", "Answers cut short", note,
                    f'<table id="cut-table" class="sortable">{head}<tbody>{body}</tbody></table>')


_EXAMPLE_TABLES = (("shortest_questions", "Shortest questions"), ("shortest_answers", "Shortest answers"),
                   ("longest_answers", "Longest answers"))


def _examples(examples: dict[str, list[dict[str, Any]]]) -> str:
    parts = []
    for key, label in _EXAMPLE_TABLES:
        rows = examples.get(key) or []
        if not rows:
            continue
        head = _thead(("document", ""), ("category", ""), ("question", ""), ("answer", ""))
        body = "".join(
            f'<tr data-id="{_e(row["id"])}"><td>{_e(row["source_doc"])}</td><td>{_e(row["category"])}</td>'
            f'<td class="text">{_e(row["question"])}</td><td class="text">{_e(_trimmed(row["answer"], row["answer_chars"]))}</td></tr>'
            for row in rows
        )
        parts.append(f'<h3>{_e(label)}</h3><table class="examples">{head}<tbody>{body}</tbody></table>')
    return _section("examples", "Pairs worth a look", *parts) if parts else ""


# -- charts (inline SVG) -------------------------------------------------------------------------


def bar_chart(items: Sequence[tuple[str, float]], alt: bool = False) -> str:
    """Horizontal bars, one per (label, value), the largest first as given; past MAX_BARS the
    rest are summed in one line of text."""
    shown = list(items)[:MAX_BARS]
    if not shown:
        return '<p class="note">nothing to show</p>'
    top = max(value for _, value in shown) or 1
    span = CHART_WIDTH - LABEL_WIDTH - 60
    height = ROW_HEIGHT * len(shown) + 8
    rows = []
    for index, (label, value) in enumerate(shown):
        y = 4 + index * ROW_HEIGHT
        width = max(1.0, span * value / top) if value else 0
        rows.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">{_e(_short(str(label), 28))}<title>{_e(label)}</title></text>'
            f'<rect class="bar{" alt" if alt else ""}" x="{LABEL_WIDTH}" y="{y + 3}" width="{width:.1f}" height="{ROW_HEIGHT - 6}">'
            f"<title>{_e(label)}: {_e(value)}</title></rect>"
            f'<text x="{LABEL_WIDTH + width + 6:.1f}" y="{y + 15}">{_e(value)}</text>'
        )
    more = len(items) - len(shown)
    rest = f'<p class="note">and {more} more (see data_analysis.json)</p>' if more > 0 else ""
    return _svg(CHART_WIDTH, height, "".join(rows)) + rest


def histogram_chart(histogram: dict[str, list[float]], label: str) -> str:
    """Vertical bars over equal bins, the axes labelled at the ends and the middle."""
    edges, counts = histogram["edges"], histogram["counts"]
    if not counts:
        return '<p class="note">nothing to show</p>'
    left, bottom, top_margin, height = 44, 34, 10, 200
    plot_w, plot_h = CHART_WIDTH - left - 12, height - bottom - top_margin
    peak = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [_y_axis(left, top_margin, plot_w, plot_h, peak)]
    for index, count in enumerate(counts):
        bar_h = plot_h * count / peak
        x = left + index * bar_w
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{top_margin + plot_h - bar_h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{bar_h:.1f}"><title>{_e(edges[index])}–{_e(edges[index + 1])}: {count}</title></rect>'
        )
    base = top_margin + plot_h
    for index in _ticks(len(edges) - 1):
        x = left + index * bar_w
        parts.append(f'<text x="{x:.1f}" y="{base + 14}" text-anchor="middle" class="muted">{_e(edges[index])}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">{_e(label)}</text>')
    return _svg(CHART_WIDTH, height, "".join(parts))


def grouped_chart(labels: Sequence[float], series: Sequence[tuple[str, Sequence[int], str]]) -> str:
    """Bars side by side per label, one colour per series, with a legend."""
    left, bottom, top_margin, height = 44, 34, 24, 220
    plot_w, plot_h = CHART_WIDTH - left - 12, height - bottom - top_margin
    peak = max((n for _, counts, _ in series for n in counts), default=0) or 1
    group_w = plot_w / max(len(labels), 1)
    bar_w = (group_w - 8) / max(len(series), 1)
    parts = [_y_axis(left, top_margin, plot_w, plot_h, peak)]
    for s, (name, counts, css) in enumerate(series):
        parts.append(f'<rect class="bar {css}" x="{left + s * 130}" y="4" width="10" height="10"></rect>'
                     f'<text x="{left + s * 130 + 14}" y="13">{_e(name)}</text>')
        for index, count in enumerate(counts):
            bar_h = plot_h * count / peak
            x = left + index * group_w + 4 + s * bar_w
            parts.append(f'<rect class="bar {css}" x="{x:.1f}" y="{top_margin + plot_h - bar_h:.1f}" '
                         f'width="{max(bar_w - 1, 1):.1f}" height="{bar_h:.1f}"><title>{_e(name)}, score {_e(labels[index])}: {count}</title></rect>')
    for index, label in enumerate(labels):
        x = left + (index + 0.5) * group_w
        parts.append(f'<text x="{x:.1f}" y="{top_margin + plot_h + 14}" text-anchor="middle" class="muted">{_e(label)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">score</text>')
    return _svg(CHART_WIDTH, height, "".join(parts))


def _ticks(last: int) -> list[int]:
    """Edge indices to label: every k-th edge for a round k, at most 6 labels, and the last."""
    step = next((k for k in (1, 2, 5, 10, 20, 50, 100) if last / k <= 5), last or 1)
    ticks = list(range(0, last + 1, step))
    return ticks + [last] if last - ticks[-1] >= step / 2 else ticks


def _y_axis(left: float, top: float, width: float, height: float, peak: float) -> str:
    parts = [f'<line class="axis" x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}"></line>']
    for value in sorted({0, round(peak / 2), peak}):
        y = top + height - height * value / peak
        parts.append(f'<line class="grid-line" x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}"></line>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="muted">{_e(value)}</text>')
    return "".join(parts)


def _svg(width: int, height: int, content: str) -> str:
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img">{content}</svg>')


# -- small pieces --------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _figure(chart: str, caption: str) -> str:
    return f"<figure>{chart}<figcaption>{_e(caption)}</figcaption></figure>"


def _thead(*columns: tuple[str, str]) -> str:
    cells = "".join(f'<th class="{css}">{_e(name)}</th>' if css else f"<th>{_e(name)}</th>" for name, css in columns)
    return f"<thead><tr>{cells}</tr></thead>"


def _num(value: int) -> str:
    return f'<td class="num" data-v="{value}">{value}</td>'


def _percent(share: float | None) -> str:
    return f"{share:.0%}" if share is not None else "n/a"


def _meter(share: float | None) -> str:
    if share is None:
        return ""
    low = ' class="low"' if share < 0.5 else ""
    return f'<span class="meter"><i{low} style="width:{share * 100:.0f}%"></i></span>'


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _trimmed(text: str, full_length: int) -> str:
    return text if len(text) >= full_length else text + "…"
