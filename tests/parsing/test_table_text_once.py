"""Every corpus document says each thing once: its parsed text is no longer than the words the file
holds plus table separators, and every table's Markdown is no longer than its cells plus separators.

The source side is counted straight from the file (each XML text node, each PDF page's text, once),
so a merged cell written into every slot it covers, or a table read twice, shows up as excess.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document

from .test_tables import separator_chars

_SPACE = re.compile(r"\s+")
# what a Markdown table adds around its cells, and what a parser adds on purpose (list numbers,
# bullets, leader ellipses)
_ADDED = re.compile(r"[\s|\-…•·]+")
# Word list numbers and outline labels are written into the text by the parser; allow for them.
SLACK = 1.03


def _chars(text: str) -> int:
    return len(_ADDED.sub("", text))


def _xml_text(data: bytes, text_tags: set[str]) -> str:
    parser = etree.XMLParser(resolve_entities=False, huge_tree=True)
    root = etree.fromstring(data, parser)
    return " ".join(el.text or "" for el in root.iter() if etree.QName(el).localname in text_tags)


def _source_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".docx", ".hwpx"):
        tags = {"t"} if suffix == ".docx" else {"t", "script"}
        with zipfile.ZipFile(path) as archive:
            parts = [n for n in archive.namelist() if n.lower().endswith(".xml")]
            return " ".join(_xml_text(archive.read(n), tags) for n in parts)
    if suffix == ".pdf":
        import pymupdf

        with pymupdf.open(path) as doc:
            return " ".join(page.get_text() for page in doc)
    if suffix in (".html", ".htm"):
        from lxml import html as lxml_html

        return lxml_html.fromstring(path.read_bytes()).text_content()
    raise ValueError(suffix)


CASES = ("docx", "hwpx", "pdf", "html")


@pytest.fixture(scope="module")
def parsed(corpus: Path) -> list[tuple[Path, Document]]:
    documents = []
    for path in sorted(corpus.iterdir()):
        if path.suffix.lower().lstrip(".") not in CASES:
            continue
        outcome = parse_file(path, ParseOptions(), path.name)
        if outcome.document is not None:
            documents.append((path, outcome.document))
    assert len(documents) > 15
    return documents


def test_a_document_is_not_longer_than_its_words(parsed: list[tuple[Path, Document]]) -> None:
    excess = []
    for path, document in parsed:
        source = _chars(_source_text(path))
        ours = _chars(document.text)
        if ours > source * SLACK + 200:
            excess.append(f"{path.name}: {ours} characters of text from {source} in the file")
    assert not excess, "\n".join(excess)


def test_a_table_is_not_longer_than_its_cells(parsed: list[tuple[Path, Document]]) -> None:
    tables = 0
    for path, document in parsed:
        for index, table in enumerate(document.tables):
            tables += 1
            width = max(len(row) for row in table.rows)
            # a pipe inside a cell is escaped as "\|"
            cells = sum(len(" ".join(cell.split())) + cell.count("|") for row in table.rows for cell in row)
            bound = cells + separator_chars(width, len(table.rows))
            assert len(table.markdown) <= bound, f"{path.name} table {index}"
            for row, col, row_span, col_span in table.spans:
                covered = [table.rows[r][c] for r in range(row, row + row_span) for c in range(col, col + col_span)]
                assert covered[0] and not any(covered[1:]), f"{path.name} table {index}: merged text repeated"
    assert tables > 50
