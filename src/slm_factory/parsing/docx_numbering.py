"""Word list numbers: the "1.", "3.2.", "a)" or "가." that Word draws in front of a paragraph.

They are not in the document text: Word computes them from the paragraph's list (`w:numPr`, on
the paragraph or on its style), the list's level definitions in numbering.xml (start value,
number format, level text such as "%1.%2.") and the paragraphs numbered before it. A clause
reference like "see 3.2" means nothing to a reader of the text unless 3.2 is written there too.

Counting follows Word: lists (`w:num`) that share one abstract definition continue each other's
numbers, unless a list overrides a level's start (Word's "restart numbering"), which gives it
counters of its own; a deeper level starts again when a higher level advances (`w:lvlRestart`
can delay that or switch it off); `w:isLgl` shows every level of a label in Arabic digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from lxml import etree

_PLACEHOLDER = re.compile(r"%([1-9])")
_MAX_LEVEL = 8  # w:ilvl is 0..8


@dataclass
class Level:
    start: int = 1
    fmt: str = "decimal"
    text: str = ""  # w:lvlText, e.g. "%1.%2."
    restart: int | None = None  # w:lvlRestart: restart only after this (1-based) level; 0 = never
    legal: bool = False  # w:isLgl
    style: str = ""  # w:pStyle: the paragraph style that is numbered at this level


@dataclass
class ListInstance:
    """A `w:num`: an abstract definition, maybe with levels or start values of its own."""

    abstract: str
    starts: dict[int, int] = field(default_factory=dict)
    levels: dict[int, Level] = field(default_factory=dict)


class Numbering:
    def __init__(
        self,
        abstracts: dict[str, dict[int, Level]],
        links: dict[str, str],
        lists: dict[str, ListInstance],
        numbering_styles: dict[str, str],
    ) -> None:
        self.abstracts = abstracts
        self.links = links  # abstract id -> numbering style it takes its levels from (w:numStyleLink)
        self.lists = lists
        self.numbering_styles = numbering_styles  # numbering style id -> its w:numId
        self.counters: dict[str, dict[int, int]] = {}

    @classmethod
    def empty(cls) -> Numbering:
        return cls({}, {}, {}, {})

    @classmethod
    def read(cls, root: etree._Element, q: Callable[[str], str], numbering_styles: dict[str, str]) -> Numbering:
        """numbering.xml; `q` qualifies a tag name with the document's WordprocessingML namespace."""
        val = q("val")
        abstracts: dict[str, dict[int, Level]] = {}
        links: dict[str, str] = {}
        for element in root.iter(q("abstractNum")):
            key = element.get(q("abstractNumId"), "")
            abstracts[key] = {
                level: definition for level, definition in (_level(lvl, q) for lvl in element.iter(q("lvl")))
            }
            link = element.find(q("numStyleLink"))
            if link is not None:
                links[key] = link.get(val, "")
        lists: dict[str, ListInstance] = {}
        for element in root.iter(q("num")):
            abstract = element.find(q("abstractNumId"))
            instance = ListInstance(abstract=abstract.get(val, "") if abstract is not None else "")
            for override in element.iter(q("lvlOverride")):
                level = _bounded(override.get(q("ilvl")), 0)
                start = override.find(q("startOverride"))
                if start is not None:
                    instance.starts[level] = _bounded(start.get(val), 1, 0, 10**6)
                redefined = override.find(q("lvl"))
                if redefined is not None:
                    instance.levels[level] = _level(redefined, q)[1]
            lists[element.get(q("numId"), "")] = instance
        return cls(abstracts, links, lists, numbering_styles)

    def label(self, num_id: str, level: int | None, style_id: str) -> str:
        """The next number of this list at this level ("" for bullets and unknown lists); counts it."""
        instance = self.lists.get(num_id)
        if instance is None:
            return ""
        abstract = self._resolve(instance.abstract)
        levels = {**self.abstracts.get(abstract, {}), **instance.levels}
        if level is None:  # a style numbered by a level that names it, else the first level
            level = next((key for key, lvl in levels.items() if style_id and lvl.style == style_id), 0)
        definition = levels.get(level)
        if definition is None:
            return ""

        def start(key: int) -> int:
            return instance.starts.get(key, levels[key].start if key in levels else 1)

        own = instance.starts or instance.levels
        counters = self.counters.setdefault(f"num {num_id}" if own else f"abstract {abstract}", {})
        counters[level] = counters[level] + 1 if level in counters else start(level)
        for deeper in [key for key in counters if key > level]:
            restart = levels[deeper].restart if deeper in levels else None
            if restart is None or level < restart:  # restart n: after a level up to n (1-based) only
                del counters[deeper]
        if definition.fmt in ("bullet", "none"):
            return ""

        def number(match: re.Match[str]) -> str:
            key = int(match.group(1)) - 1
            fmt = "decimal" if definition.legal else (levels[key].fmt if key in levels else "decimal")
            return format_number(counters.get(key, start(key)), fmt)

        return _PLACEHOLDER.sub(number, definition.text).strip()

    def _resolve(self, abstract: str) -> str:
        """Follow w:numStyleLink: abstract -> numbering style -> its list -> that list's abstract."""
        seen = {abstract}
        while abstract in self.links:
            instance = self.lists.get(self.numbering_styles.get(self.links[abstract], ""))
            if instance is None or instance.abstract in seen:
                break
            abstract = instance.abstract
            seen.add(abstract)
        return abstract


