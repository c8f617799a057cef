"""Answer spans for answer_first, as properties over many chunks built here: English and Korean
prose, definitions, Markdown tables (with a group header row too), lists, very long sentences,
chunks of only headings."""

from __future__ import annotations

import random

import pytest

from slm_factory.generation.spans import MAX_SPAN_CHARS, Span, pick_spans

HEADINGS = ["Eligibility", "Application Deadlines", "Annex 2", "지원 대상", "신청 방법", "Summary of Benefits"]
EN_SENTENCES = [
    "Applicants must be aged 19 to 39 and live in Seoul when they apply.",
    "The monthly subsidy is 200,000 won and is paid for 12 months.",
    "Applications open on 1 March 2024 and close on 30 June 2024.",
    "The Seoul Housing Agency reviews every application within four weeks.",
    "Students and workers both qualify if their household income is low enough.",
    "A youth housing subsidy means a monthly payment towards the rent of a young tenant.",
    "Payments start in April and stop when the tenant moves out of the city.",
    "Tenants who already receive another housing benefit cannot apply again this year.",
    "The programme was first announced by Mayor Oh Se-hoon in January 2023.",
    "Documents must be uploaded as PDF files no larger than 10 MB each.",
]
KO_SENTENCES = [
    "신청자는 만 19세 이상 39세 이하로 서울시에 거주해야 한다.",
    "월 지원금은 20만 원이며 최대 12개월 동안 지급된다.",
    "신청 기간은 2024년 3월 1일부터 6월 30일까지이다.",
    "청년 월세 지원이란 무주택 청년의 임차료 일부를 지원하는 제도를 말한다.",
    "서울주택도시공사는 접수된 신청서를 4주 이내에 심사한다.",
    "이미 다른 주거 급여를 받는 사람은 올해 다시 신청할 수 없다.",
]
LIST_ITEMS = ["- Paddle about", "- 1. Wear sunglasses", "- Tenants must keep the lease contract for 24 months.",
              "- 2. Household income must be below 150% of the median income."]
LONG = ("The committee, which was formed in 2019 under the housing act, meets every quarter, reviews the budget, "
        "hears complaints from tenants, landlords and local offices, publishes its minutes within two weeks, "
        "and reports to the city council, the mayor, the ministry and, where the law requires it, to the "
        "national audit office, which may ask for further documents, hearings or a full review of any decision "
        "that the committee made during the previous financial year")


def table(rng: random.Random, group_row: bool) -> str:
    lines = []
    if group_row:
        lines += ["|  |  | Payments |  |", "|---|---|---|---|", "| District | Tenants | Monthly | Total |"]
    else:
        lines += ["| District | Tenants | Monthly | Total |", "|---|---|---|---|"]
    for district in rng.sample(["Gangnam", "Mapo", "Jongno", "Songpa", "Nowon", "Eunpyeong"], 4):
        lines.append(f"| {district} | {rng.randint(10, 999):,} | {rng.randint(1, 9)}00,000 won | "
                     f"{rng.randint(1000, 99999):,} |")
    return "\n".join(lines)


def build_chunk(seed: int) -> tuple[str, list[str]]:
    """A chunk's text and the heading lines in it."""
    rng = random.Random(seed)
    blocks, headings = [], []
    for _ in range(rng.randint(1, 7)):
        kind = rng.choice(["en", "en", "ko", "heading", "table", "list", "long", "long_nocomma"])
        if kind == "en":
            blocks.append(" ".join(rng.sample(EN_SENTENCES, rng.randint(1, 4))))
        elif kind == "ko":
            blocks.append(" ".join(rng.sample(KO_SENTENCES, rng.randint(1, 3))))
        elif kind == "heading":
            heading = rng.choice(HEADINGS)
            headings.append(heading)
            blocks.append(rng.choice(["", "## "]) + heading)
        elif kind == "table":
            blocks.append(table(rng, rng.random() < 0.5))
        elif kind == "list":
            blocks.append("\n\n".join(rng.sample(LIST_ITEMS, 3)))
        elif kind == "long":
            blocks.append(LONG + ".")
        else:
            blocks.append(LONG.replace(",", "") + ".")
    return "\n\n".join(blocks), headings


def answer_range_is_in_chunk(span: Span, text: str) -> bool:
    if span.kind == "row":
        lines = text.split("\n")
        return text[span.start : span.end] == span.text.split("\n")[-1] and all(
            line in lines for line in span.text.split("\n"))
    return text[span.start : span.end] == span.text


