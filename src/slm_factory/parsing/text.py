"""Plain text and Markdown: decoding, mojibake repair, paragraphs, headings, lists, code, tables.

Both formats go through the same decoding (BOM, strict UTF-8, Korean code pages, detection,
Windows-1252 as the last resort) and the same repair of UTF-8 text that was once decoded as
Latin-1. Plain text is then cut into paragraphs by blank lines, line widths and the markers of
Korean statutes; Markdown is tokenised by markdown-it-py (CommonMark + GFM tables).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

from slm_factory.parsing import korean
from slm_factory.parsing.base import DocumentBuilder, ParseError, ParseOptions

# -- decoding --------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Labels that browsers (WHATWG) read as Windows-1252: its superset of Latin-1 has € and “”.
_WINDOWS_1252_ALIASES = {"latin_1", "iso8859_1", "ascii", "cp1252"}
_DETECTION_SAMPLE = 1 << 20
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str
    lossy: bool = False  # some bytes were not valid in `encoding` and became U+FFFD


def decode_text(data: bytes, declared: str | None = None) -> Decoded:
    """Decode a text file: BOM, then a declared charset, UTF-8, CP949, detection, CP1252."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom) :], encoding)
    declared_codec = _codec(declared) if declared else None
    if declared_codec:
        decoded = _strict(data, declared_codec)
        if decoded is not None:
            return decoded
    utf16 = _utf16_without_bom(data)
    if utf16:
        return _decode(data, utf16)
    if b"\x00" in data[:8192]:
        raise ParseError("binary data (NUL bytes), not a text file; check the file's real format")
    for attempt in (_strict(data, "utf-8"), _korean(data), _detected(data)):
        if attempt is not None:
            return attempt
    return _decode(data, "cp1252")


def _codec(label: str) -> str | None:
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return "cp1252" if name.replace("-", "_") in _WINDOWS_1252_ALIASES else name


