"""DOCX parsing on the real corpus, with python-docx and lxml as independent readers of the same
files, plus DOCX files built here for what python-docx cannot see (content controls)."""

from __future__ import annotations

import functools
import io
import re
import time
import zipfile
from collections import Counter
from pathlib import Path

import docx
import pytest
from docx.oxml import OxmlElement
from docx.oxml import parse_xml as docx_xml
from lxml import etree

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document

SAMPLE = "word-sample-headings-lists-table-image.docx"
TABLES = "docx-nested-and-merged-tables.docx"
HANDBOOK = "us-doj-chapter13-standing-trustee-handbook-2012.docx"
CONTRACT = "ru-spb-state-contract-it-committee-2016.docx"

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NAMESPACES = (
    f'xmlns:w="{W}" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
    'xmlns:v="urn:schemas-microsoft-com:vml"'
)


@functools.lru_cache(maxsize=8)
def _parse(path: Path) -> Document:
    """Parsed once per file for this module; the tests only read the result."""
    outcome = parse_file(path, ParseOptions())
    assert outcome.error is None, outcome.error
    assert outcome.document is not None
    return outcome.document


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text.replace("\\|", "|"))


def _blocks(document: Document) -> list[tuple[str, int, str]]:
    return [(block.kind, block.level, block.text) for block in document.blocks]


# -- the corpus -------------------------------------------------------------------------------


def test_sample_headings_lists_caption_and_table(corpus: Path) -> None:
    document = _parse(corpus / SAMPLE)
    blocks = _blocks(document)
    assert ("heading", 1, "Swimming in the lake") in blocks  # style "Title"
    assert ("heading", 1, "Let’s swim!") in blocks  # two runs: "Let’s swim" + "!"
    assert ("heading", 2, "Let’s eat") in blocks
    items = [text for kind, _, text in blocks if kind == "list_item"]
    assert items[:3] == ["You can relax and look around", "Paddle about", "Enjoy summer warmth"]
    # the numbers Word draws come from numbering.xml (abstract 10, "%1."); the next list has another
    # abstract definition (19), so it counts from 1 again
    assert items[3:6] == ["1. Wear sunglasses", "2. Don’t forget to drink water", "3. Use sun cream"]
    assert items[6:9] == ["1. Leaves", "2. Berries", "3. Grain"]
    # a List Bullet paragraph with numId 0 has its numbering switched off
    assert ("paragraph", 0, "Also, don’t forget:") in blocks
    assert ("caption", 0, "Figure 1: This is a cute duckling") in blocks
    table = document.tables[0]
    assert table.caption == "Content table"
    assert table.rows[0] == ["", "Food", "Calories per portion"]
    assert table.rows[1] == ["Leaves", "Ash, Elm, Maple", "50"]  # "5" and "0" are two runs
    assert document.title == "Swimming in the lake"
    assert document.metadata["author"] == "Christoph Auer"
    assert document.metadata["created"] == "2024-10-09T12:43:00Z"


def test_nested_table_is_in_its_cell_and_emitted_after(corpus: Path) -> None:
    tables = _parse(corpus / TABLES).tables
    assert len(tables) == 4
    assert tables[0].rows == [["Header Col 1", "Header Col 2"], ["Lorem ipsum", "A link example"]]
    assert tables[1].rows == [["a", ">b<", "c"], ["d", "e | f\ng&t | h", "i"], ["j", "k", "l"]]
    assert tables[2].rows == [["e", "f"], ["g&t", "h"]]


def test_merged_cells_are_said_once_and_keep_their_spans(corpus: Path) -> None:
    merged = _parse(corpus / TABLES).tables[3]
    # XML: "a" vMerge restart over 2 rows, "b" gridSpan 2, "d" vMerge restart, "e" gridSpan 2
    assert merged.rows == [["a", "b", ""], ["", "c", "d"], ["e", "", ""]]
    assert sorted(merged.spans) == [(0, 0, 2, 1), (0, 1, 1, 2), (1, 2, 2, 1), (2, 0, 1, 2)]


