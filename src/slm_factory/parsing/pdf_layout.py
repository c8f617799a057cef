"""Page geometry for the PDF parser: lines and tables in reading order, and ruled tables.

Reading order is an XY-cut: a group of lines is split at a column gutter first (a vertical gap
crossing the whole group), else at its widest horizontal gap, down to rows of single lines.

Ruled tables follow the grid rule of pdfplumber / PyMuPDF `find_tables`: edges come from lines,
rectangles and quads (and, as in `find_tables`, the outline of each cluster of drawings that holds
text); edges at nearly one position are snapped together and collinear pieces joined; a cell is
the smallest ruled rectangle to the right of and below an intersection; cells sharing a corner
form one table. Doing this on `page.get_cdrawings()` costs milliseconds per page, where
`find_tables` spends ~0.1 s per page on per-character Python work before it starts. A cell that
covers several columns or rows stays one cell with its span (`tables.build_grid` writes its text
once); a wide header box whose labels sit over the columns below it is split into those labels.
Pure geometry: no PyMuPDF import here.
"""

from __future__ import annotations

import math
import re
import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import attrgetter
from typing import Any

from slm_factory.parsing.tables import Cell, build_grid
from slm_factory.parsing.tables import Grid as TextGrid

Box = tuple[float, float, float, float]
Edge = tuple[float, float, float]  # (position, start, end): y, x0, x1 across; x, y0, y1 down
Point = tuple[float, float]
Char = tuple[str, float, float, float]  # glyph, x0, x1, font size
Points = dict[Point, tuple[set[int], set[int]]]  # crossing -> ids of the horizontal, vertical edges
LineText = Callable[[list[Char]], str]
Join = Callable[[list[str]], str]
TOL = 3.0  # snap / join / intersection tolerance in points, as pdfplumber and find_tables use
_MAX_PATHS_FOR_FRAMES = 2000  # clustering drawings is quadratic; maps and plots can have 10^4 paths
_X0, _Y0, _Y0_X0 = attrgetter("x0"), attrgetter("y0"), attrgetter("y0", "x0")
_LETTER = re.compile(r"[^\W\d_]")


