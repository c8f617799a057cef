"""Tables without ruling lines: words in aligned columns over several rows.

Reports set payees, amounts and dates, or statistics, in columns kept apart by whitespace alone;
read line by line they become loose words whose numbers belong to nobody. A cheap pass over the
page's text lines marks candidate regions (runs of rows that hold several short pieces or
several numbers); only there are the words read and their columns found, as Tabula's
"stream" mode does: the x-ranges that no row's text crosses are the column gutters. A region
becomes a table when its words fill aligned columns over at least three rows and it reads as
neither prose in columns, nor a contents list, nor the labels of a figure.

Pure geometry: no PyMuPDF import here.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from slm_factory.parsing.pdf_layout import Box, Grid, Line, bbox, box_of, centre_in, clusters, placed_grid
from slm_factory.parsing.tables import Cell

Word = tuple[float, float, float, float, str]  # x0, y0, x1, y1, text

MIN_ROWS = 3  # rows with text in two or more columns
MIN_COLUMNS = 3  # two columns of text are as often a glossary or a layout as a table
COLUMN_GAP = 1.0  # em: wider than any word space of justified text
_NUMBER = re.compile(r"^[-+−(]?[$€£¥₩]?\d[\d,./-]*%?\)?$")  # amounts, counts, shares, dates
_NUMBERS = re.compile(r"(?<!\S)[-+−(]?[$€£¥₩]?\d[\d,./-]*%?\)?(?!\S)")  # `_NUMBER`s in a line of text
_LEADER = re.compile(r"(?:[.·…‧∙]\s?){4,}|…")
_FIGURE_STROKES = 8  # curves or slanted strokes in one cluster of drawings: a plot, not a frame


@dataclass
class Piece:
    """Words of one row that sit together, apart from the next piece by a column gap."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    words: int


# -- candidate regions (text lines only) --------------------------------------------------------
def candidate_regions(lines: list[Line]) -> list[Box]:
    """Boxes around runs of 3+ rows that look tabular, each with up to two rows above it (a
    header) and below it (a wrapped last cell, a short last record), within one page column.
    Cheap: text lines only, so the word pass runs on few pages."""
    return [region for flow in _page_columns(lines) for region in _regions(flow)]


def _page_columns(lines: list[Line]) -> list[list[Line]]:
    """The page's lines split at the gutters of a page set in columns of running text: a table in
    one column must not take in the words of the column beside it. A gutter is a strip no line
    crosses, with lines of running text (wider than 12 em) on both sides."""
    ordered = sorted(lines, key=lambda line: line.x0)
    wide = [line.x1 - line.x0 >= 12 * line.size for line in ordered]
    after = [0] * (len(ordered) + 1)  # wide lines from each index to the end
    for index in range(len(ordered) - 1, -1, -1):
        after[index] = after[index + 1] + wide[index]
    parts: list[list[Line]] = []
    right, before = -math.inf, 0  # extent and wide lines of the current part
    for index, line in enumerate(ordered):
        if parts and line.x0 - right >= line.size and before >= MIN_ROWS and after[index] >= MIN_ROWS:
            parts.append([])
            before = 0
        if not parts:
            parts.append([])
        parts[-1].append(line)
        before += wide[index]
        right = max(right, line.x1)
    return parts


def _regions(lines: list[Line]) -> list[Box]:
    rows = _line_rows(lines)
    flags = [_tabular(row) for row in rows]
    regions: list[Box] = []
    index = 0
    while index < len(rows):
        if not flags[index]:
            index += 1
            continue
        end = index
        while end + 1 < len(rows) and (flags[end + 1] or (end + 2 < len(rows) and flags[end + 2])):
            end += 1
        if sum(flags[index : end + 1]) >= MIN_ROWS:
            start, stop = index, end
            while start > 0 and index - start < 2 and _near(rows[start - 1], rows[start]):
                start -= 1
            while stop + 1 < len(rows) and stop - end < 2 and _near(rows[stop], rows[stop + 1]):
                stop += 1
            members = [line for row in rows[start : stop + 1] for line in row]
            regions.append(bbox([(line.x0, line.y0, line.x1, line.y1) for line in members]))
        index = end + 1
    return regions


T = TypeVar("T")


def _rows(items: list[T], box: Callable[[T], Box]) -> list[list[T]]:
    """Items (lines or words) side by side on one baseline, top to bottom, each row left to
    right: an item joins the row whose first item's middle is within 0.35 of its height."""
    rows: list[list[T]] = []
    for item in sorted(items, key=lambda item: (box(item)[1] + box(item)[3]) / 2):
        x0, y0, x1, y1 = box(item)
        first = box(rows[-1][0]) if rows else None
        if first is not None and abs((y0 + y1) / 2 - (first[1] + first[3]) / 2) <= 0.35 * (y1 - y0):
            rows[-1].append(item)
        else:
            rows.append([item])
    return [sorted(row, key=lambda item: box(item)[0]) for row in rows]


