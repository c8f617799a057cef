"""Split a parsed document into chunks by its structure, to a token budget, with overlap.

The budget is a rule, not a target: every chunk's text fits `max_tokens` (`estimate_tokens`),
whatever the document holds. Chunks follow sections and paragraphs, and a table stays whole
beside the heading above it while it fits. What does not fit is cut, each time the gentlest
way that makes it fit:

- a table by rows, repeating its header row when the header takes at most a quarter of the
  budget (a bigger header would leave too little room for the rows it labels); a header that is
  a group row (mostly empty cells) brings the rows of column labels under it along;
- a row by cells, as one "column label: value" line per cell, the row's first cell (its name,
  where short) repeated atop each later piece. A teacher reading part of a wide record needs
  each value next to its label; a narrower Markdown table would put the labels in a header
  line far from the values, and would still not fit when one cell is long;
- a paragraph or a cell by sentences (sentences.py: Kiwi for Korean, sentencex otherwise),
  else by line breaks;
- a sentence with no end in sight at spaces, and text without spaces (Korean often) by
  characters, never before a combining mark.

Each piece keeps the heading trail of its section. The trail goes into the prompt beside the
text, so it is capped at an eighth of the budget (16 tokens at least): the trails of small
sections packed in give way first, then outer titles, then the innermost title is shortened.
A "heading" that is a whole paragraph thus cannot double a prompt, and the text keeps its
full budget. Overlap carries trailing paragraphs of the previous chunk only where they fit
beside the next piece. Nothing is dropped: every character of content lands in some chunk.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from slm_factory.parsing.sentences import sentence_ends
from slm_factory.records import Block, Chunk, Document, table_to_markdown
from slm_factory.tokens import estimate_tokens

_JOIN = "\n\n"  # between the pieces of a chunk
_ELLIPSIS = "…"
_LINE_END = re.compile(r"[^\S\n]*\n")
_SPACE = re.compile(r"\s+")
Trail = tuple[str, ...]


@dataclass
class _Piece:
    text: str
    tokens: int
    page: int | None
    is_table: bool = False


def _piece(text: str, page: int | None, is_table: bool = False) -> _Piece:
    return _Piece(text, estimate_tokens(text), page, is_table)


def _joined_tokens(
    parts: list[str], bound: int, extra: str, extra_tokens: int, sep: str, limit: int
) -> int | None:
    """Tokens of parts + extra joined by sep (or an upper bound of them) if they fit in limit.

    estimate_tokens is subadditive, so `bound + tokens(sep) + tokens(extra)` bounds the join;
    only a nearly full chunk is measured exactly.
    """
    if not parts:
        return extra_tokens if extra_tokens <= limit else None
    upper = bound + estimate_tokens(sep) + extra_tokens
    if upper <= limit:
        return upper
    exact = estimate_tokens(sep.join([*parts, extra]))
    return exact if exact <= limit else None


@dataclass
class _Draft:
    trail: Trail
    pieces: list[_Piece] = field(default_factory=list)
    merged: list[Trail] = field(default_factory=list)  # trails of small sections packed in too
    tokens: int = 0  # an upper bound of the joined text's tokens
    texts: list[str] = field(default_factory=list)  # the pieces' texts, kept as they are added

    def _measure(self, piece: _Piece, max_tokens: int) -> int | None:
        return _joined_tokens(self.texts, self.tokens, piece.text, piece.tokens, _JOIN, max_tokens)

    def fits(self, piece: _Piece, max_tokens: int) -> bool:
        return self._measure(piece, max_tokens) is not None

    def add(self, piece: _Piece, max_tokens: int) -> bool:
        """Add the piece if the chunk stays within max_tokens; say whether it did."""
        tokens = self._measure(piece, max_tokens)
        if tokens is None:
            return False
        self.pieces.append(piece)
        self.texts.append(piece.text)
        self.tokens = tokens
        return True


def chunk_document(
    document: Document, max_tokens: int = 1024, overlap_tokens: int = 128
) -> list[Chunk]:
    """Chunks whose text never exceeds max_tokens, in reading order, covering every block."""
    drafts: list[_Draft] = []
    trail: list[tuple[int, str]] = []
    for section in document.sections:
        if section.title and section.level > 0:
            trail = [(level, title) for level, title in trail if level < section.level]
            trail.append((section.level, section.title))
        titles = tuple(title for _, title in trail)
        pieces = [
            p
            for block in section.blocks
            if block.kind != "heading"
            for p in _pieces(block, document, max_tokens)
        ]
        _pack(drafts, titles, pieces, max_tokens, overlap_tokens)
    heading_limit = max(16, max_tokens // 8)
    return [_to_chunk(document, index, draft, heading_limit) for index, draft in enumerate(drafts)]


# -- pieces: one block as texts that each fit the budget ---------------------------------------


def _pieces(block: Block, document: Document, max_tokens: int) -> list[_Piece]:
    if block.kind == "table" and block.table is not None and block.table < len(document.tables):
        tokens = estimate_tokens(block.text)
        if tokens <= max_tokens:
            return [_Piece(block.text, tokens, block.page, is_table=True)]
        rows = document.tables[block.table].rows
        return [
            _piece(text, block.page, is_table=True)
            for text in split_table(rows, max_tokens, document.language)
        ]
    text = block.text if block.kind != "list_item" else f"- {block.text}"
    tokens = estimate_tokens(text)
    if tokens <= max_tokens:
        return [_Piece(text, tokens, block.page)]
    parts = split_text(text, max_tokens, code=block.kind == "code", language=document.language)
    return [_piece(part, block.page) for part in parts]


def split_text(text: str, max_tokens: int, code: bool = False, language: str = "") -> list[str]:
    """Text cut into pieces of at most max_tokens: at sentence ends, else line breaks, else
    spaces, else between characters. Code is cut at line breaks first, never by sentences.
    `language` (the document's) picks sentencex's abbreviation rules for non-Korean text."""
    return list(_cut(text, max_tokens, _tiers(text, code, language)))


def _tiers(text: str, code: bool, language: str) -> list[Callable[[], Sequence[int]]]:
    """Where text may be cut, gentlest first, each found only when needed."""
    tiers: list[Callable[[], Sequence[int]]] = [lambda: _line_ends(text), lambda: _space_ends(text)]
    if not code:
        tiers.insert(0, lambda: sentence_ends(text, language))
    return tiers


def _line_ends(text: str) -> list[int]:
    return [match.start() for match in _LINE_END.finditer(text)]


def _space_ends(text: str) -> list[int]:
    return [match.start() for match in _SPACE.finditer(text)]


def _cut(text: str, max_tokens: int, tiers: list[Callable[[], Sequence[int]]]) -> Iterator[str]:
    """Greedy: each piece ends at the furthest boundary of the first tier that has one in reach."""
    known: dict[int, Sequence[int]] = {}  # boundaries of each tier, found on first need
    reach = 3 * max_tokens  # no more characters than this can fit (a character is >= 1/3 token)
    start = 0
    while True:
        start = _skip_space(text, start)
        if start >= len(text):
            return
        if len(text) - start <= reach and estimate_tokens(text[start:]) <= max_tokens:
            yield text[start:].rstrip()
            return
        fits = functools.partial(_fits, text, start, max_tokens)
        stop = None
        for index, tier in enumerate(tiers):
            if index not in known:
                known[index] = tier()
            bounds = known[index]
            stop = _furthest(
                bounds[bisect_right(bounds, start) : bisect_right(bounds, start + reach)], fits
            )
            if stop is not None:
                break
        if stop is None:
            stop = _character_cut(text, start, fits, reach)
        yield text[start:stop].rstrip()
        start = stop


def _skip_space(text: str, start: int) -> int:
    match = _SPACE.match(text, start)
    return match.end() if match else start


def _furthest(candidates: Sequence[int], fits: Callable[[int], bool]) -> int | None:
    """The last candidate that fits, by bisection (a longer slice never costs fewer tokens)."""
    low, high = 0, len(candidates)
    while low < high:
        middle = (low + high) // 2
        if fits(candidates[middle]):
            low = middle + 1
        else:
            high = middle
    return candidates[low - 1] if low else None


def _fits(text: str, start: int, max_tokens: int, end: int) -> bool:
    return estimate_tokens(text[start:end]) <= max_tokens


def _character_cut(text: str, start: int, fits: Callable[[int], bool], reach: int) -> int:
    """The furthest end within budget that does not split a character from its combining marks."""
    stop = _furthest(range(start + 1, min(len(text), start + reach) + 1), fits) or start + 1
    while stop - 1 > start and stop < len(text) and _joins_previous(text[stop]):
        stop -= 1
    return stop


def _joins_previous(char: str) -> bool:
    """A combining mark, a joiner, a variation selector or a Hangul vowel/final jamo."""
    return (
        bool(unicodedata.combining(char))
        or char in "\u200d\u200c"
        or (
            "\ufe00" <= char <= "\ufe0f"
            or "\u1160" <= char <= "\u11ff"
            or "\ud7b0" <= char <= "\ud7ff"
        )
    )


# -- tables: rows, then cells -----------------------------------------------------------------


def _column_label(heading_rows: list[list[str]], column: int) -> str:
    """A column's label from every heading row: "Pre-Pawn" over "Handgun" is "Pre-Pawn Handgun"."""
    cells = [" ".join(row[column].split()) for row in heading_rows if column < len(row)]
    return " ".join(dict.fromkeys(cell for cell in cells if cell))


def split_table(rows: list[list[str]], max_tokens: int, language: str = "") -> list[str]:
    """An oversized table as Markdown pieces of whole rows, each within max_tokens; a row too
    big for any piece becomes "label: value" lines (see the module docstring)."""
    rows = [row for row in rows if row]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    return _TableSplit(
        [row + [""] * (width - len(row)) for row in rows], max_tokens, language
    ).pieces()


_DIGIT = re.compile(r"\d")
_MOST_HEADER_ROWS = 3


def header_rows(rows: list[list[str]]) -> int:
    """How many rows head a table: the first; and when the first is a group row (mostly empty
    cells, "Pre-Pawn" spanning three columns, as PDF tables come out), also the rows of column
    labels under it, told by holding no digit (at most three rows in all). A piece that repeated
    the group row alone would give its rows no column labels."""
    count = 1
    if mostly_empty(rows[0]):
        while count < min(_MOST_HEADER_ROWS, len(rows) - 1) and not any(_DIGIT.search(c) for c in rows[count]):
            count += 1
    return count


def mostly_empty(row: list[str]) -> bool:
    """A row whose cells are mostly blank: a group row, or the rest of merged cells."""
    return sum(1 for cell in row if not cell.strip()) * 2 > len(row)


class _TableSplit:
    def __init__(self, rows: list[list[str]], max_tokens: int, language: str) -> None:
        self.rows, self.max_tokens, self.language = rows, max_tokens, language
        self.first = rows[0]
        self.heading_rows = rows[: header_rows(rows)]
        # Repeated atop every piece: the heading rows, or where they are too big the column labels
        # alone (the last of them), or nothing.
        small = [rows for rows in (self.heading_rows, self.heading_rows[-1:])
                 if estimate_tokens(table_to_markdown(rows)) <= max_tokens // 4]
        self.header = small[0] if small else None
        self.labels = [
            _shorten(" ".join(_column_label(self.heading_rows, column).split()), max(4, max_tokens // 8))
            for column in range(len(self.first))
        ]

    def pieces(self) -> list[str]:
        texts: list[str] = []
        group: list[list[str]] = []
        bound = 0
        for row in self.rows[len(self.heading_rows):] if self.header else self.rows:
            if group:  # the rows so far plus this one's line, bounded before measured
                upper = bound + 1 + estimate_tokens(table_to_markdown([row]).split("\n")[0])
                exact = (
                    upper
                    if upper <= self.max_tokens
                    else estimate_tokens(self.render([*group, row]))
                )
                if exact <= self.max_tokens:
                    group.append(row)
                    bound = exact
                    continue
                texts.extend(self.group_pieces(group))
            group, bound = [row], estimate_tokens(self.render([row]))
        texts.extend(self.group_pieces(group))
        if self.header is not None and self.header is not self.heading_rows:
            # the group rows above the repeated labels, once, where they fit (else cell by cell)
            above = self.heading_rows[:-1]
            markdown = table_to_markdown(above)
            texts[:0] = [markdown] if estimate_tokens(markdown) <= self.max_tokens else [
                piece for row in above for piece in self.row_pieces(row)]
        elif self.header is not None and not (
            texts and texts[0].startswith(table_to_markdown(self.header))
        ):
            texts.insert(
                0, table_to_markdown(self.header)
            )  # the header once in full: labels may be cut
        return texts

    def render(self, group: list[list[str]]) -> str:
        """Markdown of rows under the repeated header; without one, the table's own first row
        heads its piece, and later pieces are bare rows (no data row is dressed as a header)."""
        if self.header is not None:
            return table_to_markdown([*self.header, *group])
        markdown = table_to_markdown(group)
        if group[0] is self.first:
            return markdown
        lines = markdown.split("\n")
        return "\n".join(lines[:1] + lines[2:])

    def group_pieces(self, group: list[list[str]]) -> list[str]:
        """The group as one piece, measured; halved until each part fits, a lone row by its cells."""
        if not group:
            return []
        text = self.render(group)
        if estimate_tokens(text) <= self.max_tokens:
            return [text]
        if len(group) == 1:
            return self.row_pieces(group[0])
        half = len(group) // 2
        return [*self.group_pieces(group[:half]), *self.group_pieces(group[half:])]

    def row_pieces(self, row: list[str]) -> list[str]:
        """One oversized row as pieces of "label: value" lines, the first cell's line repeated
        atop each later piece where short; a value too long for a piece is cut by sentences,
        each part keeping its label. Empty cells (blank, or the rest of a merged cell) add nothing."""
        labels = self.labels if all(row is not heading for heading in self.heading_rows) else [""] * len(row)
        cells = [(label, " ".join(value.split())) for label, value in zip(labels, row)]
        cells = [(label, value) for label, value in cells if value]
        if not cells:
            return []
        first = _cell_line(*cells[0])
        key = first if estimate_tokens(first) <= self.max_tokens // 8 else ""
        room = self.max_tokens - (estimate_tokens(key) + 1 if key else 0)
        lines = [line for label, value in cells for line in self.cell_lines(label, value, room)]
        pieces: list[list[str]] = []
        bound = 0
        for line in lines:
            tokens = (
                _joined_tokens(
                    pieces[-1], bound, line, estimate_tokens(line), "\n", self.max_tokens
                )
                if pieces
                else None
            )
            if tokens is None:
                pieces.append([key] if key and pieces else [])
                start = estimate_tokens(key) if pieces[-1] else 0
                tokens = _joined_tokens(
                    pieces[-1], start, line, estimate_tokens(line), "\n", self.max_tokens
                )
            assert tokens is not None, "a cell line is cut to fit beside the key"
            pieces[-1].append(line)
            bound = tokens
        return ["\n".join(piece) for piece in pieces]

    def cell_lines(self, label: str, value: str, room: int) -> list[str]:
        line = _cell_line(label, value)
        if estimate_tokens(line) <= room:
            return [line]
        prefix = f"{label}: " if label else ""
        return [
            prefix + part
            for part in split_text(value, room - estimate_tokens(prefix), language=self.language)
        ]


def _cell_line(label: str, value: str) -> str:
    return f"{label}: {value}" if label else value


def _shorten(text: str, limit: int) -> str:
    """Text cut to at most limit tokens at a space where possible, marked with an ellipsis."""
    if estimate_tokens(text) <= limit:
        return text
    room = max(1, limit - estimate_tokens(_ELLIPSIS))
    return next(_cut(text, room, _tiers(text, code=True, language=""))) + _ELLIPSIS


# -- packing pieces into chunks ---------------------------------------------------------------


def _pack(
    drafts: list[_Draft], trail: Trail, pieces: list[_Piece], max_tokens: int, overlap: int
) -> None:
    """Add a section's pieces; a new section starts a new chunk unless the last one is small."""
    if not pieces:
        return
    last = drafts[-1] if drafts else None
    if (
        last is None
        or not last.fits(pieces[0], max_tokens)
        or (
            last.trail != trail
            # the kept bound decides most cases without joining the text again
            and last.tokens > max_tokens // 2
            and estimate_tokens(_JOIN.join(last.texts)) > max_tokens // 2
        )
    ):
        drafts.append(_Draft(trail))
    elif last.trail != trail and trail not in last.merged:
        last.merged.append(trail)
    for piece in pieces:
        if drafts[-1].add(piece, max_tokens):
            continue
        draft = _Draft(trail)
        for carried in _overlap(drafts[-1].pieces, overlap, piece, max_tokens):
            draft.add(carried, max_tokens)
        drafts.append(draft)
        if not draft.add(piece, max_tokens):
            raise AssertionError(
                f"a piece of {piece.tokens} tokens exceeds the budget {max_tokens}"
            )


def _overlap(pieces: list[_Piece], budget: int, following: _Piece, max_tokens: int) -> list[_Piece]:
    """Trailing paragraphs of the previous chunk (never tables) within the overlap budget that
    still leave the next piece inside max_tokens."""
    carried: list[_Piece] = []
    for piece in reversed(pieces):
        candidate = [piece, *carried]
        texts = [p.text for p in candidate]
        if piece.is_table or estimate_tokens(_JOIN.join(texts)) > budget:
            break
        if estimate_tokens(_JOIN.join([*texts, following.text])) > max_tokens:
            break
        carried = candidate
    return carried


def _to_chunk(document: Document, index: int, draft: _Draft, heading_limit: int) -> Chunk:
    text = _JOIN.join(piece.text for piece in draft.pieces)
    pages = sorted({piece.page for piece in draft.pieces if piece.page is not None})
    return Chunk(
        id=f"{document.id}:{index}",
        doc_id=document.id,
        source_doc=document.path.replace("\\", "/").rsplit("/", 1)[-1],
        index=index,
        text=text,
        heading=heading_of(draft.trail, tuple(draft.merged), heading_limit),
        pages=pages,
        tokens=estimate_tokens(text),
        has_table=any(piece.is_table for piece in draft.pieces),
    )


@functools.lru_cache(maxsize=1024)  # chunks of one section share their trail
def heading_of(trail: Trail, merged: tuple[Trail, ...], limit: int) -> str:
    """The heading trail ("Chapter 2 > Article 5", then " | " and the trails of small sections
    packed into the same chunk) within limit tokens: merged trails go first, then outer titles
    (replaced by "…"), and a single title still too long is shortened."""
    trails = [" > ".join(t) for t in [trail, *merged] if t]
    heading = " | ".join(trails)
    while len(trails) > 1 and estimate_tokens(heading) > limit:
        trails.pop()
        heading = " | ".join(trails) + f" | {_ELLIPSIS}"
    if estimate_tokens(heading) <= limit:
        return heading
    inner = list(trail or next((t for t in merged if t), ()))
    heading = " > ".join(inner)
    while len(inner) > 1 and estimate_tokens(heading) > limit:
        inner.pop(0)
        heading = " > ".join([_ELLIPSIS, *inner])
    return _shorten(heading, limit)