# -- records ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Line:
    """One line of text where it sits on the page; `column` is filled in by `reading_order`."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float
    bold: bool
    column: tuple[float, float] = (0.0, 0.0)
    letters: int = 0  # letters, counted up to 2: enough to tell a text column from a marker strip


@dataclass(slots=True)
class Grid:
    """A table where it sits on the page, as rows of cell texts."""

    x0: float
    y0: float
    x1: float
    y1: float
    rows: list[list[str]]
    column: tuple[float, float] = (0.0, 0.0)
    caption: str = ""
    notes: str = ""  # a last row that is one cell across the table (notes, sources): text after it
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)  # merged cells, as `TextGrid.spans`

    @property
    def text_grid(self) -> TextGrid:
        return TextGrid(self.rows, self.spans)


Unit = Line | Grid


def looks_like_table(rows: list[list[str]]) -> bool:
    """A real table: 2+ rows and 2+ columns with words in a good share of the cells.

    Ruling lines also come from figures, frames and plots; their "cells" are mostly empty or hold
    single letters, so they fail the share of filled cells or the average token length.
    """
    cells = [cell or "" for row in rows for cell in row]
    filled = [cell for cell in cells if any(ch.isalnum() for ch in cell)]
    if len(rows) < 2 or max(len(row) for row in rows) < 2 or len(filled) < 3:
        return False
    if len(filled) < 0.3 * len(cells):
        return False
    tokens = re.findall(r"\w+", " ".join(filled))
    return sum(map(len, tokens)) >= 1.5 * len(tokens)  # plots: 1.0-1.25; counts by region: 1.7


def find_cell_tables(drawings: list[dict[str, Any]], text_boxes: list[Box]) -> list[list[Box]]:
    """Cell boxes of each ruled table with 2+ columns and some text, top to bottom."""
    across, down = _item_edges(drawings)
    if not across or not down:
        return []  # one rule direction missing: a frame alone cannot make a 2 x 2 grid
    if len(drawings) <= _MAX_PATHS_FOR_FRAMES:
        for frame in clusters([tuple(path["rect"]) for path in drawings]):
            if any(_overlaps(frame, box) for box in text_boxes):
                _add_rect(across, down, *frame)
    across, down = _merge(across), _merge(down)
    if len(across) < 2 or len(down) < 2:
        return []
    tables = [group for group in _group_cells(_cells(_intersections(across, down))) if len({c[0] for c in group}) > 1]
    tables = [group for group in tables if any(_overlaps(bbox(group), box) for box in text_boxes)]
    return sorted(tables, key=lambda group: (bbox(group)[1], bbox(group)[0]))


def bbox(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def box_of(item: Line | Grid) -> Box:
    return (item.x0, item.y0, item.x1, item.y1)


def centre_in(inner: Sequence[Any], box: Box) -> bool:
    """Whether the centre of `inner` (a box, or a word tuple that starts with one) lies in `box`,
    give or take a point."""
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return box[0] - 1 <= cx <= box[2] + 1 and box[1] - 1 <= cy <= box[3] + 1


class TableGrid:
    """One table on its slot grid: a column starts at each distinct cell left edge, a row at each top."""

    def __init__(self, cells: list[Box]) -> None:
        self.cells = cells
        self.box = bbox(cells)
        self.xs = sorted({cell[0] for cell in cells})
        self.ys = sorted({cell[1] for cell in cells})
        self.slots: dict[tuple[int, int], int] = {}
        self.extent: list[tuple[int, int, int, int]] = []  # per cell: first row, end row, first col, end col
        for x0, y0, x1, y1 in cells:
            rows = (bisect_left(self.ys, y0), max(bisect_left(self.ys, y1), bisect_left(self.ys, y0) + 1))
            cols = (bisect_left(self.xs, x0), max(bisect_left(self.xs, x1), bisect_left(self.xs, x0) + 1))
            self.extent.append((*rows, *cols))
            for row in range(*rows):
                for col in range(*cols):
                    self.slots[(row, col)] = len(self.extent) - 1
        self.tall = {k for k, (r0, r1, _, _) in enumerate(self.extent) if r1 - r0 > 1}  # merged across rows
        self.chars: dict[int, dict[int, list[Char]]] = defaultdict(lambda: defaultdict(list))
        self.line_y: dict[int, tuple[float, float]] = {}  # text line id -> (middle y, font size)

    @property
    def width(self) -> int:
        return len(self.xs)

    def contains(self, x: float, y: float) -> bool:
        return self.box[0] <= x < self.box[2] and self.box[1] <= y < self.box[3]

    def add(self, line_id: int, char: Char, cy: float) -> None:
        cx = (char[1] + char[2]) / 2
        k = self.slots.get((bisect_right(self.ys, cy) - 1, bisect_right(self.xs, cx) - 1))
        if k is not None:
            self.chars[k][line_id].append(char)
            self.line_y.setdefault(line_id, (cy, char[3]))

    def text_cells(self, line_text: LineText, join: Join) -> list[Cell]:
        """The table's cells with their text and spans, on a grid of text rows.

        A ruled row whose cells hold several short text lines side by side (a table ruled only
        every few records) gives one text row per record. A cell spanning several columns whose
        lines split into pieces over those columns (a header box holding the labels of the
        columns below it) gives one cell per piece. Every other cell keeps its text once, with
        its span, so a banner across the table is one cell, not one copy per column.
        """
        out: list[Cell] = []
        offsets = [0]
        pieces: dict[int, list[tuple[int, int, int, str]]] = {}  # cell -> (band, col, col span, text)
        row_bands: list[list[tuple[float, float]]] = []
        header_rows: set[int] = set()  # rows whose bands are header lines, not records
        for r in range(len(self.ys)):
            keys = [self.slots.get((r, c), -1) for c in range(len(self.xs))]
            bands = self._bands(keys, first_row=r == 0)
            if not bands:
                bands = self._split_headers(r, keys, line_text, pieces)
                if bands:
                    header_rows.add(r)
            row_bands.append(bands)
            offsets.append(offsets[-1] + max(len(bands), 1))
        for k, (r0, r1, c0, c1) in enumerate(self.extent):
            if k not in self.chars:
                continue
            bands = row_bands[r0]
            if k in pieces:
                out += [Cell(text, offsets[r0] + band, col, 1, span) for band, col, span, text in pieces[k]]
            elif k in self.tall or len(bands) < 2 or r0 in header_rows:
                whole = self._text(k, -math.inf, math.inf, line_text, join)
                # a label beside split header boxes goes to the header line it sits on
                top = self._band_of_all(k, bands) if r0 in header_rows and k not in self.tall else 0
                out.append(Cell(whole, offsets[r0] + top, c0, offsets[r1] - offsets[r0] - top, c1 - c0))
            else:
                for band, (low, high) in enumerate(bands):
                    out.append(Cell(self._text(k, low, high, line_text, join), offsets[r0] + band, c0, 1, c1 - c0))
        return [cell for cell in out if cell.text]

    def _text(self, k: int, low: float, high: float, line_text: LineText, join: Join) -> str:
        """A cell's text lines between two heights, in the page's own text order (a label first)."""
        lines = self.chars.get(k, {}).items()
        return join([line_text(chars) for i, chars in lines if low <= self.line_y[i][0] <= high])

    def _bands(self, keys: list[int], first_row: bool) -> list[tuple[float, float]]:
        """Heights of the records in one ruled row, or [] when the row is one record.

        A band of text lines is a record when most of the row's cells have a line in it; a band
        that only a few cells reach is a wrapped line and belongs to the record above. Two lines
        per cell are as often one wrapped heading as two records: two records need every cell
        filled in both and a row below the first; otherwise three are needed.
        """
        cells = {k for k in keys if k in self.chars and k not in self.tall}
        if len(cells) < 2:
            return []
        ys = sorted(self.line_y[i] for k in cells for i in self.chars[k])
        bands = [[ys[0][0], ys[0][0]]]
        for y, size in ys[1:]:
            if y - bands[-1][1] > 0.5 * size:
                bands.append([y, y])
            else:
                bands[-1][1] = y
        reach = [sum(1 for k in cells if self._lines_between(k, low, high)) for low, high in bands]
        records: list[list[float]] = []
        for (low, high), count in zip(bands, reach):
            if count >= max(2, 0.5 * len(cells)) or not records:
                records.append([low, high])
            else:
                records[-1][1] = high  # a wrapped line: part of the record above
        full = sum(1 for k in cells if all(self._lines_between(k, low, high) for low, high in records))
        needed = 3 if first_row or full < len(cells) else 2
        if len(records) < needed or full < max(2, 0.5 * len(cells)):
            return []
        if any(self._wraps(k, records) for k in cells):
            return []
        return [(low, high) for low, high in records]

    def _band_of_all(self, k: int, bands: list[tuple[float, float]]) -> int:
        """The band nearest to all of a cell's lines, else 0."""
        found: set[int] = set()
        for i in self.chars[k]:
            y = self.line_y[i][0]
            found.add(min(range(len(bands)), key=lambda b: max(bands[b][0] - y, y - bands[b][1])))
        return found.pop() if len(found) == 1 else 0

    def _lines_between(self, k: int, low: float, high: float) -> bool:
        return any(low <= self.line_y[i][0] <= high for i in self.chars[k])

    def _wraps(self, k: int, records: list[list[float]]) -> bool:
        """Whether a cell's text wraps from one record band into the next: a line that fills the
        cell's width (and does not end in leader dots) followed by the cell's next line."""
        width = self.cells[k][2] - self.cells[k][0]
        starts = [low for low, _ in records[1:]]
        lines = sorted((self.line_y[i][0], chars) for i, chars in self.chars[k].items())
        for (_, chars), (next_y, _) in pairwise(lines):
            visible = [char for char in chars if not char[0].isspace()] or chars
            full = visible[-1][2] - visible[0][1] >= 0.8 * width and visible[-1][0] not in ".…·"
            if full and any(abs(next_y - start) < 0.5 for start in starts):
                return True
        return False

    def _split_headers(
        self, r: int, keys: list[int], line_text: LineText, pieces: dict[int, list[tuple[int, int, int, str]]]
    ) -> list[tuple[float, float]]:
        """Split the row's wide header boxes into the labels over each column; the row's text
        line heights become its bands. [] when no box splits."""
        found: dict[int, list[tuple[float, int, int, str]]] = {}
        for k in dict.fromkeys(keys):
            r0, _, c0, c1 = self.extent[k] if k >= 0 else (-1, 0, 0, 0)
            if k in self.chars and k not in self.tall and r0 == r and c1 - c0 > 1:
                split = self._split_box(k, line_text)
                if split:
                    found[k] = split
        if not found:
            return []
        ys = sorted({y for split in found.values() for y, *_ in split})
        bands: list[list[float]] = [[ys[0], ys[0]]]
        size = min(self.line_y[i][1] for k in found for i in self.chars[k])
        for y in ys[1:]:
            if y - bands[-1][1] > 0.5 * size:
                bands.append([y, y])
            else:
                bands[-1][1] = y
        for k, split in found.items():
            pieces[k] = [
                (next(b for b, (low, high) in enumerate(bands) if low <= y <= high), col, span, text)
                for y, col, span, text in split
            ]
        return [(low, high) for low, high in bands]

    def _visual_lines(self, k: int) -> list[tuple[float, list[Char]]]:
        """A cell's text lines side by side on one baseline joined, left to right, top to bottom."""
        lines = sorted((self.line_y[i], chars) for i, chars in self.chars[k].items())
        joined: list[tuple[float, list[Char]]] = []
        for (y, size), chars in lines:
            if joined and y - joined[-1][0] <= 0.3 * size:
                joined[-1][1].extend(chars)
            else:
                joined.append((y, list(chars)))
        return [(y, sorted(chars, key=lambda char: char[1])) for y, chars in joined]

    def _split_box(self, k: int, line_text: LineText) -> list[tuple[float, int, int, str]]:
        """A wide box's lines as pieces over the columns it covers, or [] when its text does not
        follow those columns (a banner: some column under it gets no piece)."""
        _, _, c0, c1 = self.extent[k]
        edges = [*self.xs[c0:c1], self.cells[k][2]]
        split: list[tuple[float, int, int, str]] = []
        covered: set[int] = set()
        several = False
        for y, chars in self._visual_lines(k):
            parts = [(cols, piece) for piece in column_pieces(chars) if (cols := _columns(piece, edges))]
            taken = [col for cols, _ in parts for col in range(cols[0], cols[1])]
            if len(taken) != len(set(taken)):
                return []  # two pieces over one column: not a row of column labels
            if len(parts) == 1:  # a group label over the box's columns
                split.append((y, c0, c1 - c0, line_text(parts[0][1]).strip()))
                continue
            several = several or len(parts) > 1
            covered.update(taken)
            split += [(y, c0 + a, b - a, line_text(piece).strip()) for (a, b), piece in parts]
        if not several or len(covered) < c1 - c0:
            return []
        return split


