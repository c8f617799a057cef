"""PDF parsing on the real corpus, plus small PDFs written here with PyMuPDF for what needs control.

Expected values are read in the files themselves: by hand from the page, or through PyMuPDF's own
plain text and its `find_tables` (a different code path from the parser's).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pymupdf
import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.pdf_layout import looks_like_table
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document

BILL = "kr-bill-2125318-carbon-neutrality-act-amendment.pdf"
REVIEW = "kr-env-labor-committee-review-report-bill-2125318.pdf"
MINUTES = "kr-national-assembly-env-labor-committee-minutes-2024-05-07.pdf"
REGISTER = "us-federal-register-2020-17221.pdf"
NICS = "us-fbi-nics-firearm-background-checks-2015-11.pdf"
WARN = "us-ca-edd-warn-report-2015-07-to-2016-03.pdf"
LA_COUNTY = "us-la-county-precinct-election-results-2014-p1.pdf"
GERMAN = "de-geometrie-und-topologie-lecture-notes.pdf"
ENCRYPTED = "encrypted-lorem-user-password-test.pdf"
SCANNED = "scanned-cn-customs-admin-penalty-decision-image-only.pdf"

OPTIONS = ParseOptions()


def _parse(path: Path, options: ParseOptions = OPTIONS) -> Document:
    outcome = parse_file(path, options)
    assert outcome.error is None, outcome.error
    assert outcome.document is not None and not outcome.warnings, outcome.warnings
    return outcome.document


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _alnum(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def _page_blocks(document: Document, page: int, kind: str = "paragraph") -> list[str]:
    return [block.text for block in document.blocks if block.page == page and block.kind == kind]


# -- Korean Hancom exports ---------------------------------------------------------------------
def test_korean_bill_joins_wrapped_hangul_and_restores_word_spaces(corpus: Path) -> None:
    document = _parse(corpus / BILL)
    assert document.pages == 10 and document.language == "ko"
    # Page 1 wraps "탄소중|립기본계획" mid-word; the words themselves are placed apart, unspaced.
    assert "탄소중립기본계획 및 주요 정책 등을 심의ㆍ의결하기 위하여" in document.text
    assert "탄소중 립" not in document.text and "탄소중\n립" not in document.text
    for block in document.blocks:
        assert "\n" not in block.text or block.kind == "table", block.text
    assert any(block.text.startswith("현행법은 기후위기 대응을 위해") for block in document.blocks)
    assert document.blocks[0].kind == "heading" and "일부개정법률안" in document.blocks[0].text


def test_korean_bill_drops_page_numbers_and_keeps_its_comparison_table(corpus: Path) -> None:
    document = _parse(corpus / BILL)
    assert not [block.text for block in document.blocks if re.fullmatch(r"-\s*\d+\s*-", block.text)]
    assert "- 3 -" not in document.text
    table = document.tables[0]
    assert table.page == 7 and table.rows[0] == ["현행", "개정안"]
    assert "제15조(2050 탄소중립녹색성장위원회의 설치)" in table.rows[1][0]


def test_korean_minutes_tables_have_cells_whose_text_is_not_repeated(corpus: Path) -> None:
    document = _parse(corpus / MINUTES)
    [table] = [table for table in document.tables if table.page == 17]
    assert table.rows == [
        ["구분", "대통령령", "부령", "훈령", "예규", "고시", "기타"],
        ["환경 소관", "27", "18", "37", "18", "122", "17"],
        ["고용노동소관", "9", "11", "22", "5", "56", "8"],
    ]
    assert not [text for text in _page_blocks(document, 17) if "대통령령 부령" in text or "고시 기타" in text]
    # The running header "제414회-환경노동제1차(2024년5월7일) 5" sits on every page.
    assert "환경노동제1차(2024년5월7일)" not in _squash(document.text)
    assert "이은주 (2024. 1. 25. 사직)" in document.text


def test_hangul_line_wraps_become_a_space_or_nothing(corpus: Path) -> None:
    """Hancom PDFs wrap Korean lines inside words and between them, with no space glyph to tell
    (about half of the corpus's 757 Hangul wraps are between words). With spacing on, Kiwi reads
    the words around each wrap; within lines the spaces still come from the gaps, untouched."""
    for name, between, inside in [
        (BILL, ["등을 구성하도록", "않고 모든"], ["탄소중립기본계획 및"]),
        (MINUTES, ["남은 기간에", "우리 위원회를", "의견을 최대한"], ["고용노동법안심사소위원회로"]),
    ]:
        spaced = _parse(corpus / name, ParseOptions(hwpx_apply_spacing=True)).text
        plain = _parse(corpus / name, ParseOptions(hwpx_apply_spacing=False)).text
        assert spaced.replace(" ", "") == plain.replace(" ", "")  # only spaces differ
        for words in between:
            assert words in spaced and words.replace(" ", "") in plain
        for word in inside:
            assert word in spaced and word in plain
        assert "\x00" not in spaced and "\x00" not in plain


# -- tables ------------------------------------------------------------------------------------
def test_nics_table_has_one_row_per_state_under_its_title(corpus: Path) -> None:
    document = _parse(corpus / NICS)
    [table] = document.tables
    assert table.caption == "NICS Firearm Background Checks November - 2015"
    rows = {row[0]: row for row in table.rows}
    assert rows["Alabama"][:4] == ["Alabama", "18,870", "23,022", "22,650"] and rows["Alabama"][-1] == "71,137"
    assert rows["Wyoming"][-1] == "5,017" and rows["Totals"][-1] == "2,236,457"
    # Two header lines: the group labels over their columns, then one label per column.
    groups, labels = table.rows[0], table.rows[1]
    assert labels[:7] == ["State / Territory", "Permit", "Handgun", "Long Gun", "*Other", "**Multiple", "Admin"]
    assert labels[-1] == "Totals" and labels[7:10] == ["Handgun", "Long Gun", "*Other"]
    assert groups[7:10] == ["Pre-Pawn", "", ""] and (0, 7, 1, 3) in table.spans
    assert groups[-4:] == ["Return to Seller - Private Sale", "", "", ""]
    assert len({len(row) for row in table.rows}) == 1
    assert "NOTES: *Refers to frames, receivers and other firearms" in document.text


def _rule_columns(page: pymupdf.Page, middle: float) -> list[float]:
    """x of the vertical rules that cross the height `middle` of the page."""
    xs: set[float] = set()
    for path in page.get_drawings():
        for item in path["items"]:
            if item[0] == "l" and abs(item[1].x - item[2].x) < 0.5:
                low, high = sorted((item[1].y, item[2].y))
                if low <= middle <= high:
                    xs.add(round(item[1].x))
            elif item[0] == "re":
                rect = item[1]
                if rect.width < 2 and rect.y0 <= middle <= rect.y1:
                    xs.add(round(rect.x0))
    merged: list[float] = []
    for x in sorted(xs):
        if not merged or x - merged[-1] > 2:
            merged.append(x)
    return merged


def test_nics_numbers_stay_under_their_columns(corpus: Path) -> None:
    """Rows are not ruled in the NICS report: each state's numbers must land in the column whose
    rules they sit between, read here from the page's own words and vertical rules."""
    [table] = _parse(corpus / NICS).tables
    rows = {row[0]: row for row in table.rows[2:]}
    with pymupdf.open(corpus / NICS) as pdf:
        page = pdf[0]
        lines: dict[float, list[tuple[float, float, float, float, str]]] = {}
        for word in page.get_text("words"):
            lines.setdefault(round((word[1] + word[3]) / 2), []).append(word[:5])
        checked = 0
        for middle, words in sorted(lines.items()):
            name = " ".join(w[4] for w in sorted(words) if w[0] < 110)
            if name not in rows:
                continue
            rules = _rule_columns(page, middle)
            expected = ["" for _ in table.rows[0]]
            for word in sorted(w for w in words if w[0] >= 110):
                column = sum(1 for x in rules if x < (word[0] + word[2]) / 2) - 1
                expected[column] = f"{expected[column]} {word[4]}".strip()
            assert rows[name][1:] == expected[1:], name
            checked += 1
    assert checked == len(rows) == 56  # 50 states, 5 territories and districts, the totals


def test_every_corpus_pdf_table_says_each_cell_once(corpus: Path) -> None:
    """Item 2's check: a table's Markdown is no longer than its distinct cells' text plus the
    separators of its shape (a merged cell repeated into every slot would exceed it)."""
    tables = 0
    for path in sorted(corpus.glob("*.pdf")):
        outcome = parse_file(path, OPTIONS)
        for table in outcome.document.tables if outcome.document else []:
            height, width = len(table.rows), len(table.rows[0])
            cells = sum(len(cell.replace("|", "\\|")) for row in table.rows for cell in row)
            separators = height * (3 * width + 1) + (4 * width + 1) + height
            assert len(table.markdown) <= cells + separators, (path.name, table.page)
            tables += 1
    assert tables >= 40
    # merged header cells of a Korean table: "민간현황" spans eight columns, "구분" two rows
    [table] = [t for t in _parse(corpus / REVIEW).tables if t.page == 13]
    assert table.markdown.count("민간현황") == 1 and table.markdown.count("구분") == 1
    assert (0, 4, 1, 8) in table.spans and (0, 0, 2, 1) in table.spans


def test_la_county_banner_is_one_cell(corpus: Path) -> None:
    [table] = _parse(corpus / LA_COUNTY).tables
    assert table.markdown.count("327 BALLOTS CAST") == 1 and table.markdown.count("REGISTERED VOTERS") == 1
    [banner] = [row for row in table.rows if "327 BALLOTS CAST" in row[0]]
    assert banner[1:] == ["", "", ""] and (table.rows.index(banner), 0, 1, 4) in table.spans


def test_federal_register_cost_table_has_one_row_per_action(corpus: Path) -> None:
    """Its rows are ruled only above and below the body: the three actions are three rows, the
    wrapped "INOP marker removal." stays with its action."""
    first, second = _parse(corpus / REGISTER).tables
    assert [row[0] for row in first.rows[1:]] == [
        "FCC OPS installation and verification ..", "AFM revisions …",
        "MDS installation and verification, INOP marker removal.",
    ]
    assert all(row[-1] == "$6,205." for row in first.rows[1:])
    assert [row[-1] for row in second.rows[1:]] == ["Up to $766,865.", "$248,200."]


@pytest.mark.parametrize("name", [NICS, WARN, BILL, REVIEW, MINUTES, REGISTER])
def test_tables_match_a_full_find_tables_pass(corpus: Path, name: str) -> None:
    """Finding candidate grids cheaply loses none of the tables PyMuPDF finds on every page."""
    reference: dict[int, list[list[list[str]]]] = {}
    with pymupdf.open(corpus / name) as pdf:
        for page in pdf:
            for found in page.find_tables(use_layout=False).tables:
                rows = [[cell or "" for cell in row] for row in found.extract()]
                if looks_like_table(rows):
                    reference.setdefault(page.number + 1, []).append(rows)
    document = _parse(corpus / name)
    ours = Counter(table.page for table in document.tables)
    assert ours == Counter({page: len(tables) for page, tables in reference.items()})
    for page, tables in reference.items():
        ours_on_page = _alnum(" ".join(t.markdown for t in document.tables if t.page == page))
        for rows in tables:  # find_tables may scramble punctuation in Hancom cells: compare a prefix
            cell = next(_alnum(c) for row in rows[1:] for c in row if _alnum(c))
            assert cell[:12] in ours_on_page, (page, cell)


def test_tables_can_be_turned_off(corpus: Path) -> None:
    document = _parse(corpus / NICS, ParseOptions(pdf_extract_tables=False))
    assert document.tables == [] and "Alabama" in document.text and "71,137" in document.text


# -- layout: columns, running lines, reflow ----------------------------------------------------
def test_federal_register_reads_three_columns_in_order(corpus: Path) -> None:
    document = _parse(corpus / REGISTER)
    headings = _page_blocks(document, 5, "heading")
    order = ["FAA’s Determination", "Proposed AD Requirements", "Flightcrew Training", "Costs of Compliance"]
    assert [headings.index(title) for title in order] == sorted(headings.index(title) for title in order)
    # A sentence running from the foot of column 1 to the head of column 2 stays one paragraph.
    assert "by the means identified in the ADDRESSES section." in document.text
    assert "FAA-approved MEL" in document.text and "non-normal procedure" in document.text
    assert "FOR FURTHER INFORMATION CONTACT" in document.text  # small caps with lost spaces
    assert "VerDate" not in document.text  # the print-shop footer on every page
    assert not [b for b in document.blocks if b.page > 1 and "Thursday, August 6, 2020" in b.text]


def _body_characters(page: pymupdf.Page) -> Counter[str]:
    """Characters of upright lines away from the top and bottom 9% of the page (running lines)."""
    height = page.rect.height
    lines = [line for block in page.get_text("dict")["blocks"] for line in block.get("lines", ())]
    body = [line for line in lines if line["dir"][0] > 0.9 and 0.09 * height < line["bbox"][1] < 0.91 * height]
    return Counter(ch for line in body for span in line["spans"] for ch in span["text"] if ch.isalnum())


@pytest.mark.parametrize("name", [REGISTER, BILL, MINUTES, GERMAN])
def test_no_text_is_lost(corpus: Path, name: str) -> None:
    with pymupdf.open(corpus / name) as pdf:
        reference = sum((_body_characters(page) for page in pdf), Counter())
    ours = Counter(ch for ch in _parse(corpus / name).text if ch.isalnum())
    kept = sum(min(count, ours[ch]) for ch, count in reference.items())
    assert kept >= 0.995 * sum(reference.values())


def test_german_lecture_notes(corpus: Path) -> None:
    document = _parse(corpus / GERMAN)
    assert document.pages == 117 and document.language == "de"
    assert document.title == "Geometrie und Topologie" and document.metadata["author"] == "Martin Thoma"
    assert document.metadata["creationDate"] == "2016-12-31T18:43:23+01:00"
    assert ("Vorwort", 1) in [(b.text, b.level) for b in document.blocks if b.kind == "heading"]
    assert "Prof. Dr. Herrlich" in document.text  # spaces that were separate spans
    assert "ihre Übungsaufgaben und Lösungen zu benutzen" in document.text  # Übungsauf-|gaben
    assert "1.2. METRISCHE RÄUME" not in [block.text for block in document.blocks]  # running header


# -- bad input ---------------------------------------------------------------------------------
def test_encrypted_pdf_needs_the_password(corpus: Path) -> None:
    locked = parse_file(corpus / ENCRYPTED, OPTIONS)
    assert locked.document is None
    assert locked.error == f"{ENCRYPTED}: the PDF is password-protected; set parsing.pdf.password in project.yaml"
    wrong = parse_file(corpus / ENCRYPTED, ParseOptions(pdf_password="nope"))
    assert wrong.error and "does not open" in wrong.error
    document = _parse(corpus / ENCRYPTED, ParseOptions(pdf_password="test"))
    assert "Lorem ipsum dolor sit amet, consectetur adipiscing elit" in document.text and document.pages == 1


def test_scanned_pdf_is_reported_for_ocr(corpus: Path) -> None:
    outcome = parse_file(corpus / SCANNED, OPTIONS)
    assert outcome.document is None and outcome.error is None and outcome.status == "warned"
    assert outcome.warnings == [
        f"{SCANNED}: no text layer on any of its 3 pages (scanned); it needs OCR before it can be used"
    ]


def test_damaged_pdfs_fail_with_one_clear_line(corpus: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.7\n" + b"\x00not a pdf body\x01" * 200)
    outcome = parse_file(garbage, OPTIONS)
    assert outcome.error and outcome.error.startswith("garbage.pdf: ") and "unexpectedly" not in outcome.error
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes((corpus / REGISTER).read_bytes()[:300_000])
    outcome = parse_file(truncated, OPTIONS)
    assert "unexpectedly" not in (outcome.error or "") and "\n" not in (outcome.error or "")
    assert outcome.document is not None or outcome.error.startswith("truncated.pdf: no pages found (damaged")


def test_the_cycle_collector_is_back_on_after_a_parse_that_fails_or_succeeds(corpus: Path, tmp_path: Path) -> None:
    import gc

    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00" * 100)
    assert gc.isenabled()
    assert parse_file(broken, OPTIONS).error
    assert gc.isenabled()
    assert parse_file(corpus / NICS, OPTIONS).document is not None
    assert gc.isenabled()
    gc.disable()
    try:  # a caller that turned it off keeps it off
        parse_file(corpus / NICS, OPTIONS)
        assert not gc.isenabled()
    finally:
        gc.enable()


# -- small PDFs written here -------------------------------------------------------------------
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]
WORDS += ["hotel", "india", "juliet", "kilo", "lima", "mike", "november"]


def _two_column_pdf(path: Path, pages: int = 3) -> None:
    pdf = pymupdf.open()
    for number in range(1, pages + 1):
        page = pdf.new_page(width=595, height=842)
        page.insert_text((72, 40), "Annual Report of the Test Office", fontsize=9)
        page.insert_text((280, 815), f"Page {number} of {pages}", fontsize=9)
        words = WORDS[number:] + WORDS[:number]  # pages differ, as real pages do
        left = " ".join(f"left{number} {word}" for word in words * 2) + "."
        right = " ".join(f"right{number} {word}" for word in words * 2) + "."
        page.insert_textbox(pymupdf.Rect(72, 80, 290, 700), left, fontsize=10)
        page.insert_textbox(pymupdf.Rect(305, 80, 523, 700), right, fontsize=10)
    pdf.save(path)


def test_two_columns_read_in_order_and_running_lines_go(tmp_path: Path) -> None:
    path = tmp_path / "columns.pdf"
    _two_column_pdf(path)
    document = _parse(path)
    paragraphs = [block.text for block in document.blocks if block.kind == "paragraph"]
    assert [p.split()[0] for p in paragraphs] == ["left1", "right1", "left2", "right2", "left3", "right3"]
    assert paragraphs[0] == " ".join(f"left1 {word}" for word in (WORDS[1:] + WORDS[:1]) * 2) + "."
    assert "Annual Report" not in document.text and "Page 2 of 3" not in document.text


def test_a_paragraph_cut_by_a_page_break_is_one_paragraph(tmp_path: Path) -> None:
    """Lines of one width (Courier): the last line of page 1 is full and page 2 goes on in lower
    case, so the paragraph runs on; a paragraph that ends with its sentence at the foot does not."""
    pdf = pymupdf.open()
    pages = [
        ["The committee met on Monday to review", "the budget for the coming year and the", "staffing plan that the office had drawn"],
        ["up in the spring; it approved both.", "A second paragraph starts on this page", "and ends on this page with its sentence."],
        ["It closes at the foot of the third page", "and the next page starts a new one here."],
        ["another paragraph in lower case, on its", "own, as the sentence before it ended."],
    ]
    for lines in pages:
        page = pdf.new_page(width=595, height=842)
        for row, line in enumerate(lines):
            page.insert_text((72, 100 + 14 * row), line, fontname="cour", fontsize=10)
    path = tmp_path / "runs-on.pdf"
    pdf.save(path)
    blocks = [(block.page, block.text) for block in _parse(path).blocks if block.kind == "paragraph"]
    assert blocks[0] == (1, " ".join(pages[0]) + " " + pages[1][0])
    assert blocks[1] == (2, " ".join(pages[1][1:]))
    assert blocks[2] == (3, " ".join(pages[2]))
    assert blocks[3] == (4, " ".join(pages[3]))


def test_hangul_words_placed_apart_get_spaces_and_wraps_join(tmp_path: Path) -> None:
    """Like a Hancom export: each word is placed on its own, with no space character between."""
    pdf = pymupdf.open()
    page = pdf.new_page(width=595, height=842)
    lines = [["현행법은", "기후위기", "대응을", "위해", "국가", "탄소중"], ["립", "기본계획을", "수립하도록", "하고", "있음."]]
    for row, words in enumerate(lines):
        x = 72.0
        for word in words:
            page.insert_text((x, 100 + 20 * row), word, fontname="korea", fontsize=12)
            x += 12 * len(word) + 7
    page = pdf.new_page(width=595, height=842)
    page.insert_text((72, 100), "This line of English text ends in an exam-", fontsize=11)
    page.insert_text((72, 114), "ple of a word wrapped with a hyphen.", fontsize=11)
    path = tmp_path / "hangul.pdf"
    pdf.save(path)
    document = _parse(path, ParseOptions(hwpx_apply_spacing=False))
    assert "현행법은 기후위기 대응을 위해 국가 탄소중립 기본계획을 수립하도록 하고 있음." in document.text
    assert "This line of English text ends in an example of a word wrapped with a hyphen." in document.text


def test_kiwi_spaces_hangul_that_has_no_word_gaps_only_when_asked(tmp_path: Path) -> None:
    glued = "아버지가방에들어가신다그리고현행법은기후위기대응을위해국가계획을수립하도록하고있음"
    pdf = pymupdf.open()
    pdf.new_page(width=595, height=842).insert_text((72, 100), glued, fontname="korea", fontsize=12)
    path = tmp_path / "glued.pdf"
    pdf.save(path)
    assert _parse(path, ParseOptions(hwpx_apply_spacing=False)).text == glued
    spaced = _parse(path, ParseOptions(hwpx_apply_spacing=True)).text
    assert spaced.startswith("아버지가 방에 들어가신다") and _squash(spaced) == glued
    assert spaced.count(" ") >= 8


def test_pages_without_text_but_with_images_are_named(tmp_path: Path) -> None:
    pdf = pymupdf.open()
    pdf.new_page().insert_text((72, 72), "A page with a real text layer.", fontsize=11)
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pixmap.clear_with(200)
    pdf.new_page().insert_image(pymupdf.Rect(72, 72, 300, 300), pixmap=pixmap)
    pdf.new_page()  # blank: nothing to OCR, nothing to say
    path = tmp_path / "mixed.pdf"
    pdf.save(path)
    outcome = parse_file(path, OPTIONS)
    assert outcome.document is not None and outcome.document.pages == 3
    assert outcome.warnings == ["mixed.pdf: no text layer on page 2 (scanned); OCR is needed to use its text"]


def test_module_imports_without_pymupdf_or_kiwi() -> None:
    code = "import sys, slm_factory.parsing.pdf; print('pymupdf' in sys.modules, 'kiwipiepy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
