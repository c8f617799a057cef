"""HWPX (OWPML, the zip format of Hangul 2010+) into blocks in reading order.

An HWPX file is a zip: `Contents/content.hpf` (an OPF package) lists the section files in
reading order and carries the metadata; `Contents/header.xml` holds the styles; each
`Contents/sectionN.xml` holds paragraphs (`hp:p`) whose runs carry text (`hp:t`), tables
(`hp:tbl`), shapes with text boxes, and controls (notes, headers, footers).

Elements are matched by local name only: the namespace URIs differ between the 2011 and
2016 schemas and between writers.

A merged cell's text is said once (tables.build_grid); a table used for layout (tables.is_layout:
one cell, one column, prose cells) is read as the paragraphs in its cells, with the same walker
as the body, so a boxed chapter title ("Ⅰ. 과업안내") is a heading like an unboxed one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeAlias

from lxml import etree

from slm_factory.parsing import korean
from slm_factory.parsing.base import DocumentBuilder, NestedTable, ParseError, ParseOptions, clean_inline
from slm_factory.parsing.safety import SafeZip
from slm_factory.parsing.tables import Cell, CellContent, Grid, build_grid, is_layout

Element: TypeAlias = etree._Element

_DEFAULT_PACKAGE = "Contents/content.hpf"
_SECTION_NAME = re.compile(r"(?:^|/)section(\d+)\.xml$", re.IGNORECASE)
_OUTLINE_STYLE = re.compile(r"^(?:개요|outline)\s*(\d+)$", re.IGNORECASE)
# Inline marks inside hp:t and what they stand for in plain text.
_INLINE_MARKS = {"tab": "\t", "lineBreak": "\n", "fwSpace": " ", "nbSpace": " ", "hyphen": "-"}
# Drawing objects whose text (text boxes, captions) belongs to the document.
_SHAPES = {
    "pic",
    "rect",
    "ellipse",
    "arc",
    "polygon",
    "curve",
    "line",
    "connectLine",
    "container",
    "textart",
    "ole",
    "video",
    "chart",
}
_MAX_GRID_CELLS = 250_000
_MAX_COLUMNS = 512


def parse(data: bytes, builder: DocumentBuilder, options: ParseOptions) -> None:
    label = builder.path.name
    with SafeZip(data, label) as archive:
        package = _read_package(archive, builder)
        if not package.sections:
            raise ParseError(f"{label}: no Contents/section*.xml inside; not an HWPX document")
        styles = _read_styles(archive)
        reader = _SectionReader(builder, styles, options.hwpx_apply_spacing, options.defer_hangul_wraps)
        for name in package.sections:
            reader.read_section(archive.read_xml(name))
    builder.metadata.update(package.metadata)
    builder.title = reader.first_heading or reader.first_line or _plausible_title(package.title)


# -- package: which sections, in which order, and the metadata --------------------------------


@dataclass
class _Package:
    sections: list[str] = field(default_factory=list)
    title: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


_META_KEYS = {
    "creator": "author",
    "subject": "subject",
    "description": "description",
    "date": "date",
    "createddate": "created",
    "modifieddate": "modified",
    "lastsaveby": "last_modified_by",
}


def _local(element: Element) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _children(element: Element, name: str) -> Iterator[Element]:
    return element.iterchildren(f"{{*}}{name}")  # any namespace: lxml matches in C


def _child(element: Element, name: str) -> Element | None:
    return next(_children(element, name), None)


def _package_path(archive: SafeZip) -> str:
    """The OPF file named by META-INF/container.xml, else the usual place."""
    if archive.has("META-INF/container.xml"):
        container = archive.read_xml("META-INF/container.xml")
        for rootfile in container.iter("{*}rootfile"):
            path = rootfile.get("full-path", "")
            if path.lower().endswith(".hpf") and archive.has(path):
                return path
    return _DEFAULT_PACKAGE


def _read_package(archive: SafeZip, builder: DocumentBuilder) -> _Package:
    path = _package_path(archive)
    if not archive.has(path):
        builder.warn("no content.hpf package file; sections read in file-name order")
        return _Package(sections=_sections_by_name(archive))
    root = archive.read_xml(path)
    package = _Package(sections=_spine_sections(root, archive, path))
    if not package.sections:
        package.sections = _sections_by_name(archive)
    for element in root.iter("{*}title"):
        package.title = clean_inline(element.text or "")
        break
    for meta in root.iter("{*}meta"):
        key = _META_KEYS.get((meta.get("name") or "").lower())
        value = clean_inline(" ".join((meta.text or "").split()))
        if key and value:
            package.metadata[key] = value
    return package


def _spine_sections(root: Element, archive: SafeZip, package_path: str) -> list[str]:
    hrefs = {item.get("id"): item.get("href", "") for item in root.iter("{*}item")}
    base = PurePosixPath(package_path.replace("\\", "/")).parent
    sections: list[str] = []
    for itemref in root.iter("{*}itemref"):
        href = hrefs.get(itemref.get("idref"), "")
        if not _SECTION_NAME.search(href):
            continue
        for candidate in (href, str(base / href)):
            if archive.has(candidate) and candidate not in sections:
                sections.append(candidate)
                break
    return sections


def _sections_by_name(archive: SafeZip) -> list[str]:
    found = []
    for name in archive.names():
        match = _SECTION_NAME.search(name)
        if match and name.lower().startswith("contents/"):
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found)]


def _plausible_title(title: str) -> str:
    """Package titles are often template leftovers ("1111", "3"); keep only real words."""
    letters = sum(char.isalpha() for char in title)
    return title if letters >= 2 else ""


# -- styles: which paragraphs are headings or list items --------------------------------------


@dataclass
class _Styles:
    """Heading levels by style id and by paragraph-shape id; list levels by paragraph shape."""

    style_levels: dict[str, int] = field(default_factory=dict)
    shape_levels: dict[str, int] = field(default_factory=dict)
    shape_lists: dict[str, int] = field(default_factory=dict)

    def kind_of(self, paragraph: Element) -> tuple[str, int]:
        style = paragraph.get("styleIDRef", "")
        shape = paragraph.get("paraPrIDRef", "")
        if style in self.style_levels:
            return "heading", self.style_levels[style]
        if shape in self.shape_levels:
            return "heading", self.shape_levels[shape]
        if shape in self.shape_lists:
            return "list_item", self.shape_lists[shape]
        return "paragraph", 0


def _read_styles(archive: SafeZip) -> _Styles:
    styles = _Styles()
    if not archive.has("Contents/header.xml"):
        return styles
    header = archive.read_xml("Contents/header.xml")
    for shape in header.iter("{*}paraPr"):
        heading = next(shape.iter("{*}heading"), None)
        if heading is None:
            continue
        kind, level = heading.get("type", "NONE"), _int(heading.get("level"), 0)
        if kind == "OUTLINE":
            styles.shape_levels[shape.get("id", "")] = min(level + 1, 6)
        elif kind in ("BULLET", "NUMBER"):
            styles.shape_lists[shape.get("id", "")] = level
    for style in header.iter("{*}style"):
        for name in (style.get("name", ""), style.get("engName", "")):
            match = _OUTLINE_STYLE.match(name.strip())
            if match:
                styles.style_levels[style.get("id", "")] = min(int(match.group(1)), 6)
                break
    return styles


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


# -- tables -----------------------------------------------------------------------------------




@dataclass
class _Cell:
    row: int | None
    col: int | None
    row_span: int
    col_span: int
    text: str


def _place_cells(rows: list[list[_Cell]]) -> list[tuple[int, int, _Cell]]:
    """Grid positions from cellAddr; cells without one go to the next free slot."""
    taken: set[tuple[int, int]] = set()
    placed = []
    for row_index, cells in enumerate(rows):
        next_col = 0
        for cell in cells:
            row = cell.row if cell.row is not None else row_index
            col = cell.col
            if col is None:
                while (row, next_col) in taken:
                    next_col += 1
                col = next_col
            for r in range(row, row + cell.row_span):
                for c in range(col, col + cell.col_span):
                    taken.add((r, c))
            next_col = col + cell.col_span
            placed.append((row, col, cell))
    return placed


def _cells(table: Element) -> Iterator[Element]:
    return (tc for tr in _children(table, "tr") for tc in _children(tr, "tc"))


def _cell_paragraphs(cell: Element) -> Iterator[Element]:
    return (paragraph for sublist in _children(cell, "subList") for paragraph in _children(sublist, "p"))


def _own_text(paragraph: Element) -> str:
    """A paragraph's own text, without the tables and text boxes it anchors."""
    return "".join("".join(t.itertext()) for run in _children(paragraph, "run") for t in _children(run, "t"))