def placed_grid(box: Box, cells: list[Cell], width: int) -> Grid:
    """A table's cells on the page as a text grid; a first row that is one cell across the table
    (a title) becomes its caption, such a last row (notes, sources) its notes."""
    rows = sorted({cell.row for cell in cells})
    caption = notes = ""
    if len(rows) > 2 and (title := _across(cells, rows[0], width)):
        caption, cells, rows = title.text, [c for c in cells if c is not title], rows[1:]
    if len(rows) > 2 and (last := _across(cells, rows[-1], width)):
        notes, cells = last.text, [c for c in cells if c is not last]
    grid = build_grid(cells, width)
    return Grid(*box, grid.rows, caption=caption, notes=notes, spans=grid.spans)


def _across(cells: list[Cell], row: int, width: int) -> Cell | None:
    """The one cell of a row when it spans the table's whole width."""
    in_row = [cell for cell in cells if cell.row <= row < cell.row + cell.row_span]
    if len(in_row) == 1 and in_row[0].col == 0 and in_row[0].col_span == width and in_row[0].row_span == 1:
        return in_row[0]
    return None


def column_pieces(chars: list[Char]) -> list[list[Char]]:
    """A text line's glyphs cut where the gap between two visible glyphs is wider than a word
    space (0.6 em; word spaces are 0.25-0.35 em): the pieces that sit in different columns."""
    pieces: list[list[Char]] = []
    current: list[Char] = []
    right = -math.inf
    for char in chars:
        if char[0].isspace():
            if current:
                current.append(char)
            continue
        if current and char[1] - right >= 0.6 * char[3]:
            pieces.append(current)
            current = []
        current.append(char)
        right = char[2]
    if current:
        pieces.append(current)
    for piece in pieces:  # spaces only ever sit inside a piece
        while piece[-1][0].isspace():
            piece.pop()
    return pieces


