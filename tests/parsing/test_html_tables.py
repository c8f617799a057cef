"""HTML tables: merged cells said once (issue 7, item 2) and layout tables read as their content
(item 3), on pages written here and on the corpus pages."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document, table_to_markdown

DATA = Path(__file__).resolve().parents[1] / "data" / "html"
PROSE = (
    "The council approved the allocation of funds for the fiscal year after the second reading "
    "of the budget ordinance in March, and asked the parks team to report on every project."
)


def _parse(path: Path) -> Document:
    outcome = parse_file(path, ParseOptions())
    assert outcome.document is not None, outcome.error
    return outcome.document


def _page(tmp_path: Path, table: str, name: str = "page.html") -> Document:
    path = tmp_path / name
    path.write_text(
        f"<html><body><article><h1>Budget</h1><p>{PROSE}</p>{table}<p>{PROSE}</p>"
        "</article></body></html>",
        encoding="utf-8",
    )
    return _parse(path)


def _kinds(document: Document) -> list[tuple[str, str]]:
    return [(block.kind, block.text) for block in document.blocks]


# -- item 2: a merged cell's text appears once -----------------------------------------------


def test_colspan_and_rowspan_text_once_in_its_first_slot(tmp_path: Path) -> None:
    table = """<table>
      <tr><th rowspan="2">State</th><th colspan="3">Handgun checks</th>
          <th rowspan="2">Total</th></tr>
      <tr><th>Permit</th><th>Sale</th><th>Other</th></tr>
      <tr><td>Alabama</td><td>26,996</td><td>21,596</td><td>707</td><td>49,299</td></tr>
      <tr><td>Alaska</td><td>254</td><td>3,249</td><td>263</td><td>3,766</td></tr>
    </table>"""
    document = _page(tmp_path, table)
    assert document.tables[0].rows == [
        ["State", "Handgun checks", "", "", "Total"],
        ["", "Permit", "Sale", "Other", ""],
        ["Alabama", "26,996", "21,596", "707", "49,299"],
        ["Alaska", "254", "3,249", "263", "3,766"],
    ]
    assert sorted(document.tables[0].spans) == [(0, 0, 2, 1), (0, 1, 1, 3), (0, 4, 2, 1)]
    assert document.text.count("Handgun checks") == 1 and document.text.count("State") == 1


def test_rowspan_zero_reaches_the_last_row_of_its_section(tmp_path: Path) -> None:
    table = """<table>
      <tr><td rowspan="0">Region north</td><td>Oslo</td><td>12</td></tr>
      <tr><td>Bergen</td><td>9</td></tr>
      <tr><td>Tromso</td><td>4</td></tr>
    </table>"""
    document = _page(tmp_path, table)
    assert document.tables[0].rows == [
        ["Region north", "Oslo", "12"],
        ["", "Bergen", "9"],
        ["", "Tromso", "4"],
    ]
    assert document.tables[0].spans == [(0, 0, 3, 1)]


def test_a_colspan_over_a_fine_grid_collapses_to_the_lines_cells_use(tmp_path: Path) -> None:
    """A form laid out on a 6-column grid where every cell spans 2 or 3: three columns remain."""
    table = """<table>
      <tr><td colspan="2">Name</td><td colspan="4">Kim Minjun</td></tr>
      <tr><td colspan="2">Address</td><td colspan="4">12 Sejong-daero, Seoul</td></tr>
      <tr><td colspan="2">Phone</td><td colspan="2">010-1234-5678</td>
          <td colspan="2">mobile</td></tr>
    </table>"""
    rows = _page(tmp_path, table).tables[0].rows
    assert rows == [
        ["Name", "Kim Minjun", ""],
        ["Address", "12 Sejong-daero, Seoul", ""],
        ["Phone", "010-1234-5678", "mobile"],
    ]


def test_ragged_rows_and_a_missing_tr_end_tag(tmp_path: Path) -> None:
    table = """<table>
      <tr><th>Extension</th><th>Kind</th><th>MIME type</th>
      <tr><td>.js</td><td>JavaScript</td><td>text/javascript</td>
      <tr><td>.json</td><td>JSON</td></tr>
      <tr><td>.zip</td></tr>
      <tr><td>.7z</td><td>7-zip archive</td><td>application/x-7z-compressed</td><td>extra</td></tr>
    </table>"""
    rows = _page(tmp_path, table).tables[0].rows
    assert rows == [
        ["Extension", "Kind", "MIME type", ""],
        [".js", "JavaScript", "text/javascript", ""],
        [".json", "JSON", "", ""],
        [".zip", "", "", ""],
        [".7z", "7-zip archive", "application/x-7z-compressed", "extra"],
    ]


def test_mdn_page_rows_keep_their_columns(corpus: Path) -> None:
    """The corpus MDN table: one <tr> lacks its </tr>, nothing spans; every row has 3 cells."""
    document = _parse(corpus / "kr-mdn-http-mime-types-table.html")
    rows = document.tables[0].rows
    assert all(len(row) == 3 and all(row) for row in rows)
    assert len({row[0] for row in rows}) == len(rows)


def _random_table(rng: random.Random, number: int) -> tuple[str, list[str]]:
    rows, texts = [], []
    for r in range(rng.randint(2, 6)):
        cells = []
        for c in range(rng.randint(1, 5)):
            text = f"t{number}r{r}c{c}"
            texts.append(text)
            colspan = rng.choice([1, 1, 1, 2, 3])
            rowspan = rng.choice([1, 1, 1, 2, 3, 0])
            cells.append(f'<td colspan="{colspan}" rowspan="{rowspan}">{text}</td>')
        end = "</tr>" if rng.random() < 0.8 else ""
        rows.append("<tr>" + "".join(cells) + end)
    return "<table>" + "".join(rows) + "</table>", texts


@pytest.mark.parametrize("seed", range(40))
def test_random_spans_every_cell_once_and_no_empty_line(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    table, texts = _random_table(rng, seed)
    document = _page(tmp_path, table)
    for text in texts:
        assert document.text.count(text) == 1, (text, table)
    for parsed in document.tables:
        width = len(parsed.rows[0])
        assert all(any(row) for row in parsed.rows)
        assert all(any(row[c] for row in parsed.rows) for c in range(width))
        distinct = sum(len(cell) for row in parsed.rows for cell in row)
        separators = len(parsed.rows) * (3 * width + 2) + 4 * width + 1
        assert len(table_to_markdown(parsed.rows)) <= distinct + separators


# -- item 3: a layout table is read as its content ---------------------------------------------


def test_web_article_in_a_layout_table_reads_as_blocks() -> None:
    document = _parse(DATA / "layout-table-article.html")
    headings = [(b.level, b.text) for b in document.blocks if b.kind == "heading"]
    assert (1, "Community garden grants open for 2025") in headings
    assert (2, "Who can apply") in headings and (2, "How much is available") in headings
    paragraphs = [b.text for b in document.blocks if b.kind == "paragraph"]
    assert any(p.startswith("Riverside Council has opened applications") for p in paragraphs)
    assert any(p.startswith("Applications close on 31 March 2025.") for p in paragraphs)
    items = [b.text for b in document.blocks if b.kind == "list_item"]
    assert "Primary and secondary schools in the borough" in items
    # the one real table inside the layout stays a table, the layout itself is none
    assert len(document.tables) == 1
    assert document.tables[0].caption == "Grant amounts by project size"
    assert ["Medium (50-200 m²)", "£4,000", "one third"] in document.tables[0].rows
    # reading order: the article's blocks in the order of the page
    text = document.text
    assert text.index("Who can apply") < text.index("Resident groups") < text.index("£7,500")
    assert text.index("£7,500") < text.index("Groups that received a grant in 2024")


def test_nested_layout_tables_read_in_order_and_the_data_table_inside_stays() -> None:
    document = _parse(DATA / "nested-layout-tables.html")
    headings = [b.text for b in document.blocks if b.kind == "heading"]
    assert headings == ["Annual report of the water board", "Supply", "Quality"]
    paragraphs = [b.text for b in document.blocks if b.kind == "paragraph"]
    assert len(paragraphs) == 4
    assert paragraphs[1].startswith("Leakage fell for the third year running")
    assert paragraphs[-1].startswith("The full accounts are published separately")
    assert [table.rows for table in document.tables] == [
        [
            ["Test", "Samples", "Passed"],
            ["Bacteria", "1,480", "1,480"],
            ["Nitrate", "820", "820"],
            ["Metals", "820", "820"],
        ]
    ]


def test_data_tables_stay_tables_also_one_row_and_long_single_paragraph_cells() -> None:
    document = _parse(DATA / "data-tables.html")
    assert len(document.tables) == 3
    hours, fees, glossary = (table.rows for table in document.tables)
    assert hours[0] == ["Branch", "Weekdays", "Saturday", "Sunday"]
    assert ["Harbour", "10:00-18:00", "10:00-14:00", "closed"] in hours
    assert fees == [["Late return fee", "£0.20 per day", "maximum £6.00"]]
    assert glossary[0] == ["Term", "Meaning"] and glossary[2][0] == "Replacement card"


@pytest.mark.parametrize(
    "table",
    [
        # one cell
        f"<table><tr><td><p>{PROSE}</p><p>Second paragraph of the box.</p></td></tr></table>",
        # one column
        f"<table><tr><td><p>{PROSE}</p></td></tr><tr><td><p>Second row text.</p></td></tr></table>",
        # an icon beside its text: the empty column collapses, one column remains
        f"<table><tr><td><img src='i.png'></td><td><p>{PROSE}</p></td></tr></table>",
        # the author says so
        '<table role="presentation"><tr><td>Second</td><td>row</td></tr>'
        "<tr><td>text</td><td>here.</td></tr></table>",
        # prose cells: several paragraphs holding most of the text
        f"<table><tr><td><p>{PROSE}</p><p>{PROSE}</p></td><td><p>{PROSE}</p><p>{PROSE}</p></td>"
        "</tr><tr><td>Note</td><td>Second row text.</td></tr></table>",
    ],
    ids=["one-cell", "one-column", "icon-and-text", "role-presentation", "prose-cells"],
)
def test_layout_tables_become_paragraphs(tmp_path: Path, table: str) -> None:
    document = _page(tmp_path, table)
    assert document.tables == []
    assert all(block.kind != "table" for block in document.blocks)
    assert all("|" not in block.text for block in document.blocks)


@pytest.mark.parametrize(
    "table",
    [
        "<table><tr><th>Fund</th><th>2023</th></tr><tr><td>Parks</td><td>10</td></tr></table>",
        "<table><tr><td>Date</td><td>Place</td><td>Fee</td></tr></table>",
        # one cell holds a short list: a list cell is not prose
        "<table><tr><th>Team</th><th>Members</th></tr><tr><td>Roads</td>"
        "<td><ul><li>Ana</li><li>Ben</li><li>Chloe</li></ul></td></tr></table>",
    ],
    ids=["two-by-two", "one-row-record", "list-in-cell"],
)
def test_data_tables_with_short_cells_stay_tables(tmp_path: Path, table: str) -> None:
    document = _page(tmp_path, table)
    assert len(document.tables) == 1


def test_wikipedia_infobox_stays_a_table(corpus: Path) -> None:
    document = _parse(corpus / "wikipedia-mozilla-full-page.html")
    assert len(document.tables) == 1
    assert ["Founded", "February 28, 1998"] in document.tables[0].rows
