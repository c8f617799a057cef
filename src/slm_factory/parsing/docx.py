"""DOCX (WordprocessingML) into blocks in reading order.

The body XML is walked directly rather than through python-docx: python-docx skips tables
inside content controls (`w:sdt`) and nested in cells, and every part is read through
SafeZip and `parse_xml` first, so zip bombs and entity attacks are refused before any XML
library expands them. Styles give heading levels and list styles; numbering (`w:numPr`)
marks list items and, through numbering.xml, gives them the numbers Word shows ("3.2.", "a)").
A merged cell's text is said once (tables.build_grid); a table used for layout (tables.is_layout)
is read as the blocks in its cells, with the same walker as the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeAlias

from lxml import etree

from slm_factory.parsing.base import DocumentBuilder, NestedTable, ParseError, ParseOptions, clean_inline
from slm_factory.parsing.docx_numbering import Numbering
from slm_factory.parsing.safety import SafeZip
from slm_factory.parsing.tables import Cell, CellContent, build_grid, is_layout

Element: TypeAlias = etree._Element
_PlacedCell: TypeAlias = tuple[Cell, Element | None]  # a placed cell and the w:tc holding its text

_MAIN_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_MC_NS = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_MATH_NS = "http://schemas.openxmlformats.org/officeDocument/2006/math"
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
_MAX_COLUMNS = 512
_MAX_HEADING_CHARS = 200
_BODY_TEXT_LEVEL = 9  # w:outlineLvl 9 means "body text", not a heading


def parse(data: bytes, builder: DocumentBuilder, options: ParseOptions) -> None:
    label = builder.path.name
    with SafeZip(data, label) as archive:
        main = _main_part(archive)
        if not archive.has(main):
            raise ParseError(f"{label}: no {main} inside; not a Word document")
        body_root = archive.read_xml(main)
        parts = _related_parts(archive, main)
        tags = _Tags(etree.QName(body_root).namespace or _MAIN_NS)
        styles = _read_styles(archive, parts.get("styles"), tags)
        notes = _read_notes(archive, parts.get("footnotes"), tags)
        numbering_part = parts.get("numbering")
        numbering = (
            Numbering.read(archive.read_xml(numbering_part), tags.q, styles.numbering_styles)
            if numbering_part and archive.has(numbering_part)
            else Numbering.empty()
        )
        builder.metadata.update(_core_properties(archive))
    body = body_root.find(tags.body)
    if body is None:
        raise ParseError(f"{label}: {main} has no document body")
    reader = _BodyReader(builder, tags, styles, notes, numbering)
    reader.blocks(body)
    reader.emit_notes()


# -- package parts ----------------------------------------------------------------------------


def _relationships(archive: SafeZip, part: str) -> dict[str, str]:
    """Relationship type (last path segment) → target part, for one part's .rels file."""
    path = PurePosixPath(part)
    rels = str(path.parent / "_rels" / f"{path.name}.rels") if part else "_rels/.rels"
    if not archive.has(rels):
        return {}
    found: dict[str, str] = {}
    for rel in archive.read_xml(rels).iter("{*}Relationship"):
        if rel.get("TargetMode") == "External":
            continue
        kind = (rel.get("Type") or "").rsplit("/", 1)[-1]
        target = (rel.get("Target") or "").replace("\\", "/")
        if target.startswith("/"):
            resolved = target.lstrip("/")
        else:
            resolved = str(PurePosixPath(path.parent / target)) if part else target
        found.setdefault(kind, _collapse(resolved))
    return found


def _collapse(path: str) -> str:
    parts: list[str] = []
    for piece in path.split("/"):
        if piece == "..":
            if parts:
                parts.pop()
        elif piece not in ("", "."):
            parts.append(piece)
    return "/".join(parts)


def _main_part(archive: SafeZip) -> str:
    return _relationships(archive, "").get("officeDocument", "word/document.xml")


def _related_parts(archive: SafeZip, main: str) -> dict[str, str]:
    parts = _relationships(archive, main)
    base = PurePosixPath(main).parent
    for kind in ("styles", "footnotes", "numbering"):
        default = str(base / f"{kind}.xml")
        if kind not in parts and archive.has(default):
            parts[kind] = default
    return parts


