"""Preformatted text (an HTML <pre>): prose or code, and prose freed of its print furniture.

Laws and reports are published as HTML whose whole body is one <pre>, hard-wrapped at about 70
columns, with page markers ("[[Page 115 STAT. 276]]") and the editors' margin notes
("<<NOTE: 18 USC 1 note.>>"). Such a <pre> is natural language and should read as reflowed
paragraphs and headings; a <pre> of code must keep every line as it is. `is_prose` tells them
apart by the shape of the text, `prose_text` prepares prose for the plain-text reflow rules.

pygments' `guess_lexer` was tried first and does not answer this question: it names a lexer for
any input (prose included) and is unstable on short snippets, so a small measured rule is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slm_factory.parsing.text import CAPITALS_LINE  # an all-capitals line: one rule for both

# A plain word: letters or digits, joined by hyphens, apostrophes or middle dots ("3·1운동"),
# digits also by "." and "," ("$200,000,000", "1.5"); or an abbreviation ("U.S.C.", "e.g.").
# Wrapped in prose punctuation only: code tokens (`add.c`, `print(item)`, `x=1`, `--flag`,
# `snake_case`, `{}`) are not words.
_WORD = r"(?:\$(?=\d))?[^\W_]+(?:(?:[-'’·/]|(?<=\d)[.,](?=\d))[^\W_]+)*"
_ABBREVIATION = r"(?:[A-Za-z]\.){2,}"
_PROSE_TOKEN = re.compile(
    rf"[(\[\"'“‘「『《〈]*(?:{_ABBREVIATION}|{_WORD})[)\]\"'”’」』》〉.,;:!?%]*"
)
_TOKEN_SPLIT = re.compile(r"\s+|--+|—")  # "Funds.--There": a dash joins words in prose
_COLUMN_GAP = re.compile(r"\S(?: {3,}|\t)\S")  # aligned columns, inside a line
_SAMPLE = 50_000  # characters measured: enough to know, cheap on a 400,000-character law

# Thresholds, measured on real code (Python, C, JS, shell, JSON, SQL, YAML) and prose (English,
# US statute, Korean statute and press release, RFC style, e-mail): prose has 0.98-1.00 of its
# characters in words and 0.90-0.96 letters; code 0.02-0.77 in words (0.77: a function whose
# docstring and comments are half its lines); fixed-width tables have columns on every line.
MIN_WORD_SHARE = 0.9
MIN_LETTER_SHARE = 0.6
MAX_COLUMN_SHARE = 0.2
MIN_TOKENS = 6  # fewer words say too little: a one-line command stays preformatted


@dataclass(frozen=True)
class TextShape:
    """What tells prose from code in a block of preformatted text."""

    word_share: float  # characters in plain words / characters in all tokens
    letter_share: float  # letters / non-space characters
    column_share: float  # lines with an aligned-column gap (3+ spaces or a tab) / lines
    tokens: int


def measure(text: str) -> TextShape:
    sample = text[:_SAMPLE]
    tokens = [token for token in _TOKEN_SPLIT.split(sample) if token]
    token_chars = sum(map(len, tokens))
    word_chars = sum(len(token) for token in tokens if _PROSE_TOKEN.fullmatch(token))
    visible = [char for char in sample if not char.isspace()]
    letters = sum(1 for char in visible if char.isalpha())
    lines = [line for line in sample.split("\n") if line.strip()]
    columns = sum(1 for line in lines if _COLUMN_GAP.search(line))
    return TextShape(
        word_share=word_chars / token_chars if token_chars else 0.0,
        letter_share=letters / len(visible) if visible else 0.0,
        column_share=columns / len(lines) if lines else 0.0,
        tokens=len(tokens),
    )


def is_prose(text: str) -> bool:
    """Natural language (any script) rather than code, commands, data or a fixed-width table."""
    shape = measure(text)
    return (
        shape.tokens >= MIN_TOKENS
        and shape.word_share >= MIN_WORD_SHARE
        and shape.letter_share >= MIN_LETTER_SHARE
        and shape.column_share <= MAX_COLUMN_SHARE
    )


# -- print furniture --------------------------------------------------------------------------

# A page marker with the blank lines around it; the lines before and after keep their spaces
# (a trailing space tells a Korean wrap between words from one inside a word).
_PAGE_MARKER = re.compile(
    r"(?:\n[ \t]*)*\n[ \t]*\[\[Page [^\]\n]{1,40}\]\][ \t]*(?:\n[ \t]*(?=\n))*"
)
# The editors' margin notes of the Statutes at Large (dates, bill numbers, US Code places): not
# enacted text, and set inside sentences and headings, so they are dropped, not kept as notes.
_NOTE = re.compile(r"[ \t]*<<NOTE:.{0,2000}?>>", re.DOTALL)
# Lines that are file furniture: the GPO document id, its end mark, and drawn rules.
_FURNITURE_LINE = re.compile(r"(?m)^[ \t]*(?:\[DOCID:[^\]\n]*\]|<all>|[-=_*]{10,})[ \t]*$")
_SENTENCE_END = tuple(".!?:;")
_ENUMERATOR = re.compile(r"\((?:\d{1,3}|[a-zA-Z]{1,4})\)\s")


def prose_text(text: str) -> str:
    """Preformatted prose ready for the plain-text rules: page markers, margin notes and file
    furniture gone, TeX quotes (``...'') as quotation marks, indented paragraphs set apart."""
    text = _NOTE.sub("", text.expandtabs(8))
    text = _drop_page_markers(_FURNITURE_LINE.sub("", text))
    text = text.replace("``", "“").replace("''", "”")
    return separate_indented_paragraphs(text)


def _drop_page_markers(text: str) -> str:
    """A page break falls mid-sentence as often as between paragraphs: the text around a marker
    is joined, unless what comes before it ends a sentence (then a blank line stays)."""

    def join(match: re.Match[str]) -> str:
        before = text[max(match.start() - 200, 0) : match.start()].rstrip()
        return "\n" if not before or before.endswith(_SENTENCE_END) else ""

    return _PAGE_MARKER.sub(join, text)


def separate_indented_paragraphs(text: str) -> str:
    """A blank line before each paragraph that starts by indentation, not by a blank line.

    Statutes set each subsection on an indented first line with flush-left continuation lines,
    and nest paragraphs as hanging indents ("            (1) ..." over "        ..."). A line
    starts a paragraph when it is indented deeper than the line above and does not continue a
    sentence (no lowercase start; an all-capitals heading wrapped onto it is not a start), or
    when it is indented at all and opens with an enumerator such as (b), (2), (A) or (iv).
    """
    lines = text.split("\n")
    indents = [len(line) - len(line.lstrip(" ")) for line in lines if line.strip()]
    margin = min(indents, default=0)
    out: list[str] = []
    previous: tuple[int, str] | None = None  # indentation and text of the line above
    for line in lines:
        stripped = line.strip()
        if not stripped:
            out.append(line)
            previous = None
            continue
        indent = len(line) - len(line.lstrip(" "))
        if previous is not None and _starts_paragraph(stripped, indent, previous, margin):
            out.append("")
        out.append(line)
        previous = (indent, stripped)
    return "\n".join(out)


def _starts_paragraph(
    stripped: str, indent: int, previous: tuple[int, str], margin: int
) -> bool:
    above_indent, above = previous
    if indent > margin and _ENUMERATOR.match(stripped):
        return True
    wrapped_heading = bool(CAPITALS_LINE.fullmatch(above) and CAPITALS_LINE.fullmatch(stripped))
    return indent > above_indent and not stripped[0].islower() and not wrapped_heading
