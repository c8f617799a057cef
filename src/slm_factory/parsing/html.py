"""HTML: the main content of a page, without menus, sidebars and footers, in reading order.

trafilatura decides what the main content is; the blocks themselves come from a walk over the
page's own DOM. trafilatura's output alone loses what this project needs: it cuts code blocks
at their first <br>, drops which cells a merged cell spans, folds <pre> text into one line and
drops the <h1> that repeats the title. So its text only marks which paragraphs are content; the
DOM region that holds them is walked, and the tables, code and headings inside that region are
taken from the DOM as they are. Where trafilatura finds nothing (a fragment, a bare page) the
whole body is walked, minus nav/header/footer/aside.

Tables go through the shared table model (parsing/tables.py): a merged cell's text once, and a
table that lays out a page (one cell, one column, headings or prose in its cells) read as the
blocks inside it. A <pre> of prose (a law published as one <pre>) is reflowed by the plain-text
rules (parsing/preformatted.py decides prose from code); a <pre> of code keeps its lines.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

from lxml import etree
from lxml import html as lxml_html

from slm_factory.parsing.base import DocumentBuilder, ParseError, ParseOptions, clean_inline
from slm_factory.parsing.preformatted import is_prose, prose_text
from slm_factory.parsing.tables import CellContent, Grid, build_grid, is_layout, place
from slm_factory.parsing.text import (
    Decoded,
    apply_front_matter,
    decode_text,
    emit_plain_blocks,
    split_front_matter,
)

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_INLINE = frozenset({
    "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em",
    "font", "i", "ins", "kbd", "label", "mark", "nobr", "q", "rp", "rt", "ruby", "s", "samp",
    "small", "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var", "wbr",
})  # fmt: skip
_SKIPPED = frozenset({
    "img", "hr", "area", "map", "video", "audio", "picture", "source", "track", "head", "title",
    "meta", "link", "base",
})  # fmt: skip
_DROPPED = (
    "script", "style", "noscript", "template", "svg", "math", "iframe", "object", "embed",
    "canvas", "input", "select", "textarea", "button",
)  # fmt: skip
# Blocks that end a line of text when they sit inside a list item or a table cell.
_LINE_BLOCKS = frozenset({
    "p", "div", "section", "article", "blockquote", "dl", "dt", "dd", "li", "ul", "ol", "tr",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "figure", "figcaption",
})  # fmt: skip
_CHROME_TAGS = frozenset({"nav", "aside", "footer"})
_CHROME_ROLES = frozenset({
    "navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar",
})  # fmt: skip
# Class or id values of page furniture (MediaWiki's among them: navboxes, [edit], hatnotes).
_CHROME_TOKENS = frozenset({
    "toc", "mw-toc", "catlinks", "printfooter", "mw-editsection", "sistersitebox", "noprint",
    "metadata", "ambox", "mbox-small", "hatnote", "mw-indicators", "authority-control",
    "skip-link", "sr-only", "visually-hidden", "screen-reader-text", "mw-navigation", "mw-panel",
    "mw-head", "sitesub", "contentsub", "mw-footer",
})  # fmt: skip
_CHROME_PREFIXES = (
    "navbox", "vertical-navbox", "sidebar", "breadcrumb", "cookie", "share-", "social-", "mw-jump",
)  # fmt: skip
_CODE_HINT = re.compile(r"code|highlight|lang|source|prettyprint|hljs|brush|syntax", re.IGNORECASE)
_WS = re.compile(r"\s+")
_NOT_KEY = re.compile(r"[\s\u200b-\u200f\u00ad\ufeff]+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_DTD_SUBSET = re.compile(r"(<!DOCTYPE[^\[>]*)\[.*?\]\s*>", re.DOTALL | re.IGNORECASE)
_KUMASCRIPT = re.compile(r"\{\{\s*[A-Za-z_][\w-]*\s*(?:\([^{}]*\))?\s*\}\}")
_ANCHOR_TEXT = frozenset({"", "#", "¶", "§", "🔗", "link"})
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE
)
_XML_ENCODING = re.compile(
    rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""", re.IGNORECASE
)
_TITLE_SEPARATORS = " -|·–—:"
_MAX_COLSPAN = 100


