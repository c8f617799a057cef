"""Prose or code in a <pre>, and statute print furniture, on real snippets and texts built here."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from lxml import html as lxml_html

from slm_factory.parsing.preformatted import (
    MIN_WORD_SHARE,
    is_prose,
    measure,
    prose_text,
    separate_indented_paragraphs,
)

PRE = Path(__file__).resolve().parents[1] / "data" / "html" / "pre"
STATUTE_PAGE = PRE.parent / "public-law-statute-pre.html"
CODE = sorted(PRE.glob("code-*.txt"))
PROSE = sorted(PRE.glob("prose-*.txt"))


def _statute_pre() -> str:
    root = lxml_html.fromstring(STATUTE_PAGE.read_bytes())
    return root.find(".//pre").text_content()


def test_the_samples_are_there() -> None:
    assert len(CODE) >= 10 and len(PROSE) >= 5


@pytest.mark.parametrize("path", CODE, ids=lambda p: p.stem)
def test_code_data_and_fixed_width_tables_are_not_prose(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not is_prose(text), measure(text)
    # the cleaning done before the reflow does not turn code into prose either
    assert not is_prose(prose_text(text)), measure(prose_text(text))


@pytest.mark.parametrize("path", PROSE, ids=lambda p: p.stem)
def test_prose_in_english_and_korean_is_prose(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert is_prose(text), measure(text)


def test_statute_text_is_prose_with_its_markers_and_notes() -> None:
    raw = _statute_pre()
    assert "[[Page 115 STAT. 272]]" in raw and "<<NOTE:" in raw
    assert is_prose(raw), measure(raw)
    assert is_prose(prose_text(raw))


@pytest.mark.parametrize("width", [30, 45, 60, 72, 100, 140])
@pytest.mark.parametrize("path", PROSE, ids=lambda p: p.stem)
def test_prose_stays_prose_at_any_wrap_width_and_indent(path: Path, width: int) -> None:
    paragraphs = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
    rewrapped = "\n\n".join(
        textwrap.fill(" ".join(p.split()), width, initial_indent="    ") for p in paragraphs
    )
    assert is_prose(rewrapped), (width, measure(rewrapped))


@pytest.mark.parametrize("path", CODE, ids=lambda p: p.stem)
def test_code_stays_code_reindented_with_tabs(path: Path) -> None:
    text = re.sub(r"(?m)^ {4}", "\t", path.read_text(encoding="utf-8"))
    assert not is_prose(text)


def test_prose_with_code_mixed_in_falls_below_the_threshold() -> None:
    """The rule is a share: a third of code lines in prose is enough to keep it preformatted."""
    prose = (PRE / "prose-en-novel.txt").read_text(encoding="utf-8").split("\n")[:12]
    code = (PRE / "code-js-async.txt").read_text(encoding="utf-8").split("\n")[:10]
    mixed = "\n".join(prose + code)
    assert measure(mixed).word_share < MIN_WORD_SHARE
    assert not is_prose(mixed)


def test_v8_blog_code_is_code_without_its_markup(corpus: Path) -> None:
    """Every <pre> of the corpus's V8 blog post, read as bare text (no <code>, no class)."""
    root = lxml_html.fromstring((corpus / "v8-blog-standalone-wasm-emscripten.html").read_bytes())
    blocks = [pre.text_content().strip("\n") for pre in root.iter("pre")]
    assert len(blocks) >= 5
    for block in blocks:
        assert not is_prose(block), (block[:80], measure(block))


# -- print furniture -------------------------------------------------------------------------


def test_page_markers_notes_and_file_furniture_are_gone() -> None:
    cleaned = prose_text(_statute_pre())
    for furniture in ("[[Page", "STAT. 27", "<<NOTE", "NOTE:", ">>", "[DOCID", "<all>", "-----"):
        assert furniture not in cleaned, furniture
    # a note inside a heading leaves the heading whole
    assert "SEC. 2. CONSTRUCTION; SEVERABILITY." in cleaned
    assert "\nSECTION 1. SHORT TITLE AND TABLE OF \nCONTENTS." in cleaned
    assert "    There are authorized to be \n" in cleaned
    assert "“Counterterrorism Fund”" in cleaned and "``" not in cleaned


def test_a_page_break_mid_sentence_is_joined_and_one_after_a_sentence_kept() -> None:
    text = (
        "    (a) In General.--The Secretary shall, not later than 90 days \n"
        "after the date of enactment of this Act, submit a report to the \n"
        "\n[[Page 115 STAT. 300]]\n\n"
        "Committee on the Judiciary of the Senate.\n"
        "\n[[Page 115 STAT. 301]]\n\n"
        "    (b) Contents.--The report shall describe the use of funds.\n"
    )
    cleaned = prose_text(text)
    assert "submit a report to the \nCommittee on the Judiciary" in cleaned
    assert "of the Senate.\n\n    (b) Contents." in cleaned


def test_indented_paragraphs_are_set_apart_and_continuations_are_not() -> None:
    text = (
        "    (a) Findings.--Congress makes the following findings, which are\n"
        "set out here:\n"
        "            (1) Arab Americans, Muslim Americans, and Americans from \n"
        "        South Asia play a vital role in our Nation.\n"
        "            (2) The acts of violence should be and are condemned by all \n"
        "        Americans who value freedom.\n"
        "    (b) Sense of Congress.--It is the sense of Congress that the\n"
        "civil rights of all Americans must be protected.\n"
        "\n"
        "SEC. 102. SENSE OF CONGRESS CONDEMNING DISCRIMINATION AGAINST ARAB \n"
        "              AND MUSLIM AMERICANS.\n"
        "\n"
        " To deter and punish terrorist acts in the United States and around the \n"
        "     world, and for other \n"
        "                   purposes.\n"
    )
    blocks = [
        " ".join(block.split()) for block in separate_indented_paragraphs(text).split("\n\n")
    ]
    assert blocks == [
        "(a) Findings.--Congress makes the following findings, which are set out here:",
        "(1) Arab Americans, Muslim Americans, and Americans from South Asia play a vital role"
        " in our Nation.",
        "(2) The acts of violence should be and are condemned by all Americans who value freedom.",
        "(b) Sense of Congress.--It is the sense of Congress that the civil rights of all"
        " Americans must be protected.",
        "SEC. 102. SENSE OF CONGRESS CONDEMNING DISCRIMINATION AGAINST ARAB AND MUSLIM AMERICANS.",
        "To deter and punish terrorist acts in the United States and around the world, and for"
        " other purposes.",
    ]