@pytest.mark.parametrize("name", [SAMPLE, TABLES, HANDBOOK, CONTRACT])
def test_every_python_docx_paragraph_and_cell_is_in_the_text(corpus: Path, name: str) -> None:
    """python-docx reads the same file independently; nothing it sees may be lost."""
    document = _parse(corpus / name)
    text = _squash(re.sub(r"\[\^\d+\]", "", document.text))
    reference = docx.Document(str(corpus / name))
    paragraphs = [p.text for p in reference.paragraphs if p.text.strip()]
    assert paragraphs and all(_squash(p) in text for p in paragraphs)
    ours = {
        _squash(re.sub(r"\[\^\d+\]", "", cell))
        for t in document.tables
        for row in t.rows
        for cell in row
    }
    # python-docx takes seconds per thousand-row table; the smaller tables make the point
    small = [t for t in reference.tables if len(t.rows) <= 200]
    theirs = {_squash(c.text) for t in small for r in t.rows for c in r.cells if c.text.strip()}
    # a cell holding a nested table also holds its text, so it may be longer than python-docx's;
    # a layout table's cells are read as paragraphs
    assert theirs and all(cell in ours or any(cell in mine for mine in ours) or cell in text for cell in theirs)


def test_handbook_headings_match_its_styles_and_parse_fast(corpus: Path) -> None:
    start = time.perf_counter()
    document = parse_file(corpus / HANDBOOK, ParseOptions()).document  # uncached, to time it
    seconds = time.perf_counter() - start
    assert document is not None
    print(f"\n{HANDBOOK}: {seconds:.2f} s, {len(document.blocks)} blocks")  # measured, not asserted
    levels = Counter(level for kind, level, _ in _blocks(document) if kind == "heading")
    assert 100 <= sum(levels.values()) < 1000
    reference = docx.Document(str(corpus / HANDBOOK))
    styled = Counter(
        int(p.style.name.split()[-1])
        for p in reference.paragraphs
        if p.style.name.startswith("Heading") and p.text.strip()
    )
    assert levels == styled
    assert document.title == "CHAPTER 1 – INTRODUCTION"
    assert "[^1] / 28 U.S.C. § 586(b), (c), d), (e)." in document.text  # its first footnote
    assert ("footnote", 0, "[^1] / 28 U.S.C. § 586(b), (c), d), (e).") in _blocks(document)


def test_list_numbers_word_draws_are_in_the_text(corpus: Path) -> None:
    """The numbers are not in the paragraphs' text (python-docx reads none); Word draws them."""
    reference = [p.text for p in docx.Document(str(corpus / CONTRACT)).paragraphs]
    assert any(text.startswith("Система должна быть запрограммирована таким образом") for text in reference)
    items = [text for kind, _, text in _blocks(_parse(corpus / CONTRACT)) if kind == "list_item"]
    clauses = [text.split(" ", 1)[0] for text in items if text.startswith("3.")]
    assert clauses[:10] == ["3.", "3.1.", "3.1.1.", "3.1.2.", "3.1.3.", "3.1.4.", "3.1.5.", "3.1.6.", "3.2.", "3.2.1."]
    assert any(text.startswith("3.1.2. Система должна быть запрограммирована таким образом") for text in items)
    handbook = [text for kind, _, text in _blocks(_parse(corpus / HANDBOOK)) if kind == "list_item"]
    fee = next(i for i, text in enumerate(handbook) if "an amount not to exceed the highest rate" in text)
    assert [text.split(" ", 1)[0] for text in handbook[fee:fee + 3]] == ["1.", "2.", "3."]
    assert not any(p.text.startswith("1.") for p in docx.Document(str(corpus / HANDBOOK)).paragraphs
                   if "an amount not to exceed the highest rate" in p.text)