_CORE_FIELDS = {
    "title": "title",
    "creator": "author",
    "subject": "subject",
    "created": "created",
    "modified": "modified",
    "lastModifiedBy": "last_modified_by",
}


def _core_properties(archive: SafeZip) -> dict[str, str]:
    path = _relationships(archive, "").get("core-properties", "docProps/core.xml")
    if not archive.has(path):
        return {}
    found = {}
    for element in archive.read_xml(path):
        key = _CORE_FIELDS.get(etree.QName(element).localname)
        value = " ".join((element.text or "").split())
        if key and value:
            found[key] = value
    return found


# -- tag names --------------------------------------------------------------------------------


class _Tags:
    """Qualified tag names for one namespace (transitional or strict WordprocessingML)."""

    def __init__(self, ns: str) -> None:
        names: dict[str, str] = {}  # built once each: val_of runs for every cell and paragraph

        def q(name: str) -> str:
            if name not in names:
                names[name] = f"{{{ns}}}{name}"
            return names[name]

        self.q = q
        self.body, self.p, self.r, self.t, self.tbl = q("body"), q("p"), q("r"), q("t"), q("tbl")
        self.tr, self.tc, self.ppr, self.tcpr, self.trpr = (
            q("tr"),
            q("tc"),
            q("pPr"),
            q("tcPr"),
            q("trPr"),
        )
        self.sdt, self.sdt_content = q("sdt"), q("sdtContent")
        self.val = q("val")
        self.tab, self.br, self.cr = q("tab"), q("br"), q("cr")
        self.no_break_hyphen, self.footnote_ref = q("noBreakHyphen"), q("footnoteReference")
        self.txbx_content = q("txbxContent")
        self.alternate = f"{{{_MC_NS}}}AlternateContent"
        self.choice = f"{{{_MC_NS}}}Choice"
        # containers whose children are read as if they stood in their place
        self.inline_wrappers = {
            q(n)
            for n in (
                "hyperlink",
                "smartTag",
                "ins",
                "moveTo",
                "fldSimple",
                "customXml",
                "dir",
                "bdo",
            )
        }
        self.block_wrappers = {q(n) for n in ("customXml", "ins", "moveTo")}
        self.drawings = {q("drawing"), q("pict"), q("object")}
        self.ruby, self.ruby_base = q("ruby"), q("rubyBase")
        self.math = {f"{{{_MATH_NS}}}oMath", f"{{{_MATH_NS}}}oMathPara"}

    def val_of(self, parent: Element | None, name: str) -> str | None:
        if parent is None:
            return None
        child = parent.find(self.q(name))
        return None if child is None else child.get(self.val, "")


# -- styles -----------------------------------------------------------------------------------


@dataclass
class _Style:
    name: str = ""
    based_on: str = ""
    outline: int | None = None
    numbered: bool | None = None
    num_id: str | None = None
    level: int | None = None


@dataclass
class _Styles:
    by_id: dict[str, _Style] = field(default_factory=dict)
    numbering_styles: dict[str, str] = field(default_factory=dict)  # style id -> w:numId
    levels: dict[str, int | None] = field(default_factory=dict)  # heading level by style id, as found

    def _chain(self, style_id: str) -> list[_Style]:
        chain: list[_Style] = []
        while style_id in self.by_id and len(chain) < 12:
            style = self.by_id[style_id]
            chain.append(style)
            style_id = style.based_on
        return chain

    def heading_level(self, style_id: str) -> int | None:
        if style_id not in self.levels:
            self.levels[style_id] = self._heading_level(style_id)
        return self.levels[style_id]

    def _heading_level(self, style_id: str) -> int | None:
        for style in self._chain(style_id):
            match = _HEADING_STYLE.match(style.name.strip())
            if match:
                return max(int(match.group(1)), 1)
            if style.name.strip().lower() == "title":
                return 1
            if style.outline is not None and style.outline < _BODY_TEXT_LEVEL:
                return style.outline + 1
        return None

    def is_list(self, style_id: str) -> bool:
        for style in self._chain(style_id):
            if style.numbered is not None:
                return style.numbered
        return False

    def numbering(self, style_id: str) -> tuple[str | None, int | None]:
        """The list (w:numId) and level a paragraph style numbers its paragraphs with, if any."""
        chain = self._chain(style_id)
        num_id = next((style.num_id for style in chain if style.num_id is not None), None)
        level = next((style.level for style in chain if style.level is not None), None)
        return num_id, level

    def name(self, style_id: str) -> str:
        style = self.by_id.get(style_id)
        return style.name.lower() if style else ""