def _columns(piece: list[Char], edges: list[float]) -> tuple[int, int] | None:
    """The range of columns (between consecutive `edges`) that a piece of text overlaps."""
    x0, x1 = piece[0][1], piece[-1][2]
    inside = [c for c, (left, right) in enumerate(pairwise(edges)) if min(x1, right) - max(x0, left) > 1.0]
    return (inside[0], inside[-1] + 1) if inside else None


def fill_grids(tables: list[list[Box]], blocks: list[dict[str, Any]]) -> list[TableGrid]:
    """Put each character of a `rawdict` page into the table cell under its centre."""
    grids = [TableGrid(cells) for cells in tables]
    line_id = 0
    for block in blocks:
        for line in block.get("lines", ()):
            line_id += 1
            for span in line["spans"]:
                size = span["size"]
                for c in span["chars"]:
                    x0, y0, x1, y1 = c["bbox"]
                    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                    grid = next((g for g in grids if g.contains(cx, cy)), None)
                    if grid is not None:
                        grid.add(line_id, (c["c"], x0, x1, size), cy)
    return grids


# -- edges -------------------------------------------------------------------------------------
def _item_edges(drawings: list[dict[str, Any]]) -> tuple[list[Edge], list[Edge]]:
    across: list[Edge] = []
    down: list[Edge] = []
    for path in drawings:
        items = path["items"]
        if path.get("closePath") and items and items[0][0] == "l" and items[-1][0] == "l":
            items = [*items, ("l", items[-1][2], items[0][1])]
        for item in items:
            kind = item[0]
            if kind == "l":
                _add_segment(across, down, *item[1], *item[2])
            elif kind == "re":
                _add_rect(across, down, *item[1])
            elif kind == "qu":
                ul, ur, ll, lr = item[1]
                for a, b in ((ul, ll), (ll, lr), (lr, ur), (ur, ul)):
                    _add_segment(across, down, *a, *b)
    return across, down