def test_contract_tables_and_cyrillic_values(corpus: Path) -> None:
    with zipfile.ZipFile(corpus / CONTRACT) as archive:
        body = etree.fromstring(archive.read("word/document.xml"))
    tables = list(body.iter(f"{{{W}}}tbl"))
    assert len(tables) == 21
    # one of the 21 holds no text at all; a table of empty cells is not content
    with_text = [t for t in tables if any((x.text or "").strip() for x in t.iter(f"{{{W}}}t"))]
    assert len(with_text) == 20
    # two are layout: the parties' details side by side (prose cells), and a signature block whose
    # cell opens with a heading-styled "Государственный заказчик" over the signatory; read as paragraphs
    document = _parse(corpus / CONTRACT)
    assert len(document.tables) == 18
    assert not any("БИК 044525201" in cell for table in document.tables for row in table.rows for cell in row)
    blocks = _blocks(document)
    assert ("paragraph", 0, "ООО «Стройвижн»") in blocks and ("paragraph", 0, "БИК 044525201") in blocks
    summary = {row[0]: row[1] for row in document.tables[0].rows}
    assert summary["Сумма контракта"] == "39 921 700,00 руб."
    assert document.metadata["author"] == "Регина Чадина"
    assert document.language == "ru"


def test_contract_wide_merged_tables_stay_rectangular(corpus: Path) -> None:
    for table in _parse(corpus / CONTRACT).tables:
        assert len({len(row) for row in table.rows}) == 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "edge-truncated-zip.docx",
            "edge-truncated-zip.docx: not a valid zip container (truncated or damaged file)",
        ),
        (
            "edge-encrypted-ooxml-cfb-password-pass.docx",
            "edge-encrypted-ooxml-cfb-password-pass.docx: password-protected",
        ),
    ],
)
def test_broken_files_are_one_clear_line(corpus: Path, name: str, reason: str) -> None:
    outcome = parse_file(corpus / name, ParseOptions())
    assert outcome.document is None and outcome.error is not None
    assert outcome.error.startswith(reason) and "\n" not in outcome.error


# -- files built here -------------------------------------------------------------------------


def _wrap_in_content_control(element: etree._Element, alias: str) -> None:
    sdt, properties, content = (
        OxmlElement("w:sdt"),
        OxmlElement("w:sdtPr"),
        OxmlElement("w:sdtContent"),
    )
    alias_element = OxmlElement("w:alias")
    alias_element.set(f"{{{W}}}val", alias)
    properties.append(alias_element)
    element.addprevious(sdt)
    sdt.append(properties)
    sdt.append(content)
    content.append(element)


def _raw_paragraph(runs: str) -> etree._Element:
    return docx_xml(f"<w:p {NAMESPACES}>{runs}</w:p>")


