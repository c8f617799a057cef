"""DOCX tables: a merged cell's text once, and a table used for layout read as its content.

Every document here is written part by part with zipfile, so each merge (gridSpan, vMerge, hMerge,
gridBefore) and each layout shape is exactly what the test says; python-docx reads the same files
as an independent check of what the cells hold.
"""

from __future__ import annotations

import random
import re
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import docx
import pytest
from lxml import etree

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document, Table

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"

STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:styles xmlns:w="{W}">
  <w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/></w:style>
  <w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/></w:style>
  <w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/></w:style>
</w:styles>"""

NUMBERING = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:numbering xmlns:w="{W}">
  <w:abstractNum w:abstractNumId="1"><w:lvl w:ilvl="0"><w:start w:val="1"/><w:numFmt w:val="decimal"/>
    <w:lvlText w:val="%1."/></w:lvl></w:abstractNum>
  <w:num w:numId="1"><w:abstractNumId w:val="1"/></w:num>
</w:numbering>"""

CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
  <Default Extension="xml" ContentType="application/xml"/>
  <Override PartName="/word/document.xml"
    ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
  <Override PartName="/word/styles.xml"
    ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>
  <Override PartName="/word/numbering.xml"
    ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.numbering+xml"/>
  <Override PartName="/word/footnotes.xml"
    ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"/>
</Types>"""


def _p(text: str, style: str = "", num: int | None = None, note: str = "") -> str:
    properties = f'<w:pStyle w:val="{style}"/>' if style else ""
    if num is not None:
        properties += f'<w:numPr><w:ilvl w:val="0"/><w:numId w:val="{num}"/></w:numPr>'
    run = f'<w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r>' if text else ""
    if note:
        run += f'<w:r><w:footnoteReference w:id="{note}"/></w:r>'
    return f"<w:p><w:pPr>{properties}</w:pPr>{run}</w:p>"


def _tc(*content: str, span: int = 1, vmerge: str | None = None, hmerge: str | None = None) -> str:
    properties = f'<w:gridSpan w:val="{span}"/>' if span > 1 else ""
    if vmerge is not None:
        properties += '<w:vMerge w:val="restart"/>' if vmerge == "restart" else "<w:vMerge/>"
    if hmerge is not None:
        properties += '<w:hMerge w:val="restart"/>' if hmerge == "restart" else "<w:hMerge/>"
    return f"<w:tc><w:tcPr>{properties}</w:tcPr>{''.join(content) or _p('')}</w:tc>"


def _tbl(rows: list[list[str]], columns: int, before: dict[int, int] | None = None) -> str:
    grid = "".join('<w:gridCol w:w="300"/>' for _ in range(columns))
    body = ""
    for index, cells in enumerate(rows):
        skip = (before or {}).get(index, 0)
        properties = f'<w:trPr><w:gridBefore w:val="{skip}"/></w:trPr>' if skip else ""
        body += f"<w:tr>{properties}{''.join(cells)}</w:tr>"
    return f"<w:tbl><w:tblPr/><w:tblGrid>{grid}</w:tblGrid>{body}</w:tbl>"


def _notes(notes: dict[str, str]) -> str:
    items = "".join(f'<w:footnote w:id="{key}">{_p(text)}</w:footnote>' for key, text in notes.items())
    return f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:footnotes xmlns:w="{W}">{items}</w:footnotes>'


def _docx(path: Path, body: str, notes: dict[str, str] | None = None) -> Path:
    document = f'<w:document xmlns:w="{W}" xmlns:r="{R}"><w:body>{body}<w:sectPr/></w:body></w:document>'
    relationships = (
        f'<Relationships xmlns="{PACKAGE_RELS}">'
        f'<Relationship Id="rId1" Type="{R}/styles" Target="styles.xml"/>'
        f'<Relationship Id="rId2" Type="{R}/numbering" Target="numbering.xml"/>'
        f'<Relationship Id="rId3" Type="{R}/footnotes" Target="footnotes.xml"/>'
        "</Relationships>"
    )
    package = (
        f'<Relationships xmlns="{PACKAGE_RELS}">'
        f'<Relationship Id="rId1" Type="{R}/officeDocument" Target="word/document.xml"/></Relationships>'
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", package)
        archive.writestr("word/document.xml", document)
        archive.writestr("word/_rels/document.xml.rels", relationships)
        archive.writestr("word/styles.xml", STYLES)
        archive.writestr("word/numbering.xml", NUMBERING)
        archive.writestr("word/footnotes.xml", _notes(notes or {}))
    return path


def _parse(path: Path) -> Document:
    outcome = parse_file(path, ParseOptions())
    assert outcome.error is None, outcome.error
    assert outcome.document is not None
    return outcome.document


def _blocks(document: Document) -> list[tuple[str, int, str]]:
    return [(block.kind, block.level, block.text) for block in document.blocks]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _without_table_marks(text: str) -> str:
    """The document text less what Markdown tables add: pipes and header rules."""
    return _squash(re.sub(r"\|(?:-{3}\|)+|\|", "", text))


def _separators(table: Table) -> int:
    """Characters the Markdown of a table adds around its cells: pipes, spaces, the header rule."""
    height, width = len(table.rows), len(table.rows[0])
    return height * (3 * width + 1) + (4 * width + 1) + height


def _check_said_once(table: Table) -> None:
    """A merged region's other slots are empty, and the Markdown is its cells plus separators."""
    for row, col, row_span, col_span in table.spans:
        assert table.rows[row][col]
        others = [
            table.rows[r][c]
            for r in range(row, row + row_span)
            for c in range(col, col + col_span)
            if (r, c) != (row, col)
        ]
        assert not any(others)
    cells = sum(len(" ".join(cell.split()).replace("|", "\\|")) for row in table.rows for cell in row)
    assert len(table.markdown) <= cells + _separators(table)


