"""Scores of one answer against its reference: BLEU (sacrebleu), ROUGE-1/2/L (rouge_score) and the
key-fact score (the share of the reference's numbers, names and other rare tokens the answer has).

Korean is tokenised here, not by the libraries: rouge_score's default tokenizer drops Hangul (every
Korean answer scores 0) and sacrebleu's Korean tokenizers need downloads. A Korean text becomes its
Kiwi content morphemes: particles (J*), endings (E*) and punctuation are dropped, so "서울은" and
"서울이" both give "서울". On six paraphrase pairs and six unrelated pairs (bench-free, measured
while writing this) ROUGE-1 F1 was paraphrases 0.83 / unrelated 0.05 with content morphemes,
0.68 / 0.08 with every morpheme and 0.37 / 0.00 with whitespace words; the content morphemes
separate a right answer from a wrong one best. The same tokens feed BLEU (tokenize="none").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

METRICS = ("bleu", "rouge", "key_facts", "judge")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")

_HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
# Kiwi tags kept as tokens: every tag but particles (J*), endings (E*) and symbols (S*), plus
# numbers (SN), Latin words (SL) and Hanja (SH).
_KEPT_SYMBOL_TAGS = ("SN", "SL", "SH")


def bleu(answer: str, reference: str, language: str) -> float | None:
    """Sentence BLEU 0-100 with sacrebleu's exponential smoothing and effective order (short
    answers have no 4-grams); case-insensitive. None for an empty reference."""
    import sacrebleu

    if not reference.strip():
        return None
    if not answer.strip():
        return 0.0
    if _korean(language, answer, reference):
        hypothesis, ref = " ".join(_korean_tokens(answer)), " ".join(_korean_tokens(reference))
        score = sacrebleu.sentence_bleu(hypothesis, [ref], tokenize="none").score
    else:
        score = sacrebleu.sentence_bleu(answer, [reference], tokenize="13a", lowercase=True).score
    return min(score, 100.0)  # float rounding gives 100.00000000000004 for identical strings


def rouge(answer: str, reference: str, language: str) -> dict[str, float | None]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 (0-1). English: rouge_score's tokenizer with the Porter
    stemmer; Korean (or any text with Hangul): Kiwi content morphemes. None for an empty reference."""
    if not reference.strip():
        return dict.fromkeys(ROUGE_KEYS)
    scores = _rouge_scorer(_korean(language, answer, reference)).score(reference, answer)
    return {key: scores[key].fmeasure for key in ROUGE_KEYS}


def score_answer(answer: str, reference: str, language: str, metrics: Sequence[str],
                 question: str = "") -> dict[str, float | None]:
    """The scores `metrics` names: bleu, rouge (as rouge1/rouge2/rougeL), key_facts (those not
    already in `question`). "judge" is scored elsewhere (the teacher) and merged in by the caller."""
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    scores: dict[str, float | None] = {}
    if "bleu" in metrics:
        scores["bleu"] = bleu(answer, reference, language)
    if "rouge" in metrics:
        scores.update(rouge(answer, reference, language))
    if "key_facts" in metrics:
        scores["key_facts"] = key_fact_score(answer, reference, language, question)
    return scores


def overall(scores: dict[str, Any]) -> float | None:
    """One 0-1 number per answer, what compare decides a winner by. The judge score (1-5) rescaled
    to 0-1 when there is one, because it alone credits a correct paraphrase; otherwise the mean of
    key_facts, rougeL and bleu/100 over those present. None when none of them is."""
    judge = scores.get("judge")
    if judge is not None:
        return min(max((float(judge) - 1) / 4, 0.0), 1.0)
    parts = [scores.get("key_facts"), scores.get("rougeL"),
             None if scores.get("bleu") is None else scores["bleu"] / 100]
    present = [float(part) for part in parts if part is not None]
    return sum(present) / len(present) if present else None


def aggregate(items_scores: Iterable[dict[str, Any]]) -> dict[str, float | int | None]:
    """The mean of each score over the items that have it (None where no item has it), and "n",
    the number of items."""
    items = list(items_scores)
    keys = list(dict.fromkeys(key for scores in items for key in scores))
    means: dict[str, float | int | None] = {}
    for key in keys:
        values = [float(scores[key]) for scores in items if scores.get(key) is not None]
        means[key] = sum(values) / len(values) if values else None
    means["n"] = len(items)
    return means


# -- key facts -----------------------------------------------------------------------------------

_NUMBER = r"\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?"
_KO_COUNTERS = "개월|년도|년|월|일|시간|시|분|초|원|달러|명|개|건|회|세|살|배|층|호|조|항|장|절|차|주|위|점|권|곳|평"
_LATIN_UNITS = "km|cm|mm|kg|mg|ml|gb|mb|tb|kb|ghz|mhz|hz|kwh|kw|m|g|l|w|v"
_UNIT = (rf"\s?%|퍼센트|[십백천만억조]*(?:{_KO_COUNTERS})|[십백천만억조]+(?:\s?(?:{_KO_COUNTERS}))?"
         rf"|\s?(?:{_LATIN_UNITS})(?![A-Za-z])")