def _line_rows(lines: list[Line]) -> list[list[Line]]:
    return _rows(lines, box_of)


def _near(upper: list[Line], lower: list[Line]) -> bool:
    height = max(line.y1 - line.y0 for line in lower)
    return min(line.y0 for line in lower) - max(line.y1 for line in upper) <= 1.5 * height


def _tabular(row: list[Line]) -> bool:
    """Three or more short pieces set apart, most of them words or numbers (not the scripts of a
    formula); or a line of one or two pieces that is mostly numbers, three or more."""
    pieces = 1 + sum(1 for a, b in pairwise(row) if b.x0 - a.x1 >= COLUMN_GAP * a.size)
    if pieces >= MIN_COLUMNS:
        chars = sum(len(line.text) for line in row)
        worded = sum(1 for line in row if sum(ch.isalnum() for ch in line.text) >= 2 and not _formula(line.text))
        return chars <= 25 * pieces and worded * 2 > len(row)
    text = row[0].text if len(row) == 1 else " ".join(line.text for line in row)
    numbers = len(_NUMBERS.findall(text))
    return numbers >= MIN_COLUMNS and numbers * 2 >= text.count(" ") + 1


# -- tables in a region (words) ----------------------------------------------------------------
def find_aligned_tables(
    lines: list[Line], words: Callable[[], list[Word]], drawings: Sequence[dict[str, Any]] = ()
) -> list[Grid]:
    """Tables of text-aligned columns among `lines` (the page's lines outside ruled tables).

    `words` (the page's words) is called only when some region is a candidate; text near
    `drawings` that make a plot or diagram is read as its labels, not as a table.
    """
    regions = candidate_regions(lines)
    if not regions:
        return []
    all_words = words()
    figures: list[Box] | None = None  # drawings are clustered only for a region that makes a table
    found = []
    for region in regions:
        size = statistics.median(line.size for line in lines if centre_in(box_of(line), region))
        grids = aligned_tables([w for w in all_words if centre_in(w, region)], size)
        if grids:
            figures = figure_boxes(drawings) if figures is None else figures
            found += [grid for grid in grids if not any(_overlap_share(box_of(grid), box) > 0.2 for box in figures)]
    return found


def aligned_tables(words: list[Word], size: float) -> list[Grid]:
    """The tables these words make: none, one, or one per list of lists set side by side."""
    rows = [_pieces(row, size) for row in _word_rows(words)]
    body = [row for row in rows if len(row) >= 2]
    if len(body) < MIN_ROWS:
        return []
    found = _gutters(body, size)
    gutters = [middle for middle, _ in found]
    if len(gutters) + 1 < MIN_COLUMNS:
        return []
    start, end = _table_rows(rows, gutters)
    rows = rows[start:end]
    if sum(1 for row in rows if len(row) >= 2) < MIN_ROWS:
        return []
    edges = [min(p.x0 for row in rows for p in row), *gutters, max(p.x1 for row in rows for p in row)]
    cells = _cells(rows, edges)
    splits = _side_by_side(cells, edges, [width for _, width in found])
    if splits:
        bounds = [-math.inf, *splits, math.inf]
        parts = [[w for w in words if low <= (w[0] + w[2]) / 2 < high] for low, high in pairwise(bounds)]
        return [grid for part in parts for grid in aligned_tables(part, size)]
    if not _reads_as_table(rows, cells, edges):
        return []
    box = bbox([(p.x0, p.y0, p.x1, p.y1) for row in rows for p in row])
    return [placed_grid(box, cells, len(edges) - 1)]


def _word_rows(words: list[Word]) -> list[list[Word]]:
    return _rows(words, lambda word: (word[0], word[1], word[2], word[3]))


def _pieces(row: list[Word], size: float) -> list[Piece]:
    pieces: list[Piece] = []
    for word in row:
        if pieces and word[0] - pieces[-1].x1 < COLUMN_GAP * size:
            last = pieces[-1]
            last.x1, last.y0, last.y1 = word[2], min(last.y0, word[1]), max(last.y1, word[3])
            last.text += " " + word[4]
            last.words += 1
        else:
            pieces.append(Piece(word[0], word[1], word[2], word[3], word[4], 1))
    return pieces


