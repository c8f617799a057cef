"""Sentence ends, for cutting a paragraph or table cell that does not fit a chunk.

Korean text goes to Kiwi's sentence splitter, which reads endings from the morphemes around
them: "다양한", "필요한" and "요청" hold no end, while "있다." and "했어요" do (a regex cutting
after every 다 or 요 gets both wrong). Kiwi costs ~1-4 s and ~250 MB to start, so it starts only
when a Korean text must be cut, once per process (`korean.kiwi()`, the one HWPX and PDF
spacing use).

Other text goes to sentencex (Wikimedia's segmenter: a 1 MB wheel, Rust, ~300 languages, kept
up to date), whose per-language abbreviation lists keep "e.g.", "U.S.", "Dr.", "p.m." and "3.5"
whole. A regex would need those lists retyped for every language the corpus holds (en, de, ru).
"""

from __future__ import annotations

import functools
import re

# Kiwi reads a long text in blocks of this many characters, so that its time and memory stay
# linear (measured: one call on 20,000 unspaced characters costs more than two of 10,000).
KIWI_BLOCK = 2000
_SPACE = re.compile(r"\s+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LETTER = re.compile(r"[^\W\d_]")


@functools.lru_cache(maxsize=256)  # the ends do not depend on the budget: one Kiwi pass serves all
def sentence_ends(text: str, language: str = "") -> tuple[int, ...]:
    """Offsets just after each sentence of `text` (its trailing spaces excluded), ascending;
    the end of the text itself is left out. Korean text (by its share of Hangul, whatever the
    document's language) goes to Kiwi; other text to sentencex with `language` (else English)."""
    if is_korean(text):
        ends = korean_sentence_ends(text)
    else:
        ends = _sentencex_ends(text, language if language and language != "ko" else "en")
    return tuple(sorted({end for end in ends if 0 < end < len(text.rstrip())}))


def is_korean(text: str) -> bool:
    """Hangul makes at least a fifth of the letters (Korean prose is full of Hanja and Latin
    terms; the same share guess_language uses for a whole document)."""
    hangul = len(_HANGUL.findall(text))
    return hangul > 0 and hangul * 5 >= len(_LETTER.findall(text))


def korean_sentence_ends(text: str) -> list[int]:
    """Kiwi's sentence ends, a block at a time; each block after the first starts again at the
    last sentence the previous one could not see to its end."""
    from slm_factory.parsing.korean import kiwi

    ends: list[int] = []
    start = 0
    while start < len(text):
        stop = _block_end(text, start, KIWI_BLOCK)
        found = [start + sentence.end for sentence in kiwi().split_into_sents(text[start:stop])]
        if stop >= len(text):
            return ends + found
        found = found[:-1]  # the block's last "sentence" may only stop at the block's edge
        ends.extend(found)
        start = found[-1] if found else stop
    return ends


def _block_end(text: str, start: int, size: int) -> int:
    """Where a block of at most ~size characters from start ends: at a space where one is near."""
    stop = min(len(text), start + size)
    if stop < len(text):
        spaces = [match.end() for match in _SPACE.finditer(text, start + size // 2, stop)]
        stop = spaces[-1] if spaces else stop
    return stop


def _sentencex_ends(text: str, language: str) -> list[int]:
    from sentencex import get_sentence_boundaries

    ends = []
    for boundary in get_sentence_boundaries(language, text):
        sentence = boundary["text"]
        ends.append(boundary["end_index"] - (len(sentence) - len(sentence.rstrip())))
    return ends