# -- merged cells -----------------------------------------------------------------------------


def test_header_spanning_three_columns_is_said_once(tmp_path: Path) -> None:
    body = _tbl(
        [
            [_tc(_p("Quarterly sales"), span=3)],
            [_tc(_p("Q1")), _tc(_p("Q2")), _tc(_p("Q3"))],
            [_tc(_p("120")), _tc(_p("135")), _tc(_p("150"))],
        ],
        3,
    )
    document = _parse(_docx(tmp_path / "header.docx", body))
    (table,) = document.tables
    assert table.rows == [["Quarterly sales", "", ""], ["Q1", "Q2", "Q3"], ["120", "135", "150"]]
    assert table.spans == [(0, 0, 1, 3)]
    assert document.text.count("Quarterly sales") == 1
    _check_said_once(table)


def test_vertical_merge_over_three_rows_is_said_once(tmp_path: Path) -> None:
    body = _tbl(
        [
            [_tc(_p("Region")), _tc(_p("Office")), _tc(_p("Staff"))],
            [_tc(_p("North"), vmerge="restart"), _tc(_p("Oslo")), _tc(_p("12"))],
            [_tc(vmerge="continue"), _tc(_p("Bergen")), _tc(_p("7"))],
            [_tc(vmerge="continue"), _tc(_p("Tromsø")), _tc(_p("3"))],
            [_tc(_p("South")), _tc(_p("Kristiansand")), _tc(_p("5"))],
        ],
        3,
    )
    document = _parse(_docx(tmp_path / "vmerge.docx", body))
    (table,) = document.tables
    assert [row[0] for row in table.rows] == ["Region", "North", "", "", "South"]
    assert table.spans == [(1, 0, 3, 1)]
    assert document.text.count("North") == 1
    _check_said_once(table)


def test_legacy_horizontal_merge_and_grid_before(tmp_path: Path) -> None:
    """hMerge (Word 97 files) continues the cell to its left; gridBefore skips grid columns."""
    body = _tbl(
        [
            [_tc(_p("Name")), _tc(_p("Contact"), hmerge="restart"), _tc(hmerge="continue")],
            [_tc(_p("Kim")), _tc(_p("02-123")), _tc(_p("kim@example.org"))],
            [_tc(_p("total: 1"), span=2)],
        ],
        3,
        before={2: 1},
    )
    document = _parse(_docx(tmp_path / "hmerge.docx", body))
    (table,) = document.tables
    assert table.rows == [["Name", "Contact", ""], ["Kim", "02-123", "kim@example.org"], ["", "total: 1", ""]]
    assert sorted(table.spans) == [(0, 1, 1, 2), (2, 1, 1, 2)]
    _check_said_once(table)