def parse(data: bytes, builder: DocumentBuilder, options: ParseOptions) -> None:
    name = builder.path.name
    decoded = _decode(data, name)
    builder.metadata["encoding"] = decoded.encoding
    if decoded.lossy:
        builder.warn(f"some bytes are not valid {decoded.encoding}; they were replaced with U+FFFD")
    metadata, markup, warning = split_front_matter(decoded.text.lstrip("\ufeff"))
    apply_front_matter(builder, metadata, warning)
    root = _load(markup, name)
    _read_metadata(root, builder)
    _clean(root)
    body = _body(root)
    covered = _Coverage(_main_text(root, builder))
    region = _find_region(body, covered) if covered.active else None
    walker = _Walker(builder, covered if region is not None else _Coverage(""), page=region is None)
    try:
        if region is None:
            walker.container(_fallback_region(body))
        else:
            walker.first_h1 = _title_heading(region, body)
            builder.heading(walker.first_h1, 1)
            walker.container(region)
    except RecursionError:
        raise ParseError(
            f"{name}: HTML nested too deeply to read; simplify or re-save the page"
        ) from None
    if not builder.title:
        builder.title = _page_title(root, walker.first_h1)


# -- bytes to tree -------------------------------------------------------------------------------


def _decode(data: bytes, name: str) -> Decoded:
    head = data[:4096]
    declared = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    label = declared.group(1).decode("ascii", "replace") if declared else None
    try:
        return decode_text(data, label)
    except ParseError as error:
        raise ParseError(f"{name}: {error}") from None


def _load(markup: str, name: str) -> etree._Element:
    # The HTML parser never loads a DTD or resolves entity declarations; network stays off.
    parser = lxml_html.HTMLParser(
        remove_comments=True,
        remove_pis=True,
        no_network=True,
        default_doctype=False,
        collect_ids=False,
    )
    markup = _CONTROL.sub("", _XML_DECLARATION.sub("", markup, count=1))
    # The parser ignores an internal DTD subset but leaves its "]>" as body text: cut it.
    markup = _DTD_SUBSET.sub(r"\1>", markup[:65536], count=1) + markup[65536:]
    if not markup.strip():
        raise ParseError(f"{name}: the file holds no HTML")
    try:
        return lxml_html.document_fromstring(markup, parser=parser)
    except (etree.ParserError, ValueError) as error:
        raise ParseError(f"{name}: unreadable HTML ({error})") from None


def _body(root: etree._Element) -> etree._Element:
    body = root.find("body")
    return body if body is not None else root


def _clean(root: etree._Element) -> None:
    """Remove what is never content, so trafilatura and the walk see the same page."""
    etree.strip_elements(root, *_DROPPED, with_tail=False)
    doomed = [el for el in root.iter() if isinstance(el.tag, str) and _is_noise(el)]
    for el in doomed:
        el.drop_tree()
    for br in list(root.iter("br")):
        if next(br.iterancestors("pre"), None) is not None:
            br.tail = "\n" + (br.tail or "")
            br.drop_tree()
    for el in root.iter():
        if not isinstance(el.tag, str) or el.tag in ("pre", "code"):
            continue
        if el.text and "{{" in el.text and next(el.iterancestors("pre", "code"), None) is None:
            el.text = _KUMASCRIPT.sub("", el.text)
        if el.tail and "{{" in el.tail:
            el.tail = _KUMASCRIPT.sub("", el.tail)


def _is_noise(el: etree._Element) -> bool:
    """Hidden elements, citation markers, [edit] links and heading self-links."""
    if el.get("hidden") is not None or el.get("aria-hidden") == "true":
        return True
    style = (el.get("style") or "").replace(" ", "").lower()
    if "display:none" in style or "visibility:hidden" in style:
        return True
    classes = (el.get("class") or "").split()
    if "mw-editsection" in classes or (el.tag == "sup" and "reference" in classes):
        return True
    if el.tag == "a" and (el.get("href") or "").startswith("#"):
        parent = el.getparent()
        return (
            parent is not None
            and parent.tag in _HEADINGS
            and el.text_content().strip() in _ANCHOR_TEXT
        )
    return False


# -- main content ---------------------------------------------------------------------------------


def _key(text: str) -> str:
    return _NOT_KEY.sub("", text)


class _Coverage:
    """Whether a piece of text is part of trafilatura's main content (whitespace ignored)."""

    def __init__(self, main_text: str) -> None:
        self.key = _key(main_text)
        self.active = bool(self.key)

    def __call__(self, text: str) -> bool:
        if not self.active:
            return True
        key = _key(text)
        if key in self.key:
            return bool(key)
        return len(key) > 80 and key[:40] in self.key and key[-40:] in self.key