def _built_docx(path: Path) -> Path:
    document = docx.Document()
    document.core_properties.title = "Built report"
    document.core_properties.author = "Test Author"
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Intro before the controls.")
    revenue = document.add_table(rows=2, cols=2)
    for row, values in zip(revenue.rows, [("Region", "Revenue"), ("North", "1,250")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    _wrap_in_content_control(revenue._tbl, "Revenue table")
    staff = document.add_table(rows=3, cols=2)
    for row, values in zip(staff.rows, [("Name", "Role"), ("Kim", "Analyst"), ("Lee", "Engineer")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    _wrap_in_content_control(staff.rows[1]._tr, "Repeating row")
    body = document.element.body
    inline_control = (
        "<w:sdt><w:sdtContent><w:r><w:t>Inline control text</w:t></w:r></w:sdtContent></w:sdt>"
    )
    revisions = (
        '<w:r><w:t xml:space="preserve">Kept </w:t></w:r>'
        '<w:ins w:id="1" w:author="a"><w:r><w:t>inserted</w:t></w:r></w:ins>'
        '<w:del w:id="2" w:author="a"><w:r><w:delText>deleted words</w:delText></w:r></w:del>'
    )
    box = "<w:txbxContent><w:p><w:r><w:t>Boxed words</w:t></w:r></w:p></w:txbxContent>"
    text_box = (
        "<w:r><w:t>Before box</w:t></w:r><w:r><mc:AlternateContent>"
        f'<mc:Choice Requires="wps"><w:drawing><wps:wsp><wps:txbx>{box}</wps:txbx></wps:wsp></w:drawing></mc:Choice>'
        f"<mc:Fallback><w:pict><v:shape><v:textbox>{box}</v:textbox></v:shape></w:pict></mc:Fallback>"
        "</mc:AlternateContent></w:r>"
    )
    ruby = (
        "<w:r><w:ruby><w:rubyPr/><w:rt><w:r><w:t>かんじ</w:t></w:r></w:rt>"
        "<w:rubyBase><w:r><w:t>漢字</w:t></w:r></w:rubyBase></w:ruby></w:r>"
    )
    extra = [inline_control, revisions, text_box, ruby]
    for runs in extra:
        body.sectPr.addprevious(_raw_paragraph(runs))
    document.save(str(path))
    return path


def test_tables_inside_content_controls(tmp_path: Path) -> None:
    path = _built_docx(tmp_path / "controls.docx")
    reference = docx.Document(str(path))
    assert len(reference.tables) == 1  # python-docx misses the table inside w:sdt
    assert reference.tables[0].rows[0].cells[0].text == "Name"
    document = _parse(path)
    assert [table.rows for table in document.tables] == [
        [["Region", "Revenue"], ["North", "1,250"]],
        [["Name", "Role"], ["Kim", "Analyst"], ["Lee", "Engineer"]],
    ]


def test_inline_controls_revisions_and_text_boxes(tmp_path: Path) -> None:
    document = _parse(_built_docx(tmp_path / "controls.docx"))
    texts = [text for _, _, text in _blocks(document)]
    assert texts[0] == "Quarterly report" and document.blocks[0].kind == "heading"
    assert "Inline control text" in texts
    assert "Kept inserted" in texts and "deleted words" not in document.text
    # Word stores a text box twice (drawing and VML fallback); it is read once, after its paragraph
    assert document.text.count("Boxed words") == 1
    assert texts.index("Boxed words") == texts.index("Before box") + 1
    assert "漢字" in texts and "かんじ" not in document.text  # ruby: base text, not its reading
    assert document.metadata["title"] == "Built report" and document.title == "Built report"
    assert document.metadata["author"] == "Test Author"


def test_docx_without_document_part_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "empty.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("docProps/core.xml", "<x/>")
    outcome = parse_file(path, ParseOptions())
    assert outcome.error == "empty.docx: no word/document.xml inside; not a Word document"


def test_parser_reads_bytes_not_paths(tmp_path: Path) -> None:
    """The registry hands parsers bytes; a DOCX held only in memory must parse the same."""
    from slm_factory.parsing import docx as docx_parser
    from slm_factory.parsing.base import DocumentBuilder

    data = _built_docx(tmp_path / "mem.docx").read_bytes()
    builder = DocumentBuilder(Path("memory.docx"), "docx", data)
    docx_parser.parse(io.BytesIO(data).getvalue(), builder, ParseOptions())
    assert "Inline control text" in builder.build().text


def test_equations_are_read_as_one_line_of_text(tmp_path: Path) -> None:
    """Office Math (m:oMath) sits beside the runs; without it "the energy is  where" loses its formula."""
    math = "http://schemas.openxmlformats.org/officeDocument/2006/math"

    def r(text: str) -> str:
        return f"<m:r><m:t>{text}</m:t></m:r>"

    equation = (
        f'<m:oMath xmlns:m="{math}">{r("E=m")}<m:sSup><m:e>{r("c")}</m:e><m:sup>{r("2")}</m:sup></m:sSup></m:oMath>'
    )
    fraction = (
        f'<m:oMathPara xmlns:m="{math}"><m:oMath><m:f><m:num>{r("a+b")}</m:num><m:den>{r("c")}</m:den></m:f>'
        f'{r("=")}<m:nary><m:naryPr><m:chr m:val="∑"/></m:naryPr><m:sub>{r("i=1")}</m:sub>'
        f'<m:sup>{r("n")}</m:sup><m:e>{r("x")}</m:e></m:nary></m:oMath></m:oMathPara>'
    )
    document = docx.Document()
    document.add_paragraph("Intro.")
    body = document.element.body
    body.sectPr.addprevious(_raw_paragraph(f'<w:r><w:t xml:space="preserve">The energy is </w:t></w:r>{equation}'
                                           '<w:r><w:t xml:space="preserve"> for a body at rest.</w:t></w:r>'))
    body.sectPr.addprevious(_raw_paragraph(fraction))
    path = tmp_path / "math.docx"
    document.save(str(path))
    texts = [text for _, _, text in _blocks(_parse(path))]
    assert texts[1:] == ["The energy is E=mc^2 for a body at rest.", "(a+b)/c=∑_(i=1)^n x"]