_QUANTITY = re.compile(rf"(?<![A-Za-z0-9.,\-])({_NUMBER})({_UNIT})?", re.IGNORECASE)
_DATE = re.compile(r"(?<![\d.])\d{4}[-./]\d{1,2}[-./]\d{1,2}(?![\d])")
_LATIN_WORD = re.compile(r"[A-Za-z0-9]+(?:[-_./][A-Za-z0-9]+)*")
_CAPITALISED_RUN = re.compile(r"[A-Z][A-Za-z0-9&'\-]*(?: [A-Z][A-Za-z0-9&'\-]*)*")
_QUOTED = re.compile(r"\"([^\"\n]{1,40})\"|“([^”\n]{1,40})”|‘([^’\n]{1,40})’|「([^」\n]{1,40})」|『([^』\n]{1,40})』"
                     r"|《([^》\n]{1,40})》|〈([^〉\n]{1,40})〉|(?<![\w])'([^'\n]{1,40})'(?![\w])")
_SENTENCE_END = re.compile(r"[.!?。]\s*[\"'“‘(]*$")
_NOT_NAMES = {"I'm", "I've", "I'll", "I'd"}
_TITLES = {"Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Mt", "Jr", "Sr", "No", "Vol", "Fig"}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class _Fact:
    text: str  # as it appears in the reference
    pattern: re.Pattern[str]  # searched in the normalised answer


def key_facts(reference: str, language: str) -> list[str]:
    """The reference's numbers (with the unit, percent or date as written: "12.5%", "2024년",
    "3,000원"), codes with digits ("ISO-27001"), capitalised names not at a sentence start and
    acronyms, quoted terms, Korean proper nouns (Kiwi NNP, with the nouns joined to them) and, in
    Korean text, Latin words. A span inside an earlier fact is not listed again."""
    return [fact.text for fact in _facts(reference, language)]


def key_fact_score(answer: str, reference: str, language: str, question: str = "") -> float | None:
    """The share of the reference's key facts found in the answer (thousands separators, case,
    width and spacing ignored); None when the reference has none. Facts the question itself
    names do not count: an answer that repeats "the Velmora Bridge" from the question has not
    shown it knows when the bridge opened (the untrained SmolLM2 scored 0.47 on invented facts by
    echoing names, 0.86 fine-tuned)."""
    asked = _normalise(question)
    facts = [fact for fact in _facts(reference, language) if not (asked and fact.pattern.search(asked))]
    if not facts:
        return None
    text = _normalise(answer)
    return sum(1 for fact in facts if fact.pattern.search(text)) / len(facts)


def _facts(reference: str, language: str) -> list[_Fact]:
    taken: list[tuple[int, int]] = []
    facts: list[_Fact] = []

    def add(start: int, end: int, fact: _Fact | None) -> None:
        if fact is None or not fact.text.strip() or any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        if fact.pattern.pattern not in {known.pattern.pattern for known in facts}:
            facts.append(fact)

    korean = _korean(language, reference)
    for start, end, text in _quoted(reference):
        add(start, end, _word_fact(text))
    for match in _DATE.finditer(reference):
        add(match.start(), match.end(), _quantity_fact(match.group(), re.sub(r"\D", "-", match.group()), ""))
    for match in _LATIN_WORD.finditer(reference):
        word = match.group()
        if re.search(r"\d", word) and re.search(r"[A-Za-z]", word):
            add(match.start(), match.end(), _word_fact(word))
    for match in _QUANTITY.finditer(reference):
        add(match.start(), match.end(), _quantity_fact(match.group(), match.group(1), match.group(2) or ""))
    for start, end, text in _names(reference, _mostly_hangul(reference)):
        add(start, end, _word_fact(text))
    if korean:
        for start, end, text in _korean_proper_nouns(reference):
            add(start, end, _word_fact(text))
    return facts


def _quoted(text: str) -> list[tuple[int, int, str]]:
    found = []
    for match in _QUOTED.finditer(text):
        index = next(i for i, group in enumerate(match.groups(), 1) if group is not None)
        found.append((match.start(index), match.end(index), match.group(index).strip()))
    return found


