"""Page geometry for the PDF parser: lines and tables in reading order, and ruled tables.

Reading order is an XY-cut: a group of lines is split at a column gutter first (a vertical gap
crossing the whole group), else at its widest horizontal gap, down to rows of single lines.

Ruled tables follow the grid rule of pdfplumber / PyMuPDF `find_tables`: edges come from lines,
rectangles and quads (and, as in `find_tables`, the outline of each cluster of drawings that holds
text); edges at nearly one position are snapped together and collinear pieces joined; a cell is
the smallest ruled rectangle to the right of and below an intersection; cells sharing a corner
form one table. Doing this on `page.get_cdrawings()` costs milliseconds per page, where
`find_tables` spends ~0.1 s per page on per-character Python work before it starts.
Pure geometry: no PyMuPDF import here.
"""

from __future__ import annotations

import math
import re
import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from typing import Any

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
        for frame in _clusters([tuple(path["rect"]) for path in drawings]):
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


class TableGrid:
    """One table on its slot grid: a column starts at each distinct cell left edge, a row at each top."""

    def __init__(self, cells: list[Box]) -> None:
        self.cells = cells
        self.box = bbox(cells)
        self.xs = sorted({cell[0] for cell in cells})
        self.ys = sorted({cell[1] for cell in cells})
        self.slots: dict[tuple[int, int], int] = {}
        self.tall: set[int] = set()  # cells merged across rows
        for k, (x0, y0, x1, y1) in enumerate(cells):
            rows = range(bisect_left(self.ys, y0), bisect_left(self.ys, y1))
            if len(rows) > 1:
                self.tall.add(k)
            for row in rows:
                for col in range(bisect_left(self.xs, x0), bisect_left(self.xs, x1)):
                    self.slots[(row, col)] = k
        self.chars: dict[int, dict[int, list[Char]]] = defaultdict(lambda: defaultdict(list))
        self.line_y: dict[int, tuple[float, float]] = {}  # text line id -> (middle y, font size)
        self.row_slots: list[int] = []

    def full_width(self, row: int) -> bool:
        """Whether a slot row is one cell across the whole table (a title or a notes row)."""
        return len(self.xs) > 1 and len({self.slots.get((row, col)) for col in range(len(self.xs))}) == 1

    def contains(self, x: float, y: float) -> bool:
        return self.box[0] <= x < self.box[2] and self.box[1] <= y < self.box[3]

    def add(self, line_id: int, char: Char, cy: float) -> None:
        cx = (char[1] + char[2]) / 2
        k = self.slots.get((bisect_right(self.ys, cy) - 1, bisect_right(self.xs, cx) - 1))
        if k is not None:
            self.chars[k][line_id].append(char)
            self.line_y.setdefault(line_id, (cy, char[3]))

    def rows(self, line_text: LineText, join: Join) -> list[list[str]]:
        """Cell texts by slot, rows without text left out; a merged cell repeats in every slot it covers.

        A ruled row whose cells all hold three or more short text lines side by side (a table ruled
        only every few records) becomes one row per text line.
        """
        whole = {k: self._text(k, -math.inf, math.inf, line_text, join) for k in self.chars}
        out = []
        self.row_slots = []  # the slot row each output row comes from
        for r in range(len(self.ys)):
            keys = [self.slots.get((r, c), -1) for c in range(len(self.xs))]
            bands = self._bands(keys)
            if not bands:
                out.append([whole.get(k, "") for k in keys])
            for low, high in bands:
                texts = [whole.get(k, "") if k in self.tall else self._text(k, low, high, line_text, join) for k in keys]
                out.append(texts)
            self.row_slots += [r] * (len(out) - len(self.row_slots))
        kept = [index for index, row in enumerate(out) if any(row)]
        self.row_slots = [self.row_slots[index] for index in kept]
        return [out[index] for index in kept]

    def _text(self, k: int, low: float, high: float, line_text: LineText, join: Join) -> str:
        """A cell's text lines between two heights, in the page's own text order (a label first)."""
        lines = self.chars.get(k, {}).items()
        return join([line_text(chars) for i, chars in lines if low <= self.line_y[i][0] <= high])

    def _bands(self, keys: list[int]) -> list[tuple[float, float]]:
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
        if len(bands) < 3:  # two lines per cell are as often one wrapped heading as two records
            return []
        full = sum(1 for k in cells if len({self._band_of(i, bands) for i in self.chars[k]}) == len(bands))
        if full < max(2, 0.5 * len(cells)) or any(self._wraps(k, bands[-1][0]) for k in cells):
            return []
        return [(low, high) for low, high in bands]

    def _wraps(self, k: int, last_band: float) -> bool:
        """Whether a cell holds wrapped text: a line above the last one fills the cell's width."""
        width = self.cells[k][2] - self.cells[k][0]
        for line_id, chars in self.chars[k].items():
            if self.line_y[line_id][0] < last_band and chars[-1][2] - chars[0][1] >= 0.8 * width:
                return True
        return False

    def _band_of(self, line_id: int, bands: list[list[float]]) -> int:
        y = self.line_y[line_id][0]
        return next(index for index, (low, high) in enumerate(bands) if low <= y <= high)


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


def _clusters(rects: list[Box]) -> list[Box]:
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
