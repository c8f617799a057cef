"""The shared table model: a merged region's text once, unused grid lines gone, spans kept."""

from __future__ import annotations

import random

import pytest

from slm_factory.parsing.tables import Cell, CellContent, Grid, build_grid, grid_from_rows, is_layout, place
from slm_factory.records import table_to_markdown


def separator_chars(width: int, height: int) -> int:
    """Characters a Markdown table of this shape spends on pipes, spaces, its rule and newlines."""
    return height * (3 * width + 1) + (4 * width + 1) + height


def _random_tiling(rng: random.Random, height: int, width: int) -> list[Cell]:
    """Cover a height x width grid with rectangles of random size, each with its own text."""
    owner: dict[tuple[int, int], int] = {}
    cells: list[Cell] = []
    for row in range(height):
        for col in range(width):
            if (row, col) in owner:
                continue
            col_span = 1
            limit = rng.choice([1, 1, 2, 3, 7])
            while col_span < limit and col + col_span < width and (row, col + col_span) not in owner:
                col_span += 1
            row_span = rng.choice([1, 1, 1, 2, 3])
            row_span = min(row_span, height - row)
            while row_span > 1 and any((row + row_span - 1, c) in owner for c in range(col, col + col_span)):
                row_span -= 1
            text = "" if rng.random() < 0.15 else f"r{row}c{col}-{rng.randint(0, 999)}"
            for r in range(row, row + row_span):
                for c in range(col, col + col_span):
                    owner[(r, c)] = len(cells)
            cells.append(Cell(text, row, col, row_span, col_span))
    return cells


@pytest.mark.parametrize("seed", range(300))
def test_every_cell_text_appears_once_and_structure_is_kept(seed: int) -> None:
    rng = random.Random(seed)
    cells = _random_tiling(rng, rng.randint(1, 9), rng.randint(1, 30))
    grid = build_grid([Cell(c.text, c.row, c.col, c.row_span, c.col_span) for c in cells])
    texts = [text for row in grid.rows for text in row if text]
    assert sorted(texts) == sorted(c.text for c in cells if c.text)  # once each, none lost
    if not texts:
        assert grid.rows == []
        return
    width = len(grid.rows[0])
    assert all(len(row) == width for row in grid.rows)
    assert all(any(row) for row in grid.rows)  # no empty row
    assert all(any(row[c] for row in grid.rows) for c in range(width))  # no empty column
    # each span lies inside the grid, starts on its text, and spans do not overlap
    covered: set[tuple[int, int]] = set()
    for row, col, row_span, col_span in grid.spans:
        assert row_span * col_span > 1
        assert 0 <= row and row + row_span <= len(grid.rows) and 0 <= col and col + col_span <= width
        assert grid.rows[row][col]
        slots = {(r, c) for r in range(row, row + row_span) for c in range(col, col + col_span)}
        assert not slots & covered
        covered |= slots
        assert all(not grid.rows[r][c] for r, c in slots - {(row, col)})  # merged text only once
    # reading order of the texts is kept (row-major by first slot)
    original = [c.text for c in sorted(cells, key=lambda c: (c.row, c.col)) if c.text]
    assert texts == original or sorted(texts) == sorted(original)


def test_a_form_on_a_fine_grid_reads_as_labels_and_values() -> None:
    # A Korean form laid out on 27 grid columns: every label and value spans several of them.
    cells = [
        Cell("신청서", 0, 0, 1, 27),
        Cell("성명", 1, 0, 1, 5), Cell("홍길동", 1, 5, 1, 8), Cell("생년월일", 1, 13, 1, 5),
        Cell("1990. 1. 1.", 1, 18, 1, 9),
        Cell("주소", 2, 0, 1, 5), Cell("서울특별시 종로구 세종대로 209", 2, 5, 1, 22),
        Cell("연락처", 3, 0, 1, 5), Cell("02-2100-0000", 3, 5, 1, 22),
    ]
    grid = build_grid(cells, width=27)
    assert grid.rows == [
        ["신청서", "", "", ""],
        ["성명", "홍길동", "생년월일", "1990. 1. 1."],
        ["주소", "서울특별시 종로구 세종대로 209", "", ""],
        ["연락처", "02-2100-0000", "", ""],
    ]
    assert (0, 0, 1, 4) in grid.spans and (2, 1, 1, 3) in grid.spans
    words = sum(len(c.text) for c in cells)
    markdown = table_to_markdown(grid.rows)
    assert len(markdown) <= words + separator_chars(4, 4)  # the words plus separators, not 27 copies


def test_a_header_spanning_columns_is_written_once() -> None:
    declared = [
        [("State", 2, 1), ("Permit", 2, 1), ("Handgun / Long Gun", 1, 2)],
        [("Handgun", 1, 1), ("Long Gun", 1, 1)],
        [("Alabama", 1, 1), ("26", 1, 1), ("21,345", 1, 1), ("12,890", 1, 1)],
    ]
    grid = build_grid(place(declared))
    assert grid.rows[0] == ["State", "Permit", "Handgun / Long Gun", ""]
    assert grid.rows[1] == ["", "", "Handgun", "Long Gun"]
    assert grid.rows[2] == ["Alabama", "26", "21,345", "12,890"]
    assert sorted(grid.spans) == [(0, 0, 2, 1), (0, 1, 2, 1), (0, 2, 1, 2)]


def test_plain_rows_keep_equal_neighbours() -> None:
    # Two adjacent cells may hold the same value; without declared spans nothing is merged.
    grid = grid_from_rows([["a", "0", "0"], ["b", "1", "0"], ["", "", ""]])
    assert grid.rows == [["a", "0", "0"], ["b", "1", "0"]]
    assert grid.spans == []


def test_overlapping_cells_lose_no_text() -> None:
    cells = [Cell("wide", 0, 0, 1, 3), Cell("inside", 0, 1), Cell("below", 1, 0, 1, 3), Cell("tall", 0, 2, 2, 1)]
    grid = build_grid(cells)
    text = " ".join(t for row in grid.rows for t in row)
    for word in ("wide", "inside", "below", "tall"):
        assert text.count(word) == 1


def test_layout_rule() -> None:
    one_cell = Grid(rows=[["a long section"]])
    assert is_layout([CellContent(paragraphs=5, chars=900)], one_cell.width)
    data = Grid(rows=[["Name", "Fee"], ["Permit", "$10"], ["Renewal", "$5"]])
    short = [CellContent(paragraphs=1, chars=len(t)) for row in data.rows for t in row]
    assert not is_layout(short, data.width)
    prose = [CellContent(paragraphs=1, chars=4), CellContent(paragraphs=4, chars=1500)]
    assert is_layout(prose, Grid(rows=[["Menu", "Article …"]]).width)
    # one long description cell in a data table does not make it layout
    mixed = short + [CellContent(paragraphs=3, chars=220)] + [CellContent(1, 300)] * 3
    assert not is_layout(mixed, Grid(rows=[["a", "b"]] * 5).width)
    # a section (a heading and text under it) inside a cell is layout; a heading-styled label is not
    assert is_layout([CellContent(3, 120, has_heading=True), CellContent(1, 10)], Grid(rows=[["a", "b"]]).width)
    assert not is_layout([CellContent(1, 10, has_heading=True), CellContent(1, 10)], Grid(rows=[["a", "b"]]).width)
