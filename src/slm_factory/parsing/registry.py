"""Which parser reads which file: by extension, checked against the file's first bytes.

A parser module exposes `parse(data, builder, options) -> None`. Modules are imported only
when a file of their format is met, so a run over text files never imports PyMuPDF.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from slm_factory.parsing.base import DocumentBuilder, ParseError, ParseOptions
from slm_factory.records import Document

EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".hwpx": "hwpx",
    ".hwp": "hwp",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
}
FORMATS = ("pdf", "hwpx", "hwp", "docx", "html", "txt", "md")
_MODULES = {"pdf": "pdf", "hwpx": "hwpx", "docx": "docx", "html": "html", "txt": "text", "md": "text"}


class NeedsOCR(ParseError):
    """A document whose pages are images only: reported as a warning, not parsed as empty."""


@dataclass
class ParseOutcome:
    path: str
    format: str
    document: Document | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.document is None:
            return "warned" if self.warnings else "failed"
        return "warned" if self.warnings else "parsed"


def format_of(path: Path) -> str | None:
    return EXTENSIONS.get(path.suffix.lower())


def sniff(data: bytes, declared: str, name: str) -> str:
    """Return the format to parse `data` as, or raise ParseError when the bytes disagree."""
    if not data:
        raise ParseError(f"{name}: empty file (0 bytes)")
    head = data[:8]
    if head.startswith(b"\xff\xd8\xff"):
        raise ParseError(f"{name}: the file is a JPEG image, not a {declared.upper()} document")
    if head.startswith(b"\x89PNG"):
        raise ParseError(f"{name}: the file is a PNG image, not a {declared.upper()} document")
    if head.startswith(b"\xd0\xcf\x11\xe0"):  # OLE2 compound file
        if declared == "hwp":
            raise ParseError(f"{name}: binary HWP is not supported; open it in Hangul and save as HWPX")
        if declared in ("docx", "hwpx"):
            raise ParseError(
                f"{name}: password-protected (encrypted OLE container); remove the password and save again"
            )
        raise ParseError(f"{name}: an OLE2 (legacy Office/HWP) file, not a {declared.upper()} document")
    if declared == "hwp":
        raise ParseError(f"{name}: binary HWP is not supported; open it in Hangul and save as HWPX")
    if declared == "pdf" and b"%PDF" not in data[:1024]:
        raise ParseError(f"{name}: no PDF header; the file is not a PDF")
    if declared in ("docx", "hwpx") and not head.startswith(b"PK"):
        raise ParseError(f"{name}: not a zip container, so not a valid {declared.upper()} file")
    return declared


def parse_file(path: Path, options: ParseOptions, label: str | None = None) -> ParseOutcome:
    """Parse one file; every failure becomes an outcome with a one-line reason."""
    name = label or path.name
    declared = format_of(path) or "txt"
    outcome = ParseOutcome(path=str(path), format=declared)
    try:
        data = path.read_bytes()
        fmt = sniff(data, declared, name)
        builder = DocumentBuilder(path, fmt, data)
        module = importlib.import_module(f"slm_factory.parsing.{_MODULES[fmt]}")
        module.parse(data, builder, options)
        document = builder.build()
        if not document.text.strip():
            raise ParseError(f"{name}: no text found in the document")
        outcome.document = document
        outcome.warnings = [f"{name}: {w}" for w in document.warnings]
    except NeedsOCR as warning:
        outcome.warnings = [str(warning)]
    except ParseError as error:
        outcome.error = str(error)
    except OSError as error:
        outcome.error = f"{name}: cannot read the file ({error.strerror or error})"
    except Exception as error:  # a parser bug must not stop the run; report it plainly
        outcome.error = f"{name}: parser failed unexpectedly ({type(error).__name__}: {error})"
    return outcome
