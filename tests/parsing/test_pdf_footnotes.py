"""Footnotes and column breaks in PDFs: policy briefs written here with PyMuPDF, and the corpus.

The builder lays text out like a Hancom export: each word placed on its own with no space glyph
between (spaces come from the gaps), lines justified to the column, Korean cut wherever the line
is full (inside a word or at a space), paragraphs that run on from one column or page into the
next, and footnotes in smaller type at the foot of a column or across the page, under a short rule
(or set off by a gap only), each starting with its marker.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf
import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document

PLAIN = ParseOptions(hwpx_apply_spacing=False)  # Hangul wraps join as inside a word: no Kiwi
SPACED = ParseOptions(hwpx_apply_spacing=True)
BODY, NOTE = 10.0, 8.0  # type sizes
GAP = 0.35  # a word gap, in ems
TOP, FOOT = 90.0, 780.0  # the text area of an A4 page
PITCH, NOTE_PITCH = 15.0, 11.0
COLUMNS = {1: [(60.0, 535.0)], 2: [(60.0, 285.0), (310.0, 535.0)]}
MARKERS = ["{n})", "({n})", "[{n}]", "{sup}", "주{n})", "*", "†", "{n} "]
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
HANGUL = re.compile("[\uac00-\ud7a3]")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _parse(path: Path, options: ParseOptions = PLAIN) -> Document:
    outcome = parse_file(path, options)
    assert outcome.error is None and outcome.document is not None, outcome.error
    return outcome.document


# -- the builder -------------------------------------------------------------------------------
@functools.cache
def _font() -> pymupdf.Font:
    return pymupdf.Font("korea")  # PyMuPDF's own CJK font (Droid Sans Fallback): no download


@functools.cache
def _word_width(word: str, size: float) -> float:
    return _font().text_length(word, size)


def _width(text: str, size: float) -> float:
    words = text.split(" ")
    return sum(_word_width(word, size) for word in words) + GAP * size * (len(words) - 1)


def wrap(text: str, width: float, size: float) -> list[str]:
    """Lines as full as they can be: Hangul is cut at any character, as Hancom does (a space at
    a cut is dropped); a Latin word that does not fit goes whole to the next line."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if _width(candidate, size) <= width:
            line = candidate
        elif HANGUL.match(word):
            line = _fill_hangul(lines, line, word, width, size)
        else:
            lines += [line] if line else []
            line = word
    return [*lines, line] if line else lines


def _fill_hangul(lines: list[str], line: str, word: str, width: float, size: float) -> str:
    """Put `word` after `line` character by character, starting new lines as each one fills."""
    current = f"{line} " if line else ""
    for char in word:
        if current.strip() and _width(current + char, size) > width:
            lines.append(current.rstrip())
            current = ""
        current += char
    return current


@dataclass
class Slot:
    """One column of one page: its body lines (text, index of their paragraph), the notes at its
    foot, and how far right those notes reach (a column's edge, or the page's for notes across)."""

    page: int
    x0: float
    x1: float
    lines: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notes_x1: float = 0.0

    def note_lines(self) -> list[str]:
        return [line for note in self.notes for line in wrap(note, (self.notes_x1 or self.x1) - self.x0, NOTE)]

    def notes_top(self) -> float:
        return FOOT - NOTE_PITCH * len(self.note_lines())


def _put(writer: pymupdf.TextWriter, x: float, y: float, text: str, size: float, width: float | None) -> None:
    """Words placed one by one (no space glyphs), spread to `width` when given (justified)."""
    words = text.split(" ")
    gap = GAP * size
    if width is not None and len(words) > 1:
        gap += max(0.0, width - _width(text, size)) / (len(words) - 1)
    for word in words:
        writer.append((x, y), word, font=_font(), fontsize=size)
        x += _word_width(word, size) + gap