def _main_text(root: etree._Element, builder: DocumentBuilder) -> str:
    try:
        import trafilatura
    except ImportError as error:  # a broken install should not lose the page: keep the body
        builder.warn(f"trafilatura unavailable ({error}); the whole page body was kept")
        return ""
    try:
        text = trafilatura.extract(
            copy.deepcopy(root),
            output_format="txt",
            include_tables=True,
            include_comments=False,
            include_images=False,
            include_links=False,
            favor_recall=True,
            deduplicate=False,
        )
    # trafilatura's own bug on an odd page must not lose the document: fall back to the body.
    except Exception as error:  # noqa: BLE001
        builder.warn(
            f"main-content detection failed ({type(error).__name__}); the whole page body was kept"
        )
        return ""
    return text or ""


_PROBES = ("p", "li", "dd", "pre", "blockquote", "td")
_NOT_REGIONS = frozenset(_PROBES) | {"tr", "tbody", "thead", "table", "ul", "ol", "dl"} | _INLINE


def _find_region(body: etree._Element, covered: _Coverage) -> etree._Element | None:
    """The smallest element holding every long paragraph that trafilatura kept."""
    hits = []
    for el in body.iter(*_PROBES):
        text = el.text_content()
        if len(_key(text)) >= 60 and covered(text) and not _inside_chrome(el, body):
            hits.append(el)
    if not hits:
        return None
    region = _common_ancestor(hits)
    while region.tag in _NOT_REGIONS and region is not body:
        region = region.getparent()
    return region


def _inside_chrome(el: etree._Element, stop: etree._Element, page: bool = True) -> bool:
    for node in (el, *el.iterancestors()):
        if node is stop:
            return False
        if _is_chrome(node, page):
            return True
    return False


def _common_ancestor(elements: list[etree._Element]) -> etree._Element:
    path = list(reversed([elements[0], *elements[0].iterancestors()]))
    for el in elements[1:]:
        lineage = set(map(id, (el, *el.iterancestors())))
        while id(path[-1]) not in lineage:
            path.pop()
    return path[-1]


def _fallback_region(body: etree._Element) -> etree._Element:
    mains = body.xpath(".//main | .//*[@role='main']")
    if len(mains) == 1:
        return mains[0]
    articles = body.xpath(".//article")
    return articles[0] if len(articles) == 1 else body


def _title_heading(region: etree._Element, body: etree._Element) -> str:
    """The article's <h1> when it sits just outside the content region (Wikipedia, blogs)."""
    if next(region.iter("h1"), None) is not None:
        return ""
    for ancestor in region.iterancestors():
        if ancestor is body:
            return ""
        for h1 in ancestor.iter("h1"):
            if not _inside_chrome(h1, ancestor, page=False):
                return clean_inline(_WS.sub(" ", h1.text_content()))
    return ""


def _is_chrome(el: etree._Element, page: bool) -> bool:
    """Navigation, banners, footers, sidebars, tables of contents, navboxes."""
    tag = el.tag
    if tag in _CHROME_TAGS:
        return True
    if tag == "header" and (page or next(el.iter(*_HEADINGS), None) is None):
        return True
    if el.get("role") in _CHROME_ROLES:
        return True
    tokens = (el.get("class") or "").lower().split()
    if el.get("id"):
        tokens.append(el.get("id").lower())
    return any(token in _CHROME_TOKENS or token.startswith(_CHROME_PREFIXES) for token in tokens)


# -- metadata -------------------------------------------------------------------------------------


def _read_metadata(root: etree._Element, builder: DocumentBuilder) -> None:
    metas: dict[str, str] = {}
    for meta in root.iter("meta"):
        key = (meta.get("name") or meta.get("property") or meta.get("itemprop") or "").lower()
        if key and meta.get("content") and key not in metas:
            metas[key] = clean_inline(meta.get("content"))
    found = {
        "description": _first(metas, "description", "og:description", "dc.description"),
        "author": _first(metas, "author", "article:author", "dc.creator", "dcterms.creator"),
        "date": _first(
            metas, "article:published_time", "date", "dc.date", "dcterms.date", "datepublished"
        )
        or _time_attribute(root),
        "lang": root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang") or "",
        "site_name": metas.get("og:site_name", ""),
    }
    for key, value in found.items():
        if value and not builder.metadata.get(key):
            builder.metadata[key] = value


def _first(metas: dict[str, str], *keys: str) -> str:
    return next((metas[key] for key in keys if metas.get(key)), "")


def _time_attribute(root: etree._Element) -> str:
    for el in root.xpath("//*[@itemprop='datePublished'] | //time[@datetime]"):
        value = el.get("datetime") or el.get("content") or el.text_content()
        if value and value.strip():
            return clean_inline(value)
    return ""