def _add_segment(across: list[Edge], down: list[Edge], ax: float, ay: float, bx: float, by: float) -> None:
    if abs(ay - by) <= 0.5 and abs(bx - ax) > abs(by - ay):
        across.append(((ay + by) / 2, min(ax, bx), max(ax, bx)))
    elif abs(ax - bx) <= 0.5:
        down.append(((ax + bx) / 2, min(ay, by), max(ay, by)))


def _add_rect(across: list[Edge], down: list[Edge], x0: float, y0: float, x1: float, y1: float) -> None:
    x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    if x1 - x0 <= TOL and x1 - x0 < y1 - y0:  # a thin filled bar drawn as a vertical rule
        down.append(((x0 + x1) / 2, y0, y1))
    elif y1 - y0 <= TOL and y1 - y0 < x1 - x0:
        across.append(((y0 + y1) / 2, x0, x1))
    else:
        across.extend(((y0, x0, x1), (y1, x0, x1)))
        down.extend(((x0, y0, y1), (x1, y0, y1)))


def clusters(rects: list[Box]) -> list[Box]:
    """Bounding boxes of groups of touching drawings (find_tables treats them as frames)."""
    merged: list[Box] = []
    for rect in sorted(rects, key=lambda r: (r[1], r[0])):
        box = rect
        for other in [m for m in merged if _overlaps(m, box, TOL)]:
            merged.remove(other)
            box = (min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]), max(box[3], other[3]))
        merged.append(box)
    return merged