def _level(element: etree._Element, q: Callable[[str], str]) -> tuple[int, Level]:
    val = q("val")

    def value(name: str) -> str | None:
        child = element.find(q(name))
        return None if child is None else child.get(val, "")

    restart = value("lvlRestart")
    legal = value("isLgl")
    return _bounded(element.get(q("ilvl")), 0), Level(
        start=_bounded(value("start"), 1, 0, 10**6),
        fmt=value("numFmt") or "decimal",
        text=value("lvlText") or "",
        restart=None if restart is None else _bounded(restart, 0, 0, _MAX_LEVEL + 1),
        legal=legal is not None and legal not in ("0", "false", "off"),
        style=value("pStyle") or "",
    )


def _bounded(value: str | None, default: int, low: int = 0, high: int = _MAX_LEVEL) -> int:
    try:
        return min(max(int(value), low), high) if value is not None else default
    except ValueError:
        return default


# -- number formats ----------------------------------------------------------------------------
_GANADA = "가나다라마바사아자차카타파하"
_CHOSUNG = "ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎ"
_RUSSIAN = "абвгдежзиклмнопрстуфхцчшщэюя"  # Word's list: no ё, й, ъ, ы, ь
_KOREAN_DIGITS = "영일이삼사오육칠팔구"
_KOREAN_COUNTING = ["하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉", "열"]
_ROMAN = [(1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
          (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")]


def format_number(value: int, fmt: str) -> str:
    """A counter in one of Word's number formats; formats not listed here fall back to digits."""
    if value <= 0:
        return str(value)
    if fmt == "decimalZero":
        return f"{value:02d}"
    if fmt in ("lowerRoman", "upperRoman"):
        roman = _roman(value)
        return roman.upper() if fmt == "upperRoman" else roman
    if fmt in ("lowerLetter", "upperLetter"):  # a..z, then aa..zz, as Word counts
        letter = chr(ord("a") + (value - 1) % 26) * ((value - 1) // 26 + 1)
        return letter.upper() if fmt == "upperLetter" else letter
    if fmt in ("russianLower", "russianUpper"):
        letter = _RUSSIAN[(value - 1) % len(_RUSSIAN)] * ((value - 1) // len(_RUSSIAN) + 1)
        return letter.upper() if fmt == "russianUpper" else letter
    if fmt == "ganada":
        return _GANADA[(value - 1) % len(_GANADA)]
    if fmt == "chosung":
        return _CHOSUNG[(value - 1) % len(_CHOSUNG)]
    if fmt in ("decimalEnclosedCircle", "decimalEnclosedCircleChinese") and value <= 20:
        return chr(0x2460 + value - 1)
    if fmt in ("decimalFullWidth", "decimalFullWidth2"):
        return "".join(chr(0xFF10 + int(digit)) for digit in str(value))
    if fmt == "koreanDigital" and value < 100:
        tens, units = divmod(value, 10)
        return ("" if tens < 2 else _KOREAN_DIGITS[tens]) + ("십" if tens else "") + (_KOREAN_DIGITS[units] if units else "")
    if fmt == "koreanCounting" and value <= len(_KOREAN_COUNTING):
        return _KOREAN_COUNTING[value - 1]
    return str(value)


def _roman(value: int) -> str:
    out = []
    for amount, numeral in _ROMAN:
        count, value = divmod(value, amount)
        out.append(numeral * count)
    return "".join(out)