@pytest.mark.parametrize("seed", range(120))
def test_spans_are_text_of_their_chunk_apart_within_budget_and_never_headings(seed: int):
    text, headings = build_chunk(seed)
    budget = random.Random(seed).randint(1, 8)
    spans = pick_spans(text, budget, "en", [" > ".join(headings)])
    assert len(spans) <= budget
    assert spans == pick_spans(text, budget, "en", [" > ".join(headings)])  # deterministic
    for span in spans:
        assert answer_range_is_in_chunk(span, text), span
        assert span.text.lstrip("# ").strip() not in HEADINGS
        assert len(span.text.split("\n")[-1]) <= MAX_SPAN_CHARS or span.kind == "row"
    ranges = sorted((s.start, s.end) for s in spans)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ranges, ranges[1:])), ranges
    assert [s.start for s in spans] == sorted(s.start for s in spans)


def test_a_chunk_of_headings_and_labels_gives_no_span():
    text = "\n\n".join(["# 2024 Seoul Youth Housing Subsidy", "Eligibility", "## Application Deadlines",
                        "지원 대상", "- Paddle about", "Figure 1: a duckling", "Annex 2"])
    assert pick_spans(text, 5, "en", ["Eligibility > Application Deadlines"]) == []


def test_the_budget_is_filled_when_there_is_enough_and_spread_over_the_chunk():
    plain = [f"The office on floor {n} keeps its own list of visitors and staff." for n in range(1, 21)]
    text = " ".join(plain)
    spans = pick_spans(text, 4, "en")
    assert len(spans) == 4
    quarters = {min(3, int(4 * s.start / len(text))) for s in spans}
    assert quarters == {0, 1, 2, 3}


def test_names_numbers_dates_and_definitions_rank_above_plain_sentences():
    text = ("The office is friendly and the staff are helpful to everyone who visits it. "
            "Applications open on 1 March 2024 and close on 30 June 2024 at the Seoul Housing Agency. "
            "Everyone agrees that the process could be simpler and quicker than it is now.")
    assert [s.text for s in pick_spans(text, 1, "en")] == [
        "Applications open on 1 March 2024 and close on 30 June 2024 at the Seoul Housing Agency."]
    definition = "A youth housing subsidy means a monthly payment towards the rent of a young tenant."
    spans = pick_spans("The office is friendly and the staff are helpful to all visitors. " + definition, 1, "en")
    assert spans[0].text == definition and spans[0].kind == "definition"
    korean = pick_spans(" ".join(KO_SENTENCES), 6, "ko")
    assert any(s.kind == "definition" and s.text.startswith("청년 월세 지원이란") for s in korean)


def test_table_rows_come_with_their_column_labels():
    text = "Payments by district:\n\n" + table(random.Random(3), group_row=True)
    spans = pick_spans(text, 3, "en")
    assert spans and all(s.kind == "row" for s in spans)
    for span in spans:
        header, row = span.text.split("\n")
        assert header == "| District | Tenants | Monthly | Total |"  # the labels, not the group row
        assert row.startswith("| ") and row in text.split("\n")


def test_a_very_long_sentence_is_cut_at_a_clause_or_left_out():
    cut = pick_spans(LONG + ".", 1, "en")
    assert len(cut) == 1 and len(cut[0].text) <= MAX_SPAN_CHARS and LONG.startswith(cut[0].text)
    assert not cut[0].text.endswith(",")
    assert pick_spans(LONG.replace(",", "") + ".", 1, "en") == []


def test_list_items_lose_their_marker_and_short_ones_are_labels():
    text = "\n\n".join(LIST_ITEMS)
    assert [s.text for s in pick_spans(text, 4, "en")] == [
        "Tenants must keep the lease contract for 24 months.",
        "Household income must be below 150% of the median income."]


def test_answers_taken_from_an_earlier_chunk_are_not_picked_again():
    text = " ".join(EN_SENTENCES[:4])
    first = pick_spans(text, 2, "en")
    again = pick_spans(text, 2, "en", taken={span.text for span in first})
    assert len(again) == 2 and not {s.text for s in first} & {s.text for s in again}


def test_a_sentence_that_points_back_ranks_below_one_that_names_its_subject():
    text = ("The Seoul Housing Agency pays the subsidy on the 25th of each month. "
            "This also means that the Seoul Housing Agency pays it 12 times in 2024.")
    assert pick_spans(text, 1, "en")[0].text.startswith("The Seoul Housing Agency pays the subsidy")
