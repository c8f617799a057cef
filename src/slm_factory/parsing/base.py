"""What every format parser shares: the error type, the options, and the document builder.

A parser reads one file and feeds blocks to a `DocumentBuilder` in reading order; the builder
groups them into sections, collects tables, and produces the `Document` record. Parsers raise
`ParseError` with one line a user can act on; anything else is a bug in the parser.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from slm_factory.parsing.language import guess_language
from slm_factory.parsing.tables import Grid, grid_from_rows
from slm_factory.records import Block, BlockKind, Document, Section, Table


class ParseError(Exception):
    """A document that cannot be parsed; the message is shown to the user as one line."""


@dataclass(frozen=True)
class ParseOptions:
    """The parsing keys of project.yaml, flattened for worker processes (picklable)."""

    pdf_extract_tables: bool = True
    pdf_password: str | None = None
    hwpx_apply_spacing: bool = True
    # Leave Hangul line wraps undecided (korean.WRAP) and under-spaced HWPX lines marked
    # (korean.RESPACE) in the text, for the caller to settle with
    # one Kiwi for all documents (the parse stage does, in its main process).
    defer_hangul_wraps: bool = False


def file_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


_SPACES = re.compile(r"[ \t\u00a0\u3000]+")


def clean_inline(text: str) -> str:
    """Collapse runs of spaces inside one line of text and trim it."""
    return _SPACES.sub(" ", text).strip()


@dataclass
class NestedTable:
    """A table as a container format holds it: a grid, its caption, and the tables inside its cells."""

    grid: Grid
    caption: str = ""
    inner: list["NestedTable"] = field(default_factory=list)

    @property
    def rows(self) -> list[list[str]]:
        return self.grid.rows

    def flat_text(self) -> str:
        """The table as lines of cells: how a nested table reads inside its outer cell."""
        lines = [" | ".join(cell for cell in row if cell) for row in self.grid.rows]
        return "\n".join(line for line in lines if line)


class DocumentBuilder:
    """Collects blocks in reading order and builds a `Document`.

    A heading block opens a new section. `start_page(n)` opens a new section for page n
    when the document has no heading of its own there, so PDFs keep their page structure.
    """

    def __init__(self, path: Path, fmt: str, data: bytes) -> None:
        self.path = path
        self.format = fmt
        self.id = file_id(data)
        self.sections: list[Section] = []
        self.tables: list[Table] = []
        self.warnings: list[str] = []
        self.metadata: dict[str, str] = {}
        self.title = ""
        self.pages: int | None = None
        self._page: int | None = None

    # -- content ---------------------------------------------------------------------------
    def start_page(self, number: int) -> None:
        self._page = number
        self.sections.append(Section(title=f"Page {number}", level=0, page=number))

    def heading(self, text: str, level: int = 1) -> None:
        text = clean_inline(text)
        if not text:
            return
        section = Section(title=text, level=level, page=self._page)
        section.blocks.append(Block(kind="heading", text=text, level=level, page=self._page))
        self.sections.append(section)

    def paragraph(self, text: str, kind: BlockKind = "paragraph", level: int = 0) -> None:
        text = text.strip()
        if text:
            self._current().blocks.append(Block(kind=kind, text=text, level=level, page=self._page))

    def list_item(self, text: str, level: int = 0) -> None:
        self.paragraph(text, kind="list_item", level=level)

    def table(self, grid: Grid | list[list[str]], caption: str = "") -> None:
        """Add a table: a `Grid` built from its cells, or plain rows where nothing is merged."""
        if not isinstance(grid, Grid):
            grid = grid_from_rows(grid)
        rows = [[clean_inline(cell) for cell in row] for row in grid.rows]
        if not any(any(row) for row in rows):
            return
        table = Table(rows=rows, spans=grid.spans, caption=clean_inline(caption), page=self._page)
        self.tables.append(table)
        self._current().blocks.append(
            Block(kind="table", text=table.markdown, page=self._page, table=len(self.tables) - 1)
        )

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # -- result ----------------------------------------------------------------------------
    def _current(self) -> Section:
        if not self.sections:
            self.sections.append(Section(page=self._page))
        return self.sections[-1]

    def build(self) -> Document:
        sections = [section for section in self.sections if section.blocks]
        text = "\n\n".join(section.text for section in sections)
        title = self.title or self.metadata.get("title", "") or _first_heading(sections)
        return Document(
            id=self.id,
            path=str(self.path),
            format=self.format,
            title=clean_inline(title) or self.path.stem,
            language=guess_language(text),
            metadata={k: v for k, v in self.metadata.items() if v},
            pages=self.pages,
            sections=sections,
            tables=self.tables,
            text=text,
            warnings=self.warnings,
        )


def _first_heading(sections: list[Section]) -> str:
    for section in sections:
        for block in section.blocks:
            if block.kind == "heading":
                return block.text
    return ""
