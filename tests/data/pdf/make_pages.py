"""Writes the small PDFs of this folder with PyMuPDF: pages whose tables have no ruling lines, and
pages of text in columns that are not tables. Run `python tests/data/pdf/make_pages.py` to
rebuild them; `table_truth.json` beside it says which tables each page holds.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pymupdf

HERE = Path(__file__).resolve().parent
LOREM = (
    "The committee reviewed the payments made during the year and found that every transfer was "
    "approved by the finance office before it was sent. Several vendors were paid late because "
    "their invoices arrived after the closing date of the month, and the office proposes to move "
    "that date so that smaller suppliers are not kept waiting. The figures below list the largest "
    "payments in the order they were made, with the amount and the date of each transfer."
)


def _prose(page: pymupdf.Page, text: str, x: float, y: float, width: float, size: float = 10) -> float:
    """Write text wrapped to `width` from (x, y); the y below it."""
    words = text.split()
    line = ""
    for word in words:
        trial = f"{line} {word}".strip()
        if pymupdf.get_text_length(trial, fontsize=size) > width and line:
            page.insert_text((x, y), line, fontsize=size)
            y += size * 1.3
            line = word
        else:
            line = trial
    if line:
        page.insert_text((x, y), line, fontsize=size)
        y += size * 1.3
    return y


def _right(page: pymupdf.Page, text: str, x_right: float, y: float, size: float = 10, font: str = "helv") -> None:
    width = (_KOREAN_FONT if font == "kr" else pymupdf.Font("helv")).text_length(text, fontsize=size)
    page.insert_text((x_right - width, y), text, fontsize=size, fontname=font)


# PyMuPDF's own CJK font (Droid Sans Fallback), embedded and subset: the PDF's built-in "korea"
# font sets Latin letters and digits one em apart, which no real Korean report does.
_KOREAN_FONT = pymupdf.Font("cjk")


def _korean_page(doc: pymupdf.Document) -> pymupdf.Page:
    page = doc.new_page()
    page.insert_font(fontname="kr", fontbuffer=_KOREAN_FONT.buffer)
    return page


PAYEES = [
    ("Northwind Traders", "12,450.00", "2024-01-05"),
    ("Contoso Cleaning Services", "3,120.50", "2024-01-19"),
    ("Han River Logistics", "48,900.00", "2024-02-02"),
    ("Bluebird Office Supply", "615.25", "2024-02-14"),
    ("Kim & Partners Law Office", "9,800.00", "2024-03-01"),
    ("Greenfield Catering", "1,275.40", "2024-03-22"),
]


def payees(path: Path) -> None:
    """A title, a paragraph, an unruled table (payee left-aligned, amount right-aligned, date), a
    paragraph after it."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Payments over 500 dollars, first quarter", fontsize=14)
    y = _prose(page, LOREM, 72, 100, 450)
    y += 14
    for x, text in ((72, "Payee"), (360, "Amount"), (420, "Date")):
        page.insert_text((x, y), text, fontsize=10)
    y += 16
    for payee, amount, date in PAYEES:
        page.insert_text((72, y), payee, fontsize=10)
        _right(page, amount, 400, y)
        page.insert_text((420, y), date, fontsize=10)
        y += 14
    _prose(page, "All payments were made by bank transfer. " * 3, 72, y + 20, 450)
    doc.save(path)


STATS = [
    ("Seoul", "9,668", "9,428", "4.1", "4.4"),
    ("Busan", "3,349", "3,317", "3.6", "3.9"),
    ("Incheon", "2,948", "2,967", "3.9", "4.0"),
    ("Daegu", "2,385", "2,363", "3.4", "3.7"),
    ("Gwangju", "1,441", "1,431", "3.2", "3.5"),
]


def statistics(path: Path) -> None:
    """A statistics table whose header has two lines: group labels centred over pairs of columns."""
    doc = pymupdf.open()
    page = doc.new_page()
    y = _prose(page, "Table 2. Population and unemployment by city, 2021 and 2022.", 72, 80, 450)
    y += 10
    groups = (("Population (thousands)", 250, 370), ("Unemployment (%)", 390, 510))
    for label, left, right in groups:
        width = pymupdf.get_text_length(label, fontsize=9)
        page.insert_text(((left + right) / 2 - width / 2, y), label, fontsize=9)
    y += 13
    page.insert_text((72, y), "City", fontsize=9)
    for year, right in (("2021", 300), ("2022", 370), ("2021", 450), ("2022", 510)):
        _right(page, year, right, y, 9)
    y += 15
    for row in STATS:
        page.insert_text((72, y), row[0], fontsize=9)
        for value, right in zip(row[1:], (300, 370, 450, 510)):
            _right(page, value, right, y, 9)
        y += 13
    _prose(page, "Source: national statistics office, regional employment survey.", 72, y + 12, 450, 8)
    doc.save(path)