def draw(slots: list[Slot], path: Path, ruled: bool = True) -> None:
    ends = {index: (slot.page, slot.x0, row) for slot in slots for row, (_, index) in enumerate(slot.lines)}
    pdf = pymupdf.open()
    for number in range(1, max(slot.page for slot in slots) + 1):
        page = pdf.new_page(width=595, height=842)
        writer = pymupdf.TextWriter(page.rect)
        for slot in [s for s in slots if s.page == number]:
            for row, (text, index) in enumerate(slot.lines):
                assert _width(text, BODY) <= slot.x1 - slot.x0 + 0.01, text
                last = (slot.page, slot.x0, row) == ends[index]  # a paragraph's last line stops short
                _put(writer, slot.x0, TOP + BODY + PITCH * row, text, BODY, None if last else slot.x1 - slot.x0)
            if slot.notes:
                top = slot.notes_top()
                if ruled:
                    page.draw_line((slot.x0, top - 5), (slot.x0 + 70, top - 5), width=0.5)
                for row, text in enumerate(slot.note_lines()):
                    _put(writer, slot.x0, top + NOTE + NOTE_PITCH * row, text, NOTE, None)
        writer.write_text(page)
    pdf.save(path)


def expected_blocks(slots: list[Slot], paragraphs: list[str]) -> list[tuple[str, int, str]]:
    """Per page: the paragraphs that start on it (whole, wherever they end), then its notes."""
    first_page: dict[int, int] = {}
    for slot in slots:
        for _, index in slot.lines:
            first_page.setdefault(index, slot.page)
    out = []
    for page in range(1, max(slot.page for slot in slots) + 1):
        out += [("paragraph", page, _squash(text)) for i, text in enumerate(paragraphs) if first_page.get(i) == page]
        out += [("footnote", page, _squash(note)) for slot in slots if slot.page == page for note in slot.notes]
    return out


def parsed_blocks(document: Document) -> list[tuple[str, int, str]]:
    return [(block.kind, block.page or 0, _squash(block.text)) for block in document.blocks]


# -- random briefs -----------------------------------------------------------------------------
KO_WORDS = (
    "정부는 지방자치단체 기후위기 대응을 위한 계획을 수립하고 추진 상황을 점검하며 위원회를 두고 "
    "그 결과를 공개하여야 하며 관계 기관과 협의한 사항을 보고하는 절차를"
).split()
EN_WORDS = (
    "the committee reviewed each plan and reported its findings to the office with a note on costs and staffing "
    "for every region"
).split()


def _sentence(rng: random.Random, korean: bool, words: int) -> str:
    text = " ".join(rng.choice(KO_WORDS if korean else EN_WORDS) for _ in range(words))
    return (text + " 정한다.") if korean else (text[0].upper() + text[1:] + ".")


def _paragraph(rng: random.Random, korean: bool, width: float) -> str:
    """One sentence whose last line leaves room for a word: a paragraph end the parser can see."""
    while True:
        text = _sentence(rng, korean, rng.randint(5, 40))
        if _width(wrap(text, width, BODY)[-1], BODY) <= width - 8 * BODY:
            return text


def _note(rng: random.Random, korean: bool, marker: str, number: int) -> str:
    label = marker.format(n=number, sup=str(number).translate(SUPERSCRIPT))
    words = " ".join(rng.choice(KO_WORDS if korean else EN_WORDS) for _ in range(rng.randint(3, 14)))
    return f"{label.strip()} {words}."


