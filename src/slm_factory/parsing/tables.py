"""One table model for every format: cells with spans in, a text grid that says each thing once out.

Container formats (DOCX, HWPX, HTML) and ruled PDF tables describe a table as cells that may span
several grid columns or rows. Writing a merged cell's text into every slot it covers multiplies
it: a form laid out on a fine 27-column grid read as 25 times its words, and a header spanning
five columns said everything five times. Here a merged region's text goes into its first slot only
(the others stay empty), and grid lines that no cell ever starts or ends on are removed, so a form
reads as its labels and values. The spans are kept beside the grid for whoever needs structure.

The same module decides which tables are layout rather than data (a box around a page's content),
so DOCX, HWPX and HTML answer that question with one rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Cell:
    """One cell as the file declares it: its text, its top-left slot and how far it spans."""

    text: str
    row: int
    col: int
    row_span: int = 1
    col_span: int = 1


@dataclass
class Grid:
    """A table as text slots (a merged region's text once, in its first slot) plus its merges.

    `spans` lists (row, col, row_span, col_span) of every region larger than one slot, in the
    coordinates of `rows`.
    """

    rows: list[list[str]]
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def width(self) -> int:
        return max((len(row) for row in self.rows), default=0)


def place(rows: list[list[tuple[str, int, int]]]) -> list[Cell]:
    """Positions for cells given row by row as (text, row_span, col_span), HTML-style: each cell
    takes the next slot of its row that no cell from a row above still covers."""
    taken: set[tuple[int, int]] = set()
    cells: list[Cell] = []
    for row_index, row in enumerate(rows):
        col = 0
        for text, row_span, col_span in row:
            while (row_index, col) in taken:
                col += 1
            cells.append(Cell(text, row_index, col, max(row_span, 1), max(col_span, 1)))
            for r in range(row_index, row_index + max(row_span, 1)):
                for c in range(col, col + max(col_span, 1)):
                    taken.add((r, c))
            col += max(col_span, 1)
    return cells


def build_grid(cells: list[Cell], width: int = 0) -> Grid:
    """The text grid of `cells`: merged text once, unused grid lines and empty rows/columns gone."""
    cells = _resolve_overlaps([c for c in cells if c.row >= 0 and c.col >= 0])
    if not cells:
        return Grid(rows=[])
    height = max(c.row + c.row_span for c in cells)
    width = max([width] + [c.col + c.col_span for c in cells])
    col_map = _keep_lines(width, [(c.col, c.col + c.col_span) for c in cells])
    row_map = _keep_lines(height, [(c.row, c.row + c.row_span) for c in cells])
    moved = [_moved(c, row_map, col_map) for c in cells]
    # a row or column with no text anywhere carries nothing a reader needs
    rows_with_text = {c.row for c in moved if c.text}
    cols_with_text = {c.col for c in moved if c.text}
    new_height = max(row_map.values(), default=-1) + 1
    new_width = max(col_map.values(), default=-1) + 1
    row_keep = _compaction([r in rows_with_text for r in range(new_height)])
    col_keep = _compaction([c in cols_with_text for c in range(new_width)])
    grid_rows = [[""] * sum(1 for k in col_keep if k is not None) for k in row_keep if k is not None]
    spans: list[tuple[int, int, int, int]] = []
    for cell in moved:
        if not cell.text:
            continue
        row, col = row_keep[cell.row], col_keep[cell.col]
        assert row is not None and col is not None  # its own row and column hold its text
        grid_rows[row][col] = cell.text
        row_span = _kept_between(row_keep, cell.row, cell.row + cell.row_span)
        col_span = _kept_between(col_keep, cell.col, cell.col + cell.col_span)
        if row_span > 1 or col_span > 1:
            spans.append((row, col, row_span, col_span))
    return Grid(rows=grid_rows, spans=spans)


def grid_from_rows(rows: list[list[str]]) -> Grid:
    """A grid from plain rows where every slot is its own cell (nothing merged)."""
    cells = [Cell(text, r, c) for r, row in enumerate(rows) for c, text in enumerate(row)]
    return build_grid(cells, max((len(row) for row in rows), default=0))


def _resolve_overlaps(cells: list[Cell]) -> list[Cell]:
    """Malformed files declare cells over each other: a later cell starting inside an earlier
    one gives its text to that one; a later cell reaching into one is cut back to its free part."""
    owner: dict[tuple[int, int], Cell] = {}
    kept: list[Cell] = []
    for cell in sorted(cells, key=lambda c: (c.row, c.col)):
        if (cell.row, cell.col) in owner:
            host = owner[(cell.row, cell.col)]
            host.text = " ".join(t for t in (host.text, cell.text) if t)
            continue
        col_span = 1
        while col_span < cell.col_span and (cell.row, cell.col + col_span) not in owner:
            col_span += 1
        row_span = 1
        while row_span < cell.row_span and all(
            (cell.row + row_span, c) not in owner for c in range(cell.col, cell.col + col_span)
        ):
            row_span += 1
        placed = Cell(cell.text, cell.row, cell.col, row_span, col_span)
        for r in range(cell.row, cell.row + row_span):
            for c in range(cell.col, cell.col + col_span):
                owner[(r, c)] = placed
        kept.append(placed)
    return kept


def _keep_lines(size: int, extents: list[tuple[int, int]]) -> dict[int, int]:
    """Old slot index -> new slot index, merging slots whose dividing line no cell uses."""
    used = {0, size}
    for start, end in extents:
        used.add(start)
        used.add(end)
    mapping: dict[int, int] = {}
    new = -1
    for index in range(size):
        if index in used:
            new += 1
        mapping[index] = new
    return mapping


def _moved(cell: Cell, row_map: dict[int, int], col_map: dict[int, int]) -> Cell:
    row, col = row_map[cell.row], col_map[cell.col]
    last_row, last_col = row_map[cell.row + cell.row_span - 1], col_map[cell.col + cell.col_span - 1]
    return Cell(cell.text, row, col, last_row - row + 1, last_col - col + 1)


def _compaction(keep: list[bool]) -> list[int | None]:
    """Old index -> new index for kept slots, None for dropped ones."""
    result: list[int | None] = []
    new = 0
    for flag in keep:
        result.append(new if flag else None)
        new += flag
    return result


def _kept_between(mapping: list[int | None], start: int, end: int) -> int:
    return sum(1 for index in range(start, end) if mapping[index] is not None)


# -- layout tables ----------------------------------------------------------------------------


@dataclass
class CellContent:
    """What one cell holds, as its parser sees it, for deciding whether a table is layout."""

    paragraphs: int  # text blocks (paragraphs, list items) directly inside the cell
    chars: int  # characters of text in the cell, nested content included
    has_heading: bool = False  # the cell opens with a heading-styled paragraph (a section, if more follows)
    has_table: bool = False  # a table nested inside the cell


# A cell of prose: several paragraphs that together make more than a couple of lines.
PROSE_PARAGRAPHS = 2
PROSE_CHARS = 200


def is_layout(cells: list[CellContent], width: int) -> bool:
    """A table that arranges content rather than holding data: read its cells as blocks.

    One rule for every format: a single cell (after merged and empty slots are collapsed), a
    single column, a cell that is a section (a heading with text under it), or prose cells
    (several paragraphs) holding most of the table's text and making up at least half of its
    cells. A data table whose cells are short stays a table, and so does a table of records with
    one column of long descriptions (a specification, 141 rows of "No | item | requirements").
    A cell holding only a heading-styled label is a header cell, not a section: templates put
    outline levels on table labels.

    `width` is the table's column count after `build_grid`: one column per distinct first column
    of a cell with text, so a parser may count it without building the grid.
    """
    filled = [content for content in cells if content.chars]
    if not filled:
        return False
    if width <= 1:
        return True
    if any(content.has_heading and (content.paragraphs >= 2 or content.has_table) for content in filled):
        return True
    prose = [c for c in filled if c.paragraphs >= PROSE_PARAGRAPHS and c.chars >= PROSE_CHARS]
    most_text = sum(c.chars for c in prose) * 2 > sum(c.chars for c in filled)
    return most_text and len(prose) * 2 >= len(filled)