def _strict(data: bytes, encoding: str) -> Decoded | None:
    try:
        return Decoded(data.decode(encoding), encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _decode(data: bytes, encoding: str) -> Decoded:
    return _strict(data, encoding) or Decoded(
        data.decode(encoding, errors="replace"), encoding, True
    )


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text of Latin script has a NUL in every other byte."""
    sample = data[:4096]
    if len(sample) < 4 or b"\x00" not in sample:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


def _korean(data: bytes) -> Decoded | None:
    """CP949 (a superset of EUC-KR), accepted only when what it yields is mostly Hangul."""
    decoded = _strict(data, "cp949")
    if decoded is None:
        return None
    non_ascii = [ch for ch in decoded.text[:200_000] if ord(ch) > 127]
    hangul = sum(1 for ch in non_ascii if "\uac00" <= ch <= "\ud7a3")
    return decoded if non_ascii and hangul >= 0.6 * len(non_ascii) else None


def _detected(data: bytes) -> Decoded | None:
    from charset_normalizer import from_bytes

    results = from_bytes(data[:_DETECTION_SAMPLE])
    best = results.best()
    if best is None:
        return None
    encoding = "cp1252" if best.encoding in _WINDOWS_1252_ALIASES else best.encoding
    # Single-byte Latin code pages tie on short texts (cp1250 vs cp1252 differ in a few
    # letters); Windows-1252 is what an unlabelled Western page almost always is.
    for match in results:
        if match.encoding == "cp1252" and match.chaos <= best.chaos + 0.01:
            encoding = "cp1252"
    return _decode(data, encoding)


# -- mojibake: UTF-8 bytes that were once decoded as Latin-1 or Windows-1252 -----------------

_CP1252_HIGH = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
_CONT = f"[\u0080-\u00bf{_CP1252_HIGH}]"
_MOJIBAKE = re.compile(
    f"[\u00c2-\u00df]{_CONT}|[\u00e0-\u00ef]{_CONT}{{2}}|[\u00f0-\u00f4]{_CONT}{{3}}"
)


def repair_mojibake(text: str) -> tuple[str, int]:
    """Undo UTF-8-read-as-Latin-1 damage ("â\\x80\\x93" back to "–"); returns the repair count."""
    count = 0

    def fix(match: re.Match[str]) -> str:
        nonlocal count
        raw = bytearray()
        for char in match.group():
            raw.extend(bytes([ord(char)]) if ord(char) < 256 else char.encode("cp1252"))
        try:
            repaired = raw.decode("utf-8")
        except UnicodeDecodeError:
            return match.group()
        if not repaired.isprintable():
            return match.group()
        count += 1
        return repaired

    return _MOJIBAKE.sub(fix, text), count


# -- front matter ------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_FRONT_MATTER_LIMIT = 64 * 1024


def split_front_matter(text: str) -> tuple[dict[str, str], str, str | None]:
    """Split YAML front matter off a text: (flat scalar metadata, the rest, a warning or None)."""
    match = _FRONT_MATTER.match(text[:_FRONT_MATTER_LIMIT])
    if not match:
        return {}, text, None
    import yaml

    rest = text[match.end() :]
    try:
        loaded = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        return {}, rest, f"front matter is not valid YAML ({problem}); it was left out"
    if not isinstance(loaded, dict):
        return {}, rest, None
    return _flat_metadata(loaded), rest, None


def _flat_metadata(loaded: dict[object, object]) -> dict[str, str]:
    """Keep scalars and lists of scalars; nested structures (menus, sub-navigation) are dropped."""
    flat: dict[str, str] = {}
    for key, value in loaded.items():
        if isinstance(value, (str, int, float, bool)) or hasattr(value, "isoformat"):
            flat[str(key)] = str(value)
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, (str, int, float)) for v in value)
        ):
            flat[str(key)] = ", ".join(str(v) for v in value)
    return flat


def apply_front_matter(
    builder: DocumentBuilder, metadata: dict[str, str], warning: str | None
) -> None:
    builder.metadata.update(metadata)
    if metadata.get("title"):
        builder.title = metadata["title"]
    if warning:
        builder.warn(warning)


# -- entry point ---------------------------------------------------------------------------------


def parse(data: bytes, builder: DocumentBuilder, options: ParseOptions) -> None:
    try:
        decoded = decode_text(data)
    except ParseError as error:
        raise ParseError(f"{builder.path.name}: {error}") from None
    builder.metadata["encoding"] = decoded.encoding
    if decoded.lossy:
        builder.warn(f"some bytes are not valid {decoded.encoding}; they were replaced with U+FFFD")
    text, repairs = repair_mojibake(decoded.text)
    if repairs:
        builder.warn(
            f"repaired {repairs} mojibake sequences"
            " (UTF-8 text that had been read as Latin-1/CP1252)"
        )
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n"))
    if builder.format == "md":
        metadata, body, warning = split_front_matter(text)
        apply_front_matter(builder, metadata, warning)
        _emit_markdown(body, builder)
    else:
        _emit_plain(text, builder)


# -- plain text ------------------------------------------------------------------------------------

_TERMINAL = tuple(".!?。…:;\"”’')]")
_KO_ENUMERATOR = "[가나다라마바사아자차카타파하]"  # 가. 나. 다. ... as item numbers
_LIST_MARKER = re.compile(
    rf"^(?:[-*•·○●▪◦‣□■◆◇※]|\d{{1,3}}[.)]|\(\d{{1,3}}\)|{_KO_ENUMERATOR}[.)])\s+"
)
_ARTICLE = re.compile(r"^제\s*\d+\s*조(?:의\s*\d+)?(?:\s|\(|$)")
_SUB_ITEM = re.compile(rf"^(?:[\u2460-\u2473]|\d{{1,3}}\.\s|{_KO_ENUMERATOR}\.\s)")
_EN_HEADING = re.compile(
    r"^(?:(?:FIRST|SECOND|THIRD|FOURTH|FIFTH|FINAL|LAST)\s+)?"
    r"(BOOK|PART|VOLUME|CHAPTER|SECTION|EPILOGUE|PROLOGUE|APPENDIX|INTRODUCTION|PREFACE)\b[^a-z]*$"
)
_EN_TITLED_HEADING = re.compile(
    r"^(Book|Part|Volume|Chapter|Section|Appendix)\s+(?:\d+|[IVXLCDM]+|[A-Z][a-z]+)\b[.:]?(?:\s.*)?$"
)
_KO_HEADING = re.compile(r"^제\s*\d+\s*(편|장|절|관)(?:\s+\S.*)?$")
# US statutes as printed by the GPO (Public Laws, bills): "TITLE I--ENHANCING DOMESTIC SECURITY",
# "Subtitle A--Electronic Surveillance", "SEC. 101. COUNTERTERRORISM FUND.". Their headings are
# long and wrap onto an all-capitals line, so they may run to `_MAX_STATUTE_HEADING` and go on.
_US_TITLE = re.compile(r"^(TITLE|DIVISION)\s+(?:[IVXLCDM]+|\d+|[A-Z])\b[^a-z]*$")
_US_SUBTITLE = re.compile(r"^(Subtitle|SUBTITLE)\s+[A-Z]\s*(?:--|—)\s*\S.*$")
_US_SECTION = re.compile(r"^(SEC(?:TION)?)\.?\s+\d+[A-Z]?(?:-\d+)?\.(?:\s+[^a-z]*)?$")
_US_HEADINGS = (_US_TITLE, _US_SUBTITLE, _US_SECTION)
_MAX_STATUTE_HEADING = 100
_MAX_WRAPPED_HEADING = 240
CAPITALS_LINE = re.compile(r"[^a-z]*[A-Z][^a-z]*")
_KO_ADDENDA = re.compile(r"^(?:\S{1,4}\s+)?(부\s*칙)(?:\s|<|$)")
_HEADING_RANK = {
    "volume": 0, "book": 1, "part": 1, "epilogue": 1, "prologue": 1, "appendix": 1,
    "introduction": 1, "preface": 1, "chapter": 2, "section": 3,
    "편": 1, "장": 2, "부칙": 2, "절": 3, "관": 4,
    "division": -1, "title": 0, "subtitle": 1, "sec": 3,
}  # fmt: skip
_MAX_HEADING = 60
_PAGE_NUMBER = re.compile(r"^[-–—]\s*\d{1,4}\s*[-–—]$")
_GLUE = "\x00"  # ends a line cut inside a word; the file's control characters are gone by then
_SHORT_RUN = 12  # a run of up to this many lines between blank lines is one paragraph


@dataclass
class _Unit:
    kind: str  # "paragraph", "list_item", "heading", "article"
    lines: list[str]
    rank: int = 0

    @property
    def text(self) -> str:
        separator = "\n" if self.kind == "article" else " "
        parts: list[str] = []
        for index, line in enumerate(self.lines):
            parts.append(line.removesuffix(_GLUE))
            if index < len(self.lines) - 1:
                parts.append("" if line.endswith(_GLUE) else separator)
        return "".join(parts)


def _emit_plain(text: str, builder: DocumentBuilder) -> None:
    units = _plain_units(text)
    if not units:
        return
    offset = 0
    if _is_title(units):
        builder.title = units[0].text
        builder.heading(units[0].text, 1)
        units, offset = units[1:], 1
    else:
        # A pattern heading ("CHAPTER I", "제1장 총강") never names the whole text.
        builder.title = builder.title or builder.path.stem
    _emit_units(units, builder, 1 + offset)


def emit_plain_blocks(text: str, builder: DocumentBuilder, first_level: int) -> None:
    """Hard-wrapped plain text as reflowed paragraphs, list items, statute articles and pattern
    headings (the rules of .txt files), its top heading rank at `first_level`. For plain text
    embedded in another format (an HTML <pre> of prose), where the title comes from elsewhere."""
    _emit_units(_plain_units(text), builder, first_level)


def _plain_units(text: str) -> list[_Unit]:
    lines = _mark_mid_word_wraps(_undo_double_spacing(text.split("\n")))
    return [unit for run in _runs(lines) for unit in _units(run)]


def _emit_units(units: list[_Unit], builder: DocumentBuilder, first_level: int) -> None:
    levels = {
        rank: index + first_level
        for index, rank in enumerate(sorted({u.rank for u in units if u.kind == "heading"}))
    }
    for unit in units:
        if unit.kind == "heading":
            builder.heading(unit.text, levels[unit.rank])
        elif unit.kind == "list_item":
            builder.list_item(unit.text)
        else:
            builder.paragraph(unit.text)


def _undo_double_spacing(lines: list[str]) -> list[str]:
    """A file with a blank line after every line (text pulled out of a PDF or HWP often is):
    there one blank line is only a line break, and two or more are a paragraph break."""
    filled = [index for index, line in enumerate(lines) if line.strip()]
    gaps = [b - a - 1 for a, b in zip(filled, filled[1:])]
    if len(gaps) < 8 or sum(1 for gap in gaps if gap == 1) < 0.9 * len(gaps):
        return lines
    out: list[str] = []
    for index, gap in zip(filled, gaps):
        out.append(lines[index])
        if gap >= 2:
            out.append("")
    out.append(lines[filled[-1]])
    return out


def _mark_mid_word_wraps(lines: list[str]) -> list[str]:
    """Mark a line that a Korean word runs on from ("필요" + "한 나이") with `_GLUE`.

    Only in files that keep the space where a line wraps between words ("할 " + "수 있는"): there a
    line ending in Hangul with no space after it was cut inside a word. Files that strip trailing
    spaces give no such evidence and keep a space at every wrap.
    """
    filled = [line for line in lines if line.strip()]
    if not filled or sum(1 for line in filled if line[-1] in " \t") < max(3, 0.1 * len(filled)):
        return lines
    width = sorted(len(line.rstrip()) for line in filled)[(9 * len(filled)) // 10]
    marked = list(lines)
    for index, (line, following) in enumerate(zip(lines, lines[1:])):
        ahead = following.lstrip()
        full = len(line) >= 0.75 * width  # a short line ended where its writer ended it
        if full and ahead and korean.is_hangul(line[-1]) and korean.is_hangul(ahead[0]):
            marked[index] = line + _GLUE
    return marked



def _runs(lines: list[str]) -> Iterator[list[str]]:
    """Groups of consecutive non-blank lines (stripped); page numbers ("- 3 -") left out."""
    run: list[str] = []
    for line in lines:
        stripped = line.strip()
        if _PAGE_NUMBER.match(stripped):
            continue
        if stripped:
            run.append(stripped)
        elif run:
            yield run
            run = []
    if run:
        yield run


def _units(run: list[str]) -> list[_Unit]:
    """Cut one run of lines into paragraphs, list items, statute articles and headings."""
    long_run = len(run) > _SHORT_RUN
    one_per_line = long_run and _unwrapped(run)
    breaks_at_short_lines = long_run and not one_per_line
    # In hard-wrapped prose only the last line of a paragraph falls well short of the width.
    short = 0.7 * sorted(len(line) for line in run)[(3 * len(run)) // 4]
    units: list[_Unit] = []
    current: _Unit | None = None
    for index, line in enumerate(run):
        rank = _heading_rank(line, standalone=len(run) == 1)
        if rank is not None:
            current = None
            units.append(_Unit("heading", [line], rank))
            continue
        if current is None and units and _continues_heading(units[-1], line):
            units[-1].lines.append(line)
            continue
        if current and current.kind == "article" and _SUB_ITEM.match(line):
            current.lines.append(line)
            continue
        marker = _ARTICLE.match(line) or _LIST_MARKER.match(line)
        previous = run[index - 1] if index else ""
        if (
            current is None
            or marker
            or one_per_line
            or (breaks_at_short_lines and len(previous) < short)
        ):
            current = _new_unit(line)
            units.append(current)
        else:
            current.lines.append(line)
    return units


def _new_unit(line: str) -> _Unit:
    if _ARTICLE.match(line):
        return _Unit("article", [line])
    marker = _LIST_MARKER.match(line)
    if marker:
        # A number is part of the item ("paragraph (2)", "제3호" are cited); a bullet is not.
        ordered = marker.group()[0].isalnum() or marker.group()[0] == "("
        return _Unit("list_item", [line if ordered else line[marker.end() :]])
    return _Unit("paragraph", [line])


def _continues_heading(unit: _Unit, line: str) -> bool:
    """A statute heading wrapped onto the next line: the heading has not ended with its period
    and the line is all capitals ("SEC. 102. SENSE OF CONGRESS CONDEMNING" + "DISCRIMINATION")."""
    return (
        unit.kind == "heading"
        and any(pattern.match(unit.lines[0]) for pattern in _US_HEADINGS)
        and not unit.lines[-1].endswith(".")
        and bool(CAPITALS_LINE.fullmatch(line))
        and len(unit.text) + len(line) < _MAX_WRAPPED_HEADING
    )


def _unwrapped(run: list[str]) -> bool:
    """One paragraph per line: nearly every line ends a sentence (hard-wrapped prose does not)."""
    ending = sum(1 for line in run if line.endswith(_TERMINAL))
    return ending >= 0.8 * len(run)


def _heading_rank(line: str, standalone: bool) -> int | None:
    if len(line) > _MAX_STATUTE_HEADING:
        return None
    for pattern in _US_HEADINGS:
        match = pattern.match(line)
        if match:
            return _HEADING_RANK[match.group(1).lower()]
    if len(line) > _MAX_HEADING:
        return None
    for pattern in (_KO_HEADING, _KO_ADDENDA, _EN_HEADING):
        match = pattern.match(line)
        if match:
            return _HEADING_RANK[re.sub(r"\s", "", match.group(1)).lower()]
    titled = _EN_TITLED_HEADING.match(line) if standalone else None
    return _HEADING_RANK[titled.group(1).lower()] if titled else None


def _is_title(units: list[_Unit]) -> bool:
    first = units[0]
    return (
        len(units) > 1
        and first.kind == "paragraph"
        and len(first.lines) == 1
        and len(first.text) <= 80
        and not first.text.endswith((".", "!", "?", "。", ",", ";", ":"))
    )


# -- Markdown --------------------------------------------------------------------------------------

# A line that is only a JSX/HTML tag (<Intro>, </Sandpack>, <img ... />): MDX component markup.
_JSX_LINE = re.compile(r"^ {0,3}</?[A-Za-z][\w.:-]*(?:\s[^<>]*)?/?>\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_MDX_COMMENT = re.compile(r"\s*\{/\*.*?\*/\}")
_HEADING_ID = re.compile(r"\s*\{#[\w:.-]+\}\s*$")
_TAG = re.compile(r"<[^<>]*>")


def _emit_markdown(text: str, builder: DocumentBuilder) -> None:
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    _MarkdownEmitter(builder).run(parser.parse(_drop_jsx_lines(text)))


def _drop_jsx_lines(text: str) -> str:
    """Outside fenced code: blank out component tag lines (the text between them stays) and
    drop MDX comments such as heading anchors `{/*step-1*/}` before `*` reads as emphasis."""
    lines = text.split("\n")
    fence = ""
    for index, line in enumerate(lines):
        opening = _FENCE.match(line)
        if fence:
            if (
                opening
                and opening.group(1)[0] == fence[0]
                and line.strip() == opening.group(1)
                and len(opening.group(1)) >= len(fence)
            ):
                fence = ""
        elif opening:
            fence = opening.group(1)
        elif _JSX_LINE.match(line):
            lines[index] = ""
        elif "{/*" in line:
            lines[index] = _MDX_COMMENT.sub("", line)
    return "\n".join(lines)


@dataclass
class _OpenItem:
    prefix: str  # "3. " for ordered lists, kept so that "step 3" stays findable
    texts: list[str]


class _MarkdownEmitter:
    """Walks markdown-it's flat token stream and feeds the builder in reading order."""

    def __init__(self, builder: DocumentBuilder) -> None:
        self.builder = builder
        self.list_depth = 0
        self.items: list[_OpenItem] = []
        self.rows: list[list[str]] | None = None
        self.heading_level = 0

    def run(self, tokens: list) -> None:  # list[markdown_it.token.Token]
        for token in tokens:
            handler = getattr(self, "_on_" + token.type, None)
            if handler:
                handler(token)

    # -- text --
    def _on_inline(self, token) -> None:
        self._route(_inline_text(token))

    def _on_html_block(self, token) -> None:
        self._route(clean_lines(_TAG.sub(" ", token.content)))

    def _route(self, text: str) -> None:
        if self.heading_level:
            self.builder.heading(_HEADING_ID.sub("", text), self.heading_level)
            self.heading_level = 0
        elif self.rows is not None:
            if self.rows:
                self.rows[-1].append(text)
        elif self.items:
            self.items[-1].texts.append(text)
        else:
            self.builder.paragraph(text)

    def _on_heading_open(self, token) -> None:
        self._flush_item()
        self.heading_level = int(token.tag[1])

    def _on_fence(self, token) -> None:
        self._flush_item()
        self.builder.paragraph(token.content.rstrip("\n"), kind="code")

    _on_code_block = _on_fence

    # -- lists --
    def _on_bullet_list_open(self, token) -> None:
        self._flush_item()
        self.list_depth += 1

    _on_ordered_list_open = _on_bullet_list_open

    def _on_bullet_list_close(self, token) -> None:
        self.list_depth -= 1

    _on_ordered_list_close = _on_bullet_list_close

    def _on_list_item_open(self, token) -> None:
        prefix = f"{token.info}{token.markup} " if token.info else ""
        self.items.append(_OpenItem(prefix, []))

    def _on_list_item_close(self, token) -> None:
        self._flush_item()
        self.items.pop()

    def _flush_item(self) -> None:
        """Emit the open item's text so far; text after a nested list continues it unnumbered."""
        if not self.items or not self.items[-1].texts:
            return
        item = self.items[-1]
        self.builder.list_item(
            item.prefix + "\n".join(item.texts), level=max(self.list_depth - 1, 0)
        )
        item.prefix, item.texts = "", []

    # -- tables --
    def _on_table_open(self, token) -> None:
        self._flush_item()
        self.rows = []

    def _on_tr_open(self, token) -> None:
        if self.rows is not None:
            self.rows.append([])

    def _on_table_close(self, token) -> None:
        self.builder.table(self.rows or [])
        self.rows = None


def _inline_text(token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return clean_lines("".join(parts))


def clean_lines(text: str) -> str:
    """Collapse spaces inside each line and drop empty lines."""
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)
