"""A cheap language guess from the script of the letters (enough to pick prompts and tools)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import cache

_SAMPLE = 20_000
# A Hangul syllable block or a CJK character carries about as much as two Latin letters, so
# a Korean page full of English terms (MIME types, code) still counts as Korean.
_WEIGHT = {"ko": 2, "ja": 2, "zh": 2}
_WORD = re.compile(r"[^\W\d_]+")

# Latin-script languages told apart by their commonest words. Single letters are left out:
# "y" and "a" are Spanish words but also the variables of every maths text.
_LATIN_MARKERS = {
    "en": {"the", "and", "of", "to", "is", "in", "that", "for", "with", "are", "this"},
    "de": {"der", "die", "und", "das", "ist", "nicht", "mit", "ein", "eine", "den", "dem", "des",
           "sich", "auf", "für", "wird", "sind", "auch", "von", "zu"},
    "fr": {"le", "la", "les", "et", "est", "des", "une", "pour", "du", "que", "dans", "pas", "qui"},
    "es": {"el", "la", "los", "las", "es", "del", "una", "para", "que", "por", "con", "se"},
    "la": {"et", "est", "sed", "ut", "non", "ad", "cum", "quod", "enim"},
}  # fmt: skip


@cache  # a text uses a few hundred distinct characters; look each up once
def _script(char: str) -> str | None:
    code = ord(char)
    if 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "ko"
    if 0x3040 <= code <= 0x30FF:
        return "ja"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "zh"
    if 0x0400 <= code <= 0x04FF:
        return "ru"
    if char.isalpha() and "LATIN" in unicodedata.name(char, ""):
        return "latin"
    return None


def guess_language(text: str) -> str:
    """Return an ISO 639-1 code for the dominant language, or "" when there is no text."""
    sample = text[:_SAMPLE]
    scripts: Counter[str] = Counter()
    for char, count in Counter(sample).items():
        script = _script(char)
        if script:
            scripts[script] += count * _WEIGHT.get(script, 1)
    if not scripts:
        return ""
    # Hangul wins even as a minority: Korean documents are full of Hanja and Latin terms.
    if scripts["ko"] >= 0.2 * sum(scripts.values()):
        return "ko"
    if scripts["ja"] and scripts["ja"] >= 0.1 * (scripts["ja"] + scripts["zh"]):
        return "ja" if scripts["ja"] + scripts["zh"] > scripts["latin"] else _latin(sample)
    top = scripts.most_common(1)[0][0]
    return _latin(sample) if top == "latin" else top


def _latin(sample: str) -> str:
    words = Counter(word.lower() for word in _WORD.findall(sample))
    scores = {
        lang: sum(words[word] for word in markers) for lang, markers in _LATIN_MARKERS.items()
    }
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else "en"
