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
    count_letters,
    fill_grids,
    find_cell_tables,
    looks_like_table,
    reading_order,
)
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
        page.items = _paragraphs(reading_order(page.lines, page.grids, body))
        _fix_korean_spacing(page, options)
    _join_across_pages(pages)
    _settle_wraps([item for page in pages for item in page.items if isinstance(item, Para)], options)
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
    result = PageText(number, page.rect.height, lines, gaps=gaps)
    if options.pdf_extract_tables and page.rotation == 0 and lines:
        # Exact paths: vectors collected in the text pass (TEXT_COLLECT_VECTORS) would save ~0.2 s
        # on a 117-page book, but their boxes for stroked paths are inflated by the miter limit.
        cell_tables = find_cell_tables(page.get_cdrawings(), [_box(line) for line in lines])
        if cell_tables:
            raw_blocks = raw_blocks or textpage.extractRAWDICT()["blocks"]
            grids = [_grid(table) for table in fill_grids(cell_tables, raw_blocks)]
            grids = [grid for grid in grids if looks_like_table(grid.rows)]
            result.grids = grids
            result.lines = [line for line in lines if not any(_inside(line, grid) for grid in grids)]
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
    """A table's rows; a title row across the table becomes its caption, a notes row its notes."""
    rows = table.rows(_char_text, lambda texts: _LEADER.sub(" … ", _join_lines(texts)))
    caption = rows.pop(0)[0] if len(rows) > 2 and table.full_width(table.row_slots[0]) else ""
    notes = rows.pop()[-1] if len(rows) > 2 and table.full_width(table.row_slots[-1]) else ""
    return Grid(*table.box, rows, caption=caption, notes=notes)


def _box(item: Line | Grid) -> Box:
    return (item.x0, item.y0, item.x1, item.y1)


def _inside(line: Line, grid: Grid) -> bool:
    cx, cy = (line.x0 + line.x1) / 2, (line.y0 + line.y1) / 2
    return grid.x0 - 1 <= cx <= grid.x1 + 1 and grid.y0 - 1 <= cy <= grid.y1 + 1


# -- paragraphs --------------------------------------------------------------------------------
def _paragraphs(units: list[Unit]) -> list[Para | Grid]:
    gaps = _column_gaps([unit for unit in units if isinstance(unit, Line)])
    items: list[Para | Grid] = []
    current: list[Line] = []

    def flush() -> None:
        if current:
            text = current[0].text
            for a, b in pairwise(current):  # a line that stops short wrapped at a word gap
                text = _join(text, b.text, word_gap=a.column[1] - a.x1 > 1.5 * a.size, mark=True)
            items.append(Para(list(current), _LEADER.sub(" … ", text)))
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
    first_word = len(b.text.split(" ", 1)[0]) * (b.x1 - b.x0) / len(b.text)
    if right - a.x1 > first_word + size:
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
    full = right - a.x1 <= 1.5 * a.size and right - left >= 12 * a.size
    if not full or a.size != b.size or a.bold != b.bold or _starts_item(a.text, b.text):
        return False
    last, first = a.text[-1], b.text[0]
    return (first.islower() and last not in ".!?:;") or bool(_HANGUL.match(last) and _HANGUL.match(first))


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
    paragraphs = [item for item in page.items if isinstance(item, Para)]
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
                builder.table(item.rows, caption or item.caption)
                builder.paragraph(item.notes)
            elif isinstance(following, Grid) and _is_caption(item):
                continue  # emitted with its table
            elif level := _heading_level(item, body, levels, bold_level):
                builder.heading(item.text, level)
            elif _MARKER.match(item.text):
                builder.list_item(re.sub(rf"^\s*(?:[{_BULLETS}]|-\s)\s*", "", item.text))
            else:
                builder.paragraph(item.text)


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
