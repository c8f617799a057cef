"""Word list numbers rendered into the text: a DOCX written here, part by part, so that every
numbering rule has a paragraph whose expected number is known, plus the number formats alone."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.docx_numbering import format_number
from slm_factory.parsing.registry import parse_file

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _level(ilvl: int, fmt: str, text: str, start: int = 1, extra: str = "") -> str:
    return (
        f'<w:lvl w:ilvl="{ilvl}"><w:start w:val="{start}"/><w:numFmt w:val="{fmt}"/>'
        f'<w:lvlText w:val="{text}"/>{extra}</w:lvl>'
    )


BULLET = "\uf0b7"  # Word's Symbol-font bullet
NUMBERING = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:numbering xmlns:w="{W}">
  <w:abstractNum w:abstractNumId="1">
    {_level(0, "decimal", "%1.")}{_level(1, "decimal", "%1.%2.")}{_level(2, "lowerLetter", "%3)")}
  </w:abstractNum>
  <w:abstractNum w:abstractNumId="2">
    {_level(0, "decimal", "%1", extra='<w:pStyle w:val="Heading1"/>')}
    {_level(1, "decimal", "%1.%2", extra='<w:pStyle w:val="Heading2"/>')}
  </w:abstractNum>
  <w:abstractNum w:abstractNumId="3">{_level(0, "ganada", "%1.")}</w:abstractNum>
  <w:abstractNum w:abstractNumId="4">{_level(0, "bullet", BULLET)}</w:abstractNum>
  <w:abstractNum w:abstractNumId="5">
    <w:styleLink w:val="ClauseList"/>
    {_level(0, "upperRoman", "Article %1.")}{_level(1, "decimal", "%1.%2", extra='<w:isLgl/>')}
    {_level(2, "lowerRoman", "(%3)", extra='<w:lvlRestart w:val="1"/>')}
  </w:abstractNum>
  <w:abstractNum w:abstractNumId="6"><w:numStyleLink w:val="ClauseList"/></w:abstractNum>
  <w:num w:numId="1"><w:abstractNumId w:val="1"/></w:num>
  <w:num w:numId="2"><w:abstractNumId w:val="1"/>
    <w:lvlOverride w:ilvl="0"><w:startOverride w:val="1"/></w:lvlOverride></w:num>
  <w:num w:numId="3"><w:abstractNumId w:val="1"/></w:num>
  <w:num w:numId="4"><w:abstractNumId w:val="2"/></w:num>
  <w:num w:numId="5"><w:abstractNumId w:val="3"/></w:num>
  <w:num w:numId="6"><w:abstractNumId w:val="4"/></w:num>
  <w:num w:numId="7"><w:abstractNumId w:val="5"/></w:num>
  <w:num w:numId="8"><w:abstractNumId w:val="6"/></w:num>
</w:numbering>"""

STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:styles xmlns:w="{W}">
  <w:style w:type="paragraph" w:styleId="Normal"><w:name w:val="Normal"/></w:style>
  <w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/>
    <w:pPr><w:numPr><w:numId w:val="4"/></w:numPr></w:pPr></w:style>
  <w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/><w:basedOn w:val="Heading1"/>
    <w:pPr><w:numPr><w:ilvl w:val="1"/></w:numPr></w:pPr></w:style>
  <w:style w:type="numbering" w:styleId="ClauseList"><w:name w:val="Clause List"/>
    <w:pPr><w:numPr><w:numId w:val="7"/></w:numPr></w:pPr></w:style>