def _overlaps(a: Box, b: Box, tol: float = 0.0) -> bool:
    return a[0] - tol <= b[2] and b[0] - tol <= a[2] and a[1] - tol <= b[3] and b[1] - tol <= a[3]


def _merge(edges: list[Edge]) -> list[Edge]:
    """Snap edges at nearly one position to their mean, join collinear pieces, drop stubs."""
    groups: list[list[Edge]] = []
    for edge in sorted(edges):
        if groups and edge[0] - groups[-1][-1][0] <= TOL:
            groups[-1].append(edge)
        else:
            groups.append([edge])
    merged: list[Edge] = []
    for group in groups:
        where = statistics.fmean(edge[0] for edge in group)
        pieces = sorted((edge[1], edge[2]) for edge in group)
        start, end = pieces[0]
        for a, b in pieces[1:] + [(math.inf, math.inf)]:
            if a <= end + TOL:
                end = max(end, b)
                continue
            if end - start >= TOL:
                merged.append((where, start, end))
            start, end = a, b
    return merged


# -- cells -------------------------------------------------------------------------------------
def _intersections(across: list[Edge], down: list[Edge]) -> Points:
    """Crossing points, each with the ids of the horizontal and the vertical edges through it."""
    across = sorted(across)
    ys = [edge[0] for edge in across]
    points: Points = {}
    for v, (x, top, bottom) in enumerate(down):
        for h in range(bisect_left(ys, top - TOL), bisect_right(ys, bottom + TOL)):
            y, left, right = across[h]
            if left - TOL <= x <= right + TOL:
                h_ids, v_ids = points.setdefault((x, y), (set(), set()))
                h_ids.add(h)
                v_ids.add(v)
    return points


def _cells(points: Points) -> list[Box]:
    by_x: dict[float, list[float]] = defaultdict(list)
    by_y: dict[float, list[float]] = defaultdict(list)
    for x, y in sorted(points):
        by_x[x].append(y)
        by_y[y].append(x)
    cells = []
    for (x, y), (h_ids, v_ids) in sorted(points.items()):
        cell = _smallest_cell(points, x, y, h_ids, v_ids, by_x[x], by_y[y])
        if cell:
            cells.append(cell)
    return cells


def _smallest_cell(
    points: Points, x: float, y: float, h_ids: set[int], v_ids: set[int], ys_below: list[float], xs_right: list[float]
) -> Box | None:
    """The nearest corners below and to the right joined by rules, closed by a fourth corner."""
    for y2 in ys_below[bisect_right(ys_below, y):]:
        below = points[(x, y2)]
        if not v_ids & below[1]:
            continue
        for x2 in xs_right[bisect_right(xs_right, x):]:
            right = points[(x2, y)]
            if not h_ids & right[0]:
                continue
            corner = points.get((x2, y2))
            if corner and corner[1] & right[1] and corner[0] & below[0]:
                return (x, y, x2, y2)
    return None


