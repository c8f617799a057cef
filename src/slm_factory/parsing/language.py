"""A cheap language guess from the script of the letters (enough to pick prompts and tools)."""

from __future__ import annotations

import unicodedata
from collections import Counter

_SAMPLE = 20_000

# Latin-script languages told apart by a few very common words.
_LATIN_MARKERS = {
    "en": {"the", "and", "of", "to", "is", "in", "that", "for"},
    "de": {"der", "die", "und", "das", "ist", "nicht", "mit", "ein"},
    "fr": {"le", "la", "les", "et", "est", "des", "une", "pour"},
    "es": {"el", "la", "los", "y", "es", "del", "una", "para"},
    "la": {"et", "in", "est", "sed", "ut", "non", "ad", "cum"},
}


def _script(char: str) -> str | None:
    code = ord(char)
    if 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "ko"
    if 0x3040 <= code <= 0x30FF:
        return "ja"
    if 0x4E00 <= code <= 0x9FFF:
        return "zh"
    if 0x0400 <= code <= 0x04FF:
        return "ru"
    if char.isalpha() and "LATIN" in unicodedata.name(char, ""):
        return "latin"
    return None


def guess_language(text: str) -> str:
    """Return an ISO 639-1 code for the dominant language, or "" when there is no text."""
    sample = text[:_SAMPLE]
    scripts = Counter(script for script in map(_script, sample) if script)
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
    words = Counter(word.lower() for word in sample.split())
    scores = {
        lang: sum(words[word] for word in markers) for lang, markers in _LATIN_MARKERS.items()
    }
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else "en"