def _gutters(body: list[list[Piece]], size: float) -> list[tuple[float, float]]:
    """Middles and widths of the x-ranges that no full row's pieces cross. Full rows have nearly
    the most pieces: a header label centred over two columns would close their gutter."""
    most = max(len(row) for row in body)
    body = [row for row in body if len(row) >= 0.8 * most]
    left = min(p.x0 for row in body for p in row)
    right = max(p.x1 for row in body for p in row)
    step = 1.0
    bins = int((right - left) / step) + 1
    cover = [0] * bins
    for row in body:
        for piece in row:
            for index in range(int((piece.x0 - left) / step), min(bins, int((piece.x1 - left) / step) + 1)):
                cover[index] += 1
    gutters: list[tuple[float, float]] = []
    run_start = None
    for index, count in enumerate(cover + [bins]):
        if count == 0 and index < bins:
            run_start = index if run_start is None else run_start
            continue
        if run_start is not None and (index - run_start) * step >= 0.5 * size:
            gutters.append((left + (run_start + index) / 2 * step, (index - run_start) * step))
        run_start = None
    return gutters


def _table_rows(rows: list[list[Piece]], gutters: list[float]) -> tuple[int, int]:
    """The run of rows that belong to the table: from the first to the last row with pieces in
    two or more columns, together with the rows between them."""
    multi = [index for index, row in enumerate(rows) if len({_column(p, gutters) for p in row}) >= 2]
    return multi[0], multi[-1] + 1


def _column(piece: Piece, gutters: list[float]) -> int:
    middle = (piece.x0 + piece.x1) / 2
    return sum(1 for gutter in gutters if gutter < middle)


def _cells(rows: list[list[Piece]], edges: list[float]) -> list[Cell]:
    """One cell per piece over the columns it overlaps; pieces in one column of a row joined.
    A row of a few words and no number, with nothing in the first column, continues the record
    above (a wrapped cell); a row of numbers under an empty key is a record of the same key."""
    cells: list[Cell] = []
    row_index = -1
    width = len(edges) - 1
    for row in rows:
        spans = [_span(piece, edges) for piece in row]
        wrapped = len(row) < width / 2 and not any(_NUMBER.match(piece.text) for piece in row)
        continues = cells and wrapped and all(first > 0 for first, _ in spans)
        if not continues:
            row_index += 1
        for piece, (first, last) in zip(row, spans):
            target = next((c for c in cells if c.row == row_index and c.col <= first < c.col + c.col_span), None)
            if target is not None:
                target.text = f"{target.text} {piece.text}"
            else:
                cells.append(Cell(piece.text, row_index, first, 1, last - first + 1))
    return cells


def _span(piece: Piece, edges: list[float]) -> tuple[int, int]:
    inside = [
        column
        for column, (left, right) in enumerate(pairwise(edges))
        if min(piece.x1, right) - max(piece.x0, left) > 0.5
    ]
    if not inside:
        column = max(0, min(len(edges) - 2, sum(1 for edge in edges[1:-1] if edge < piece.x0)))
        return column, column
    return inside[0], inside[-1]


# -- what is not a table -----------------------------------------------------------------------
def _side_by_side(cells: list[Cell], edges: list[float], blank: list[float]) -> list[float]:
    """Where lists set side by side meet: two or three groups of columns of the same kinds (text or
    numbers), each starting with text, kept apart by gutters clearly wider than any inside a
    group. A glossary or an index in page columns is not one table of four or six columns."""
    width = len(edges) - 1
    kinds = [_numeric_column([c.text for c in cells if c.col == column and c.col_span == 1]) for column in range(width)]
    for groups in (2, 3):
        size = width // groups
        if size < 2 or width % groups or kinds[0]:
            continue
        if any(kinds[g * size : (g + 1) * size] != kinds[:size] for g in range(1, groups)):
            continue
        between = [g * size - 1 for g in range(1, groups)]  # gutter index after each group
        inside = [blank[i] for i in range(width - 1) if i not in between]
        # three repeats of one pattern are lists already with a somewhat wider gutter; two need more
        if min(blank[i] for i in between) >= (1.5 if groups == 2 else 1.15) * max(inside):
            return [edges[i + 1] for i in between]
    return []


def _numeric_column(texts: list[str]) -> bool:
    """Mostly numbers, or lists of numbers ("12, 25, 38": the pages of an index entry)."""
    numeric = sum(1 for text in texts if all(_NUMBER.match(token) for token in text.replace(",", " ").split()))
    return numeric >= 0.5 * max(len(texts), 1)


