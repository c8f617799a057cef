"""The eval and compare pages: built from results scored with the real metrics and the real paired
test, parsed back with lxml: the numbers, the winner marks, Korean text, escaping of model output
(markup in an answer stays text), and nothing loaded from the network. One test opens both pages
in headless Chromium where it is installed."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html

from slm_factory.evaluation.metrics import aggregate, overall, score_answer
from slm_factory.evaluation.report import compare_html, eval_html
from slm_factory.evaluation.stats import paired_comparison

METRICS = ["bleu", "rouge", "key_facts"]
QUESTIONS = [
    ("q1", "청년 월세 지원 신청 기한은 언제인가요?", "신청 기한은 2024년 3월 31일까지입니다.",
     "2024년 3월 31일까지 신청하면 됩니다.", "잘 모르겠습니다."),
    ("q2", "지원 대상은 누구인가요?", "만 19세부터 34세까지의 무주택 청년이 지원 대상입니다.",
     "만 19세에서 34세 사이 무주택 청년이 대상입니다.", "모든 국민이 대상입니다."),
    ("q3", "What does ISO-27001 certify?", "ISO-27001 certifies an information security management system.",
     "It certifies an information security management system.", "<script>alert('x')</script> a cooking standard"),
    ("q4", "월 지원 금액은?", "매월 최대 20만 원까지 지급됩니다.", "매월 최대 20만 원까지 지급됩니다.",
     "매월 최대 20만 원까지 지급됩니다."),
]


def _scored(answer: str, reference: str) -> dict[str, Any]:
    scores = score_answer(answer, reference, "ko", METRICS)
    return {**scores, "overall": overall(scores)}


def eval_results(answer_index: int = 3) -> dict[str, Any]:
    items = [{"id": qid, "question": q, "reference": ref, "answer": row[answer_index],
              "scores": _scored(row[answer_index], ref), "judge_reason": None}
             for row in QUESTIONS for qid, q, ref in [row[:3]]]
    items[0]["judge_reason"] = "맞음 <b>정확</b>"
    return {"model": {"name": "output/merged_model", "backend": "transformers"}, "data": "output/qa_test.json",
            "created": "2026-12-02T07:00:00+00:00", "language": "ko", "metrics": METRICS,
            "aggregate": aggregate(item["scores"] for item in items), "items": items}


def compare_results() -> dict[str, Any]:
    base, tuned = eval_results(4)["items"], eval_results(3)["items"]
    test = paired_comparison([b["scores"]["overall"] for b in base], [t["scores"]["overall"] for t in tuned])
    items = []
    for b, t in zip(base, tuned):
        diff = t["scores"]["overall"] - b["scores"]["overall"]
        winner = "finetuned" if diff > 1e-9 else "base" if diff < -1e-9 else "tie"
        items.append({"id": b["id"], "question": b["question"], "reference": b["reference"],
                      "base": {"answer": b["answer"], "scores": b["scores"]},
                      "finetuned": {"answer": t["answer"], "scores": t["scores"]}, "winner": winner})
    decided = test["wins"] + test["losses"]
    return {"base": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "backend": "transformers"},
            "finetuned": {"name": "output/merged_model", "backend": "transformers"},
            "data": "output/qa_test.json", "created": "2026-12-02T07:00:00+00:00", "language": "ko",
            "metrics": METRICS,
            "summary": {"base": aggregate(b["scores"] for b in base), "finetuned": aggregate(t["scores"] for t in tuned),
                        "test": test, "win_rate": test["wins"] / decided if decided else None},
            "items": items}


def _tree(page: str) -> Any:
    return lxml_html.fromstring(page)


def _assert_standalone(page: str) -> None:
    tree = _tree(page)
    assert page.startswith("<!DOCTYPE html>") and tree.xpath("//meta[@charset='utf-8']")
    assert not tree.xpath("//*[@src] | //link | //*[@href]"), "the page must load nothing"
    assert len(tree.xpath("//script")) == 1, "only the page's own script"


def test_eval_page_shows_the_model_the_means_and_every_item() -> None:
    results = eval_results()
    page = eval_html(results)
    _assert_standalone(page)
    tree = _tree(page)
    assert tree.xpath("string(//html/@lang)") == "ko"
    assert "output/merged_model" in tree.xpath("string(//header)") and "transformers" in tree.xpath("string(//header)")
    cards = {card.xpath("string(span)"): card.xpath("string(b)") for card in tree.xpath("//div[@class='card']")}
    aggregate_scores = results["aggregate"]
    assert cards["BLEU"] == f"{aggregate_scores['bleu']:.1f}" and cards["ROUGE-L"] == f"{aggregate_scores['rougeL']:.3f}"
    assert cards["overall"] == f"{aggregate_scores['overall']:.3f}" and cards["questions"] == "4"
    assert "judge (1-5)" not in cards  # no item has a judge score
    rows = tree.xpath("//table[@id='items-table']/tbody/tr")
    assert [row.get("data-id") for row in rows] == ["q1", "q2", "q3", "q4"]
    header = [th.text_content() for th in tree.xpath("//table[@id='items-table']/thead//th")]
    assert header == ["question", "reference", "answer", "overall", "key facts", "ROUGE-L", "ROUGE-1", "ROUGE-2", "BLEU"]
    first = [cell.text_content() for cell in rows[0]]
    assert first[0] == QUESTIONS[0][1] and first[1] == QUESTIONS[0][2]
    assert first[2] == QUESTIONS[0][3] + "judge: 맞음 <b>정확</b>"  # the reason's markup is text
    assert first[-1] == f"{results['items'][0]['scores']['bleu']:.1f}"


def test_model_output_is_escaped_everywhere() -> None:
    results = eval_results(answer_index=4)  # the answers with a <script> in one
    results["model"]["name"] = '"><script>alert(1)</script>'
    results["items"][2]["question"] = "<img src=x onerror=alert(1)>"
    page = eval_html(results)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    _assert_standalone(page)
    rows = _tree(page).xpath("//table[@id='items-table']/tbody/tr")
    assert rows[2][0].text_content() == "<img src=x onerror=alert(1)>"
    assert rows[2][2].text_content() == QUESTIONS[2][4]


def test_any_text_survives_the_page_as_text() -> None:
    rng = random.Random(5)
    alphabet = list("<>&\"'/=; ab가힣\n\t{}$") + ["${body}", "</td>", "<!--", "]]>", "&amp;", "\u200b"]
    for _ in range(50):
        results = eval_results()
        texts = ["".join(rng.choices(alphabet, k=rng.randint(1, 30))) for _ in range(3)]
        item = results["items"][1]
        item["question"], item["reference"], item["answer"] = texts
        row = _tree(eval_html(results)).xpath("//table[@id='items-table']/tbody/tr")[1]
        assert [row[i].text_content() for i in range(3)] == texts


def test_null_scores_show_as_not_available() -> None:
    results = eval_results()
    results["items"][0]["scores"]["key_facts"] = None
    results["aggregate"]["judge"] = None
    row = _tree(eval_html(results)).xpath("//table[@id='items-table']/tbody/tr")[0]
    assert row[4].text_content() == "n/a" and row[4].get("data-v") == "-1"


def test_compare_page_shows_the_verdict_the_means_side_by_side_and_the_winners() -> None:
    results = compare_results()
    page = compare_html(results)
    _assert_standalone(page)
    tree = _tree(page)
    test = results["summary"]["test"]
    assert tree.xpath("string(//p[contains(@class, 'verdict')])") == test["verdict"]
    summary_rows = {row[0].text_content(): [cell.text_content() for cell in row[1:]]
                    for row in tree.xpath("//table[@class='summary']/tbody/tr")}
    base, tuned = results["summary"]["base"], results["summary"]["finetuned"]
    assert summary_rows["ROUGE-L"] == [f"{base['rougeL']:.3f}", f"{tuned['rougeL']:.3f}", f"{tuned['rougeL'] - base['rougeL']:+.3f}"]
    assert summary_rows["questions"][:2] == ["4", "4"]
    cards = {card.xpath("string(span)"): card.xpath("string(b)") for card in tree.xpath("//div[@class='card']")}
    assert cards["fine-tuned wins / losses / ties"] == f"{test['wins']} / {test['losses']} / {test['ties']}"
    assert cards["fine-tuned win rate (ties left out)"] == f"{results['summary']['win_rate']:.0%}"
    articles = tree.xpath("//article[@data-item]")
    assert [a.get("data-winner") for a in articles] == [item["winner"] for item in results["items"]]
    assert [item["winner"] for item in results["items"]] == ["finetuned", "finetuned", "finetuned", "tie"]
    for article, item in zip(articles, results["items"]):
        answers = article.xpath(".//div[contains(@class, 'answer')]")
        assert [a.xpath("string(p)") for a in answers] == [item["base"]["answer"], item["finetuned"]["answer"]]
        won = [("winner" in a.get("class")) for a in answers]
        assert won == [item["winner"] == "base", item["winner"] == "finetuned"]
        assert article.xpath("string(.//div[@class='reference'])") == item["reference"]
    assert "<script>alert('x')" not in page
    assert tree.xpath("//select[@class='filter']/option/@value") == ["", "finetuned", "base", "tie"]


def test_compare_page_tolerates_no_decided_items() -> None:
    results = compare_results()
    results["summary"]["win_rate"] = None
    results["summary"]["test"] = paired_comparison([None], [None])
    results["items"] = []
    tree = _tree(compare_html(results))
    assert "nothing to compare" in tree.xpath("string(//p[contains(@class, 'verdict')])")
    cards = {card.xpath("string(span)"): card.xpath("string(b)") for card in tree.xpath("//div[@class='card']")}
    assert cards["fine-tuned win rate (ties left out)"] == "n/a"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless chromium to render the pages")
@pytest.mark.parametrize("render, results", [(eval_html, lambda: eval_results(4)), (compare_html, compare_results)])
def test_pages_render_in_a_browser_with_the_korean_text(tmp_path: Path, render: Any, results: Any) -> None:
    page = tmp_path / "page.html"
    page.write_text(render(results()), encoding="utf-8")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, env={"DBUS_SESSION_BUS_ADDRESS": "disabled:", "HOME": str(tmp_path)},
    ).stdout
    tree = _tree(dom)
    assert QUESTIONS[1][2] in tree.text_content()  # Korean, decoded as UTF-8
    assert not tree.xpath("//body//script[contains(., 'alert')]")
    assert "<script>alert('x')</script> a cooking standard" in tree.text_content()
