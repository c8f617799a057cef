"""Answer spans picked from a chunk without a model, for `questions.mode: answer_first`.

A small teacher cannot write good questions about a whole excerpt, but it can write one question
for a given answer. So the answers are chosen here, by rules: informative sentences (sentences.py
splits them: Kiwi for Korean, sentencex otherwise), table rows with their header lines, and
definitions ("X means ...", "X란 ..."). Spans that state names, numbers and dates rank first
(evaluation's `key_facts` finds them, the same facts the held-out scores count), definitions get a
bonus, and the pick is spread over the chunk: the chunk is cut into `budget` equal regions and
each region gives its best span before any region gives a second.

Every span is text of its chunk as written: a sentence is a substring, a table span is whole
lines of the chunk (the header lines, then one row). Spans never share a sentence or a row.
Bare headings, titles and short list labels are not answers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from slm_factory.parsing.chunking import mostly_empty
from slm_factory.parsing.sentences import is_korean, sentence_ends

MIN_WORDS = 6  # fewer words is a label or a heading, not a fact to ask about
MIN_KOREAN_CHARS = 12  # Korean packs a fact in fewer, longer words
MAX_SPAN_CHARS = 400  # a longer sentence is cut at a clause boundary (an answer, not a page)
MIN_ROW_CELLS = 2  # a table row with fewer filled cells says nothing about its first cell
SpanKind = Literal["sentence", "definition", "row"]

_SEPARATOR_ROW = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LIST_MARKER = re.compile(r"^(?:[-*•·]\s+)?(?:\(?\d{1,3}[.)]\s+|[a-z][.)]\s+)?")
_SENTENCE_END = re.compile(r"[.!?。:;)\]\"'”’]\s*$|[다요음함임됨]\s*$")
_CLAUSE_BREAK = re.compile(r"[;,，、]\s")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_MARKUP = re.compile(r"!\[|\]\(")
_DEFINITION_EN = re.compile(
    r"^(?:(?:the|a|an)\s+)?(?:[\w'’\"“”()/.\-]+\s+){0,5}?"
    r"(?:means|refers to|is defined as|stands for|is the term for"
    r"|is (?:a|an|the) \w+ (?:that|which|of|for))\b",
    re.IGNORECASE,
)
# A sentence that starts by pointing back ("This also means ...", "It is ...") is half an answer.
_LEANS_BACK = re.compile(r"^(?:this|that|these|those|it|its|they|he|she|here|there|again|also|however|as above"
                         r"|rationale)\b|^(?:이는|이것은|그것은|그러나|또한|따라서)", re.IGNORECASE)
_DEFINITION_KO = re.compile(r"(?:이?란|(?:이)?라 함은)\s|(?:을|를)\s*말한다|(?:이)?라\s*한다|의미한다|뜻한다")


@dataclass(frozen=True)
class Span:
    """One answer: `text` as it will be written in the pair; [start, end) is where its fact sits
    in the chunk (the sentence, or the row of a table span whose text also holds the header)."""

    text: str
    start: int
    end: int
    kind: SpanKind
    score: float

    @property
    def key(self) -> str:
        """Stable for the same text at the same place: ledger ids of answer-first work."""
        return hashlib.sha256(f"{self.start}\x1f{self.text}".encode()).hexdigest()[:12]


def pick_spans(text: str, budget: int, language: str = "", headings: Sequence[str] = (),
               taken: Collection[str] = ()) -> list[Span]:
    """Up to `budget` answer spans of `text`, in chunk order, none of them a heading trail part
    or a text in `taken` (answers already picked from the chunk before). Deterministic."""
    if budget <= 0:
        return []
    titles = {_plain(h) for heading in headings for h in re.split(r"\s*(?:>|\|)\s*", heading) if h.strip()}
    candidates = [span for span in _candidates(text, language)
                  if _plain(span.text) not in titles and span.text not in taken]
    return spread(candidates, budget, len(text))


def spread(candidates: list[Span], budget: int, length: int) -> list[Span]:
    """The best span of each of `budget` equal regions first, then the best of what is left."""
    ranked = sorted(candidates, key=lambda span: (-span.score, span.start))
    chosen: list[Span] = []
    width = max(1, length) / budget
    for region in range(budget):
        low, high = region * width, (region + 1) * width
        best = next((s for s in ranked if low <= s.start < high and s not in chosen), None)
        if best is not None:
            chosen.append(best)
    for span in ranked:
        if len(chosen) >= budget:
            break
        if span not in chosen:
            chosen.append(span)
    return sorted(chosen, key=lambda span: span.start)


# -- candidates ----------------------------------------------------------------------------------


def _candidates(text: str, language: str) -> Iterator[Span]:
    for start, block in _blocks(text):
        lines = block.split("\n")
        if _is_table(lines):
            yield from _row_spans(text, start, lines, language)
        else:
            yield from _sentence_spans(text, start, block, language)


def _blocks(text: str) -> Iterator[tuple[int, str]]:
    """Paragraphs and tables: runs of lines between blank lines, with their offsets."""
    for match in re.finditer(r"(?:[^\n]*\S[^\n]*(?:\n|$))+", text):
        block = match.group().rstrip("\n")
        if block.strip():
            yield match.start(), block


def _is_table(lines: list[str]) -> bool:
    return len(lines) >= 2 and any(_SEPARATOR_ROW.match(line.strip()) for line in lines[1:3])


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _row_spans(text: str, start: int, lines: list[str], language: str) -> Iterator[Span]:
    separator = next(i for i, line in enumerate(lines) if _SEPARATOR_ROW.match(line.strip()))
    header = lines[:separator]
    body = lines[separator + 1 :]
    # A header of mostly empty cells is a group row ("| | Pre-Pawn | | Redemption |"): the column
    # labels are then the first body rows without a number.
    while body and header and _mostly_empty(header[-1]) and not _DIGIT.search(body[0]):
        header = [*header, body[0]]
        body = body[1:]
    offset = start + sum(len(line) + 1 for line in lines[: len(lines) - len(body)])
    for line in body:
        row_start, offset = offset, offset + len(line) + 1
        if not line.strip().startswith("|") or sum(1 for cell in _cells(line) if cell) < MIN_ROW_CELLS:
            continue
        # The column labels, not a group row above them: a row of mostly empty cells says nothing.
        labels = [h for h in header if not _mostly_empty(h)][-1:] or header[-1:]
        answer = "\n".join([*labels, line])
        yield Span(answer, row_start, row_start + len(line), "row", 1.0 + _fact_score(line, language))


def _mostly_empty(line: str) -> bool:
    return mostly_empty(_cells(line))


def _sentence_spans(text: str, start: int, block: str, language: str) -> Iterator[Span]:
    cuts = [0, *sentence_ends(block, language), len(block)]
    for begin, end in zip(cuts, cuts[1:]):
        piece = block[begin:end]
        lead = len(piece) - len(piece.lstrip())
        piece = piece.strip()
        marker = _LIST_MARKER.match(piece)
        skip = marker.end() if marker else 0
        sentence = _shortened(piece[skip:].strip())
        if sentence is None or not _informative(sentence):
            continue
        at = text.find(sentence, start + begin + lead)
        definition = _is_definition(sentence)
        score = _fact_score(sentence, language) + (2.0 if definition else 0.0) + _length_score(sentence)
        score -= 2.0 if _LEANS_BACK.match(sentence) else 0.0
        yield Span(sentence, at, at + len(sentence), "definition" if definition else "sentence", score)


def _shortened(sentence: str) -> str | None:
    """The sentence, or its first clauses when it is longer than MAX_SPAN_CHARS (None: no clause
    boundary in reach, so no clean cut)."""
    if len(sentence) <= MAX_SPAN_CHARS:
        return sentence
    breaks = [m.start() for m in _CLAUSE_BREAK.finditer(sentence, 0, MAX_SPAN_CHARS)]
    usable = [b for b in breaks if b >= MAX_SPAN_CHARS // 3]
    return sentence[: usable[-1]].rstrip() if usable else None


def _informative(sentence: str) -> bool:
    """A sentence with enough words that ends like one; headings, titles and labels do not."""
    if "\n" in sentence and not _SENTENCE_END.search(sentence.split("\n", 1)[0]):
        return False  # a heading glued to the paragraph below it
    if _MARKUP.search(sentence):
        return False  # an image or a link in Markdown: the answer would be markup
    letters = len(_LETTER.findall(sentence))
    if letters * 2 < len(sentence.replace(" ", "")):
        return False  # mostly numbers, paths or symbols
    if is_korean(sentence):
        long_enough = len(sentence.replace(" ", "")) >= MIN_KOREAN_CHARS and len(sentence.split()) >= 3
    else:
        long_enough = len(sentence.split()) >= MIN_WORDS
    return long_enough and bool(_SENTENCE_END.search(sentence) or len(sentence.split()) >= 2 * MIN_WORDS)


def _is_definition(sentence: str) -> bool:
    if _LEANS_BACK.match(sentence):
        return False  # "This means ..." explains the sentence before, it defines nothing
    return bool(_DEFINITION_KO.search(sentence) if is_korean(sentence) else _DEFINITION_EN.match(sentence))


def _fact_score(text: str, language: str) -> float:
    from slm_factory.evaluation.metrics import key_facts  # Kiwi for Korean: only when spans are picked

    return float(min(4, len(key_facts(text, language or ("ko" if is_korean(text) else "en")))))


def _length_score(sentence: str) -> float:
    return 0.5 if 60 <= len(sentence) <= 300 else 0.0


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[#*_`]", " ", text).split()).casefold()


def answer_kind(answer: str) -> SpanKind:
    """The kind of span an answer was written from, read back from its text: a table span ends
    with its row (a Markdown table line); anything else is asked about as a sentence."""
    lines = answer.strip().splitlines()
    return "row" if lines and lines[-1].lstrip().startswith("|") else "sentence"