# 정보공개 청구서 (information disclosure request), laid out as Korean forms are: on a fine grid of
# 27 columns where each row cuts the width differently (spans 3, 5, 7, 12 ...), so that no coarse
# grid lines up with all rows. Each row is (text, span, vertical merge) and spans sum to 27.
FORM = [
    [("정보공개 청구서", 27, None)],
    [("접수번호", 5, None), ("2023-0415", 7, None), ("접수일자", 5, None), ("2023. 7. 5.", 10, None)],
    [("청구인", 3, "restart"), ("성명", 5, None), ("홍길동", 7, None), ("생년월일", 5, None), ("1980. 1. 1.", 7, None)],
    [("", 3, "continue"), ("주소", 5, None), ("서울특별시 종로구 세종대로 209", 19, None)],
    [("", 3, "continue"), ("전화번호", 5, None), ("02-2100-1234", 7, None), ("전자우편", 5, None),
     ("hong@example.kr", 7, None)],
    [("청구 내용", 8, None), ("2023년 공공데이터 개방 현황 및 개방 계획", 19, None)],
    [("공개 방법", 8, None), ("열람", 3, None), ("사본·출력물", 5, None), ("전자파일", 7, None), ("기타", 4, None)],
    [("수수료 감면 여부", 12, None), ("해당 없음", 15, None)],
    [("「공공기관의 정보공개에 관한 법률」 제10조제1항에 따라 위와 같이 정보의 공개를 청구합니다.", 27, None)],
]


def _form_table(rows: list[list[tuple[str, int, str | None]]]) -> str:
    return _tbl(
        [[_tc(_p(text) if text else "", span=span, vmerge=merge) for text, span, merge in row] for row in rows],
        27,
    )


def test_korean_form_on_a_27_column_grid_reads_as_labels_and_values(tmp_path: Path) -> None:
    path = _docx(tmp_path / "form.docx", _p("아래 서식을 작성합니다.") + _form_table(FORM))
    document = _parse(path)
    (table,) = document.tables
    words = [text for row in FORM for text, _, _ in row if text]
    # python-docx, reading the same file, sees these cells (it repeats merged ones)
    theirs = {cell.text for row in docx.Document(str(path)).tables[0].rows for cell in row.cells}
    assert theirs - {""} == set(words)
    for word in words:
        assert document.text.count(word) == 1, word
        assert sum(cell == word for row in table.rows for cell in row) == 1, word
    # the grid keeps only the column lines some cell starts or ends on: 11, not 27
    boundaries = {0}
    for row in FORM:
        edge = 0
        for _, span, _ in row:
            edge += span
            boundaries.add(edge)
    assert len(table.rows[0]) == len(boundaries) - 1 == 11
    # the text is its words plus table separators, nothing repeated
    source = _squash("아래 서식을 작성합니다." + "".join(words))
    assert len(_without_table_marks(document.text)) == len(source)
    _check_said_once(table)
    assert (2, 0, 3, 1) in table.spans  # 청구인 spans its three rows


def _random_form(seed: int) -> list[list[tuple[str, int, str | None]]]:
    """A form of 4-9 rows on 27 columns: random cuts, some rows merging cells down from above."""
    rng = random.Random(seed)
    rows: list[list[tuple[str, int, str | None]]] = []
    for index in range(rng.randint(4, 9)):
        if rows and rng.random() < 0.35:  # same cuts as the row above; some cells continue down
            row = [
                ("", span, "continue") if merge and rng.random() < 0.6 else (f"값{index}x{col}", span, None)
                for col, (_, span, merge) in enumerate(rows[-1])
            ]
            if all(merge for _, _, merge in row):
                row[-1] = (f"값{index}x{len(row) - 1}", row[-1][1], None)
        else:
            cuts = sorted(rng.sample(range(1, 27), rng.randint(1, 6)))
            spans = [b - a for a, b in zip([0] + cuts, cuts + [27])]
            row = [(f"칸{index}x{col}", span, "restart" if rng.random() < 0.4 else None) for col, span in enumerate(spans)]
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_random_forms_say_each_cell_once(tmp_path: Path, seed: int) -> None:
    form = _random_form(seed)
    document = _parse(_docx(tmp_path / f"form{seed}.docx", _form_table(form)))
    words = [text for row in form for text, _, _ in row if text]
    (table,) = document.tables
    slots = [cell for row in table.rows for cell in row if cell]
    assert sorted(slots) == sorted(words)
    assert all(document.text.count(word) == 1 for word in words)
    assert len(_without_table_marks(document.text)) == len(_squash("".join(words)))
    _check_said_once(table)