def _page_title(root: etree._Element, h1: str) -> str:
    """<title>, or og:title, or the first h1; a trailing " - Site" is cut when h1 shows it."""
    node = root.find(".//title")
    title = clean_inline(_WS.sub(" ", node.text_content())) if node is not None else ""
    title = title or root.xpath("string(//meta[@property='og:title']/@content)").strip() or h1
    if h1 and title != h1 and title.startswith(h1) and title[len(h1)] in _TITLE_SEPARATORS:
        return h1
    return title


# -- the walk -----------------------------------------------------------------------------------


def _text(
    el: etree._Element,
    defer: frozenset[str] = frozenset(),
    sink: list | None = None,
    br: str = "\n",
) -> str:
    """Text of an element with whitespace collapsed, <br> as `br`, and line breaks between
    blocks; elements whose tag is in `defer` are skipped and appended to `sink` instead."""
    return _clean_lines(_raw_text(el, defer, sink, br))


def _clean_lines(text: str) -> str:
    lines = (clean_inline(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _raw_text(el: etree._Element, defer: frozenset[str], sink: list | None, br: str) -> str:
    parts: list[str] = []

    def visit(node: etree._Element) -> None:
        if node.text:
            parts.append(_WS.sub(" ", node.text))
        for child in node:
            if isinstance(child.tag, str) and not _is_chrome(child, page=False):
                if child.tag in defer and sink is not None:
                    sink.append(child)
                elif child.tag == "br":
                    parts.append(br)
                elif child.tag in _LINE_BLOCKS:
                    parts.append("\n")
                    visit(child)
                    parts.append("\n")
                elif child.tag not in _SKIPPED:
                    visit(child)
            if child.tail:
                parts.append(_WS.sub(" ", child.tail))

    visit(el)
    return "".join(parts)


def _has_block(el: etree._Element) -> bool:
    return any(
        isinstance(d.tag, str) and d.tag not in _INLINE and d.tag not in _SKIPPED and d.tag != "br"
        for d in el.iterdescendants()
    )


class _Walker:
    """Feeds the builder block by block; `covered` filters paragraphs, items and headings."""

    def __init__(
        self, builder: DocumentBuilder, covered: Callable[[str], bool], page: bool
    ) -> None:
        self.builder = builder
        self.covered = covered
        self.page = page
        self.first_h1 = ""

    def container(self, el: etree._Element) -> None:
        run: list[str] = [_WS.sub(" ", el.text or "")]
        for child in el:
            if isinstance(child.tag, str) and not _is_chrome(child, self.page):
                if child.tag == "br":
                    run.append("\n")
                elif child.tag in _INLINE and not _has_block(child):
                    run.append(_raw_text(child, frozenset(), None, "\n"))
                elif child.tag not in _SKIPPED:
                    self._paragraph(run)
                    run = []
                    self._block(child)
            run.append(_WS.sub(" ", child.tail or ""))
        self._paragraph(run)

    def _paragraph(self, run: list[str]) -> None:
        text = _clean_lines("".join(run))
        if text and self.covered(text):
            self.builder.paragraph(text)

    def _block(self, el: etree._Element) -> None:
        tag = el.tag
        if tag in _HEADINGS:
            self._heading(el, _HEADINGS[tag])
        elif tag in ("ul", "ol"):
            self._list(el, 0)
        elif tag == "li":
            self._item(el, 0, "")
        elif tag == "pre":
            self._pre(el)
        elif tag == "table":
            self._table(el)
        elif tag == "figcaption":
            self.builder.paragraph(_text(el), kind="caption")
        else:
            self.container(el)

    def _heading(self, el: etree._Element, level: int) -> None:
        text = _text(el, br=" ")
        if level == 1 and not self.first_h1:
            self.first_h1 = text
        if text and (level == 1 or self.covered(text) or self._content_follows(el)):
            self.builder.heading(text, level)

    def _content_follows(self, heading: etree._Element) -> bool:
        """trafilatura drops some headings whose section it keeps (one right above a table):
        a heading stays when the first thing after it is kept content."""
        for sibling in heading.itersiblings():
            if not isinstance(sibling.tag, str) or _is_chrome(sibling, self.page):
                continue
            if sibling.tag in _HEADINGS:
                return False
            if sibling.tag == "table":
                return True
            text = _text(sibling, br=" ")
            if text:
                return self.covered(text[:300])
        return False

    def _list(self, el: etree._Element, level: int) -> None:
        number = _int(el.get("start"), 1) if el.tag == "ol" else 0
        for child in el:
            if not isinstance(child.tag, str) or _is_chrome(child, self.page):
                continue
            if child.tag == "li":
                self._item(child, level, f"{number}. " if number else "")
                number += 1 if number else 0
            elif child.tag in ("ul", "ol"):
                self._list(child, level + 1)
            elif child.tag not in _SKIPPED:
                self._block(child)

    def _item(self, el: etree._Element, level: int, prefix: str) -> None:
        deferred: list[etree._Element] = []
        text = _text(el, frozenset({"ul", "ol", "table", "pre"}), deferred)
        if text and self.covered(text):
            self.builder.list_item(prefix + text, level=level)
        for inner in deferred:
            self._list(inner, level + 1) if inner.tag in ("ul", "ol") else self._block(inner)

    def _pre(self, el: etree._Element) -> None:
        """Code keeps its lines; prose (a law published as one <pre>) is reflowed like a .txt."""
        raw = el.text_content().strip("\n")
        if not _marked_as_code(el):
            prose = prose_text(raw)
            if is_prose(prose):
                emit_plain_blocks(prose, self.builder, self._level_below())
                return
        text = "\n".join(line.rstrip() for line in raw.split("\n"))
        self.builder.paragraph(text, kind="code")

    def _level_below(self) -> int:
        """The level under the heading the walk is in: a <pre>'s pattern headings nest there."""
        sections = self.builder.sections
        return (sections[-1].level if sections else 0) + 1

    def _table(self, el: etree._Element) -> None:
        rows = el.xpath("./tr | ./thead/tr | ./tbody/tr | ./tfoot/tr")
        nested: list[etree._Element] = []
        grid, contents = _grid(rows, nested)
        caption = el.find("caption")
        if _is_layout(el, contents, grid):
            # Read as the page it lays out: caption and cells in reading order, as blocks.
            cells = el.xpath("./tr/* | ./thead/tr/* | ./tbody/tr/* | ./tfoot/tr/*")
            for part in ([caption] if caption is not None else []) + cells:
                self.container(part)
            return
        self.builder.table(grid, _text(caption, br=" ") if caption is not None else "")
        for inner in nested:
            self._table(inner)


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _marked_as_code(pre: etree._Element) -> bool:
    """The page says the <pre> is code: a <code> inside it, or a highlighter's class on it."""
    parent = pre.getparent()
    hints = " ".join(
        filter(None, [pre.get("class"), parent.get("class") if parent is not None else None])
    )
    return next(pre.iter("code"), None) is not None or bool(_CODE_HINT.search(hints))


def _is_layout(table: etree._Element, contents: list[CellContent], grid: Grid) -> bool:
    """A table that arranges a page rather than holding data (the rule all formats share).

    role="presentation" (or "none") is the author saying so, and only HTML has it. A one-row
    table is not layout by itself: its short cells ("Date | Place | Fee") are one record and
    read best on one line; one-row layouts are caught by the shared rule (a sidebar beside an
    article is a prose cell, an icon beside its text collapses to one column).
    """
    if table.get("role") in ("presentation", "none"):
        return True
    return is_layout(contents, grid.width)


def _grid(
    rows: list[etree._Element], nested: list[etree._Element]
) -> tuple[Grid, list[CellContent]]:
    """The table's cells placed on a grid (a spanning cell's text once, in its first slot), and
    what each cell holds (for the layout rule), from one reading of the cells."""
    declared: list[list[tuple[str, int, int]]] = []
    contents: list[CellContent] = []
    for index, tr in enumerate(rows):
        row: list[tuple[str, int, int]] = []
        for cell in tr.xpath("./td | ./th"):
            inner_before = len(nested)
            lines = _text(cell, frozenset({"table"}), nested).split("\n")
            inner = nested[inner_before:]
            contents.append(
                CellContent(
                    paragraphs=sum(1 for line in lines if line),
                    chars=sum(map(len, lines)) + sum(len(t.text_content().strip()) for t in inner),
                    has_heading=next(cell.iter(*_HEADINGS), None) is not None,
                    has_table=bool(inner),
                )
            )
            # Lines inside one cell (list items, <br>) stay apart without breaking the row.
            text = "; ".join(lines)
            colspan = min(max(_int(cell.get("colspan"), 1), 1), _MAX_COLSPAN)
            rowspan = _int(cell.get("rowspan"), 1)
            rowspan = len(rows) - index if rowspan == 0 else min(max(rowspan, 1), len(rows) - index)
            row.append((text, rowspan, colspan))
        declared.append(row)
    return build_grid(place(declared)), contents
