"""HTML parsing on the real corpus pages and on small pages written here for one behaviour each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document


def _parse(path: Path) -> Document:
    outcome = parse_file(path, ParseOptions())
    assert outcome.document is not None, outcome.error
    return outcome.document


def _write(tmp_path: Path, data: bytes | str, name: str = "page.html") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _headings(document: Document) -> list[tuple[int, str]]:
    return [(block.level, block.text) for block in document.blocks if block.kind == "heading"]


# -- corpus pages -------------------------------------------------------------------------------


def test_cp1252_page_without_charset_keeps_euro_signs_and_accents(corpus: Path) -> None:
    document = _parse(corpus / "edge-cp1252-encoded-multilingual.html")
    assert document.metadata["encoding"] == "cp1252"
    assert "Der Preis betrug 15,50 €." in document.text
    assert "L'été était très chaud cette année." in document.text
    # å and ñ come out wrong under cp1250, the near-tie a detector may pick for short text.
    assert "Kvinnan åt köttbullar med lingonsylt." in document.text
    assert "El niño comió paella con ñoquis." in document.text
    assert (1, "My First Heading") in _headings(document)
    assert "\ufffd" not in document.text


def test_mdn_fragment_table_comes_out_whole_and_front_matter_is_metadata(corpus: Path) -> None:
    path = corpus / "kr-mdn-http-mime-types-table.html"
    raw = path.read_text(encoding="utf-8")
    document = _parse(path)

    assert document.title == "MIME 타입의 전체 목록"
    assert document.metadata["slug"] == "Web/HTTP/Basics_of_HTTP/MIME_types/Common_types"
    assert "slug:" not in document.text and "title:" not in document.text
    assert "{{" not in document.text  # the KumaScript sidebar macro is not content
    assert document.language == "ko"

    assert len(document.tables) == 1
    rows = document.tables[0].rows
    assert len(rows) == raw.count("<tr")  # every <tr> of the file, header included
    assert rows[0] == ["확장자", "문서 종류", "MIME 타입"]
    assert [".avi", "AVI: Audio Video Interleave", "video/x-msvideo"] in rows
    assert [".azw", "아마존 킨들 전자책 포맷", "application/vnd.amazon.ebook"] in rows
    # The .js row lacks its </tr>: it must not swallow the .json row that follows it.
    first_cells = [row[0] for row in rows]
    js = first_cells.index(".js")
    assert rows[js][2].startswith("text/javascript")
    assert first_cells[js + 1] == ".json" and rows[js + 1][1] == "JSON 포맷"
    assert first_cells[-1] == ".7z"
    assert "다음은 일반적인 확장자로 정렬된" in document.text


def test_wikipedia_duck_article_without_navigation(corpus: Path) -> None:
    document = _parse(corpus / "wikipedia-duck-full-page.html")
    assert document.title == "Duck"
    paragraphs = [block.text for block in document.blocks if block.kind == "paragraph"]
    assert paragraphs[0].startswith(
        "Duck is the common name for numerous species of waterfowl in the family Anatidae."
    )
    headings = _headings(document)
    assert (1, "Duck") in headings
    assert (2, "Etymology") in headings and (3, "Feeding") in headings
    for chrome in ("Jump to content", "Main page", "Navigation menu", "Privacy policy",
                   "Authority control", "[edit]", "Toggle the table of contents"):  # fmt: skip
        assert chrome not in document.text, chrome
    infobox = document.tables[0].rows
    assert ["Kingdom:", "Animalia"] in infobox and ["Family:", "Anatidae"] in infobox


def test_wikipedia_mozilla_keeps_the_infobox_and_drops_navboxes(corpus: Path) -> None:
    """The page has 11 <table> elements: the infobox (facts: founded, founder, products), a
    one-row "Wikimedia Commons has media" link box, and 9 navbox tables (2 navboxes with 7
    nested sub-groups) that list links to other articles. Only the infobox holds content."""
    path = corpus / "wikipedia-mozilla-full-page.html"
    assert path.read_text(encoding="utf-8").count("<table") == 11
    document = _parse(path)
    assert len(document.tables) == 1
    assert ["Founded", "February 28, 1998"] in document.tables[0].rows
    assert document.tables[0].caption == "Mozilla"
    assert (
        "Mozilla is a free-software community, created in 1998 by members of Netscape."
        in document.text
    )
    assert "Wikimedia Commons has media related to Mozilla" not in document.text
    assert "Free and open-source software" not in document.text  # a navbox title
    assert (2, "History") in _headings(document)


def test_v8_blog_code_blocks_are_whole(corpus: Path) -> None:
    document = _parse(corpus / "v8-blog-standalone-wasm-emscripten.html")
    assert document.title == "Outside the web: standalone WebAssembly binaries using Emscripten"
    assert document.metadata["date"] == "2019-11-21"
    assert document.metadata["description"].startswith("Emscripten now supports standalone Wasm")
    code = [block.text for block in document.blocks if block.kind == "code"]
    assert (
        "// add.c\n#include <emscripten.h>\n\nEMSCRIPTEN_KEEPALIVE\n"
        "int add(int x, int y) {\n  return x + y;\n}"
    ) in code
    assert "emcc -O3 add.c -o add.wasm" in code
    headings = _headings(document)
    assert (2, "Using standalone mode in Emscripten") in headings  # the "#" self-link is gone
    assert "Show navigation" not in document.text
    assert not any(block.text == "Research" for block in document.blocks)


# -- small pages, one behaviour each ------------------------------------------------------------


def test_spanning_cells_are_written_once_and_nested_tables_kept_apart(tmp_path: Path) -> None:
    page = """<html><body><article>
    <h1>Budget 2024</h1>
    <p>The council approved the following allocation of funds for the fiscal year, by programme
    and quarter, after the second reading of the budget ordinance in March.</p>
    <table>
      <tr><th rowspan="2">Programme</th><th colspan="2">Funding</th></tr>
      <tr><th>Q1</th><th>Q2</th></tr>
      <tr><td>Parks</td><td>10</td><td>12<table><tr><td>detail a</td><td>detail b</td></tr>
          <tr><td>1</td><td>2</td></tr></table></td></tr>
    </table>
    </article></body></html>"""
    document = _parse(_write(tmp_path, page))
    assert document.tables[0].rows == [
        ["Programme", "Funding", ""],
        ["", "Q1", "Q2"],
        ["Parks", "10", "12"],
    ]
    assert sorted(document.tables[0].spans) == [(0, 0, 2, 1), (0, 1, 1, 2)]
    assert document.tables[1].rows == [["detail a", "detail b"], ["1", "2"]]


def test_fragment_without_article_falls_back_to_body_minus_chrome(tmp_path: Path) -> None:
    page = """<nav><a href="/">Home</a><a href="/about">About us</a></nav>
    <header><p>Site banner text</p></header>
    <div><h2>Opening hours</h2><ul><li>Monday: 9-18</li><li>Sunday: closed</li></ul>
    <pre><code>GET /hours HTTP/1.1</code></pre></div>
    <footer>Copyright the city library</footer>"""
    document = _parse(_write(tmp_path, page))
    assert (2, "Opening hours") in _headings(document)
    items = [block.text for block in document.blocks if block.kind == "list_item"]
    assert items == ["Monday: 9-18", "Sunday: closed"]
    assert [b.text for b in document.blocks if b.kind == "code"] == ["GET /hours HTTP/1.1"]
    for chrome in ("About us", "Site banner text", "Copyright the city library"):
        assert chrome not in document.text


def test_entities_are_never_expanded_or_fetched(tmp_path: Path) -> None:
    page = (
        '<!DOCTYPE html [<!ENTITY a "AAAAAAAAAA"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<html><body><p>Safe &b; text &x; here, with a real entity: caf&eacute;.</p></body></html>"
    )
    document = _parse(_write(tmp_path, page))
    assert "AAAAAAAAAA" not in document.text
    assert "root:" not in document.text
    assert "café" in document.text


def test_meta_charset_and_bom_decide_the_encoding(tmp_path: Path) -> None:
    # So short a KOI8-R text is ambiguous to detection; the declared charset settles it.
    russian = "<html><head><meta charset='koi8-r'></head><body><p>Комитет по информатизации</p>"
    document = _parse(_write(tmp_path, russian.encode("koi8-r"), "ru.html"))
    assert document.metadata["encoding"] == "koi8-r"
    assert "Комитет по информатизации" in document.text

    utf16 = "<html><body><p>Ünïcödé in UTF-16 with a byte order mark</p></body></html>"
    document = _parse(_write(tmp_path, utf16.encode("utf-16"), "u16.html"))
    assert "Ünïcödé in UTF-16 with a byte order mark" in document.text


def test_page_with_no_text_is_one_clear_error(tmp_path: Path) -> None:
    outcome = parse_file(
        _write(tmp_path, "<html><body>  <img src='x.png'>  </body></html>"), ParseOptions()
    )
    assert outcome.document is None
    assert outcome.error is not None and re.match(r"page\.html: ", outcome.error)


@pytest.mark.parametrize("markup", ["   \n  ", "\x00\x00\x00binary"])
def test_blank_or_binary_html_fails_with_one_line(tmp_path: Path, markup: str) -> None:
    outcome = parse_file(_write(tmp_path, markup), ParseOptions())
    assert outcome.document is None
    assert outcome.error and "\n" not in outcome.error and "Traceback" not in outcome.error


# -- preformatted prose (issue 7, item 4) --------------------------------------------------------

DATA = Path(__file__).resolve().parents[1] / "data" / "html"


def test_statute_published_as_one_pre_reads_as_headings_and_paragraphs() -> None:
    document = _parse(DATA / "public-law-statute-pre.html")
    levels = {text: level for level, text in _headings(document)}
    title = "TITLE I--ENHANCING DOMESTIC SECURITY AGAINST TERRORISM"
    sections = [
        "SECTION 1. SHORT TITLE AND TABLE OF CONTENTS.",
        "SEC. 2. CONSTRUCTION; SEVERABILITY.",
        "SEC. 101. COUNTERTERRORISM FUND.",
        "SEC. 102. SENSE OF CONGRESS CONDEMNING DISCRIMINATION AGAINST ARAB AND MUSLIM AMERICANS.",
        "SEC. 103. INCREASED FUNDING FOR THE TECHNICAL SUPPORT CENTER AT THE FEDERAL BUREAU OF"
        " INVESTIGATION.",
        "SEC. 104. REQUESTS FOR MILITARY ASSISTANCE TO ENFORCE PROHIBITION IN CERTAIN EMERGENCIES.",
    ]
    assert title in levels and all(section in levels for section in sections), levels
    assert all(levels[title] < levels[section] for section in sections)
    for furniture in ("[[Page", "STAT. 27", "NOTE:", "<<", ">>", "[DOCID", "<all>", "``", "---"):
        assert furniture not in document.text, furniture
    assert not [block for block in document.blocks if block.kind == "code"]

    prose = [b.text for b in document.blocks if b.kind in ("paragraph", "list_item")]
    assert all("\n" not in text for text in prose)
    assert (
        "(a) Establishment; Availability of Funds.--There is hereby established in the Treasury"
        " of the Department of Justice, without limitation as to any fiscal year, a fund to be"
        " known as the “Counterterrorism Fund” to remain available"
    ) in prose[prose.index(next(p for p in prose if p.startswith("(a) Establishment")))]
    # a page break inside a sentence is gone without a trace; the items keep their numbers
    assert (
        "(2) providing support to counter, investigate, or prosecute domestic or international"
        " terrorism, including, without limitation, paying rewards in connection with these"
        " activities;"
    ) in prose
    assert "(4) refunding to the general fund of the Treasury any moneys deposited into the" in (
        document.text
    )
    assert "There are authorized to be appropriated for the Technical Support Center" in (
        document.text
    )
    assert max(len(text) for text in prose) < 800


def test_code_pre_beside_prose_pre_stays_code(tmp_path: Path) -> None:
    python = (DATA / "pre" / "code-python-stdlib-dedent.txt").read_text(encoding="utf-8")
    korean = (DATA / "pre" / "prose-ko-constitution.txt").read_text(encoding="utf-8")
    escaped = python.replace("&", "&amp;").replace("<", "&lt;")
    page = f"<html><body><h1>Notes</h1><pre>{korean}</pre><pre>{escaped}</pre></body></html>"
    document = _parse(_write(tmp_path, page))
    code = [block.text for block in document.blocks if block.kind == "code"]
    assert code == [python.strip("\n")]
    assert (2, "제2장 국민의 권리와 의무") in _headings(document)
    articles = [b.text for b in document.blocks if b.text.startswith("제10조")]
    assert articles and articles[0].startswith("제10조 모든 국민은 인간으로서의 존엄과 가치를")


def test_a_heading_whose_content_is_kept_is_kept(tmp_path: Path, data_dir: Path) -> None:
    # trafilatura drops the <h2> right above a table (and above a layout table's article);
    # the section's content is kept, so its heading is too. A heading over dropped chrome is not.
    document = _parse(data_dir / "chunking" / "oversized-tables.html")
    assert [text for _, text in _headings(document)] == ["Housing subsidy", "The rules in full", "신청서 양식"]
    page = (
        "<html><body><nav><h2>Site menu</h2><ul><li><a href='/'>Home</a></li><li><a href='/a'>About</a></li></ul></nav>"
        "<main><h1>Permit fees</h1>" + "<p>The permit fee rules of the city apply to every applicant. </p>" * 6
        + "<h2>Fee table</h2><table><tr><th>Permit</th><th>Fee</th></tr><tr><td>Residential</td><td>$10</td></tr>"
        "<tr><td>Commercial</td><td>$50</td></tr></table></main></body></html>"
    )
    headings = [text for _, text in _headings(_parse(_write(tmp_path, page)))]
    assert "Fee table" in headings and "Site menu" not in headings
