"""Korean word spacing with Kiwi (kiwipiepy): one Kiwi per process, and Hangul line wraps.

Kiwi takes ~1 s and ~250 MB to start, so it is loaded on first use only, once per process,
without its typo and multi-word dictionaries (they add seconds and memory, not spacing).

A PDF exported from Hangul wraps Korean lines both inside words ("탄소중|립") and between them
("남은|기간에") and seldom leaves a space glyph to tell which; about half of the corpus's Hangul
wraps fall between words. The PDF parser leaves each such wrap in its text as `WRAP`; `settle`
turns every one into a space or nothing, deciding from the two words around it. The decision
can wait for the parse stage's main process (`ParseOptions.defer_hangul_wraps`), so that one
Kiwi serves every worker instead of one per worker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slm_factory.records import Document

WRAP = "\x00"  # a Hangul line wrap not yet decided; a file's own control characters are gone by then
# Opens a line whose spacing Kiwi is to repair, left by the HWPX parser for the main process.
RESPACE = "\x01"
_MARKED_LINE = re.compile(RESPACE + r"([^\n]*)")
_LEFT = re.compile(r"\S{0,8}$")  # 8 characters a side decide as well as 10 (574 of 575) and faster
_RIGHT = re.compile(r"\S{0,8}")
Window = tuple[str, str]


def is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


_kiwi: Any = None
_kiwi_threads = 0


def kiwi(threads: int = 1) -> Any:
    """The process's one Kiwi (~250 MB; a second would double that). One analysis thread by
    default: parse workers are a process per core already. A caller asking for more threads (the
    parse stage's main process, one per core) replaces it with a wider one; never a narrower one."""
    global _kiwi, _kiwi_threads
    threads = max(threads, 1)
    if _kiwi is None or threads > _kiwi_threads:
        from kiwipiepy import Kiwi

        _kiwi = Kiwi(num_workers=threads, load_typo_dict=False, load_multi_dict=False)
        _kiwi_threads = threads
    return _kiwi


def windows(text: str) -> list[Window]:
    """The word pieces on each side of every wrap in the text (up to 8 characters each)."""
    return [_window(a, b) for a, b in pairwise(text.split(WRAP))]


def _window(before: str, after: str) -> Window:
    return (_LEFT.search(before).group(), _RIGHT.match(after).group())  # type: ignore[union-attr]


def decide(found: Iterable[Window], use_kiwi: bool, threads: int = 1) -> dict[Window, str]:
    """A space or "" for each wrap: Kiwi's spacing of the two pieces when allowed, else ""."""
    distinct = list(dict.fromkeys(found))
    if not use_kiwi or not distinct:
        return dict.fromkeys(distinct, "")
    spaced = kiwi(threads).space([left + right for left, right in distinct])
    return {window: " " if _space_after(text, *window) else "" for window, text in zip(distinct, spaced)}


def _space_after(spaced: str, left: str, right: str) -> bool:
    """Whether Kiwi's spacing of left+right puts a space between the two pieces."""
    if spaced.replace(" ", "") != left + right:
        return False  # Kiwi normalised a character: no safe way to place the wrap
    seen = 0
    for index, char in enumerate(spaced):
        if char != " ":
            seen += 1
            if seen == len(left):
                return spaced[index + 1 : index + 2] == " "
    return False


def settle(text: str, joins: dict[Window, str]) -> str:
    if WRAP not in text:
        return text
    parts = text.split(WRAP)
    out = [parts[0]]
    for a, b in pairwise(parts):
        out.append(joins.get(_window(a, b), ""))
        out.append(b)
    return "".join(out)


def settle_documents(documents: list[Document], use_kiwi: bool = True, threads: int = 1) -> int:
    """Decide every wrap left in parsed documents (title, text, sections, blocks), all in one
    batch, then respace every line marked `RESPACE`; returns how many wraps there were."""
    marked = [d for d in documents if WRAP in d.text or WRAP in d.title]
    found = [window for document in marked for text in _texts(document) for window in windows(text)]
    joins = decide(found, use_kiwi, threads)
    count = sum(document.text.count(WRAP) for document in marked)
    for document in marked:
        _settle_document(document, lambda text: settle(text, joins))
    _respace_documents(documents, use_kiwi, threads)
    return count


def _respace_documents(documents: list[Document], use_kiwi: bool, threads: int) -> None:
    marked = [d for d in documents if RESPACE in d.text or RESPACE in d.title]
    lines = list(dict.fromkeys(line for d in marked for text in _texts(d) for line in _MARKED_LINE.findall(text)))
    spaced = dict(zip(lines, kiwi(threads).space(lines) if use_kiwi and lines else lines))
    for document in marked:
        _settle_document(document, lambda text: _MARKED_LINE.sub(lambda m: spaced[m.group(1)], text))


def _texts(document: Document) -> list[str]:
    return [document.title, document.text] + [s.title for s in document.sections] + [b.text for b in document.blocks]


def _settle_document(document: Document, settle_text: Callable[[str], str]) -> None:
    blocks = document.blocks
    document.title = settle_text(document.title)
    document.text = settle_text(document.text)
    for section in document.sections:
        section.title = settle_text(section.title)
    for block in blocks:
        block.text = settle_text(block.text)