def _plain_cell_text(cell: Element) -> str:
    """A cell's text as written, nested content included: enough to judge the table by."""
    return "\n".join("".join("".join(t.itertext()) for t in p.iter("{*}t")) for p in _cell_paragraphs(cell))


def _text_columns(rows: list[list[_Cell]], contents: list[CellContent]) -> set[int]:
    """The grid columns where a cell with text starts. The layout rule reads the grid's width
    only, and build_grid keeps exactly these columns, so the grid need not be built to judge."""
    return {col for (_, col, _), content in zip(_place_cells(rows), contents) if content.chars}


def _grid(rows: list[list[_Cell]], declared_cols: int) -> Grid:
    placed = _place_cells(rows)
    if not placed:
        return Grid(rows=[])
    height = max(len(rows), max(row + 1 for row, _, _ in placed))
    width = max([col + cell.col_span for _, col, cell in placed] + [declared_cols])
    width = min(width, _MAX_COLUMNS)
    if height * width > _MAX_GRID_CELLS:
        raise ParseError(f"a table declares {height} x {width} cells; refused as malformed")
    cells = [
        Cell(cell.text, row, col, min(cell.row_span, height - row), min(cell.col_span, width - col))
        for row, col, cell in placed
        if col < width
    ]
    return build_grid(cells, width)