def _reads_as_table(rows: list[list[Piece]], cells: list[Cell], edges: list[float]) -> bool:
    width = len(edges) - 1
    texts_by_column: dict[int, list[str]] = {}
    for cell in cells:
        if cell.col_span == 1:
            texts_by_column.setdefault(cell.col, []).append(cell.text)
    filled = [column for column, texts in texts_by_column.items() if len(texts) >= 2]
    if len(filled) < MIN_COLUMNS:
        return False
    if _worded_rows(cells) < MIN_ROWS:
        return False
    height = max(cell.row for cell in cells) + 1
    if sum(len(texts) for texts in texts_by_column.values()) < 0.5 * height * width:
        return False  # sparse: labels scattered over a figure, or two layouts side by side
    if sum(1 for cell in cells if _formula(cell.text)) >= 0.3 * len(cells):
        return False  # displayed formulas: matrices, aligned equations
    if sum(1 for column in range(width) if _running_text(rows, edges, column)) >= 2:
        return False  # columns of running text
    return not _contents_list(rows, texts_by_column, width)


def _worded_rows(cells: list[Cell]) -> int:
    """Rows with two or more cells that hold a word or a number, not a lone letter or digit: the
    scripts and indices of displayed formulas line up in rows too."""
    worded: dict[int, int] = {}
    for cell in cells:
        if sum(ch.isalnum() for ch in cell.text) >= 2:
            worded[cell.row] = worded.get(cell.row, 0) + 1
    return sum(1 for count in worded.values() if count >= 2)


def _formula(text: str) -> bool:
    """Text holding math symbols, primes or glyphs without a Unicode value (a formula's pieces)."""
    return any(unicodedata.category(ch) == "Sm" or ch in "\ufffd′″" for ch in text if ch not in "+-=<>%")


def _running_text(rows: list[list[Piece]], edges: list[float], column: int) -> bool:
    """A column of prose: most of its lines hold several words and fill the column's width (a
    table's cells vary in length and are mostly short)."""
    pieces = [piece for row in rows for piece in row if _span(piece, edges) == (column, column)]
    if len(pieces) < MIN_ROWS:
        return False
    widest = max(piece.x1 - piece.x0 for piece in pieces)
    words = statistics.median(piece.words for piece in pieces)
    full = statistics.median(piece.x1 - piece.x0 for piece in pieces) >= 0.8 * widest
    return words >= 5 or (words >= 3 and full)


def _contents_list(rows: list[list[Piece]], texts_by_column: dict[int, list[str]], width: int) -> bool:
    """A table of contents: leader dots, or a last column of page numbers that never decrease
    beside columns of titles."""
    leaders = sum(1 for row in rows if any(_LEADER.search(p.text) for p in row))
    if leaders * 2 >= len(rows):
        return True
    last = texts_by_column.get(width - 1, [])
    numbers = [int(t) for t in last if t.isdigit() and len(t) <= 4]
    if len(numbers) < 0.8 * len(last) or numbers != sorted(numbers):
        return False
    numeric_columns = sum(1 for texts in texts_by_column.values() if _numeric_column(texts))
    return numeric_columns <= 2  # section numbers and page numbers; a data table has more


def _overlap_share(region: Box, figure: Box) -> float:
    width = min(region[2], figure[2]) - max(region[0], figure[0])
    height = min(region[3], figure[3]) - max(region[1], figure[1])
    area = (region[2] - region[0]) * (region[3] - region[1])
    return width * height / area if width > 0 and height > 0 and area > 0 else 0.0


def figure_boxes(drawings: Sequence[dict[str, Any]], margin: float = 20.0) -> list[Box]:
    """Boxes (widened by `margin`, where axis labels sit) of clusters of drawings that hold many
    curves or slanted strokes: plots and diagrams, whose labels are not tables. Rules, frames
    and a rounded box's four corners do not count."""
    strokes: list[tuple[Box, int]] = []
    for path in drawings:
        count = sum(1 for item in path["items"] if item[0] == "c" or (item[0] == "l" and _slanted(item[1], item[2])))
        if count:
            strokes.append((tuple(path["rect"]), count))  # type: ignore[arg-type]
    if not strokes or len(strokes) > 2000:  # clustering is quadratic; so many strokes: a figure anyway
        return [bbox([box for box, _ in strokes])] if strokes else []
    boxes = []
    for cluster in clusters([box for box, _ in strokes]):
        inside = sum(count for box, count in strokes if _within(box, cluster))
        if inside >= _FIGURE_STROKES:
            boxes.append((cluster[0] - margin, cluster[1] - margin, cluster[2] + margin, cluster[3] + margin))
    return boxes


def _slanted(a: Any, b: Any) -> bool:
    return abs(a[0] - b[0]) > 0.5 and abs(a[1] - b[1]) > 0.5


def _within(box: Box, outer: Box) -> bool:
    return outer[0] - 1 <= box[0] and box[2] <= outer[2] + 1 and outer[1] - 1 <= box[1] and box[3] <= outer[3] + 1