def two_columns(path: Path) -> None:
    """Prose in two justified-looking columns with the same baselines: not a table."""
    doc = pymupdf.open()
    page = doc.new_page()
    text = (LOREM + " ") * 3
    _prose(page, text, 54, 72, 235)
    _prose(page, text.replace("payments", "transfers"), 310, 72, 235)
    doc.save(path)


def contents(path: Path) -> None:
    """A table of contents: section numbers, titles, dot leaders, page numbers."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Contents", fontsize=16)
    entries = [
        ("1", "Introduction", 1), ("2", "Scope of the review", 3), ("2.1", "Payments", 4),
        ("2.2", "Contracts", 7), ("3", "Findings", 9), ("4", "Recommendations", 15), ("5", "Annexes", 21),
    ]
    y = 110
    for number, title, page_number in entries:
        page.insert_text((72, y), number, fontsize=11)
        page.insert_text((110, y), title, fontsize=11)
        start = 110 + pymupdf.get_text_length(title, fontsize=11) + 6
        dots = "." * int((500 - start) / pymupdf.get_text_length(".", fontsize=11))
        page.insert_text((start, y), dots, fontsize=11)
        _right(page, str(page_number), 530, y, 11)
        y += 20
    # the same contents without leaders: titles and page numbers apart
    y += 30
    for number, title, page_number in entries:
        page.insert_text((72, y), number, fontsize=11)
        page.insert_text((110, y), title, fontsize=11)
        _right(page, str(page_number), 530, y, 11)
        y += 20
    doc.save(path)


def figure(path: Path) -> None:
    """A line chart: axes, a curve, tick labels on both axes, a legend; then a caption."""
    doc = pymupdf.open()
    page = doc.new_page()
    left, bottom, width, height = 110, 400, 380, 250
    shape = page.new_shape()
    shape.draw_line((left, bottom), (left + width, bottom))
    shape.draw_line((left, bottom), (left, bottom - height))
    for series, phase in ((0, 0.0), (1, 1.3)):
        points = [(left + i * width / 40, bottom - height / 2 - 0.4 * height * math.sin(i / 6 + phase)) for i in range(41)]
        shape.draw_polyline(points)
        shape.finish(color=(series, 0, 1 - series), width=1)
    shape.commit()
    for i in range(6):  # y ticks: 0, 20, ... 100
        value = str(i * 20)
        _right(page, value, left - 6, bottom - i * height / 5 + 3, 8)
    for i in range(9):  # x ticks: years
        year = str(2016 + i)
        x = left + i * width / 8
        page.insert_text((x - 8, bottom + 14), year, fontsize=8)
    for i, (name, value) in enumerate((("North", "41.2"), ("South", "37.9"), ("East", "52.0"))):
        page.insert_text((left + 20, bottom - height + 14 + 12 * i), name, fontsize=8)
        page.insert_text((left + 70, bottom - height + 14 + 12 * i), value, fontsize=8)
        page.insert_text((left + 100, bottom - height + 14 + 12 * i), "index", fontsize=8)
    page.insert_text((left, bottom + 40), "Figure 3. Index by region, 2016-2024.", fontsize=10)
    doc.save(path)


KOREAN = [
    ("서울특별시", "1,250", "2024. 3. 5.", "완료"),
    ("부산광역시", "830", "2024. 3. 12.", "진행 중"),
    ("대구광역시", "612", "2024. 4. 1.", "완료"),
    ("인천광역시", "947", "2024. 4. 18.", "검토"),
]


def korean(path: Path) -> None:
    """A Korean report page: a paragraph, then an unruled table (기관, 금액, 일자, 상태)."""
    doc = pymupdf.open()
    page = _korean_page(doc)
    page.insert_text((72, 80), "지방자치단체별 지원금 집행 현황은 다음과 같다.", fontsize=11, fontname="kr")
    y = 120
    header = (("기관", 72, False), ("금액(백만원)", 260, True), ("집행일자", 300, False), ("상태", 430, False))
    for text, x, right in header:
        if right:
            _right(page, text, x, y, 10, "kr")
        else:
            page.insert_text((x, y), text, fontsize=10, fontname="kr")
    y += 18
    for name, amount, date, state in KOREAN:
        page.insert_text((72, y), name, fontsize=10, fontname="kr")
        _right(page, amount, 260, y, 10, "kr")
        page.insert_text((300, y), date, fontsize=10, fontname="kr")
        page.insert_text((430, y), state, fontsize=10, fontname="kr")
        y += 16
    page.insert_text((72, y + 20), "집행 실적은 분기마다 갱신된다.", fontsize=11, fontname="kr")
    doc.subset_fonts()
    doc.save(path, garbage=3, deflate=True)


def glossary(path: Path) -> None:
    """Two columns of term / meaning pairs on one baseline (a glossary in two page columns) and a
    paragraph with many numbers on each line: neither is a table of three columns."""
    doc = pymupdf.open()
    page = doc.new_page()
    terms = [("AOA", "angle of attack"), ("MCAS", "augmentation system"), ("MEL", "equipment list"),
             ("AFM", "flight manual"), ("FCC", "flight control computer")]
    y = 80
    for (a, b), (c, d) in zip(terms, terms[1:] + terms[:1]):
        page.insert_text((72, y), a, fontsize=10)
        page.insert_text((130, y), b, fontsize=10)
        page.insert_text((320, y), c, fontsize=10)
        page.insert_text((380, y), d, fontsize=10)
        y += 14
    text = (
        "Between 2019 and 2023 the office paid 1,204 invoices in 2019, 1,377 in 2020, 1,512 in 2021 "
        "and 1,630 in 2022, an increase of 35 percent over 4 years, while the staff grew from 12 to 15 "
        "and the average delay fell from 21 days to 9 days in 2023, with 3 exceptions in 2022."
    )
    _prose(page, text, 72, y + 30, 450)
    doc.save(path)


RESULTS = [
    ("Model A", "0.912", "0.874", "12.4"),
    ("Model B", "0.897", "0.881", "8.1"),
    ("Model C (ours)", "0.934", "0.902", "9.7"),
    ("Baseline", "0.802", "0.776", "3.2"),
]


def booktabs(path: Path) -> None:
    """A LaTeX-style table: rules above, below the header and at the bottom, none between columns
    (so no ruled cells), with a caption above it."""
    doc = pymupdf.open()
    page = doc.new_page()
    y = _prose(page, "Table 1: Accuracy, F1 score and inference time of each model on the test set.", 72, 90, 450)
    y += 6
    shape = page.new_shape()
    shape.draw_line((72, y), (480, y))
    y += 14
    header = (("Model", 80, False), ("Accuracy", 300, True), ("F1", 380, True), ("Time (ms)", 470, True))
    for text, x, right in header:
        _right(page, text, x, y) if right else page.insert_text((x, y), text, fontsize=10)
    y += 6
    shape.draw_line((72, y), (480, y))
    y += 14
    for row in RESULTS:
        page.insert_text((80, y), row[0], fontsize=10)
        for value, right in zip(row[1:], (300, 380, 470)):
            _right(page, value, right, y)
        y += 14
    shape.draw_line((72, y - 8), (480, y - 8))
    shape.finish(width=0.8)
    shape.commit()
    doc.save(path)


def index(path: Path) -> None:
    """A back-of-book index in three columns: terms and page numbers, not a table."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Index", fontsize=16)
    terms = ["Abbildung", "Basis", "Blätterung", "Decktransformation", "Diffeomorphismus", "Einbettung",
             "Faser", "Fundamentalgruppe", "Garbe", "Homotopie", "Homöomorphismus", "Isometrie", "Karte",
             "Kompaktheit", "Mannigfaltigkeit", "Metrik", "Orientierung", "Produkttopologie", "Quotient",
             "Retraktion", "Simplex", "Teilraum", "Topologie", "Überlagerung", "Zusammenhang"]
    for index_, term in enumerate(terms * 2):
        column, row = divmod(index_, 17)
        x, y = 72 + column * 160, 110 + row * 14
        pages = ", ".join(str(3 + (index_ * 7 + k * 13) % 110) for k in range(1 + index_ % 3))
        page.insert_text((x, y), term, fontsize=9)
        page.insert_text((x + 95, y), pages, fontsize=9)
    doc.save(path)


PAGES = {
    "unruled_payees.pdf": payees,
    "unruled_statistics.pdf": statistics,
    "two_column_prose.pdf": two_columns,
    "contents_leaders.pdf": contents,
    "figure_axis_labels.pdf": figure,
    "unruled_korean.pdf": korean,
    "glossary_and_numbers.pdf": glossary,
    "booktabs_rules_only.pdf": booktabs,
    "index_three_columns.pdf": index,
}


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for name, make in PAGES.items():
        make(folder / name)


if __name__ == "__main__":
    main()
