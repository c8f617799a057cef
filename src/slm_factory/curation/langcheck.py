"""Is a question or answer written in its document's language?

Mid-size local teachers often answer a Korean chunk in English (or the reverse). The guess is
the parser's own (slm_factory.parsing.language: scripts, Hangul counted even as a minority, then
common words for Latin-script languages); what this module adds is knowing when a text is too
little to judge, so that it never rejects:
- numbers, dates, amounts, units: "2024", "30%", "3.5 kg";
- code, paths, identifiers and URLs: "application/json", "useState()", "snake_case", "v8.dev";
- a name or a term quoted in another script: the answer "Hypertext Transfer Protocol" to a Korean
  question, "서울특별시" or "大韓民國" in an English one. A Latin-script text counts as prose
  only with at least three words and a function word ("the", "der", "et", ...), or eight
  words; Korean with two words holding Hangul; Chinese, Japanese or Russian with six letters;
- English terms inside Korean sentences: Hangul wins as soon as it is 20% of the letters.
"""

from __future__ import annotations

import re

from slm_factory.parsing.language import guess_language

# Code in a token: a path, a URL, an identifier, a call, a version, a unit stuck to a number.
_CODE = re.compile(r"[/_=(){}\[\]<>`\\@#$]|\w\.\w|[a-z][A-Z]|\d[A-Za-z]|[A-Za-z]\d")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_OTHER_SCRIPT = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\u0400-\u04ff]")
# Common words of the Latin-script languages the parser tells apart (slm_factory.parsing.language).
_MARKERS = {
    "en": frozenset("the a an is are was were be of to in on at for with by from and or not this that it as".split()),
    "de": frozenset("der die das und ist nicht mit ein eine den dem des sich auf für wird sind auch von zu".split()),
    "fr": frozenset("le la les et est des une pour du que dans pas qui".split()),
    "es": frozenset("el la los las es del una para que por con se".split()),
    "la": frozenset("et est sed ut non ad cum quod enim".split()),
}
_FUNCTION_WORDS = frozenset().union(*_MARKERS.values())
_LATIN_LANGUAGES = frozenset({*_MARKERS, "it", "pt", "nl", "sv"})


def _prose(text: str) -> str:
    """The text without its code-like tokens (most texts have none: one search)."""
    if not _CODE.search(text):
        return text
    return " ".join(word for word in text.split() if not _CODE.search(word))


def text_language(text: str) -> str | None:
    """The language the text is written in, or None when it holds too little to tell."""
    prose = _prose(text)
    hangul_words = sum(1 for word in prose.split() if _HANGUL.search(word)) if _HANGUL.search(prose) else 0
    others = len(_OTHER_SCRIPT.findall(prose))
    latin_words = [w.lower() for w in _LATIN_WORD.findall(prose)]
    latin_is_prose = len(latin_words) >= 8 or (
        len(latin_words) >= 3 and any(w in _FUNCTION_WORDS for w in latin_words)
    )
    # One Hangul word is a name or a term (서울특별시); a Korean sentence has two or more.
    if hangul_words < 2 and others < 6 and not latin_is_prose:
        return None
    if not latin_is_prose:
        return "ko" if hangul_words >= 2 else guess_language("".join(_OTHER_SCRIPT.findall(prose))) or None
    if hangul_words or others:  # Latin prose beside other scripts: weigh the scripts
        return guess_language(prose) or None
    return _latin_language(latin_words)


def _latin_language(words: list[str]) -> str:
    """The Latin-script language whose common words the text uses most (English when none)."""
    hits = {language: sum(word in markers for word in words) for language, markers in _MARKERS.items()}
    best = max(hits, key=hits.__getitem__)
    return best if hits[best] else "en"


def wrong_language(text: str, expected: str) -> str | None:
    """The language `text` is in when that is clearly not `expected`, else None."""
    found = text_language(text)
    if found is None or not expected or found == expected:
        return None
    if found in _LATIN_LANGUAGES and expected in _LATIN_LANGUAGES:
        # Latin-script languages are told apart by common words: trust it on sentences only.
        if len(_LATIN_WORD.findall(_prose(text))) < 6:
            return None
    return found
