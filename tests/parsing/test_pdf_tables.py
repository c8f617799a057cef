"""Tables without ruling lines in PDFs: found where words stand in aligned columns, and nowhere else.

The pages are written here with PyMuPDF (`tests/data/pdf/make_pages.py` writes the same pages that
`bench/pdf_tables.py` scores), so the expected cells are the values placed on the page.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path
from types import ModuleType

import pymupdf
import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document

PAGES = Path(__file__).resolve().parents[1] / "data" / "pdf"


def _make_pages() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_pages", PAGES / "make_pages.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _make_pages()


def _parse(path: Path) -> Document:
    outcome = parse_file(path, ParseOptions(hwpx_apply_spacing=False))
    assert outcome.error is None and outcome.document is not None, outcome.error
    return outcome.document


def _built(tmp_path: Path, name: str) -> Document:
    path = tmp_path / name
    MAKE.PAGES[name](path)
    return _parse(path)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


# -- tables found --------------------------------------------------------------------------------
def test_payee_amount_date_table(tmp_path: Path) -> None:
    document = _built(tmp_path, "unruled_payees.pdf")
    [table] = document.tables
    assert table.rows == [["Payee", "Amount", "Date"], *[list(row) for row in MAKE.PAYEES]]
    # the paragraphs around it stay paragraphs, in order, and its words are not repeated as text
    paragraphs = [block.text for block in document.blocks if block.kind == "paragraph"]
    assert paragraphs[0].startswith("The committee reviewed") and paragraphs[-1].startswith("All payments")
    assert document.text.count("Northwind Traders") == 1


def test_statistics_table_with_a_two_line_header(tmp_path: Path) -> None:
    [table] = _built(tmp_path, "unruled_statistics.pdf").tables
    assert table.rows[0] == ["", "Population (thousands)", "", "Unemployment (%)", ""]
    assert (0, 1, 1, 2) in table.spans and (0, 3, 1, 2) in table.spans  # each label over its two years
    assert table.rows[1] == ["City", "2021", "2022", "2021", "2022"]
    assert table.rows[2:] == [list(row) for row in MAKE.STATS]


def test_korean_text_aligned_table(tmp_path: Path) -> None:
    document = _built(tmp_path, "unruled_korean.pdf")
    [table] = document.tables
    assert table.rows == [["기관", "금액(백만원)", "집행일자", "상태"], *[list(row) for row in MAKE.KOREAN]]
    assert "지방자치단체별 지원금 집행 현황은 다음과 같다." in document.text


def test_table_with_horizontal_rules_only(tmp_path: Path) -> None:
    """LaTeX booktabs: rules above and below the header and at the bottom, no rules between the
    columns, so no ruled cells: its columns are found from the words."""
    document = _built(tmp_path, "booktabs_rules_only.pdf")
    [table] = document.tables
    assert table.rows == [["Model", "Accuracy", "F1", "Time (ms)"], *[list(row) for row in MAKE.RESULTS]]
    assert table.caption.startswith("Table 1: Accuracy, F1 score")


# -- no false tables -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "two_column_prose.pdf", "contents_leaders.pdf", "figure_axis_labels.pdf", "glossary_and_numbers.pdf",
        "index_three_columns.pdf",
    ],
)
def test_text_in_columns_that_is_not_a_table(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    MAKE.PAGES[name](path)
    document = _parse(path)
    assert document.tables == []
    with pymupdf.open(path) as pdf:  # and every word is still there
        placed = sorted(_words(pdf[0].get_text()))
    assert sorted(_words(document.text)) == placed


def test_committed_pages_match_the_truth_file() -> None:
    """The pages `bench/pdf_tables.py` scores are the ones these tests build, and the truth file
    names a table on exactly the pages built to hold one."""
    truth = json.loads((PAGES / "table_truth.json").read_text(encoding="utf-8"))["built"]
    assert set(truth) == set(MAKE.PAGES)
    for name, pages in truth.items():
        document = _parse(PAGES / name)
        assert len(document.tables) == sum(map(len, pages.values())), name


# -- properties over generated tables -------------------------------------------------------------
NAMES = ["Northwind", "Contoso", "Fabrikam", "Han River", "Bluebird", "Greenfield", "Litware", "Tailspin", "Wingtip"]
WORDS = ["office", "supply", "services", "logistics", "catering", "consulting", "repairs", "printing"]


def _cell(rng: random.Random, kind: str) -> str:
    if kind == "name":
        return f"{rng.choice(NAMES)} {rng.choice(WORDS).title()}" if rng.random() < 0.7 else rng.choice(NAMES)
    if kind == "amount":
        return f"{rng.randint(1, 99999):,}.{rng.randint(0, 99):02d}"
    if kind == "count":
        return str(rng.randint(0, 9999))
    if kind == "date":
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return rng.choice(WORDS)


def _random_table(rng: random.Random) -> tuple[list[list[str]], list[str]]:
    kinds = ["name"] + [rng.choice(["amount", "count", "date", "word"]) for _ in range(rng.randint(2, 5))]
    rows = [[_cell(rng, kind) for kind in kinds] for _ in range(rng.randint(3, 12))]
    header = [f"Col{index}" for index in range(len(kinds))]
    return [header, *rows], kinds


def _place(page: pymupdf.Page, rows: list[list[str]], kinds: list[str], y: float, size: float, gap: float) -> float:
    widths = [max(pymupdf.get_text_length(row[c], fontsize=size) for row in rows) for c in range(len(kinds))]
    x = 60.0
    lefts = []
    for width in widths:
        lefts.append(x)
        x += width + gap
    for row in rows:
        for column, text in enumerate(row):
            right_aligned = kinds[column] in ("amount", "count")
            offset = widths[column] - pymupdf.get_text_length(text, fontsize=size) if right_aligned else 0
            page.insert_text((lefts[column] + offset, y), text, fontsize=size)
        y += size * 1.4
    return y


@pytest.mark.parametrize("seed", range(40))
def test_generated_unruled_tables_come_back_cell_for_cell(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    rows, kinds = _random_table(rng)
    size = rng.choice([8, 9, 10, 11])
    gap = size * rng.uniform(1.5, 4.0)
    pdf = pymupdf.open()
    page = pdf.new_page(width=612 if rng.random() < 0.5 else 842, height=792)
    y = MAKE._prose(page, MAKE.LOREM, 60, 60, 450, size)
    end = _place(page, rows, kinds, y + 2 * size, size, gap)
    MAKE._prose(page, "The figures above are final. " * 4, 60, end + size, 450, size)
    pdf.save(tmp_path / "table.pdf")
    [table] = _parse(tmp_path / "table.pdf").tables
    assert table.rows == rows


@pytest.mark.parametrize("seed", range(20))
def test_generated_prose_in_columns_is_never_a_table(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    columns = rng.choice([2, 3])
    size = rng.choice([8, 9, 10])
    pdf = pymupdf.open()
    page = pdf.new_page(width=612, height=792)
    width = (612 - 100 - 15 * (columns - 1)) / columns
    for column in range(columns):
        words = [rng.choice(WORDS + NAMES + [str(rng.randint(1, 2024)) for _ in range(4)]) for _ in range(220)]
        MAKE._prose(page, " ".join(words) + ".", 50 + column * (width + 15), 60, width, size)
    pdf.save(tmp_path / "prose.pdf")
    assert _parse(tmp_path / "prose.pdf").tables == []


def test_tables_off_means_no_text_aligned_tables_either(tmp_path: Path) -> None:
    path = tmp_path / "payees.pdf"
    MAKE.payees(path)
    outcome = parse_file(path, ParseOptions(pdf_extract_tables=False, hwpx_apply_spacing=False))
    assert outcome.document is not None and outcome.document.tables == []
    assert "Northwind Traders" in outcome.document.text


def test_a_wrapped_cell_stays_in_its_record(tmp_path: Path) -> None:
    """A description that wraps onto a second line (nothing in the other columns there) belongs
    to the record above; a row of numbers under an empty key is a record of its own."""
    pdf = pymupdf.open()
    page = pdf.new_page()
    records = [
        ("2024-01-05", ["Office chairs for the", "second floor"], "4,200.00"),
        ("2024-01-19", ["Printer toner"], "310.50"),
        ("2024-02-02", ["Annual maintenance of the", "ventilation system"], "12,900.00"),
        ("", ["Spare filters"], "450.00"),
    ]
    y = 100.0
    for x, text in ((72, "Date"), (170, "Description"), (380, "Amount")):
        page.insert_text((x, y), text, fontsize=10)
    for date, description, amount in records:
        y += 14
        page.insert_text((72, y), date, fontsize=10)
        page.insert_text((430 - pymupdf.get_text_length(amount, fontsize=10), y), amount, fontsize=10)
        for index, line in enumerate(description):
            page.insert_text((170, y + 12 * index), line, fontsize=10)
        y += 12 * (len(description) - 1)
    pdf.save(tmp_path / "wrapped.pdf")
    [table] = _parse(tmp_path / "wrapped.pdf").tables
    assert table.rows == [["Date", "Description", "Amount"]] + [[d, " ".join(text), a] for d, text, a in records]


# -- ruled tables with merged cells (item 2, without the corpus) ----------------------------------
def _centred(page: pymupdf.Page, text: str, left: float, right: float, y: float, size: float = 8) -> None:
    page.insert_text(((left + right) / 2 - pymupdf.get_text_length(text, fontsize=size) / 2, y), text, fontsize=size)


def _ruled_with_merges(path: Path) -> list[list[str]]:
    """A ruled table like the NICS report's: header boxes spanning several columns hold a group
    label over the labels of the columns below; a banner box across the table holds a line
    whose pieces do not follow the columns; data rows ruled cell by cell. Returns the data rows."""
    xs = [72, 160, 220, 280, 340, 400, 470]
    data = [["Alabama", "18,870", "23,022", "859", "14", "0"], ["Alaska", "209", "3,062", "191", "9", "3"],
            ["Arizona", "2,303", "12,382", "707", "5", "1"]]
    pdf = pymupdf.open()
    page = pdf.new_page()
    shape = page.new_shape()
    top, header, banner = 100.0, 126.0, 142.0
    bottoms = [banner + 16 * (index + 1) for index in range(len(data))]
    for y in [top, header, banner, *bottoms]:
        shape.draw_line((xs[0], y), (xs[-1], y))
    for x in xs:  # column rules: through the header only where a header box ends, then all the way
        shape.draw_line((x, top if x in (72, 160, 340, 470) else header), (x, header))
        shape.draw_line((x, banner), (x, bottoms[-1]))
    shape.draw_line((xs[0], header), (xs[0], banner))
    shape.draw_line((xs[-1], header), (xs[-1], banner))
    shape.finish(width=0.6)
    shape.commit()
    _centred(page, "State", 72, 160, 121)
    _centred(page, "Pre-Pawn", 160, 340, 110)
    _centred(page, "Returned", 340, 470, 110)
    for label, left, right in (("Handgun", 160, 220), ("Long Gun", 220, 280), ("Other", 280, 340),
                               ("Handgun", 340, 400), ("Long Gun", 400, 470)):
        _centred(page, label, left, right, 121)
    page.insert_text((80, 137), "Northern region", fontsize=8)
    page.insert_text((290, 137), "327 ballots cast", fontsize=8)
    for row, bottom in zip(data, bottoms):
        page.insert_text((76, bottom - 4), row[0], fontsize=8)
        for value, right in zip(row[1:], xs[2:]):
            page.insert_text((right - 4 - pymupdf.get_text_length(value, fontsize=8), bottom - 4), value, fontsize=8)
    pdf.save(path)
    return data


def test_ruled_header_boxes_split_over_their_columns_and_a_banner_stays_one_cell(tmp_path: Path) -> None:
    data = _ruled_with_merges(tmp_path / "ruled.pdf")
    [table] = _parse(tmp_path / "ruled.pdf").tables
    assert table.rows[0] == ["", "Pre-Pawn", "", "", "Returned", ""]
    assert table.rows[1] == ["State", "Handgun", "Long Gun", "Other", "Handgun", "Long Gun"]
    assert table.rows[2] == ["Northern region 327 ballots cast", "", "", "", "", ""]
    assert table.rows[3:] == data
    assert {(0, 1, 1, 3), (0, 4, 1, 2), (2, 0, 1, 6)} <= set(table.spans)
    assert table.markdown.count("ballots cast") == 1 and table.markdown.count("Pre-Pawn") == 1