# -- Korean spacing ---------------------------------------------------------------------------



def looks_under_spaced(text: str) -> bool:
    """Long Hangul stretches with few spaces: well-spaced Korean averages 3-4 syllables a word.

    Kiwi's spacer also splits compounds in well-spaced text ("의료기기" → "의료 기기"), so it
    is only worth running where the spacing is clearly missing.
    """
    words = [word for word in text.split() if any(korean.is_hangul(char) for char in word)]
    syllables = sum(korean.is_hangul(char) for word in words for char in word)
    return syllables >= 12 and syllables / max(len(words), 1) >= 10


def fix_spacing(text: str, defer: bool = False) -> str:
    """Respace the under-spaced lines of `text` now, or (`defer`) mark them for the parse
    stage's main process, so a worker never loads a Kiwi of its own (~250 MB)."""
    lines = text.split("\n")
    if defer:
        return "\n".join(korean.RESPACE + line if looks_under_spaced(line) else line for line in lines)
    return "\n".join(korean.kiwi().space(line) if looks_under_spaced(line) else line for line in lines)


# -- sections ---------------------------------------------------------------------------------

Piece = str | Element


def _clean_text(text: str) -> str:
    return "\n".join(line for line in (clean_inline(part) for part in text.split("\n")) if line)


_EQUATION_WORDS = [
    (re.compile(r"\b(?:rm|it|bold)\b\s*"), ""),  # font switches
    (re.compile(r"\b(?:LEFT|RIGHT)\b\s*", re.IGNORECASE), ""),
    (re.compile(r"\s*\bover\b\s*", re.IGNORECASE), "/"),
    (re.compile(r"\s*\btimes\b\s*", re.IGNORECASE), "×"),
    (re.compile(r"\bsqrt\b\s*", re.IGNORECASE), "√"),
    (re.compile(r"\bsum\b", re.IGNORECASE), "∑"),
    (re.compile(r"[`~]"), " "),  # the editor's thin and wide spaces
]


def _equation_text(equation: Element) -> str:
    """A Hangul equation (hp:equation) as text: its script, lightly cleaned ("{a+b} over c" → "{a+b}/c")."""
    script = _child(equation, "script")
    text = " ".join(("" if script is None else "".join(script.itertext())).split())
    for pattern, replacement in _EQUATION_WORDS:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


# Korean documents number their outline by hand, in one customary order of markers (공문서 항목
# 구분): Ⅰ. > 1. > 가. > 1) > 가) > (1) > (가). A short line under one of the first three is a
# section heading; the deeper markers number items, which stay paragraphs.
_OUTLINE_MARKERS = [
    re.compile(r"^(?:[ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩ]+|[IVX]{1,4})\.?\s+"),
    re.compile(r"^\d{1,2}\.\s+"),
    re.compile(r"^[가나다라마바사아자차카타파하]\.\s*"),
]
# "…한다", "…정비함", "…완료됨" end statements; "개요", "책임", "처음" end titles
_SENTENCE_END = re.compile(r"(?:[.?!。]|[^\W\d_][다됨]|[^\W\d_포]함)\s*$")
_MAX_OUTLINE_TITLE = 30


