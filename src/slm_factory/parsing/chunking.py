"""Split a parsed document into chunks by its structure, to a token budget, with overlap.

Chunks follow sections and paragraphs; a table stays whole together with the heading above it
(a table larger than the budget is split by rows, repeating its header row). Every block of
the document lands in some chunk: nothing is silently dropped, however long the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from slm_factory.records import Block, Chunk, Document, table_to_markdown
from slm_factory.tokens import estimate_tokens

_SENTENCE_END = re.compile(r"(?<=[.!?。다요])\s+")


@dataclass
class _Piece:
    text: str
    tokens: int
    page: int | None
    is_table: bool = False


@dataclass
class _Draft:
    heading: str
    pieces: list[_Piece] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)  # headings of small sections packed in too

    @property
    def tokens(self) -> int:
        return sum(piece.tokens for piece in self.pieces)


def chunk_document(document: Document, max_tokens: int = 1024, overlap_tokens: int = 128) -> list[Chunk]:
    """Chunks of at most ~max_tokens (a single oversized sentence may exceed it)."""
    drafts: list[_Draft] = []
    trail: list[tuple[int, str]] = []
    for section in document.sections:
        if section.title and section.level > 0:
            trail = [(level, title) for level, title in trail if level < section.level]
            trail.append((section.level, section.title))
        heading = " > ".join(title for _, title in trail)
        pieces = [p for block in section.blocks if block.kind != "heading" for p in _pieces(block, document, max_tokens)]
        _pack(drafts, heading, pieces, max_tokens, overlap_tokens)
    return [_to_chunk(document, index, draft) for index, draft in enumerate(drafts)]


def _pieces(block: Block, document: Document, max_tokens: int) -> list[_Piece]:
    if block.kind == "table" and block.table is not None:
        return _table_pieces(document.tables[block.table].rows, block, max_tokens)
    text = block.text if block.kind != "list_item" else f"- {block.text}"
    tokens = estimate_tokens(text)
    if tokens <= max_tokens:
        return [_Piece(text, tokens, block.page)]
    return [_Piece(part, estimate_tokens(part), block.page) for part in _split_long(text, max_tokens)]


def _table_pieces(rows: list[list[str]], block: Block, max_tokens: int) -> list[_Piece]:
    markdown = block.text
    tokens = estimate_tokens(markdown)
    if tokens <= max_tokens or len(rows) < 3:
        return [_Piece(markdown, tokens, block.page, is_table=True)]
    header, body = rows[0], rows[1:]
    pieces, current = [], []
    for row in body:
        candidate = table_to_markdown([header, *current, row])
        if current and estimate_tokens(candidate) > max_tokens:
            text = table_to_markdown([header, *current])
            pieces.append(_Piece(text, estimate_tokens(text), block.page, is_table=True))
            current = []
        current.append(row)
    text = table_to_markdown([header, *current])
    pieces.append(_Piece(text, estimate_tokens(text), block.page, is_table=True))
    return pieces


def _split_long(text: str, max_tokens: int) -> list[str]:
    """Split an oversized paragraph at sentence ends, else at line breaks, else hard."""
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text) if _SENTENCE_END.search(text) else text.splitlines():
        candidate = f"{current} {sentence}".strip()
        if current and estimate_tokens(candidate) > max_tokens:
            parts.append(current)
            candidate = sentence
        current = candidate
    if current:
        parts.append(current)
    result = []
    for part in parts:  # a single enormous sentence: cut it by characters
        step = max_tokens if any(ord(c) > 127 for c in part[:200]) else max_tokens * 4
        result.extend(part[i : i + step] for i in range(0, len(part), step))
    return result


def _pack(drafts: list[_Draft], heading: str, pieces: list[_Piece], max_tokens: int, overlap: int) -> None:
    """Add a section's pieces; a new section starts a new chunk unless the last one is small."""
    if not pieces:
        return
    if not drafts or drafts[-1].tokens + pieces[0].tokens > max_tokens or (
        drafts[-1].heading != heading and drafts[-1].tokens > max_tokens // 2
    ):
        drafts.append(_Draft(heading))
    elif drafts[-1].heading != heading and heading not in drafts[-1].merged:
        drafts[-1].merged.append(heading)
    for piece in pieces:
        draft = drafts[-1]
        if draft.pieces and draft.tokens + piece.tokens > max_tokens:
            carried = _overlap(draft.pieces, overlap, max_tokens - piece.tokens)
            drafts.append(_Draft(heading, carried))
        drafts[-1].pieces.append(piece)


def _overlap(pieces: list[_Piece], budget: int, room: int) -> list[_Piece]:
    """Trailing paragraphs of the previous chunk (never tables) that fit in the overlap budget."""
    carried: list[_Piece] = []
    total = 0
    for piece in reversed(pieces):
        if piece.is_table or total + piece.tokens > min(budget, room):
            break
        carried.insert(0, piece)
        total += piece.tokens
    return carried


def _to_chunk(document: Document, index: int, draft: _Draft) -> Chunk:
    text = "\n\n".join(piece.text for piece in draft.pieces)
    pages = sorted({piece.page for piece in draft.pieces if piece.page is not None})
    return Chunk(
        id=f"{document.id}:{index}",
        doc_id=document.id,
        source_doc=document.path.replace("\\", "/").rsplit("/", 1)[-1],
        index=index,
        text=text,
        heading=" | ".join(h for h in [draft.heading, *draft.merged] if h),
        pages=pages,
        tokens=estimate_tokens(text),
        has_table=any(piece.is_table for piece in draft.pieces),
    )