# -- layout tables ----------------------------------------------------------------------------

PROSE = [
    "The programme funds small municipalities that want to open their public data to residents, "
    "covering staff time, hosting and the first year of maintenance.",
    "Applications are read by a panel of three reviewers who score need, feasibility and the value "
    "of the data for other public bodies.",
    "Funded projects publish their data under an open licence within twelve months and report on "
    "its use at the end of the second year.",
]


def test_one_cell_table_is_read_as_its_blocks(tmp_path: Path) -> None:
    """A page boxed in one cell: heading, paragraphs and a numbered list come out as in the body,
    list numbers and footnotes counted once (the table is judged before anything is read)."""
    cell = _tc(
        _p("Programme overview", style="Heading1"),
        _p(PROSE[0], note="1"),
        _p(PROSE[1]),
        _p(PROSE[2]),
        _p("Apply online", num=1),
        _p("Attach the budget", num=1),
        _p("Sign the declaration", num=1),
    )
    body = _tbl([[cell]], 1) + _p("Keep the receipt", num=1)
    document = _parse(_docx(tmp_path / "box.docx", body, notes={"1": "Municipalities under 50,000 residents."}))
    assert document.tables == []
    assert _blocks(document) == [
        ("heading", 1, "Programme overview"),
        ("paragraph", 0, PROSE[0] + "[^1]"),
        ("paragraph", 0, PROSE[1]),
        ("paragraph", 0, PROSE[2]),
        ("list_item", 0, "1. Apply online"),
        ("list_item", 0, "2. Attach the budget"),
        ("list_item", 0, "3. Sign the declaration"),
        ("list_item", 0, "4. Keep the receipt"),
        ("footnote", 0, "[^1] Municipalities under 50,000 residents."),
    ]


def test_one_column_of_sections_is_read_in_order(tmp_path: Path) -> None:
    rows = [[_tc(_p(f"Section {n}", style="Heading2"), _p(f"Body of section {n}."))] for n in (1, 2, 3)]
    document = _parse(_docx(tmp_path / "column.docx", _tbl(rows, 1)))
    assert document.tables == []
    assert _blocks(document) == [
        block for n in (1, 2, 3) for block in [("heading", 2, f"Section {n}"), ("paragraph", 0, f"Body of section {n}.")]
    ]


def test_two_column_layout_of_prose_is_read_left_then_right(tmp_path: Path) -> None:
    left = _tc(_p(PROSE[0]), _p(PROSE[1]))
    right = _tc(_p("Contact"), _p(PROSE[2]), _p("Deadline: 30 June."))
    document = _parse(_docx(tmp_path / "columns.docx", _tbl([[left, right]], 2)))
    assert document.tables == []
    assert [text for _, _, text in _blocks(document)] == [PROSE[0], PROSE[1], "Contact", PROSE[2], "Deadline: 30 June."]


def test_short_celled_data_tables_stay_tables(tmp_path: Path) -> None:
    data = _tbl(
        [
            [_tc(_p("City")), _tc(_p("Population")), _tc(_p("Area (km²)"))],
            [_tc(_p("Seoul")), _tc(_p("9,386,034")), _tc(_p("605.2"))],
            [_tc(_p("Busan")), _tc(_p("3,317,812")), _tc(_p("770.0"))],
        ],
        3,
    )
    one_row = _tbl([[_tc(_p("보도시점")), _tc(_p("2024. 1. 2.(화) 08:00")), _tc(_p("배포")), _tc(_p("2024. 1. 2."))]], 4)
    # two-line cells are still data: an address on two lines is not prose
    two_lines = _tbl(
        [[_tc(_p("Office")), _tc(_p("Address"))], [_tc(_p("Head office")), _tc(_p("1 Main St"), _p("Springfield"))]], 2
    )
    document = _parse(_docx(tmp_path / "data.docx", data + one_row + two_lines))
    assert [table.rows for table in document.tables] == [
        [["City", "Population", "Area (km²)"], ["Seoul", "9,386,034", "605.2"], ["Busan", "3,317,812", "770.0"]],
        [["보도시점", "2024. 1. 2.(화) 08:00", "배포", "2024. 1. 2."]],
        [["Office", "Address"], ["Head office", "1 Main St\nSpringfield"]],
    ]
    assert all(block.kind == "table" for block in document.blocks)


