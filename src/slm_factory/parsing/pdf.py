"""PDF parser (PyMuPDF): text in reading order, reflowed into paragraphs, headings and ruled tables.

PyMuPDF gives positioned lines; this module orders them (columns by XY-cut), joins wrapped lines
into paragraphs, drops running headers and footers, marks headings by font size or bold, and puts
ruled tables (found by `pdf_layout` from the page's vector lines) at their place in the text.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import re
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from slm_factory.parsing import korean
from slm_factory.parsing.base import DocumentBuilder, ParseError, ParseOptions
from slm_factory.parsing.korean import WRAP
from slm_factory.parsing.pdf_layout import (
    Box,
    Char,
    Grid,
    Line,
    TableGrid,
    Unit,
    box_of,
    centre_in,
    count_letters,
    fill_grids,
    find_cell_tables,
    looks_like_table,
    placed_grid,
    reading_order,
)
from slm_factory.parsing.pdf_tables import find_aligned_tables
from slm_factory.parsing.registry import NeedsOCR

_BAND = 0.10  # share of the page height, top and bottom, where running headers and footers sit
_MARKER = re.compile(
    r"^\s*([•●○◦▪■□◆◇▶►❍※✓\u2022\u2023\u2043\uf0b7\uf0a7]|-\s|[①-⑳]|\(?\d{1,2}[.)]\s|\(?[a-z][.)]\s"
    r"|\(?[가나다라마바사아자차카타파하][.)]\s|제\s?\d+\s?[조장절항]|[IVX]{1,4}\.\s)"
)
_BULLETS = "•●○◦▪■□◆◇▶►❍✓\u2022\u2023\u2043\uf0b7\uf0a7"
_GLUED = re.compile(r"[A-Z]{20,}|[^\W\d_]{30,}")  # words run together: spaces were lost
_LEADER = re.compile(r"(?:\s?[.·…․‧∙]){4,}\s?")  # dot leaders in contents lists and tables
_HANGUL = re.compile("[\uac00-\ud7a3]")
_ROMAN = re.compile(r"[ivxlcdm]+\.?", re.IGNORECASE)  # page numbers of front matter, not headings
_CAPTION = re.compile(r"^\s*(table|tab\.|표|<\s*표|\[\s*표|〈\s*표)\s*[\dIVX.-]*", re.IGNORECASE)
_KEPT_PREFIXES = {"non", "self", "co", "pre", "post", "anti", "multi", "semi", "well", "cross", "ex", "quasi"}
_OPENERS = "([{“‘「『〈《<"
_CLOSERS = ",.;:!?)]}”’」』〉》>%"
_META_KEYS = ("title", "author", "subject", "keywords", "creator", "producer", "creationDate", "modDate")
# A footnote's marker: 1) (1) [1] ¹ 주1) (주) * † ‡ §, or a number before a space (its superscript
# is read as "1 Text"); the groups hold its number.
_NOTE = re.compile(
    r"^\s*(?:\(?(\d{1,3})\)|\[(\d{1,3})\]|([⁰¹²³⁴-⁹]{1,3})|\(?주\s?(\d{0,3})\)|[*†‡§¶]{1,3}|(\d{1,3})(?=\s))\s*"
)
_SOURCE = re.compile(r"(자료|출처|sources?|notes?|주)\s*[:：]", re.IGNORECASE)  # a figure's or table's source line
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_FOOT_TOP, _FOOT_BOTTOM = 0.3, 0.6  # a footnote area starts below 30% of the page and reaches below 60%


@functools.cache
def _pymupdf() -> Any:
    """Import PyMuPDF without the ONNX layout analyser it loads by default (unused here).

    PyMuPDF 2.x imports `pymupdf.layout` (onnxruntime) when it is installed: 0.3 s and ~55 MB
    in every worker, and `find_tables` then runs the model on each page. A None entry in
    sys.modules makes that optional import fail quietly; it is removed again afterwards.
    """
    blocked = "pymupdf" not in sys.modules and "pymupdf.layout" not in sys.modules
    if blocked:
        sys.modules["pymupdf.layout"] = None  # type: ignore[assignment]
    try:
        import pymupdf
    finally:
        if blocked:
            sys.modules.pop("pymupdf.layout", None)
    pymupdf.TOOLS.mupdf_display_errors(False)  # damaged files are reported by our own message
    pymupdf.TOOLS.mupdf_display_warnings(False)
    return pymupdf


# -- records for one page ----------------------------------------------------------------------
@dataclass
class Para:
    lines: list[Line]
    text: str

    @functools.cached_property
    def size(self) -> float:
        return max(self.lines, key=lambda line: len(line.text)).size

    @functools.cached_property
    def bold(self) -> bool:
        return all(line.bold for line in self.lines)


@dataclass
class PageText:
    number: int
    height: float
    lines: list[Line]
    gaps: bool = False  # spaces were read from the gaps between glyphs
    grids: list[Grid] = field(default_factory=list)
    items: list[Para | Grid] = field(default_factory=list)
    rules: list[Box] = field(default_factory=list)  # short horizontal rules: footnote separators
    notes: list[Para] = field(default_factory=list)  # footnotes, read after the page's body


# -- entry point -------------------------------------------------------------------------------
def parse(data: bytes, builder: DocumentBuilder, options: ParseOptions) -> None:
    name = builder.path.name
    with _no_cycle_collection():
        _parse(data, name, builder, options)


def _parse(data: bytes, name: str, builder: DocumentBuilder, options: ParseOptions) -> None:
    doc = _open(data, name, options)
    try:
        builder.pages = doc.page_count
        _read_metadata(doc, builder)
        pages, failed, image_only = _extract_pages(doc, options)
    finally:
        doc.close()
    if failed and len(failed) == builder.pages:
        raise ParseError(f"{name}: damaged PDF, none of its {len(failed)} pages can be read; re-export it")
    if failed:
        builder.warn(f"{_pages(failed)} could not be read (damaged) and {_were(failed)} skipped")
    if not any(page.lines or page.grids for page in pages):
        raise NeedsOCR(
            f"{name}: no text layer on any of its {builder.pages} pages (scanned); "
            "it needs OCR before it can be used"
        )
    if image_only:
        builder.warn(f"no text layer on {_pages(image_only)} (scanned); OCR is needed to use {_its(image_only)} text")
    _drop_running_lines(pages)
    body = _body_size(pages)
    for page in pages:
        page.items, page.notes = _body_and_footnotes(page, body)
        _fix_korean_spacing(page, options)
    _join_across_pages(pages)
    _settle_wraps([item for page in pages for item in [*page.items, *page.notes] if isinstance(item, Para)], options)
    _emit(pages, body, builder)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Parsing makes hundreds of thousands of short-lived dicts and tuples and no reference cycles
    (checked on the corpus: gc.collect() after a parse finds nothing), so the cycle collector's
    passes over them are pure cost: ~5% with tables off, ~8% with tables on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _open(data: bytes, name: str, options: ParseOptions) -> Any:
    pymupdf = _pymupdf()
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as error:  # noqa: BLE001 -- MuPDF raises many types for broken files
        raise ParseError(f"{name}: damaged PDF that cannot be opened ({error}); re-export or repair it") from None
    if doc.needs_pass:
        if not options.pdf_password:
            raise ParseError(
                f"{name}: the PDF is password-protected; set parsing.pdf.password in project.yaml"
            )
        if not doc.authenticate(options.pdf_password):
            raise ParseError(f"{name}: the password in parsing.pdf.password does not open this PDF")
    if doc.page_count == 0:
        raise ParseError(f"{name}: no pages found (damaged or truncated PDF); re-export it")
    return doc


def _read_metadata(doc: Any, builder: DocumentBuilder) -> None:
    meta = doc.metadata or {}
    for key in _META_KEYS:
        value = str(meta.get(key) or "").strip()
        if value:
            builder.metadata[key] = _iso_date(value) if key.endswith("Date") else value
    title = builder.metadata.get("title", "")
    generic = re.search(r"^(untitled|microsoft \w+ -)|\.(docx?|pdf|hwpx?|xlsx?|pptx?)$", title, re.IGNORECASE)
    if sum(ch.isalpha() for ch in title) >= 3 and not generic:
        builder.title = title


def _iso_date(value: str) -> str:
    match = re.match(r"D:(\d{4})(\d\d)(\d\d)(\d\d)?(\d\d)?(\d\d)?(Z|[+-]\d\d'?\d\d)?", value)
    if not match:
        return value
    y, mo, d, h, mi, s, zone = match.groups()
    iso = f"{y}-{mo}-{d}" + (f"T{h}:{mi or '00'}:{s or '00'}" if h else "")
    if zone and h:
        iso += "Z" if zone == "Z" else f"{zone[:3]}:{zone[-2:]}"
    return iso


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10])) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
    return f"page {shown}" if len(numbers) == 1 else f"pages {shown}"


def _were(numbers: list[int]) -> str:
    return "was" if len(numbers) == 1 else "were"


def _its(numbers: list[int]) -> str:
    return "its" if len(numbers) == 1 else "their"


# -- extraction --------------------------------------------------------------------------------
def _extract_pages(doc: Any, options: ParseOptions) -> tuple[list[PageText], list[int], list[int]]:
    pages: list[PageText] = []
    failed: list[int] = []
    image_only: list[int] = []
    gaps = False  # the last page needed spaces from gaps: so, most likely, will this one
    for index in range(doc.page_count):
        try:
            page = doc.load_page(index)
            text = _extract_page(page, index + 1, options, gaps)
        except Exception:  # noqa: BLE001 -- a broken page must not cost the rest of the document
            failed.append(index + 1)
            continue
        if not text.lines and not text.grids and page.get_images():
            image_only.append(index + 1)
        pages.append(text)
        gaps = text.gaps
    return pages, failed, image_only


def _extract_page(page: Any, number: int, options: ParseOptions, expect_gaps: bool = False) -> PageText:
    pymupdf = _pymupdf()
    textpage = page.get_textpage(flags=pymupdf.TEXT_MEDIABOX_CLIP)
    # `rawdict` holds all of `dict` (span text = its characters): read once when gaps are likely
    raw_blocks = textpage.extractRAWDICT()["blocks"] if expect_gaps else None
    lines = _lines(raw_blocks or textpage.extractDICT()["blocks"], raw=False)
    gaps = _needs_gaps([line.text for line in lines])
    if gaps:  # words placed by position: spaces from gaps
        raw_blocks = raw_blocks or textpage.extractRAWDICT()["blocks"]
        lines = _lines(raw_blocks, raw=True)
    height = page.rect.height
    result = PageText(number, height, lines, gaps=gaps)
    want_tables = options.pdf_extract_tables and bool(lines) and page.rotation == 0
    # Exact paths: vectors collected in the text pass (TEXT_COLLECT_VECTORS) would save ~0.2 s
    # on a 117-page book, but their boxes for stroked paths are inflated by the miter limit.
    drawings = page.get_cdrawings() if want_tables else None
    result.rules = _separator_rules(page, lines, height, drawings)
    if drawings is not None:
        cell_tables = find_cell_tables(drawings, [box_of(line) for line in lines])
        if cell_tables:
            raw_blocks = raw_blocks or textpage.extractRAWDICT()["blocks"]
            grids = [_grid(table) for table in fill_grids(cell_tables, raw_blocks)]
            grids = [grid for grid in grids if looks_like_table(grid.rows)]
            result.grids = grids
            result.lines = _outside(lines, grids)
        aligned = find_aligned_tables(result.lines, textpage.extractWORDS, drawings)
        if aligned:  # tables without rules, among the lines left
            result.grids = result.grids + aligned
            result.lines = _outside(result.lines, aligned)
    return result


def _lines(blocks: list[dict[str, Any]], raw: bool) -> list[Line]:
    horizontal: list[Line] = []
    other: list[Line] = []
    for block in blocks:
        for line in block.get("lines", ()):
            made = _make_line(line, raw)
            if made is not None:
                upright = line["dir"][0] > 0.9
                (horizontal if upright else other).append(made)
    # Rotated text is usually a margin stamp; keep it only when it is most of the page.
    if sum(len(line.text) for line in other) > sum(len(line.text) for line in horizontal):
        return horizontal + other
    return horizontal


def _make_line(line: dict[str, Any], raw: bool) -> Line | None:
    spans = line["spans"]  # spaces can be spans of their own, in another font
    if spans and "chars" in spans[0]:  # a `rawdict` line
        texts = ["".join([c["c"] for c in span["chars"]]) for span in spans]
    else:
        texts = [span["text"] for span in spans]
    if len(spans) == 1:  # most lines: one font throughout
        first = last = spans[0]
        if not texts[0].strip():
            return None
        text = texts[0]
        bold = bool(first["flags"] & 16 or "bold" in first["font"].lower())
        size = first["size"]
    else:
        sizes: dict[float, int] = {}  # the size of most characters: small caps and superscripts do not count
        bold = True
        first = last = None
        for span, span_text in zip(spans, texts):
            visible = len(span_text.strip())
            if visible:
                if first is None:
                    first = span
                last = span
                sizes[span["size"]] = sizes.get(span["size"], 0) + visible
                bold = bold and bool(span["flags"] & 16 or "bold" in span["font"].lower())
        if first is None or last is None:
            return None
        size = max(sizes, key=sizes.__getitem__) if len(sizes) > 1 else first["size"]
        text = "" if raw else _join_spans(spans, texts)
    if raw:
        text = _raw_line_text(spans)
        x0 = next(c["bbox"][0] for c in first["chars"] if not c["c"].isspace())
    else:
        x0 = first["bbox"][0]
    text = " ".join(text.split())
    _, y0, _, y1 = line["bbox"]
    return Line(x0, y0, last["bbox"][2], y1, text, round(size, 1), bold, letters=count_letters(text))


def _join_spans(spans: list[dict[str, Any]], texts: list[str]) -> str:
    """Span texts joined, with a space at word gaps (the `_word_gap` rule, inlined: ~10 spans a line)."""
    out = [texts[0]]
    for before, span, previous, text in zip(spans, spans[1:], texts, texts[1:]):
        if text and previous:
            last, first = previous[-1], text[0]
            if not (last.isspace() or first.isspace()):
                small, large = before["size"], span["size"]
                if small > large:
                    small, large = large, small
                gap = span["bbox"][0] - before["bbox"][2] > 0.25 * small
                if gap or (small < 0.8 * large and last.isalnum() and first.isalnum()):
                    out.append(" ")
        out.append(text)
    return "".join(out)


def _word_gap(before: str, after: str, x1: float, x0: float, size_before: float, size_after: float) -> bool:
    """Whether two glyphs with no space between them are still two words (a gap, or a superscript)."""
    if before.isspace() or after.isspace():
        return False
    small, large = (size_before, size_after) if size_before <= size_after else (size_after, size_before)
    if x0 - x1 > 0.25 * small:
        return True
    return small < 0.8 * large and before.isalnum() and after.isalnum()


def _char_text(chars: list[Char]) -> str:
    """Characters to text, with a space wherever the gap before a glyph is a word gap."""
    if not chars:
        return ""
    out = [chars[0][0]]
    for previous, char in zip(chars, chars[1:]):
        if _word_gap(previous[0], char[0], previous[2], char[1], previous[3], char[3]):
            out.append(" ")
        out.append(char[0])
    return "".join(out)


def _raw_line_text(spans: list[dict[str, Any]]) -> str:
    """`_char_text` over the characters of a `rawdict` line, without building a tuple per glyph."""
    out: list[str] = []
    before: str | None = None
    x1 = size_before = 0.0
    for span in spans:
        size = span["size"]
        for char in span["chars"]:
            glyph, box = char["c"], char["bbox"]
            if before is not None and _word_gap(before, glyph, x1, box[0], size_before, size):
                out.append(" ")
            out.append(glyph)
            before, x1, size_before = glyph, box[2], size
    return "".join(out)


def _needs_gaps(texts: list[str]) -> bool:
    hangul_lines = [text for text in texts if _HANGUL.search(text)]
    return _space_free(hangul_lines) or any(_GLUED.search(text) for text in texts)


def _space_free(texts: list[str]) -> bool:
    """Hangul with under one space per 6 syllables (Korean prose has one per 3-4)."""
    joined = " ".join(texts)
    hangul = len(_HANGUL.findall(joined))
    return hangul >= 20 and (joined.count(" ") - len(texts) + 1) * 6 < hangul


def _grid(table: TableGrid) -> Grid:
    """A table's cells with their spans; a title row across the table becomes its caption, a notes
    row its notes."""
    cells = table.text_cells(_char_text, lambda texts: _LEADER.sub(" … ", _join_lines(texts)))
    return placed_grid(table.box, cells, table.width)


def _outside(lines: list[Line], grids: list[Grid]) -> list[Line]:
    """The lines whose centre is in none of the grids."""
    return [line for line in lines if not any(centre_in(box_of(line), box_of(grid)) for grid in grids)]


def _separator_rules(
    page: Any, lines: list[Line], height: float, drawings: list[dict[str, Any]] | None
) -> list[Box]:
    """The thin horizontal rules of a page that may hold footnotes: word processors draw one above
    them. Pages without a marked line in small type low down skip reading their drawings."""
    # the line test first: PyMuPDF's page.rotation and page.rect are slow property reads
    if not _may_hold_footnotes(lines, height) or page.rotation != 0:
        return []
    rules = []
    for path in page.get_cdrawings() if drawings is None else drawings:  # read once with tables on
        x0, y0, x1, y1 = path["rect"]
        if y1 - y0 <= 2.0 and x1 - x0 >= 20.0:
            rules.append((x0, y0, x1, y1))
    return rules


def _may_hold_footnotes(lines: list[Line], height: float) -> bool:
    """Whether a marked line low on the page sits right under a line in larger type."""
    for line in lines:
        if line.y0 < _FOOT_TOP * height or not _NOTE.match(line.text):
            continue
        over = [o for o in lines if o.y1 <= line.y0 + 1 and o.x0 < line.x1 and line.x0 < o.x1 and o is not line]
        if over and max(over, key=lambda o: o.y1).size >= line.size + 0.5 and _note_start(line.text):
            return True
    return False


def _note_start(text: str) -> re.Match[str] | None:
    """A footnote marker followed by words (a bare "1", "* p<0.05" or "* 자료: ..." is not a note)."""
    match = _NOTE.match(text)
    if match is None or count_letters(text[match.end() :]) < 2 or _SOURCE.match(text, match.end()):
        return None
    return match


def _note_number(match: re.Match[str]) -> int | None:
    digits = next((group for group in match.groups() if group), None)
    return int(digits.translate(_SUPERSCRIPTS)) if digits else None


# -- paragraphs --------------------------------------------------------------------------------
def _body_and_footnotes(page: PageText, body: float) -> tuple[list[Para | Grid], list[Para]]:
    """The page's body in reading order, and its footnotes: with the footnotes out of the flow, a
    sentence that runs past them into the next column or page joins up again."""
    units = reading_order(page.lines, page.grids, body)
    areas = _footnote_areas(units, page, body)
    if not areas:
        return _paragraphs(units), []
    boxes = [box_of(line) for area in areas for line in area]  # rows merged in reading order too
    lines = [line for line in page.lines if not any(centre_in(box_of(line), box) for box in boxes)]
    flow = reading_order(lines, page.grids, body)
    # the line spacing measured with the notes in, as before they were taken out, decides breaks
    gaps = _column_gaps(_lines_of(flow)) | _column_gaps(_lines_of(units))
    return _paragraphs(flow, gaps), _footnotes(areas)


def _lines_of(units: list[Unit]) -> list[Line]:
    return [unit for unit in units if isinstance(unit, Line)]


def _footnote_areas(units: list[Unit], page: PageText, body: float) -> list[list[Line]]:
    """Runs of lines in small type at the foot of a column or page, each from a note marker on (or,
    under a separator rule, from the rest of a note that began in an earlier column)."""
    areas: list[list[Line]] = []
    for index, unit in enumerate(units):
        if not isinstance(unit, Line) or not _small(unit, body) or unit.y0 < _FOOT_TOP * page.height:
            continue
        before = units[index - 1] if index else None
        if isinstance(before, Line) and _small(before, body):
            continue  # an area starts after body text: one look per block of small type
        marked = _note_start(unit.text) is not None
        if not (marked or areas):
            continue
        area = [unit]
        for later in units[index + 1 :]:  # a page number (no letters) is no part of a note
            if not isinstance(later, Line) or not _small(later, body) or not later.letters:
                break
            if later.column != unit.column:
                break
            area.append(later)
        if _at_foot(area, units, page, body, gap_will_do=marked):
            areas.append(area)
    return areas


def _small(line: Line, body: float) -> bool:
    return line.size <= body - 0.5


def _at_foot(area: list[Line], units: list[Unit], page: PageText, body: float, gap_will_do: bool) -> bool:
    """Whether an area ends its column, under body text, set off by a separator rule (or by a wide
    gap). Notes under a table, a narrow table column and anything with words below stay in place."""
    first = area[0]
    left, right = first.column
    if right - left < 12 * first.size or max(line.y1 for line in area) < _FOOT_BOTTOM * page.height:
        return False
    x0, x1 = min(line.x0 for line in area), max(line.x1 for line in area)
    members = {id(line) for line in area}
    above: Unit | None = None  # the lowest thing over the area
    for unit in units:
        if id(unit) in members or unit.x1 <= x0 or unit.x0 >= x1:
            continue
        if unit.y1 > first.y0 + 1:
            if isinstance(unit, Grid) or unit.letters:  # beside or below it; a page number may be
                return False
        elif above is None or unit.y1 > above.y1:
            above = unit
    if not isinstance(above, Line) or _small(above, body):
        return False
    for rx0, ry0, rx1, _ in page.rules:  # a line's box can reach past the rule (sub- and superscripts)
        if above.y1 - 0.5 * above.size <= ry0 <= first.y0 + 1 and rx0 < x1 and x0 < rx1:
            return True
    return gap_will_do and first.size <= 0.85 * body and first.y0 - above.y1 >= body and _wordy(area)


def _wordy(lines: list[Line]) -> bool:
    """Prose, not a small table of figures (which a gap alone cannot tell from notes): letters
    outnumber digits two to one."""
    text = "".join(line.text for line in lines)
    return sum(char.isalpha() for char in text) > 2 * sum(char.isdigit() for char in text)


def _footnotes(areas: list[list[Line]]) -> list[Para]:
    """The notes of a page's areas: each marked line that heads an area starts a note; inside an
    area a marked line starts one when its number follows the last note's (or it has a symbol),
    so a wrapped line that begins with a number ("10 seconds.") stays in its note."""
    notes: list[list[Line]] = []
    number: int | None = None
    for area in areas:
        for position, line in enumerate(area):
            match = _note_start(line.text)
            value = _note_number(match) if match else None
            follows = value is None or number is None or value == number + 1
            if not notes or (match and (position == 0 or follows)):
                notes.append([line])
                number = value
            else:
                notes[-1].append(line)
    return [_para(lines) for lines in notes]


def _para(lines: list[Line]) -> Para:
    text = lines[0].text
    for a, b in pairwise(lines):  # a line that stops short wrapped at a word gap
        text = _join(text, b.text, word_gap=a.column[1] - a.x1 > 1.5 * a.size, mark=True)
    return Para(list(lines), _LEADER.sub(" … ", text))


def _paragraphs(units: list[Unit], gaps: dict[tuple[float, float], float] | None = None) -> list[Para | Grid]:
    gaps = gaps or _column_gaps([unit for unit in units if isinstance(unit, Line)])
    items: list[Para | Grid] = []
    current: list[Line] = []

    def flush() -> None:
        if current:
            items.append(_para(current))
            current.clear()

    for index, unit in enumerate(units):
        if isinstance(unit, Grid):
            flush()
            items.append(unit)
            continue
        following = units[index + 1] if index + 1 < len(units) else None
        if current and _breaks(current[-1], unit, following, gaps[unit.column]):
            flush()
        current.append(unit)
    flush()
    return items


def _column_gaps(lines: list[Line]) -> dict[tuple[float, float], float]:
    """The usual gap between consecutive lines of each column."""
    by_column: dict[tuple[float, float], list[Line]] = defaultdict(list)
    for line in lines:
        by_column[line.column].append(line)
    gaps = {}
    for column, members in by_column.items():
        between = [b.y0 - a.y1 for a, b in pairwise(members) if b.y0 > a.y0]
        gaps[column] = statistics.median(between) if between else 0.0
    return gaps


def _breaks(a: Line, b: Line, following: Unit | None, gap: float) -> bool:
    """Whether line b starts a new paragraph after line a."""
    size = max(a.size, b.size)
    if a.column != b.column:
        return not _runs_on(a, b)
    if b.y0 <= a.y0:
        return True
    if abs(a.size - b.size) > 0.15 * size or a.bold != b.bold or _starts_item(a.text, b.text):
        return True
    if b.y0 - a.y1 > gap + max(1.5, 0.15 * size):
        return True
    left, right = a.column
    if right - a.x1 > _first_word_width(b) + size:
        return True  # the next line's first word would have fitted: the paragraph ended here
    first_line_indent = b.x0 - a.x0 > 0.8 * size and a.x0 - left < 0.8 * size
    if first_line_indent and isinstance(following, Line) and following.column == b.column:
        hanging = _MARKER.match(following.text)  # b continues a list item that c follows
        return not hanging and b.x0 - following.x0 > 0.8 * size and following.y0 > b.y0
    return False


def _starts_item(before: str, text: str) -> bool:
    """A list marker at the start of a line -- but "다." after "...합니" ends a wrapped sentence."""
    match = _MARKER.match(text)
    if not match or not before:
        return bool(match)
    marker = match.group(1).strip("(). ")
    return not (len(marker) == 1 and _HANGUL.match(marker) and _HANGUL.match(before[-1]))


def _join_across_pages(pages: list[PageText]) -> None:
    """A paragraph that runs on from the foot of one page to the head of the next is one
    paragraph, kept on the page where it starts: most page breaks fall inside a paragraph."""
    for before, after in pairwise(pages):
        if not before.items or not after.items:
            continue
        tail, head = before.items[-1], after.items[0]
        if isinstance(tail, Para) and isinstance(head, Para) and _runs_on(tail.lines[-1], head.lines[0]):
            before.items[-1] = Para(tail.lines + head.lines, _join(tail.text, head.text, mark=True))
            after.items.pop(0)


def _runs_on(a: Line, b: Line) -> bool:
    """A sentence that continues from the foot of one text column to the head of the next."""
    left, right = a.column
    if right - left < 12 * a.size or a.size != b.size or a.bold != b.bold or _starts_item(a.text, b.text):
        return False
    last, first = a.text[-1], b.text[0]
    room = right - a.x1
    if first.islower() and last not in ".!?:;":  # ragged right: b's first word did not fit after a
        return room <= max(1.5 * a.size, _first_word_width(b) + a.size)
    return room <= 1.5 * a.size and bool(_HANGUL.match(last) and _HANGUL.match(first))


def _first_word_width(line: Line) -> float:
    return len(line.text.split(" ", 1)[0]) * (line.x1 - line.x0) / len(line.text)


def _cjk(char: str) -> bool:
    code = ord(char)
    return 0xAC00 <= code <= 0xD7A3 or 0x3130 <= code <= 0x318F or 0x3040 <= code <= 0x30FF or 0x4E00 <= code <= 0x9FFF


def _join(a: str, b: str, word_gap: bool = False, mark: bool = False) -> str:
    """Join a wrapped line to the text before it: Han wraps mid-word, Latin at spaces; Hangul may
    wrap either way, so with `mark` a Hangul wrap is left as `WRAP` for `_settle_wraps`."""
    if not a or not b:
        return a or b
    if word_gap and _cjk(a[-1]) and _cjk(b[0]):
        return f"{a} {b}"
    last, first = a[-1], b[0]
    if mark and _HANGUL.match(last) and _HANGUL.match(first):
        return f"{a}{WRAP}{b}"
    if last == "\xad":
        return a[:-1] + b
    fragment = a[:-1].rsplit(" ", 1)[-1]
    if last in "-\u2010" and fragment[-1:].islower() and first.islower() and fragment.lower() not in _KEPT_PREFIXES:
        return a[:-1] + b  # exam-\nple; FAA-\napproved and non-\nnormal keep the hyphen
    if last in "-\u2010\u2013/" and len(a) > 1 and a[-2].isalnum() and first.isalnum():
        return a + b  # 2018-\n23, and/\nor, URLs
    if (_cjk(last) and _cjk(first)) or last in _OPENERS or first in _CLOSERS:
        return a + b
    return f"{a} {b}"


def _join_lines(texts: list[str]) -> str:
    joined = ""
    for text in texts:
        joined = _join(joined, text.strip())
    return joined


# -- document-level passes ---------------------------------------------------------------------
def _drop_running_lines(pages: list[PageText]) -> None:
    """Remove lines in the top/bottom band that repeat, digits aside, on many pages."""
    texted = [page for page in pages if page.lines]
    if len(texted) < 2:
        return
    keys = [[_running_key(line, page.height) for line in page.lines] for page in texted]
    counts = Counter(key for page_keys in keys for key in {k for k in page_keys if k[0]})
    strong = {key for key, count in counts.items() if count >= max(2, math.ceil(0.3 * len(texted)))}
    zones: dict[str, tuple[float, float]] = {}
    for page, page_keys in zip(texted, keys):
        for line, key in zip(page.lines, page_keys):
            if key in strong:
                low, high = zones.get(key[0], (line.y0, line.y1))
                zones[key[0]] = (min(low, line.y0), max(high, line.y1))

    def running(line: Line, key: tuple[str, str]) -> bool:
        if not key[0]:
            return False
        zone = zones.get(key[0])
        middle = (line.y0 + line.y1) / 2
        return key in strong or (zone is not None and counts[key] >= 2 and zone[0] - 2 <= middle <= zone[1] + 2)

    for page, page_keys in zip(texted, keys):
        page.lines = [line for line, key in zip(page.lines, page_keys) if not running(line, key)]


def _running_key(line: Line, height: float) -> tuple[str, str]:
    """Where a line sits ("top", "bottom" or "" for the body) and, in the bands, its text digits aside."""
    band = _band(line, height)
    return (band, _digits_aside(line.text)) if band else ("", "")


def _digits_aside(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))  # "- 3 -", "Page 3 of 15" repeat as one


def _band(line: Line, height: float) -> str:
    if line.y1 <= _BAND * height:
        return "top"
    return "bottom" if line.y0 >= (1 - _BAND) * height else ""


def _body_size(pages: list[PageText]) -> float:
    sizes: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            sizes[round(line.size * 2) / 2] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def _fix_korean_spacing(page: PageText, options: ParseOptions) -> None:
    """Kiwi adds spaces where a page's Hangul is nearly space-free even after the gaps were read.

    Kiwi costs ~1 s and ~300 MB per process, and splits some correct compounds (탄소중립 ->
    탄소 중립), so it runs only for such pages; Hancom exports get their spaces from the gaps.
    """
    paragraphs = [item for item in [*page.items, *page.notes] if isinstance(item, Para)]
    if not options.hwpx_apply_spacing or not _space_free([p.text for p in paragraphs]):
        return
    for paragraph in paragraphs:
        if _HANGUL.search(paragraph.text):
            text = paragraph.text.replace(WRAP, "")  # Kiwi spaces the whole paragraph, wraps too
            paragraph.text = _with_spaces_from(korean.kiwi().space(text), text)


def _settle_wraps(paragraphs: list[Para], options: ParseOptions) -> None:
    """A space or nothing at each Hangul line wrap (see `korean`): Kiwi reads the words around
    each, all of a document's wraps in one batch (~0.1 ms each after Kiwi's ~1 s start), when
    `hwpx_apply_spacing` is on; without it a wrap joins as inside a word (readable, a few words
    run together). Deferred wraps stay in the text for the parse stage to settle."""
    if options.defer_hangul_wraps and options.hwpx_apply_spacing:
        return
    marked = [paragraph for paragraph in paragraphs if WRAP in paragraph.text]
    joins = korean.decide((w for p in marked for w in korean.windows(p.text)), options.hwpx_apply_spacing)
    for paragraph in marked:
        paragraph.text = korean.settle(paragraph.text, joins)


def _with_spaces_from(spaced: str, original: str) -> str:
    """The original text with the spaces Kiwi added (Kiwi also normalises some characters)."""
    out: list[str] = []
    position = 0
    for char in spaced:
        if position < len(original) and (char == original[position] or not char.isspace()):
            out.append(original[position])
            position += 1
        elif char.isspace():
            out.append(" ")
    return "".join(out) + original[position:]


def _emit(pages: list[PageText], body: float, builder: DocumentBuilder) -> None:
    paragraphs = [item for page in pages for item in page.items if isinstance(item, Para)]
    large = {_rounded(p.size) for p in paragraphs if _heading_shape(p) and p.size >= 1.12 * body}
    sizes = sorted(large, reverse=True)
    levels = {size: min(index + 1, 3) for index, size in enumerate(sizes)}
    bold_chars = sum(len(p.text) for p in paragraphs if p.bold)
    bold_level = min(len(levels) + 1, 4) if bold_chars < 0.3 * sum(len(p.text) for p in paragraphs) else 0
    for page in pages:
        builder.start_page(page.number)
        for index, item in enumerate(page.items):
            following = page.items[index + 1] if index + 1 < len(page.items) else None
            if isinstance(item, Grid):
                before = page.items[index - 1] if index else None
                caption = before.text if isinstance(before, Para) and _is_caption(before) else ""
                builder.table(item.text_grid, caption or item.caption)
                builder.paragraph(item.notes)
            elif isinstance(following, Grid) and _is_caption(item):
                continue  # emitted with its table
            elif level := _heading_level(item, body, levels, bold_level):
                builder.heading(item.text, level)
            elif _MARKER.match(item.text):
                builder.list_item(re.sub(rf"^\s*(?:[{_BULLETS}]|-\s)\s*", "", item.text))
            else:
                builder.paragraph(item.text)
        for note in page.notes:
            builder.paragraph(note.text, kind="footnote")


def _rounded(size: float) -> float:
    return round(size * 2) / 2


def _is_caption(para: Para) -> bool:
    return len(para.text) <= 150 and bool(_CAPTION.match(para.text))


def _heading_shape(para: Para) -> bool:
    short = len(para.lines) <= 3 and len(para.text) <= 150
    return short and sum(line.letters for line in para.lines) >= 2 and not _ROMAN.fullmatch(para.text)


def _heading_level(para: Para, body: float, levels: dict[float, int], bold_level: int) -> int:
    if not _heading_shape(para):
        return 0
    if para.size >= 1.12 * body:
        return levels.get(_rounded(para.size), 3)
    text = para.text
    short_bold = para.bold and len(para.lines) <= 3 and len(text) <= 120
    if bold_level and short_bold and text[-1] not in ".,;:" and text[0] not in _BULLETS:
        return bold_level
    return 0