def _outline_level(text: str) -> int | None:
    """The heading level of a hand-numbered outline title ("1. 행사개요", "가. 과업범위"), or None
    for anything else: items that are sentences, labelled values ("가. 행사명: ..."), long lines."""
    if "\n" in text:
        return None
    for level, marker in enumerate(_OUTLINE_MARKERS, 1):
        match = marker.match(text)
        if match:
            title = text[match.end():]
            if not title or len(title) > _MAX_OUTLINE_TITLE or ":" in title or "：" in title:
                return None
            if re.search(r"[.·…‥]{3}|…|\s\d+$", title):  # a contents line: "1. 행사개요 ··· 3"
                return None
            return None if _SENTENCE_END.search(title) else level
    return None


_FIRST_NUMBER = re.compile(r"^(?:Ⅰ|I|1|가)\.")


def _marker_level(text: str) -> int | None:
    """Which outline number a line starts with (Ⅰ. = 1, 1. = 2, 가. = 3), title or not."""
    return next((level for level, marker in enumerate(_OUTLINE_MARKERS, 1) if marker.match(text)), None)


def _mark_id(mark: Element) -> str:
    return mark.get("Id") or mark.get("id") or ""


class _SectionReader:
    """Feeds one document's sections to the builder; notes go at the end of each section."""

    def __init__(
        self, builder: DocumentBuilder, styles: _Styles, apply_spacing: bool, defer_spacing: bool = False
    ) -> None:
        self.builder = builder
        self.styles = styles
        self.apply_spacing = apply_spacing
        self.defer_spacing = apply_spacing and defer_spacing
        self.notes: list[str] = []
        self.note_numbers = {"footNote": 0, "endNote": 0}
        self.page_texts: set[str] = set()
        self.first_heading = ""
        self.first_line = ""
        # Tracked changes (변경 내용 추적): text between hp:deleteBegin and hp:deleteEnd with the same
        # Id was deleted; it can run across runs, paragraphs and tables. Only deletions that close
        # in the section are honoured, so a damaged marker cannot swallow the rest of the text.
        self.closable: set[str] = set()
        self.deleting: set[str] = set()
        # A hand-numbered title heads a section only if it is not in a numbered list: a title just
        # before it at its level, or the next number of its kind just after it ("1. …", "2. …",
        # often in a box), makes it an item.
        self.pending_title: tuple[str, int] | None = None
        self.last_title: int | None = None

    def read_section(self, root: Element) -> None:
        self.closable = {_mark_id(mark) for mark in root.iter("{*}deleteEnd")}
        self.deleting = set()
        for paragraph in _children(root, "p"):
            self.body_paragraph(paragraph)
        for note in self.notes:
            self.emit_text(note, "footnote", 0)
        self.notes = []
        self.settle_title()

    # body: text, then each table or text box in its place
    def body_paragraph(self, paragraph: Element) -> None:
        kind, level = self.styles.kind_of(paragraph)
        texts: list[str] = []
        for piece in self.pieces(paragraph):
            if isinstance(piece, str):
                texts.append(piece)
                continue
            if not self.holds_blocks(piece):
                continue  # a picture or drawing without text: the sentence around it goes on
            self.emit_text("".join(texts), kind, level)
            texts = []
            self.emit_object(piece)
        self.emit_text("".join(texts), kind, level)

    def holds_blocks(self, element: Element) -> bool:
        if _local(element) == "tbl":
            return True
        return any("".join(p.itertext()).strip() for box in self.text_boxes(element) for p in box)

    def emit_text(self, raw: str, kind: str, level: int) -> None:
        text = _clean_text(raw)
        if not text:
            return
        if self.apply_spacing:
            text = fix_spacing(text, self.defer_spacing)
        marker = _marker_level(text) if kind == "paragraph" else None
        # the next number of the title's kind continues its list; a "1." starts a list under it
        continues = marker is not None and marker == self.pending_level() and not _FIRST_NUMBER.match(text)
        self.settle_title(as_item=continues)
        outline = _outline_level(text) if kind == "paragraph" else None
        previous, self.last_title = self.last_title, outline
        if outline is not None and outline != previous:
            self.pending_title = (text, outline)
            self.title_candidate(text)
            return
        if kind == "heading":
            self.builder.heading(" ".join(text.split("\n")), level)
            self.first_heading = self.first_heading or " ".join(text.split())
            return
        if kind == "list_item":
            self.builder.list_item(text, level)
        else:
            self.builder.paragraph(text, kind="footnote" if kind == "footnote" else "paragraph")
        self.title_candidate(text)

    def end_run(self) -> None:
        self.settle_title()
        self.last_title = None

    def pending_level(self) -> int | None:
        return None if self.pending_title is None else self.pending_title[1]

    def settle_title(self, as_item: bool = False) -> None:
        """Emit the title that waited for the next line: a heading, or an item of a numbered list."""
        if self.pending_title is not None:
            text, level = self.pending_title
            self.pending_title = None
            if as_item:
                self.builder.paragraph(text)
            else:
                self.builder.heading(text, level)

    def title_candidate(self, text: str) -> None:
        """The first short line with words: Korean forms often put the title in a one-cell box."""
        line = text.split("\n")[0].strip()
        if not self.first_line and len(line) <= 120 and sum(char.isalpha() for char in line) >= 4:
            self.first_line = line

    def emit_object(self, element: Element) -> None:
        if _local(element) == "tbl":
            self.table_blocks(element)
            return
        for box in self.text_boxes(element):
            for paragraph in box:
                self.body_paragraph(paragraph)

    def table_blocks(self, element: Element) -> None:
        """A data table becomes a table; a layout table becomes the paragraphs in its cells.

        Whether it is layout is judged from the cells' XML alone (no note, header or tracked
        change read), so a layout table's cells are still read only once, as body content.
        """
        tcs, rows = list(_cells(element)), self.cells(element)
        contents = [self.cell_content(tc) for tc in tcs]
        columns = _text_columns(rows, contents)
        if not is_layout(contents, len(columns)):
            self.emit_table(self.table(element, rows))
            return
        if len(columns) == 1:  # Korean forms put the title in a box: its lines together are the title
            first = next(tc for tc, content in zip(tcs, contents) if content.chars)
            self.title_candidate(" ".join(_plain_cell_text(first).split()))
        caption = _child(element, "caption")
        for cell in [*tcs, *([] if caption is None else [caption])]:
            self.end_run()  # a numbered list does not run across a cell's border
            for paragraph in _cell_paragraphs(cell):
                self.body_paragraph(paragraph)
        self.end_run()

    def is_layout(self, element: Element, rows: list[list[_Cell]]) -> bool:
        contents = [self.cell_content(tc) for tc in _cells(element)]
        return is_layout(contents, len(_text_columns(rows, contents)))

    def cell_content(self, tc: Element) -> CellContent:
        """What a cell holds, read from its XML without side effects."""
        paragraphs = [p for p in _cell_paragraphs(tc) if _own_text(p).strip()]
        return CellContent(
            paragraphs=len(paragraphs),
            chars=len(" ".join(_plain_cell_text(tc).split())),
            has_heading=bool(paragraphs) and self.styles.kind_of(paragraphs[0])[0] == "heading",
            has_table=next(tc.iter("{*}tbl"), None) is not None,
        )

    def emit_table(self, table: NestedTable) -> None:
        self.end_run()
        self.builder.table(table.grid, table.caption)
        for inner in table.inner:
            self.emit_table(inner)

    # what a paragraph holds, in order: text pieces and the objects between them
    def pieces(self, paragraph: Element) -> Iterator[Piece]:
        for run in _children(paragraph, "run"):
            for child in run:
                name = _local(child)
                if name == "t":
                    yield self.run_text(child)
                elif self.deleting:
                    continue  # an object or note inside a tracked deletion
                elif name == "ctrl":
                    yield from self.controls(child)
                elif name == "equation":  # inline: its script is the formula's text
                    yield _equation_text(child)
                elif name == "tbl" or name in _SHAPES:
                    yield child
                elif name == "dutmal":  # text with a ruby annotation: keep the main text
                    main = _child(child, "mainText")
                    yield "" if main is None else "".join(main.itertext())

    def run_text(self, element: Element) -> str:
        """Text of one hp:t, with its inline marks (tabs, line breaks, fixed spaces) in place and
        tracked deletions left out."""
        parts = [] if self.deleting else [element.text or ""]
        for mark in element:
            name = _local(mark)
            if name == "deleteBegin" and _mark_id(mark) in self.closable:
                self.deleting.add(_mark_id(mark))
            elif name == "deleteEnd":
                self.deleting.discard(_mark_id(mark))
            elif not self.deleting:
                parts.append(_INLINE_MARKS.get(name, ""))
            if not self.deleting:
                parts.append(mark.tail or "")
        return "".join(parts)

    def controls(self, ctrl: Element) -> Iterator[str]:
        for control in ctrl:
            name = _local(control)
            if name in ("footNote", "endNote"):
                yield self.note(control, name)
            elif name in ("header", "footer"):
                self.page_text(control)

    def note(self, control: Element, kind: str) -> str:
        self.note_numbers[kind] += 1
        number = _int(control.get("number"), 0) or self.note_numbers[kind]
        marker = f"[^{number}]" if kind == "footNote" else f"[^e{number}]"
        text = " ".join(self.sublist_text(control).split())
        if text:
            self.notes.append(f"{marker} {text}")
        return marker

    def page_text(self, control: Element) -> None:
        """Running headers and footers: kept once, and only when they hold words."""
        text = " ".join(self.sublist_text(control).split())
        if sum(char.isalpha() for char in text) >= 2 and text not in self.page_texts:
            self.page_texts.add(text)
            self.emit_text(text, "paragraph", 0)

    # flattened text (table cells, notes, headers): nested objects become plain lines
    def sublist_text(self, element: Element, inner: list[NestedTable] | None = None) -> str:
        lines = []
        for sublist in _children(element, "subList"):
            for paragraph in _children(sublist, "p"):
                lines.append(self.flat_paragraph(paragraph, inner if inner is not None else []))
        return "\n".join(line for line in lines if line.strip())

    def flat_paragraph(self, paragraph: Element, inner: list[NestedTable]) -> str:
        parts: list[str] = []
        for piece in self.pieces(paragraph):
            if isinstance(piece, str):
                parts.append(piece)
            elif _local(piece) == "tbl":
                rows = self.cells(piece)
                table = self.table(piece, rows)
                # a box's text is in its cell already; the data tables inside it still follow
                inner.extend(table.inner if self.is_layout(piece, rows) else [table])
                parts.append("\n" + table.flat_text() + "\n")
            else:
                for box in self.text_boxes(piece):
                    parts.extend("\n" + self.flat_paragraph(p, inner) for p in box)
        return _clean_text("".join(parts))

    def table(self, element: Element, rows: list[list[_Cell]] | None = None) -> NestedTable:
        inner: list[NestedTable] = []
        rows = self.cells(element) if rows is None else rows
        for cell, tc in zip([cell for row in rows for cell in row], _cells(element)):
            cell.text = self.sublist_text(tc, inner)
        caption = _child(element, "caption")
        caption_text = "" if caption is None else self.sublist_text(caption)
        try:
            grid = _grid(rows, min(_int(element.get("colCnt"), 0), _MAX_COLUMNS))
        except ParseError as error:
            raise ParseError(f"{self.builder.path.name}: {error}") from None
        return NestedTable(grid=grid, caption=" ".join(caption_text.split()), inner=inner)

    def cells(self, element: Element) -> list[list[_Cell]]:
        """The table's cells row by row, where the file says they go; their text is read later."""
        return [[self.cell(tc) for tc in _children(tr, "tc")] for tr in _children(element, "tr")]

    def cell(self, tc: Element) -> _Cell:
        address = _child(tc, "cellAddr")
        span = _child(tc, "cellSpan")
        row = _int(address.get("rowAddr"), -1) if address is not None else -1
        col = _int(address.get("colAddr"), -1) if address is not None else -1
        return _Cell(
            row=row if row >= 0 else None,
            col=col if 0 <= col < _MAX_COLUMNS else None,
            row_span=max(1, _int(span.get("rowSpan"), 1)) if span is not None else 1,
            col_span=min(max(1, _int(span.get("colSpan"), 1)), _MAX_COLUMNS)
            if span is not None
            else 1,
            text="",
        )

    def text_boxes(self, shape: Element) -> Iterator[list[Element]]:
        """Paragraph lists inside a drawing object: its text box, its caption, grouped shapes.

        The shape's description (hp:shapeComment, "그림입니다.") is generated, not content.
        """
        for child in shape:
            name = _local(child)
            if name in ("drawText", "caption"):
                for sublist in _children(child, "subList"):
                    yield list(_children(sublist, "p"))
            elif name in _SHAPES:
                yield from self.text_boxes(child)
