"""The HTML pages beside eval_results.json and compare_results.json: one file each that opens from
disk with no server and no network (inline CSS and a few lines of script). Answers are model
output and questions come from documents: every piece of text from the results is escaped."""

from __future__ import annotations

from html import escape
from importlib import resources
from string import Template
from typing import Any

# The scores shown, in this order, with their labels; a key no item has is left out.
SCORE_LABELS = {
    "overall": "overall",
    "judge": "judge (1-5)",
    "key_facts": "key facts",
    "rougeL": "ROUGE-L",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "bleu": "BLEU",
}
WINNERS = {"finetuned": "fine-tuned", "base": "base", "tie": "tie"}


def eval_html(results: dict[str, Any]) -> str:
    """The page of one model's evaluation: the model, the mean scores, every question with the
    reference, the answer and its scores."""
    model = results.get("model") or {}
    aggregate = results.get("aggregate") or {}
    items = results.get("items") or []
    keys = _score_keys([aggregate, *(item.get("scores") or {} for item in items)])
    title = f"Evaluation · {model.get('name', '')}"
    body = "\n".join((
        _header(title, [f"backend {model.get('backend', '')}", *_run_facts(results)]),
        "<main>",
        _section("summary", "Mean scores", _cards(aggregate, keys)),
        _section("items", f"Questions ({len(items)})", _filter("items-table"), _items_table(items, keys)),
        "</main>",
        _footer("eval_results.json", "slm-factory eval"),
    ))
    return _page(results, title, body)


def compare_html(results: dict[str, Any]) -> str:
    """The page of a base-vs-fine-tuned comparison: the verdict, the mean scores side by side and
    the win rate, then each question with both answers beside the reference, the winner marked."""
    base, tuned = results.get("base") or {}, results.get("finetuned") or {}
    summary = results.get("summary") or {}
    items = results.get("items") or []
    side_scores = [(item.get(side) or {}).get("scores") or {} for item in items for side in ("base", "finetuned")]
    keys = _score_keys([summary.get("base") or {}, summary.get("finetuned") or {}, *side_scores])
    title = f"Comparison · {base.get('name', '')} vs {tuned.get('name', '')}"
    facts = [f"base {base.get('name', '')} ({base.get('backend', '')})",
             f"fine-tuned {tuned.get('name', '')} ({tuned.get('backend', '')})", *_run_facts(results)]
    body = "\n".join((
        _header(title, facts),
        "<main>",
        _section("summary", "Summary", _verdict(summary.get("test") or {}), _test_cards(summary),
                 _summary_table(summary, keys)),
        _section("items", f"Questions ({len(items)})", _filter("items-list", winners=True),
                 f'<div id="items-list">{"".join(_compare_item(item, keys, base, tuned) for item in items)}</div>'),
        "</main>",
        _footer("compare_results.json", "slm-factory compare"),
    ))
    return _page(results, title, body)


# -- eval ------------------------------------------------------------------------------------------


def _cards(aggregate: dict[str, Any], keys: list[str]) -> str:
    cards = [(_score(key, aggregate.get(key)), SCORE_LABELS[key]) for key in keys]
    cards.append((_e(aggregate.get("n", "")), "questions"))
    html = "".join(f'<div class="card"><b>{value}</b><span>{_e(label)}</span></div>' for value, label in cards)
    return f'<div class="cards">{html}</div>'


def _items_table(items: list[dict[str, Any]], keys: list[str]) -> str:
    head = _thead(("question", ""), ("reference", ""), ("answer", ""), *((SCORE_LABELS[key], "num") for key in keys))
    rows = []
    for item in items:
        scores = item.get("scores") or {}
        reason = item.get("judge_reason")
        reason_html = f'<span class="reason">judge: {_e(reason)}</span>' if reason else ""
        rows.append(
            f'<tr data-item data-id="{_e(item.get("id", ""))}"><td class="text">{_e(item.get("question", ""))}</td>'
            f'<td class="text">{_e(item.get("reference", ""))}</td>'
            f'<td class="text">{_e(item.get("answer", ""))}{reason_html}</td>'
            + "".join(_score_cell(key, scores.get(key)) for key in keys) + "</tr>"
        )
    return f'<table id="items-table" class="sortable">{head}<tbody>{"".join(rows)}</tbody></table>'


# -- compare ---------------------------------------------------------------------------------------


def _verdict(test: dict[str, Any]) -> str:
    if not test:
        return ""
    tone = ""
    if test.get("significant"):
        tone = " better" if (test.get("mean_diff") or 0) > 0 else " worse"
    return f'<p class="verdict{tone}">{_e(test.get("verdict", ""))}</p>'


def _test_cards(summary: dict[str, Any]) -> str:
    test = summary.get("test") or {}
    win_rate = summary.get("win_rate")
    cards = [
        (_e(f"{win_rate:.0%}") if win_rate is not None else "n/a", "fine-tuned win rate (ties left out)"),
        (_e(f"{test.get('wins', 0)} / {test.get('losses', 0)} / {test.get('ties', 0)}"), "fine-tuned wins / losses / ties"),
    ]
    if test.get("n"):
        cards.append((_e(f"{test['mean_diff']:+.3f}"),
                      f"mean overall difference, 95% interval {test['ci_low']:+.3f} to {test['ci_high']:+.3f}"))
        cards.append((_e(_p_value(test.get("p_value"))), "sign test p (two-sided)"))
    html = "".join(f'<div class="card"><b>{value}</b><span>{_e(label)}</span></div>' for value, label in cards)
    return f'<div class="cards">{html}</div>'