def _names(text: str, korean: bool) -> list[tuple[int, int, str]]:
    """Runs of capitalised words (a run at a sentence start loses its first word, unless that is an
    acronym), and in mostly Korean text every Latin word of two letters or more."""
    found = []
    for match in _CAPITALISED_RUN.finditer(text):
        if match.start() > 0 and (text[match.start() - 1].isalnum() or text[match.start() - 1] in "-_./"):
            continue
        words = match.group().split(" ")
        start = match.start()
        if not korean and _sentence_start(text, start) and not _acronym(words[0]):
            start += len(words[0]) + 1
            words = words[1:]
        name = re.sub(r"'s$", "", " ".join(words))  # "Seoul's" is the fact "Seoul"
        if len(name) > 1 and name not in _NOT_NAMES and name not in _TITLES:
            found.append((start, start + len(name), name))
    if korean:
        found += [(m.start(), m.end(), m.group()) for m in re.finditer(r"(?<![A-Za-z0-9])[A-Za-z]{2,}(?![A-Za-z0-9])", text)]
    return found


def _mostly_hangul(text: str) -> bool:
    """More Hangul than Latin letters: there a Latin word is a rare term, not ordinary prose."""
    return len(_HANGUL.findall(text)) > len(re.findall("[A-Za-z]", text))


def _sentence_start(text: str, index: int) -> bool:
    before = text[:index].rstrip()
    if re.search(r"(?<![A-Za-z])(?:" + "|".join(_TITLES) + r")\.$", before):
        return False  # "Mr. Kim": the full stop ends a title, not a sentence
    return not before or before.endswith("\n") or bool(_SENTENCE_END.search(text[:index]))


def _acronym(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _korean_proper_nouns(text: str) -> list[tuple[int, int, str]]:
    """Kiwi's NNP morphemes, each with the nouns written against it ("한국인터넷진흥원" is NNP 한국 +
    NNG 인터넷 + NNG 진흥원: the whole compound is the name); two characters or more."""
    tokens = _kiwi().tokenize(text)
    found = []
    index = 0
    while index < len(tokens):
        if tokens[index].tag != "NNP":
            index += 1
            continue
        first = last = index
        while first > 0 and _joined_noun(tokens[first - 1], tokens[first]):
            first -= 1
        while last + 1 < len(tokens) and _joined_noun(tokens[last], tokens[last + 1]):
            last += 1
        start, end = tokens[first].start, tokens[last].start + tokens[last].len
        if end - start >= 2:
            found.append((start, end, text[start:end]))
        index = last + 1
    return found


def _joined_noun(left: Any, right: Any) -> bool:
    nouns = ("NNG", "NNP", "XSN")
    return left.start + left.len == right.start and left.tag in nouns and right.tag in nouns


def _word_fact(text: str) -> _Fact | None:
    norm = _normalise(text)
    if not norm:
        return None
    if _HANGUL.search(norm):
        # Korean spacing varies ("개인정보 보호법" / "개인정보보호법"): spaces are optional.
        body = r"\s*".join(re.escape(char) for char in norm.replace(" ", ""))
    else:
        body = r"\s+".join(re.escape(word) for word in norm.split())
    before = r"(?<![a-z0-9])" if re.match(r"[a-z0-9]", norm) else ""
    after = r"(?![a-z0-9])" if re.search(r"[a-z0-9]$", norm) else ""
    return _Fact(text, re.compile(before + body + after))


def _quantity_fact(text: str, number: str, unit: str) -> _Fact:
    number = _THOUSANDS.sub("", number)
    unit = _normalise(unit).replace(" ", "")
    if unit:
        # "20만 원" and "20만원" are one amount: spaces inside a unit are optional.
        unit_pattern = r"\s?" + r"\s?".join(map(re.escape, unit)) + (r"(?![a-z])" if re.match(r"[a-z]", unit) else "")
    else:
        unit_pattern = r"(?![\d]|[.,]\d)"
    return _Fact(text.strip(), re.compile(r"(?<![\d.])" + re.escape(number) + unit_pattern))


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_THOUSANDS.sub("", text).split())


# -- tokenisation --------------------------------------------------------------------------------


def _korean(language: str, *texts: str) -> bool:
    return language.lower().startswith("ko") or any(_HANGUL.search(text) for text in texts)


def _korean_tokens(text: str) -> list[str]:
    """Kiwi content morphemes, lower-cased (see the module docstring for why)."""
    return [token.form.lower() for token in _kiwi().tokenize(text)
            if not token.tag.startswith(("J", "E")) and (not token.tag.startswith("S") or token.tag in _KEPT_SYMBOL_TAGS)]


class _KoreanTokenizer:
    """The tokenizer object rouge_score accepts (anything with tokenize(text) -> list[str])."""

    def tokenize(self, text: str) -> list[str]:
        return _korean_tokens(text)


@lru_cache(maxsize=1)
def _kiwi() -> Any:
    from kiwipiepy import Kiwi

    return Kiwi()


@lru_cache(maxsize=2)
def _rouge_scorer(korean: bool) -> Any:
    from rouge_score import rouge_scorer

    if korean:
        return rouge_scorer.RougeScorer(list(ROUGE_KEYS), tokenizer=_KoreanTokenizer())
    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