def test_nested_tables_are_data_or_layout_by_the_same_rule(tmp_path: Path) -> None:
    inner_data = _tbl([[_tc(_p("Item")), _tc(_p("Cost"))], [_tc(_p("Hosting")), _tc(_p("1,200"))]], 2)
    box = _tbl([[_tc(_p("Budget"), inner_data)]], 1)  # layout around a data table
    inner_box = _tbl([[_tc(_p("see annex"))]], 1)
    data = _tbl([[_tc(_p("Term")), _tc(_p("Note"))], [_tc(_p("Hosting")), _tc(_p("yearly"), inner_box)]], 2)
    document = _parse(_docx(tmp_path / "nested.docx", box + data))
    assert [block.kind for block in document.blocks] == ["paragraph", "table", "table"]
    assert document.blocks[0].text == "Budget"
    assert document.tables[0].rows == [["Item", "Cost"], ["Hosting", "1,200"]]
    # the box inside a data cell reads in its cell and is not a table of its own
    assert document.tables[1].rows == [["Term", "Note"], ["Hosting", "yearly\nsee annex"]]
    assert document.text.count("see annex") == 1


def test_deeply_nested_boxes(tmp_path: Path) -> None:
    body = _p("innermost words")
    for _ in range(40):
        body = _tbl([[_tc(body)]], 1)
    assert _blocks(_parse(_docx(tmp_path / "deep.docx", body))) == [("paragraph", 0, "innermost words")]
    for _ in range(60):  # past libxml2's depth limit: one clear line, not a crash
        body = _tbl([[_tc(body)]], 1)
    outcome = parse_file(_docx(tmp_path / "deeper.docx", body), ParseOptions())
    assert outcome.document is None and outcome.error is not None and "\n" not in outcome.error
    assert outcome.error.startswith("deeper.docx: ")


# -- the corpus -------------------------------------------------------------------------------


def _corpus_docx() -> list[str]:
    from tests.conftest import CORPUS

    return sorted(path.name for path in CORPUS.glob("*.docx")) or ["<corpus absent>"]


@pytest.mark.parametrize("name", _corpus_docx())
def test_corpus_tables_say_each_cell_once(corpus: Path, name: str) -> None:
    """No more filled slots than the file declares cells with text (a repeated merge would add
    some), and each table's Markdown is its cells plus separators."""
    outcome = parse_file(corpus / name, ParseOptions())
    if outcome.document is None:
        pytest.skip(f"{name} is a broken-file case: {outcome.error}")
    with zipfile.ZipFile(corpus / name) as archive:
        body = etree.fromstring(archive.read("word/document.xml"))
    declared = sum(
        1 for cell in body.iter(f"{{{W}}}tc") if any((t.text or "").strip() for t in cell.iter(f"{{{W}}}t"))
    )
    filled = sum(1 for table in outcome.document.tables for row in table.rows for cell in row if cell)
    assert filled <= declared
    for table in outcome.document.tables:
        _check_said_once(table)



def test_merged_table_of_a_real_file_keeps_its_spans(data_dir: Path) -> None:
    """The corpus's merged-cell sample (a copy in tests/data): each merged cell said once, in its
    first slot, and its span on the record."""
    document = _parse(data_dir / "docx" / "docx-nested-and-merged-tables.docx")
    merged = document.tables[3]
    # XML: "a" vMerge restart over 2 rows, "b" gridSpan 2, "d" vMerge restart, "e" gridSpan 2
    assert merged.rows == [["a", "b", ""], ["", "c", "d"], ["e", "", ""]]
    assert sorted(merged.spans) == [(0, 0, 2, 1), (0, 1, 1, 2), (1, 2, 2, 1), (2, 0, 1, 2)]
    for table in document.tables:
        _check_said_once(table)