def _summary_table(summary: dict[str, Any], keys: list[str]) -> str:
    base, tuned = summary.get("base") or {}, summary.get("finetuned") or {}
    rows = []
    for key in keys:
        before, after = base.get(key), tuned.get(key)
        difference = after - before if before is not None and after is not None else None
        trend = "" if difference is None or difference == 0 else (" up" if difference > 0 else " down")
        shown = "n/a" if difference is None else _e(_format(key, difference, signed=True))
        rows.append(f"<tr><td>{_e(SCORE_LABELS[key])}</td>{_score_cell(key, before)}{_score_cell(key, after)}"
                    f'<td class="num{trend}">{shown}</td></tr>')
    rows.append(f'<tr><td>questions</td><td class="num">{_e(base.get("n", ""))}</td>'
                f'<td class="num">{_e(tuned.get("n", ""))}</td><td></td></tr>')
    head = _thead(("mean", ""), ("base", "num"), ("fine-tuned", "num"), ("difference", "num"))
    return f'<table class="summary">{head}<tbody>{"".join(rows)}</tbody></table>'


def _compare_item(item: dict[str, Any], keys: list[str], base: dict[str, Any], tuned: dict[str, Any]) -> str:
    winner = item.get("winner") or ""
    sides = "".join(
        _answer(item.get(side) or {}, f"{label}: {model.get('name', '')}", keys, winner == side)
        for side, label, model in (("base", "base", base), ("finetuned", "fine-tuned", tuned))
    )
    tie = '<p class="tie">tie</p>' if winner == "tie" else ""
    return (
        f'<article class="item" data-item data-id="{_e(item.get("id", ""))}" data-winner="{_e(winner)}">'
        f'<h3>{_e(item.get("question", ""))}<span class="id">{_e(item.get("id", ""))}</span></h3>'
        f'<span class="label">reference</span><div class="reference">{_e(item.get("reference", ""))}</div>'
        f'<div class="pair">{sides}</div>{tie}</article>'
    )


def _answer(side: dict[str, Any], label: str, keys: list[str], won: bool) -> str:
    scores = side.get("scores") or {}
    badge = '<span class="badge">winner</span>' if won else ""
    shown = " · ".join(f"{_e(SCORE_LABELS[key])} {_score(key, scores.get(key))}" for key in keys if key in scores)
    reason = side.get("judge_reason")
    reason_html = f'<span class="reason">judge: {_e(reason)}</span>' if reason else ""
    return (f'<div class="answer{" winner" if won else ""}">{badge}<span class="label">{_e(label)}</span>'
            f'<p>{_e(side.get("answer", ""))}</p><div class="scores">{shown}</div>{reason_html}</div>')


# -- shared pieces ---------------------------------------------------------------------------------


def _page(results: dict[str, Any], title: str, body: str) -> str:
    template = Template(resources.files("slm_factory.evaluation").joinpath("templates/page.html").read_text("utf-8"))
    from slm_factory import assets

    return template.substitute(lang=_e(results.get("language") or "en"), title=_e(title), body=body,
                               base_css=assets.text("base.css"), sortable_js=assets.text("sortable.js"))


def _header(title: str, facts: list[str]) -> str:
    return f'<header><h1>{_e(title)}</h1><p>{" · ".join(_e(fact) for fact in facts)}</p></header>'


def _run_facts(results: dict[str, Any]) -> list[str]:
    metrics = ", ".join(str(metric) for metric in results.get("metrics") or [])
    return [f"questions from {results.get('data', '')}", f"made {results.get('created', '')}",
            f"language {results.get('language', '')}", f"metrics {metrics}"]


def _footer(artifact: str, command: str) -> str:
    return (f"<footer>Every figure is also in <code>{_e(artifact)}</code>, written with this page by "
            f"<code>{_e(command)}</code>. overall: the judge score rescaled to 0-1 where there is one, "
            "else the mean of key facts, ROUGE-L and BLEU/100.</footer>")


def _section(anchor: str, heading: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(heading)}</h2>{"".join(parts)}</section>'


def _filter(target: str, winners: bool = False) -> str:
    select = ('<select class="filter" aria-label="winner"><option value="">every winner</option>'
              + "".join(f'<option value="{key}">{_e(label)} won</option>' for key, label in WINNERS.items())
              + "</select>") if winners else ""
    return (f'<div class="controls" data-target="{target}"><input class="filter" type="search" '
            f'placeholder="filter questions" aria-label="filter questions">{select}</div>')


def _score_keys(score_dicts: list[dict[str, Any]]) -> list[str]:
    present = {key for scores in score_dicts for key, value in scores.items() if value is not None}
    return [key for key in SCORE_LABELS if key in present]


def _score_cell(key: str, value: Any) -> str:
    sort_value = value if isinstance(value, (int, float)) else -1
    return f'<td class="num" data-v="{_e(sort_value)}">{_score(key, value)}</td>'


def _score(key: str, value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else _e(_format(key, value))


def _format(key: str, value: float, signed: bool = False) -> str:
    digits = {"bleu": 1, "judge": 2}.get(key, 3)  # BLEU is 0-100, the judge 1-5, the rest 0-1
    return f"{value:{'+' if signed else ''}.{digits}f}"


def _p_value(p_value: Any) -> str:
    if not isinstance(p_value, (int, float)):
        return "n/a"
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def _thead(*columns: tuple[str, str]) -> str:
    cells = "".join(f'<th class="{css}">{_e(name)}</th>' if css else f"<th>{_e(name)}</th>" for name, css in columns)
    return f"<thead><tr>{cells}</tr></thead>"


def _e(value: Any) -> str:
    return escape(str(value), quote=True)