def _read_styles(archive: SafeZip, path: str | None, tags: _Tags) -> _Styles:
    styles = _Styles()
    if not path or not archive.has(path):
        return styles
    for element in archive.read_xml(path).iter(tags.q("style")):
        kind = element.get(tags.q("type"), "paragraph")
        ppr = element.find(tags.ppr)
        numbering = None if ppr is None else ppr.find(tags.q("numPr"))
        num_id = tags.val_of(numbering, "numId")
        style_id = element.get(tags.q("styleId"), "")
        if kind == "numbering" and num_id:
            styles.numbering_styles[style_id] = num_id
        if kind != "paragraph":
            continue
        styles.by_id[style_id] = _Style(
            name=tags.val_of(element, "name") or "",
            based_on=tags.val_of(element, "basedOn") or "",
            outline=_int(tags.val_of(ppr, "outlineLvl")),
            numbered=None if numbering is None else num_id not in (None, "0"),
            num_id=num_id,
            level=_int(tags.val_of(numbering, "ilvl")),
        )
    return styles


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _read_notes(archive: SafeZip, path: str | None, tags: _Tags) -> dict[str, Element]:
    if not path or not archive.has(path):
        return {}
    root = archive.read_xml(path)
    return {note.get(tags.q("id"), ""): note for note in root.iter(tags.q("footnote"))}


# -- body -------------------------------------------------------------------------------------




def math_text(element: Element) -> str:
    """An Office Math (OMML) equation as one line of plain text: a/b, x^2, x_i, √x, ∑_(i=1)^n."""
    name = etree.QName(element).localname if isinstance(element.tag, str) else ""
    if name == "t":
        return element.text or ""
    if name.endswith("Pr"):  # properties (run, n-ary, delimiter...): read where they matter
        return ""
    parts = {etree.QName(child).localname: child for child in element if isinstance(child.tag, str)}

    def part(key: str) -> str:
        return math_text(parts[key]) if key in parts else ""

    if name == "f":
        return f"{_grouped(part('num'))}/{_grouped(part('den'))}"
    if name in ("sSup", "sSub", "sSubSup", "sPre"):
        sub, sup = part("sub"), part("sup")
        return part("e") + (f"_{_grouped(sub)}" if sub else "") + (f"^{_grouped(sup)}" if sup else "")
    if name == "rad":
        degree = part("deg")
        return ("" if not degree else f"{degree}") + f"√{_grouped(part('e'))}"
    if name == "nary":
        sign = _math_val(parts.get("naryPr"), "chr", "∫")
        sign = "∫" if sign is None else sign
        sub, sup = part("sub"), part("sup")
        return sign + (f"_{_grouped(sub)}" if sub else "") + (f"^{_grouped(sup)}" if sup else "") + " " + part("e")
    if name == "d":
        begin, end = _math_val(parts.get("dPr"), "begChr", ""), _math_val(parts.get("dPr"), "endChr", "")
        begin, end = "(" if begin is None else begin, ")" if end is None else end
        inner = ", ".join(math_text(child) for child in element if etree.QName(child).localname == "e")
        return f"{begin}{inner}{end}"
    return "".join(math_text(child) for child in element if isinstance(child.tag, str))


def _grouped(text: str) -> str:
    """Parenthesised when more than one symbol, so a+b over c reads (a+b)/c."""
    return text if len(text) <= 1 or text.isalnum() or (text[0] + text[-1]) in ("()", "[]", "{}") else f"({text})"


def _math_val(properties: Element | None, name: str, no_value: str) -> str | None:
    """The m:val of one math property (m:chr, m:begChr, ...); None when the property is absent."""
    child = None if properties is None else properties.find(f"{{{_MATH_NS}}}{name}")
    return None if child is None else child.get(f"{{{_MATH_NS}}}val", no_value)