</w:styles>"""


def _p(text: str, num_id: int | None = None, ilvl: int | None = None, style: str = "") -> str:
    numbering = ""
    if num_id is not None or ilvl is not None:
        level = "" if ilvl is None else f'<w:ilvl w:val="{ilvl}"/>'
        num = "" if num_id is None else f'<w:numId w:val="{num_id}"/>'
        numbering = f"<w:numPr>{level}{num}</w:numPr>"
    style_element = f'<w:pStyle w:val="{style}"/>' if style else ""
    run = f"<w:r><w:t>{text}</w:t></w:r>" if text else ""
    return f"<w:p><w:pPr>{style_element}{numbering}</w:pPr>{run}</w:p>"


BODY = [
    _p("Scope", style="Heading1"),  # 1 (style-numbered: numId 4 on Heading1, level 0)
    _p("Terms", style="Heading2"),  # 1.1 (Heading2 inherits numId 4, sets ilvl 1)
    _p("Definitions", style="Heading2"),  # 1.2
    _p("Delivery", style="Heading1"),  # 2
    _p("Schedule", style="Heading2"),  # 2.1: level 1 restarted when level 0 advanced
    _p("first clause", 1, 0),  # 1.
    _p("first subclause", 1, 1),  # 1.1.
    _p("a point", 1, 2),  # a)
    _p("b point", 1, 2),  # b)
    _p("", 1, 1),  # an empty numbered paragraph is counted: 1.2.
    _p("third subclause", 1, 1),  # 1.3.
    _p("second clause", 1, 0),  # 2.
    _p("second clause's subclause", 1, 1),  # 2.1.
    _p("restarted list", 2, 0),  # 1.: num 2 overrides the start, so it counts apart
    _p("restarted again", 2, 0),  # 2.
    _p("continued list", 3, 0),  # 3.: num 3 shares abstract 1 with num 1, so it goes on from 2.
    _p("plain paragraph, numbering off", 0, 0, style="Heading1"),  # numId 0 beats the style
    _p("첫째 항목", 5, 0),  # 가.
    _p("둘째 항목", 5, 0),  # 나.
    _p("a bullet", 6, 0),  # no number
    _p("linked article", 8, 0),  # Article I. (abstract 6 -> style ClauseList -> num 7 -> abstract 5)
    _p("linked clause", 8, 1),  # 1.1: isLgl shows the Roman level in digits
    _p("linked point", 8, 2),  # (i)
    _p("linked clause two", 8, 1),  # 1.2; level 2 restarts after level 1 (lvlRestart 1 = after level 0 only)
    _p("linked point two", 8, 2),  # (ii): not restarted by level 1
]
TABLE = (
    "<w:tbl><w:tr>"
    f"<w:tc>{_p('', 1, 0)}</w:tc><w:tc>{_p('row one')}</w:tc>"  # 4. (abstract 1 goes on: 1, 2, 3 used)
    "</w:tr><w:tr>"
    f"<w:tc>{_p('', 1, 0)}</w:tc><w:tc>{_p('row two')}</w:tc>"  # 5.
    "</w:tr></w:tbl>"
)


def _numbered_docx(path: Path) -> Path:
    document = f'<w:document xmlns:w="{W}" xmlns:r="{R}"><w:body>{"".join(BODY)}{TABLE}</w:body></w:document>'
    relationships = (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{R}/styles" Target="styles.xml"/>'
        f'<Relationship Id="rId2" Type="{R}/numbering" Target="numbering.xml"/>'
        "</Relationships>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", document)
        archive.writestr("word/_rels/document.xml.rels", relationships)
        archive.writestr("word/styles.xml", STYLES)
        archive.writestr("word/numbering.xml", NUMBERING)
    return path


def test_word_numbers_are_written_before_their_paragraphs(tmp_path: Path) -> None:
    outcome = parse_file(_numbered_docx(tmp_path / "numbered.docx"), ParseOptions())
    assert outcome.error is None and outcome.document is not None
    blocks = [(block.kind, block.text) for block in outcome.document.blocks]
    assert blocks[:5] == [
        ("heading", "1 Scope"), ("heading", "1.1 Terms"), ("heading", "1.2 Definitions"),
        ("heading", "2 Delivery"), ("heading", "2.1 Schedule"),
    ]
    texts = [text for _, text in blocks[5:]]
    assert texts[:19] == [
        "1. first clause", "1.1. first subclause", "a) a point", "b) b point", "1.3. third subclause",
        "2. second clause", "2.1. second clause's subclause",
        "1. restarted list", "2. restarted again", "3. continued list",
        "plain paragraph, numbering off",
        "가. 첫째 항목", "나. 둘째 항목", "a bullet",
        "Article I. linked article", "1.1 linked clause", "(i) linked point", "1.2 linked clause two",
        "(ii) linked point two",
    ]
    assert outcome.document.tables[0].rows == [["4.", "row one"], ["5.", "row two"]]


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (1994, "upperRoman", "MCMXCIV"), (4, "lowerRoman", "iv"), (27, "lowerLetter", "aa"),
        (28, "upperLetter", "BB"), (15, "ganada", "가"), (3, "chosung", "ㄷ"), (21, "koreanDigital", "이십일"),
        (10, "koreanDigital", "십"), (2, "koreanCounting", "둘"), (3, "decimalEnclosedCircle", "③"),
        (21, "decimalEnclosedCircle", "21"), (12, "decimalFullWidth", "１２"), (7, "decimalZero", "07"),
        (10, "russianLower", "к"), (5, "someFutureFormat", "5"),
    ],
)
def test_number_formats(value: int, fmt: str, expected: str) -> None:
    assert format_number(value, fmt) == expected
