"""Data records that stages exchange: documents (parsing) and, later, chunks and QA pairs.

Records are pydantic models so that every artifact round-trips through JSON unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field

# "footnote": a footnote or endnote, its marker kept ("1) ...", "* ...", "[^3] ..."), after its page or section
BlockKind = Literal["heading", "paragraph", "list_item", "table", "caption", "code", "footnote"]


def table_to_markdown(rows: list[list[str]]) -> str:
    """Render a cell grid as a GitHub-style Markdown table (first row is the header)."""
    if not rows:
        return ""
    width = max(len(row) for row in rows)

    def cell(value: str) -> str:
        return " ".join(value.split()).replace("|", "\\|")

    lines = []
    for index, row in enumerate(rows):
        padded = [cell(value) for value in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(padded) + " |")
        if index == 0:
            lines.append("|" + "|".join(["---"] * width) + "|")
    return "\n".join(lines)


class Table(BaseModel):
    """A table as a rectangular grid of text slots.

    A merged region's text is in its first slot only (the others are empty), so the Markdown and
    the document text say each thing once; `spans` keeps the structure: (row, col, row_span,
    col_span) of every region larger than one slot.
    """

    rows: list[list[str]]
    spans: list[tuple[int, int, int, int]] = Field(default_factory=list)
    caption: str = ""
    page: int | None = None
    markdown: str = ""

    def model_post_init(self, __context: object) -> None:
        if not self.markdown:
            self.markdown = table_to_markdown(self.rows)


class Block(BaseModel):
    """One unit of content in reading order. A table block's text is its Markdown."""

    kind: BlockKind
    text: str
    level: int = 0
    page: int | None = None
    table: int | None = Field(default=None, description="index into Document.tables")


class Section(BaseModel):
    """A heading and the blocks under it, or one page of a document without headings."""

    title: str = ""
    level: int = 0
    page: int | None = None
    blocks: list[Block] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks if block.text)


class Document(BaseModel):
    """A parsed document: what every later stage reads instead of the original file."""

    id: str = Field(description="sha256 of the file's bytes (first 16 hex digits)")
    path: str
    format: str
    title: str = ""
    language: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    pages: int | None = None
    sections: list[Section] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    text: str = ""
    warnings: list[str] = Field(default_factory=list)

    @property
    def blocks(self) -> list[Block]:
        return [block for section in self.sections for block in section.blocks]


class Chunk(BaseModel):
    """A piece of one document sized for one teacher request, with where it came from."""

    id: str = Field(description="doc_id + ':' + chunk index")
    doc_id: str
    source_doc: str = Field(description="the document's file name")
    index: int
    text: str
    heading: str = Field("", description="the section heading trail, e.g. 'Chapter 2 > Article 5'")
    pages: list[int] = Field(default_factory=list)
    tokens: int = 0
    has_table: bool = False


class QAPair(BaseModel):
    """One training pair: an Alpaca record (instruction, input, output) plus provenance.

    A plain Alpaca record (no id, as other tools write them) is accepted: its id is then a hash
    of its question and answer, so it stays the same across reruns.
    """

    id: str = Field("", description="stable hash of document, chunk and question")
    instruction: str
    input: str = ""
    output: str
    source_doc: str = ""
    doc_id: str = ""
    chunk_id: str = ""
    pages: list[int] = Field(default_factory=list)
    section: str = ""
    category: str = ""
    teacher: str = ""
    origin: Literal["generated", "paraphrase", "reviewed", "probe"] = "generated"
    score: float | None = None
    score_reason: str = ""
    parent_id: str = Field("", description="the pair a paraphrase or held-out probe was written from")

    def model_post_init(self, __context: object) -> None:
        if not self.id:
            key = "\x1f".join((" ".join(self.instruction.split()), " ".join(self.output.split())))
            self.id = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


class Rejection(BaseModel):
    """Why a curation stage dropped a pair: one record per dropped pair, the pair kept whole."""

    id: str
    stage: str
    rule: str = Field(description="a short fixed name: empty, too_short, near_duplicate, ...")
    detail: str = ""
    pair: dict[str, Any] = Field(default_factory=dict)


class Dialogue(BaseModel):
    """A multi-turn conversation built from QA pairs of one document."""

    id: str
    turns: list[dict[str, str]]
    source_doc: str = ""
    doc_id: str = ""
    pair_ids: list[str] = Field(default_factory=list)
    teacher: str = ""