def _clean_text(text: str) -> str:
    return "\n".join(line for line in (clean_inline(part) for part in text.split("\n")) if line)


class _BodyReader:
    def __init__(
        self,
        builder: DocumentBuilder,
        tags: _Tags,
        styles: _Styles,
        notes: dict[str, Element],
        numbering: Numbering,
    ) -> None:
        self.builder = builder
        self.tags = tags
        self.styles = styles
        self.notes = notes
        self.numbering = numbering
        self.pending_notes: list[str] = []
        self.note_count = 0
        self.boxes: list[Element] = []

    # block level: paragraphs and tables in order; content controls read in place
    def blocks(self, container: Element) -> None:
        tags = self.tags
        for child in container:
            tag = child.tag
            if tag == tags.p:
                self.paragraph(child)
            elif tag == tags.tbl:
                self.table_blocks(child)
            elif tag == tags.sdt:
                content = child.find(tags.sdt_content)
                if content is not None:
                    self.blocks(content)
            elif tag in tags.block_wrappers:
                self.blocks(child)

    def paragraph(self, paragraph: Element) -> None:
        self.boxes = []
        text = _clean_text(self.inline_text(paragraph))
        boxes = self.boxes
        ppr = paragraph.find(self.tags.ppr)
        style_id = self.tags.val_of(ppr, "pStyle") or ""
        label = self.number_label(ppr, style_id)  # counted even when empty, as Word counts it
        if text:
            self.emit(ppr, style_id, f"{label} {text}" if label else text)
        for box in boxes:
            self.blocks(box)

    def emit(self, ppr: Element | None, style_id: str, text: str) -> None:
        level = self.heading_level(ppr, style_id)
        if level is not None and len(text) <= _MAX_HEADING_CHARS:
            self.builder.heading(" ".join(text.split()), level)
            return
        list_level = self.list_level(ppr, style_id)
        if list_level is not None:
            self.builder.list_item(text, list_level)
        elif self.styles.name(style_id) == "caption":
            self.builder.paragraph(text, kind="caption")
        else:
            self.builder.paragraph(text)

    def number_label(self, ppr: Element | None, style_id: str) -> str:
        numbering = None if ppr is None else ppr.find(self.tags.q("numPr"))
        num_id = self.tags.val_of(numbering, "numId")
        level = _int(self.tags.val_of(numbering, "ilvl"))
        if num_id is None or level is None:
            style_num_id, style_level = self.styles.numbering(style_id)
            num_id = style_num_id if num_id is None else num_id
            level = style_level if level is None else level
        if num_id in (None, "", "0"):
            return ""
        return self.numbering.label(num_id, level, style_id)

    def heading_level(self, ppr: Element | None, style_id: str) -> int | None:
        outline = _int(self.tags.val_of(ppr, "outlineLvl"))
        if outline is not None:
            return outline + 1 if outline < _BODY_TEXT_LEVEL else None
        return self.styles.heading_level(style_id)

    def list_level(self, ppr: Element | None, style_id: str) -> int | None:
        numbering = None if ppr is None else ppr.find(self.tags.q("numPr"))
        if numbering is not None:
            if self.tags.val_of(numbering, "numId") in (None, "0"):
                return None  # numId 0 switches off the numbering a list style would give
            return _int(self.tags.val_of(numbering, "ilvl")) or 0
        return 0 if self.styles.is_list(style_id) else None

    # inline level: runs and the containers around them
    def inline_text(self, container: Element) -> str:
        tags = self.tags
        parts: list[str] = []
        for child in container:
            tag = child.tag
            if tag == tags.r:
                self.run(child, parts)
            elif tag in tags.inline_wrappers:
                parts.append(self.inline_text(child))
            elif tag == tags.sdt:
                content = child.find(tags.sdt_content)
                if content is not None:
                    parts.append(self.inline_text(content))
            elif tag in tags.math:
                parts.append(math_text(child))
        return "".join(parts)

    def run(self, run: Element, parts: list[str]) -> None:
        tags = self.tags
        for child in run:
            tag = child.tag
            if tag == tags.t:
                parts.append(child.text or "")
            elif tag == tags.tab:
                parts.append("\t")
            elif tag in (tags.br, tags.cr):
                parts.append("\n")
            elif tag == tags.no_break_hyphen:
                parts.append("-")
            elif tag == tags.footnote_ref:
                parts.append(self.footnote(child.get(tags.q("id"), "")))
            elif tag == tags.ruby:  # East Asian annotation: the base text is the content
                base = child.find(tags.ruby_base)
                parts.append("" if base is None else self.inline_text(base))
            elif tag in tags.drawings or tag == tags.alternate:
                self.boxes.extend(self.text_boxes(child))

    def text_boxes(self, element: Element) -> list[Element]:
        """Text box contents in a drawing; of alternate renderings only the first is read."""
        if element.tag == self.tags.alternate:
            choice = element.find(self.tags.choice)
            return (
                []
                if choice is None
                else [box for child in choice for box in self.text_boxes(child)]
            )
        return list(element.iter(self.tags.txbx_content))

    def footnote(self, note_id: str) -> str:
        note = self.notes.pop(note_id, None)  # popped: a note that cites itself ends here
        if note is None:
            return ""
        # numbered in order of reference, as Word shows them; the ids are arbitrary
        self.note_count += 1
        marker = f"[^{self.note_count}]"
        text = " ".join(self.cell_text(note, []).split())
        if text:
            self.pending_notes.append(f"{marker} {text}")
        return marker

    def emit_notes(self) -> None:
        for note in self.pending_notes:
            self.builder.paragraph(note, kind="footnote")

    # tables
    def table_blocks(self, element: Element) -> None:
        """A data table becomes a table; a layout table becomes the blocks in its cells, in order.

        The cells are placed once; whether the table is layout is judged from their XML alone (no
        list number counted, no note taken), so a layout table's cells are still read only once,
        as body content.
        """
        cells = self.table_cells(element)
        if not self.is_layout(cells):
            self.emit_table(self.table(element, cells))
            return
        for tr in self.unwrap(element, self.tags.tr):
            for tc in self.unwrap(tr, self.tags.tc):
                self.blocks(tc)

    def emit_table(self, table: NestedTable) -> None:
        self.builder.table(table.grid, table.caption)
        for inner in table.inner:
            self.emit_table(inner)

    def is_layout(self, cells: list[_PlacedCell]) -> bool:
        contents = [CellContent(0, 0) if tc is None else self.cell_content(tc) for _, tc in cells]
        columns = {cell.col for (cell, _), content in zip(cells, contents) if content.chars}
        return is_layout(contents, len(columns))

    def cell_content(self, tc: Element) -> CellContent:
        """What a cell holds, read from its XML without side effects."""
        tags = self.tags
        paragraphs, chars, has_heading, has_table = 0, 0, False, False
        for child in self.unwrap_blocks(tc):
            text = " ".join("".join(t.text or "" for t in child.iter(tags.t)).split())
            if child.tag == tags.tbl:
                has_table, chars = True, chars + len(text)
                continue
            if not text and not self.numbered(child):
                continue
            paragraphs += 1
            chars += len(text) or 1  # an empty numbered paragraph still shows its number
            if paragraphs == 1:  # a section opens with its heading
                ppr = child.find(tags.ppr)
                level = self.heading_level(ppr, tags.val_of(ppr, "pStyle") or "")
                has_heading = level is not None and len(text) <= _MAX_HEADING_CHARS
        return CellContent(paragraphs=paragraphs, chars=chars, has_heading=has_heading, has_table=has_table)

    def numbered(self, paragraph: Element) -> bool:
        """Whether Word draws a list number or bullet before the paragraph."""
        tags = self.tags
        ppr = paragraph.find(tags.ppr)
        num_id = tags.val_of(None if ppr is None else ppr.find(tags.q("numPr")), "numId")
        if num_id is None:
            num_id = self.styles.numbering(tags.val_of(ppr, "pStyle") or "")[0]
        return num_id not in (None, "", "0")

    def table(self, element: Element, cells: list[_PlacedCell] | None = None) -> NestedTable:
        inner: list[NestedTable] = []
        placed = self.table_cells(element) if cells is None else cells
        for cell, tc in placed:
            if tc is not None:
                cell.text = self.cell_text(tc, inner)
        caption = self.tags.val_of(element.find(self.tags.q("tblPr")), "tblCaption") or ""
        return NestedTable(grid=build_grid([cell for cell, _ in placed]), caption=caption, inner=inner)

    def table_cells(self, element: Element) -> list[_PlacedCell]:
        """The table's cells on the grid (merges become spans), each with the w:tc holding its
        text: None for a continued merge with nothing to continue."""
        cells: list[_PlacedCell] = []
        above: dict[int, Cell] = {}  # grid column -> the cell a vertical merge there continues
        for index, tr in enumerate(self.unwrap(element, self.tags.tr)):
            self.table_row(tr, index, cells, above)
        return cells

    def table_row(self, tr: Element, index: int, cells: list[_PlacedCell], above: dict[int, Cell]) -> None:
        tags = self.tags
        col = min(max(_int(tags.val_of(tr.find(tags.trpr), "gridBefore")) or 0, 0), _MAX_COLUMNS)
        last: Cell | None = None
        for tc in self.unwrap(tr, tags.tc):
            tcpr = tc.find(tags.tcpr)
            span = min(max(_int(tags.val_of(tcpr, "gridSpan")) or 1, 1), _MAX_COLUMNS)
            merge = tags.val_of(tcpr, "vMerge")
            upper = above.get(col)
            if merge not in (None, "restart") and upper is not None and upper.row + upper.row_span == index:
                upper.row_span += 1  # a continued vertical merge: the cell above grows down
                last = upper
            elif tags.val_of(tcpr, "hMerge") not in (None, "restart") and last is not None:
                last.col_span += span
            else:
                last = Cell("", index, col, 1, span)
                cells.append((last, None if merge not in (None, "restart") else tc))
            for column in range(col, col + span):
                above[column] = last
            col += span
            if col > _MAX_COLUMNS:
                raise ParseError(
                    f"{self.builder.path.name}: a table row spans over {_MAX_COLUMNS} columns"
                )

    def unwrap(self, container: Element, tag: str) -> list[Element]:
        """Rows of a table or cells of a row, including those inside content controls."""
        found: list[Element] = []
        for child in container:
            if child.tag == tag:
                found.append(child)
            elif child.tag == self.tags.sdt:
                content = child.find(self.tags.sdt_content)
                if content is not None:
                    found.extend(self.unwrap(content, tag))
            elif child.tag in self.tags.block_wrappers:
                found.extend(self.unwrap(child, tag))
        return found

    def unwrap_blocks(self, container: Element) -> list[Element]:
        """The paragraphs and tables of a cell, including those inside content controls."""
        return self.unwrap(container, self.tags.p) + self.unwrap(container, self.tags.tbl)

    def cell_text(self, container: Element, inner: list[NestedTable]) -> str:
        """A cell's paragraphs as lines; a nested table joins as lines, and is kept in `inner` to
        follow the outer table when it holds data."""
        tags = self.tags
        lines: list[str] = []
        for child in container:
            tag = child.tag
            if tag == tags.p:
                saved, self.boxes = self.boxes, []
                ppr = child.find(tags.ppr)
                label = self.number_label(ppr, tags.val_of(ppr, "pStyle") or "")
                text = self.inline_text(child)
                lines.append(f"{label} {text}".strip() if label else text)  # Word shows it on empty ones
                lines.extend(self.cell_text(box, inner) for box in self.boxes)
                self.boxes = saved
            elif tag == tags.tbl:
                cells = self.table_cells(child)
                layout = self.is_layout(cells)
                table = self.table(child, cells)
                # a box's text is in its cell already; the data tables inside it still follow
                inner.extend(table.inner if layout else [table])
                lines.append(table.flat_text())
            elif tag == tags.sdt:
                content = child.find(tags.sdt_content)
                if content is not None:
                    lines.append(self.cell_text(content, inner))
            elif tag in tags.block_wrappers:
                lines.append(self.cell_text(child, inner))
        return _clean_text("\n".join(lines))