def _group_cells(cells: list[Box]) -> list[list[Box]]:
    """Cells that share a corner belong to one table (union-find over corners)."""
    parent = list(range(len(cells)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[Point, int] = {}
    for i, (x0, y0, x1, y1) in enumerate(cells):
        for corner in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
            parent[root(i)] = root(owner.setdefault(corner, i))
    groups: dict[int, list[Box]] = defaultdict(list)
    for i, cell in enumerate(cells):
        groups[root(i)].append(cell)
    return list(groups.values())


# -- reading order -----------------------------------------------------------------------------
def reading_order(lines: list[Line], grids: list[Grid], body_size: float) -> list[Unit]:
    """Lines and tables in reading order, each marked with the column it was read in."""
    units: list[Unit] = [*lines, *grids]
    ordered: list[Unit] = []
    stack = [(units, _span(units))] if units else []
    gutter = max(4.0, 0.5 * body_size)
    while stack:
        group, column = stack.pop()
        # One flow (each line overlaps the next one down) has no gutter to split at: skip the search.
        if not _single_flow(group):
            parts = _split_columns(group, gutter, min_width=2.5 * body_size)
            if parts:
                stack.extend((part, _span(part)) for part in reversed(parts))
                continue
            parts = _split_rows(group)
            if parts:
                stack.extend((part, column) for part in reversed(parts))
                continue
        for unit in _visual_rows(group):
            unit.column = column
            ordered.append(unit)
    return ordered


def _span(group: list[Unit]) -> tuple[float, float]:
    return (min(unit.x0 for unit in group), max(unit.x1 for unit in group))


def count_letters(text: str) -> int:
    """Letters in the text, counted up to 2 (enough to tell words from markers and numbers)."""
    first = _LETTER.search(text)
    if first is None:
        return 0
    return 1 if _LETTER.search(text, first.end()) is None else 2


def _letters(group: list[Unit]) -> int:
    return sum(unit.letters if isinstance(unit, Line) else 2 for unit in group)


def _split_columns(group: list[Unit], gutter: float, min_width: float) -> list[list[Unit]] | None:
    if len(group) < 2:
        return None
    units = sorted(group, key=_X0)
    parts: list[list[Unit]] = [[units[0]]]
    right = units[0].x1
    for unit in units[1:]:
        if unit.x0 - right >= gutter:
            parts.append([unit])
        else:
            parts[-1].append(unit)
        if unit.x1 > right:
            right = unit.x1
    if len(parts) < 2:
        return None
    # A strip of list markers, line numbers or letter-spaced labels (일 시) belongs to its right.
    merged: list[list[Unit]] = []
    pending: list[Unit] = []
    for part in parts:
        if _letters(part) >= 2 and _span(part)[1] - _span(part)[0] >= min_width:
            merged.append(pending + part)
            pending = []
        else:
            pending += part
    if pending and merged:
        merged[-1] += pending
    # Words of one row spread out by justification are not columns: a column has 2+ rows.
    if len(merged) < 2 or not any(max(u.y0 for u in part) > min(u.y1 for u in part) for part in merged):
        return None
    return merged


def _single_flow(group: list[Unit]) -> bool:
    units = sorted(group, key=_Y0)
    return all(a.x0 < b.x1 and b.x0 < a.x1 for a, b in pairwise(units))


def _split_rows(group: list[Unit]) -> list[list[Unit]] | None:
    """Cut at the widest horizontal gap (and at gaps nearly as wide: evenly spaced rows at once)."""
    units = sorted(group, key=_Y0)
    gaps: list[tuple[float, int]] = []
    bottom = units[0].y1
    for index, unit in enumerate(units[1:], 1):
        if unit.y0 > bottom:
            gaps.append((unit.y0 - bottom, index))
        bottom = max(bottom, unit.y1)
    if not gaps:
        return None
    widest = max(gaps)[0]
    cuts = [0] + [index for gap, index in gaps if gap >= 0.8 * widest] + [len(units)]
    return [units[a:b] for a, b in pairwise(cuts)]


def _visual_rows(group: list[Unit]) -> list[Unit]:
    """Units in top-to-bottom order; lines side by side on one baseline become one line."""
    if len(group) == 1:
        return group
    rows: list[list[Unit]] = []
    top = bottom = 0.0  # of the last row
    for unit in sorted(group, key=_Y0_X0):
        if rows and isinstance(unit, Line) and isinstance(rows[-1][0], Line) and _same_row(top, bottom, unit):
            rows[-1].append(unit)
            top, bottom = min(top, unit.y0), max(bottom, unit.y1)
        else:
            rows.append([unit])
            top, bottom = unit.y0, unit.y1
    return [row[0] if len(row) == 1 else _merge_row(row) for row in rows]  # type: ignore[arg-type]


def _same_row(top: float, bottom: float, line: Line) -> bool:
    overlap = min(bottom, line.y1) - max(top, line.y0)
    return overlap >= 0.5 * min(bottom - top, line.y1 - line.y0)


def _merge_row(row: list[Line]) -> Line:
    row = sorted(row, key=_X0)
    main = max(row, key=lambda line: len(line.text))
    box = (row[0].x0, min(line.y0 for line in row), max(line.x1 for line in row), max(line.y1 for line in row))
    text = " ".join(line.text for line in row)
    return Line(*box, text, main.size, all(line.bold for line in row), letters=count_letters(text))