def random_brief(seed: int) -> tuple[list[Slot], list[str], bool]:
    """Slots filled with paragraphs poured column by column; some columns or pages carry notes."""
    rng = random.Random(seed)
    korean = seed % 3 != 2
    columns = rng.choice([1, 2, 2])
    across = columns == 2 and rng.random() < 0.3  # a page's notes run under all its columns
    marker = rng.choice(MARKERS)
    slots = [Slot(page, x0, x1) for page in range(1, rng.randint(1, 3) + 1) for x0, x1 in COLUMNS[columns]]
    number = 0
    for slot in slots:
        if across and slot.x0 > 60.0:
            continue
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            number += 1
            slot.notes.append(_note(rng, korean, marker, number))
        slot.notes_x1 = COLUMNS[columns][-1][1] if across else slot.x1
    feet = {slot.page: slot.notes_top() for slot in slots if across and slot.x0 == 60.0}
    capacities = [int((feet.get(slot.page, slot.notes_top()) - 18.0 - TOP) // PITCH) for slot in slots]
    paragraphs: list[str] = []
    stream: list[tuple[str, int]] = []
    target = int(sum(capacities) * rng.uniform(0.75, 1.0))
    width = slots[0].x1 - slots[0].x0
    while True:
        text = _paragraph(rng, korean, width)
        lines = [(line, len(paragraphs)) for line in wrap(text, width, BODY)]
        if len(stream) + len(lines) > target:
            break
        paragraphs.append(text)
        stream += lines
    for slot, capacity in zip(slots, capacities):
        slot.lines, stream = stream[:capacity], stream[capacity:]
        if not slot.lines:
            slot.notes = []  # notes under no body text at all are not a layout to judge
    return slots, paragraphs, rng.random() < 0.8


# -- tests: briefs built here ------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(24))
def test_footnotes_go_after_their_page_and_paragraphs_run_on_past_them(tmp_path: Path, seed: int) -> None:
    slots, paragraphs, ruled = random_brief(seed)
    path = tmp_path / f"brief-{seed}.pdf"
    draw(slots, path, ruled=ruled)
    assert parsed_blocks(_parse(path)) == expected_blocks(slots, paragraphs)


ISSUE_PARAGRAPHS = [
    "정부는 기후위기 대응을 위한 계획을 수립하고 추진 상황을 점검하며 그 결과를 공개한다. " * 4,
    "업무 중 발생한 사고를 보험 약관상의 상해 1)나 재해 2)로 보아야 할지 이슈가 될 것으로 판단된다.",
    "개정 이후 보험금 지급 기준이 자주 바뀌면서 현장에서는 혼선이 초래되어 이에 대하여 명확한 기준이 필요하다.",
    "관계 기관은 협의한 사항을 위원회에 보고하여야 한다.",
]
ISSUE_NOTES = ["1) 상해: 외부의 급격하고 우연한 사고로 신체에 입은 손상.", "2) 재해: 업무상 사유에 따른 부상이나 질병."]


def _issue_brief() -> list[Slot]:
    """Issue 7's brief: a sentence cut at the foot of the left column above its footnotes, and a
    paragraph that runs from the right column onto the next page inside a word (이|에)."""
    filler = [(line, 0) for line in wrap(ISSUE_PARAGRAPHS[0].strip(), 225.0, BODY)]
    left = Slot(1, *COLUMNS[2][0], lines=[*filler, ("업무 중 발생한 사고를 보험 약관상", 1), ("의 상해 1)나 재해 2)로 보아야 할지", 1)])
    left.notes = ISSUE_NOTES
    right = Slot(1, *COLUMNS[2][1], lines=[("이슈가 될 것으로 판단된다.", 1)])
    right.lines += [("개정 이후 보험금 지급 기준이 자주 바뀌", 2), ("면서 현장에서는 혼선이 초래되어 이", 2)]
    closing = [(line, 3) for line in wrap(ISSUE_PARAGRAPHS[3], 225.0, BODY)]
    next_page = Slot(2, *COLUMNS[2][0], lines=[("에 대하여 명확한 기준이 필요하다.", 2), *closing])
    return [left, right, next_page, Slot(2, *COLUMNS[2][1])]


def test_the_issues_brief_reads_its_sentences_whole(tmp_path: Path) -> None:
    slots = _issue_brief()
    path = tmp_path / "issue.pdf"
    draw(slots, path)
    paragraphs = [" ".join(text.split()) for text in ISSUE_PARAGRAPHS]
    for options in (PLAIN, SPACED):
        assert parsed_blocks(_parse(path, options)) == expected_blocks(slots, paragraphs)
    document = _parse(path, SPACED)  # Kiwi decides each Hangul wrap: a space or nothing
    assert ISSUE_PARAGRAPHS[1] in document.text and ISSUE_PARAGRAPHS[2] in document.text
    notes = [(block.page, block.text) for block in document.blocks if block.kind == "footnote"]
    assert notes == [(1, ISSUE_NOTES[0]), (1, ISSUE_NOTES[1])]


def test_marked_lines_in_body_type_are_not_footnotes(tmp_path: Path) -> None:
    """The same notes set in body type are body text, read where they stand."""
    slots = _issue_brief()
    slots[0].lines += [(line, 9 + n) for n, note in enumerate(ISSUE_NOTES) for line in wrap(note, 225.0, BODY)]
    slots[0].notes = []
    path = tmp_path / "no-notes.pdf"
    draw(slots, path)
    document = _parse(path)
    assert not [block for block in document.blocks if block.kind == "footnote"]


def test_a_note_that_runs_on_under_the_next_column_stays_one_note(tmp_path: Path) -> None:
    """As in the Federal Register: a long note ends at the foot of the next column, under its rule."""
    slots = _issue_brief()
    slots[0].notes = ["1) 첫 번째 각주는 길어서 왼쪽 단에 다 들어가지 않고 오른쪽 단의 아래로"]
    slots[1].notes = ["이어지는 내용을 담고 있다.", "2) 두 번째 각주는 짧다."]
    path = tmp_path / "runs-on.pdf"
    draw(slots, path)
    notes = [block.text for block in _parse(path, SPACED).blocks if block.kind == "footnote"]
    assert [_squash(note) for note in notes] == [
        _squash(slots[0].notes[0] + slots[1].notes[0]),
        _squash(slots[1].notes[1]),
    ]
    assert notes[0].endswith("오른쪽 단의 아래로 이어지는 내용을 담고 있다.")


def test_a_page_number_under_the_notes_does_not_hide_them(tmp_path: Path) -> None:
    slots = _issue_brief()[:2]
    path = tmp_path / "numbered.pdf"
    draw(slots, path)
    with pymupdf.open(path) as pdf:
        pdf[0].insert_text((290, 815), "- 3 -", fontname="helv", fontsize=NOTE)
        pdf.save(tmp_path / "numbered-3.pdf")
    document = _parse(tmp_path / "numbered-3.pdf")
    assert [block.text for block in document.blocks if block.kind == "footnote"] == ISSUE_NOTES
    assert "3 -" in document.text


def _body_page(pdf: pymupdf.Document, bottom: float, x0: float = 60.0, x1: float = 535.0) -> pymupdf.Page:
    """A page of body text in one column from the top down to `bottom`."""
    page = pdf.new_page(width=595, height=842)
    writer = pymupdf.TextWriter(page.rect)
    text = " ".join(KO_WORDS * 60)
    lines = wrap(text, x1 - x0, BODY)[: int((bottom - TOP) // PITCH)]
    for row, line in enumerate(lines):
        _put(writer, x0, TOP + BODY + PITCH * row, line, BODY, None if row == len(lines) - 1 else x1 - x0)
    writer.write_text(page)
    return page


def _small_lines(page: pymupdf.Page, lines: list[str], y: float, x0: float = 60.0) -> None:
    writer = pymupdf.TextWriter(page.rect)
    for row, line in enumerate(lines):
        _put(writer, x0, y + NOTE + NOTE_PITCH * row, line, NOTE, None)
    writer.write_text(page)


def _list_below_body(pdf: pymupdf.Document) -> None:
    page = _body_page(pdf, 735)
    _small_lines(page, ["1) 첫째 항목을 점검한다.", "2) 둘째 항목을 보고한다.", "3) 셋째 항목을 공개한다."], 736)


def _notes_under_a_table(pdf: pymupdf.Document) -> None:
    page = _body_page(pdf, 600)
    for y in (610, 640, 670, 700):
        page.draw_line((60, y), (535, y), width=0.5)
    for x in (60, 250, 400, 535):
        page.draw_line((x, 610), (x, 700), width=0.5)
    rows = [["구분", "2022년", "2023년"], ["서울 지역", "1,234", "1,456"], ["부산 지역", "2,345", "2,567"]]
    writer = pymupdf.TextWriter(page.rect)
    for r, row in enumerate(rows):
        for x, cell in zip((65, 255, 405), row):
            _put(writer, x, 630 + 30 * r, cell, BODY, None)
    writer.write_text(page)
    _small_lines(page, ["1) 2023년은 잠정치이며 추후 바뀔 수 있다.", "2) 합계는 반올림한 값이다."], 712)


def _source_under_a_figure(pdf: pymupdf.Document) -> None:
    page = _body_page(pdf, 480)
    page.draw_rect(pymupdf.Rect(60, 500, 535, 740), width=0.5)
    _small_lines(page, ["* 자료: 통계청 인구동향조사 결과를 가공함."], 752)


def _small_type_from_the_top_of_a_column(pdf: pymupdf.Document) -> None:
    page = _body_page(pdf, 760, 60.0, 285.0)
    items = [f"({n}) 운영 절차 장의 관련 조항을 이 규정의 그림 {n}에 따라 고친다." for n in range(1, 30)]
    _small_lines(page, [line for item in items for line in wrap(item, 225.0, NOTE)][:60], TOP - NOTE, 310.0)


def _small_table_at_the_foot(pdf: pymupdf.Document) -> None:
    page = _body_page(pdf, 700)
    writer = pymupdf.TextWriter(page.rect)
    rows = [["1) 서울 지역", "1,234", "5,678"], ["2) 부산 지역", "2,345", "6,789"], ["3) 대구 지역", "3,456", "7,890"]]
    for r, row in enumerate(rows):
        for x, cell in zip((60, 300, 450), row):
            _put(writer, x, 730 + NOTE_PITCH * r, cell, NOTE, None)
    writer.write_text(page)


NOT_FOOTNOTES = [
    _list_below_body,
    _notes_under_a_table,
    _source_under_a_figure,
    _small_type_from_the_top_of_a_column,
    _small_table_at_the_foot,
]


@pytest.mark.parametrize("layout", NOT_FOOTNOTES)
def test_small_marked_text_that_is_not_a_footnote_stays_in_place(tmp_path: Path, layout: Callable[..., None]) -> None:
    pdf = pymupdf.open()
    layout(pdf)
    path = tmp_path / "page.pdf"
    pdf.save(path)
    with pymupdf.open(path) as reread:
        words = _squash(reread[0].get_text())
    document = _parse(path)
    assert not [block.text for block in document.blocks if block.kind == "footnote"]
    assert sorted(_squash(document.text).replace("|", "").replace("-", "")) == sorted(words.replace("-", ""))


# -- the corpus --------------------------------------------------------------------------------
REVIEW = "kr-env-labor-committee-review-report-bill-2125318.pdf"
REGISTER = "us-federal-register-2020-17221.pdf"
GERMAN = "de-geometrie-und-topologie-lecture-notes.pdf"


def _blocks_of(document: Document, kind: str, page: int | None = None) -> list[str]:
    return [b.text for b in document.blocks if b.kind == kind and (page is None or b.page == page)]


def test_korean_review_report_sentence_runs_past_its_footnote_onto_the_next_page(corpus: Path) -> None:
    """Page 8 ends "...이행, 녹색" above footnote 1); page 9 goes on "성장의 추진을 위한...": one
    paragraph, and the footnote (two articles of the act) is one block after it."""
    document = _parse(corpus / REVIEW, SPACED)
    [sentence] = [text for text in _blocks_of(document, "paragraph", 8) if text.startswith("현행법 1)은")]
    assert "이행, 녹색" in sentence and "성장의 추진을 위한 주요 정책" in sentence and sentence.endswith("두고 있으며,")
    [note] = _blocks_of(document, "footnote", 8)
    assert note.startswith("1)｢기후위기 대응을 위한 탄소중립‧녹색성장 기본법｣ 제15조") and "제22조(2050 지방탄소중립" in note
    assert _blocks_of(document, "footnote", 10)[0].startswith("2) 개정안 제15조제5항")
    assert [b.kind for b in document.blocks if b.page == 8][-1] == "footnote"


def test_federal_register_footnotes_leave_the_columns_and_keep_their_numbers(corpus: Path) -> None:
    document = _parse(corpus / REGISTER)
    notes = _blocks_of(document, "footnote")
    numbers = [int(note.split(" ", 1)[0]) for note in notes]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 15
    # note 12 runs on under the second column; "10 seconds." is inside note 13, not a note
    assert any(n.startswith("12 The magnitude") and n.endswith("using control column inputs only.") for n in notes)
    assert "13 More than 10 degrees difference for more than 10 seconds." in notes
    text = document.text
    assert "airspeed disagree alert, and altitude disagree alert,5 and may affect" in text
    assert "the manufacturer, the operator, and the Ethiopian Civil Aviation Authority (ECAA)." in text
    assert "limit 12 the magnitude of any MCAS command to move the horizontal stabilizer" in text
    for paragraph in _blocks_of(document, "paragraph"):
        assert not re.match(r"\d{1,2} [A-Z]", paragraph) or len(paragraph) < 40, paragraph  # no note left in the body


def test_latex_footnotes_are_footnotes_and_the_rest_reads_as_before(corpus: Path) -> None:
    document = _parse(corpus / GERMAN)
    notes = _blocks_of(document, "footnote")
    assert "1 Diese Metrik wird auch „französische Eisenbahnmetrik“ genannt." in notes
    assert all(re.match(r"\d ", note) for note in notes) and len(notes) >= 8
