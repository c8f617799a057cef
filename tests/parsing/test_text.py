"""Plain text and Markdown parsing: real corpus files, plus small inputs for single behaviours."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.parsing.text import decode_text, repair_mojibake
from slm_factory.records import Document


def _parse(path: Path) -> Document:
    outcome = parse_file(path, ParseOptions())
    assert outcome.document is not None, outcome.error
    return outcome.document


def _write(tmp_path: Path, data: bytes | str, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _headings(document: Document) -> list[tuple[int, str]]:
    return [(block.level, block.text) for block in document.blocks if block.kind == "heading"]


# -- plain text from the corpus --------------------------------------------------------------------


def test_utf16_with_bom(corpus: Path) -> None:
    document = _parse(corpus / "edge-utf16-with-bom.txt")
    assert document.metadata["encoding"] == "utf-16-le"
    assert document.blocks[0].text == "This is a test document to use for unit tests."
    items = [block.text for block in document.blocks if block.kind == "list_item"]
    assert items == ["Hamburgers are delicious", "Dogs are the best", "I love fuzzy blankets"]


def test_mojibake_is_repaired_and_reported(corpus: Path) -> None:
    outcome = parse_file(corpus / "edge-mojibake-wikipedia-iwan-roberts.txt", ParseOptions())
    document = outcome.document
    assert document is not None
    assert any("mojibake" in warning for warning in outcome.warnings)
    assert "1986–1990 Watford 63 (9)" in document.text  # an en dash again
    assert "for £275,000" in document.text
    assert "â" not in document.text and "Â" not in document.text
    assert not re.search("[\u0080-\u009f]", document.text)  # no C1 control characters left
    assert document.title == "Iwan Roberts"


def test_constitution_articles_and_chapters(corpus: Path) -> None:
    path = corpus / "kr-constitution-of-the-republic-of-korea.txt"
    source = path.read_text(encoding="utf-8")
    document = _parse(path)
    assert document.title == "대한민국헌법"
    assert document.language == "ko"

    chapters = [text for level, text in _headings(document) if re.match(r"제\d+장", text)]
    assert len(chapters) == len(re.findall(r"(?m)^\s*제\d+장", source))
    assert chapters[0] == "제1장 총강" and chapters[-1] == "제10장 헌법개정"
    assert (3, "제1절 대통령") in _headings(document)  # a section sits below its chapter

    # One block per article; the numbered paragraphs of an article stay inside it.
    articles = [block.text for block in document.blocks if re.match(r"제\d+조", block.text)]
    assert len(articles) == len(re.findall(r"(?m)^\s*제\d+조", source))
    assert articles[0] == (
        "제1조 ① 대한민국은 민주공화국이다.\n"
        "②대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."
    )


def test_war_and_peace_books_and_chapters(corpus: Path) -> None:
    path = corpus / "en-tolstoy-war-and-peace-full.txt"
    source = path.read_text(encoding="utf-8")
    started = time.perf_counter()
    document = _parse(path)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"3.2 MB of text took {elapsed:.1f} s"

    assert document.title == path.stem  # no title line; "CHAPTER I" is not the book's name
    headings = _headings(document)
    books = [text for level, text in headings if level == 1]
    chapters = [text for level, text in headings if level == 2]
    assert books[0] == "BOOK TWO: 1805" and books[-2:] == [
        "FIRST EPILOGUE: 1813 - 20",
        "SECOND EPILOGUE",
    ]
    assert len(books) == len(re.findall(r"(?m)^(?:BOOK [A-Z]+:|[A-Z]+ EPILOGUE)", source))
    assert len(chapters) == len(re.findall(r"(?m)^CHAPTER [IVXLC]+\s*$", source))
    # Hard-wrapped lines are joined back into their paragraph.
    assert any(
        block.text.startswith(
            "It was in July, 1805, and the speaker was the well-known Anna Pavlovna Scherer,"
        )
        for block in document.blocks
    )


# -- Markdown from the corpus ----------------------------------------------------------------------


def test_react_mdx_page(corpus: Path) -> None:
    path = corpus / "kr-react-docs-thinking-in-react.md"
    source = path.read_text(encoding="utf-8")
    document = _parse(path)
    assert document.title == "React로 사고하기"
    assert "title: React로 사고하기" not in document.text
    headings = _headings(document)
    assert (2, "Step 1: UI를 컴포넌트 계층으로 쪼개기") in headings  # no {/*anchor*/} left
    assert (4, "Props vs State") in headings
    for markup in ("<Intro>", "</Intro>", "<Sandpack>", "<img", "{/*"):
        assert markup not in document.text.replace("<tr>", "")
    # The text inside <Intro> stays; every fenced block stays whole.
    assert document.blocks[0].text.startswith("React를 사용하면 우리가 고려하고 있는 디자인이나")
    code = [block.text for block in document.blocks if block.kind == "code"]
    assert len(code) == len(re.findall(r"(?m)^```", source)) // 2
    assert any(
        text.startswith("function ProductCategoryRow({ category }) {\n  return (") for text in code
    )
    items = [block.text for block in document.blocks if block.kind == "list_item"]
    assert "2. SearchBar(파란색): 사용자의 입력을 받습니다." in items


def test_18f_guide_headings_and_front_matter(corpus: Path) -> None:
    document = _parse(corpus / "us-18f-content-guide-urls-and-filenames.md")
    assert document.title == "URLs and filenames"
    assert document.metadata["permalink"] == "/our-style/urls-and-filenames/"
    assert "#creating-urls" not in document.text  # the sub-navigation list is not content
    headings = _headings(document)
    assert headings[:3] == [(2, "Creating URLs"), (3, "Domains"), (3, "Paths")]
    assert (4, "Domain names") in headings and (2, "Additional resources") in headings
    items = [block for block in document.blocks if block.kind == "list_item"]
    assert any(
        item.text.startswith("Slight improvement: longnamecreationservice")
        and "\nRationale: www is unnecessary" in item.text
        for item in items
    )


# -- small inputs ----------------------------------------------------------------------------------


def test_markdown_tables_setext_headings_and_nested_lists(tmp_path: Path) -> None:
    text = """Budget
======

| Item | 2023 | 2024 |
|------|-----:|-----:|
| Parks | 10 | 12 |
| Roads | 7 | 9 |

- top
  - inner
    1. deep
"""
    document = _parse(_write(tmp_path, text, "notes.md"))
    assert _headings(document) == [(1, "Budget")]
    assert document.tables[0].rows == [
        ["Item", "2023", "2024"],
        ["Parks", "10", "12"],
        ["Roads", "7", "9"],
    ]
    items = [(block.level, block.text) for block in document.blocks if block.kind == "list_item"]
    assert items == [(0, "top"), (1, "inner"), (2, "1. deep")]


def test_korean_legacy_encoding_and_western_fallback() -> None:
    korean = "제1조 대한민국은 민주공화국이다.".encode("cp949")
    assert decode_text(korean).text == "제1조 대한민국은 민주공화국이다."
    assert decode_text(korean).encoding == "cp949"
    western = "Prix : 15,50 € — déjà payé".encode("cp1252")
    assert decode_text(western).text == "Prix : 15,50 € — déjà payé"


def test_repair_leaves_clean_text_alone() -> None:
    clean = "Déjà vu – 15 € · naïve café, 대한민국"
    assert repair_mojibake(clean) == (clean, 0)
    broken = clean.encode("utf-8").decode("cp1252")
    assert repair_mojibake(broken) == (clean, sum(ord(char) > 127 for char in clean))


@pytest.mark.parametrize("data", [b"\x00\x01\x02\x03binary\x00\xff" * 50, b"   \n\n  "])
def test_binary_or_empty_text_fails_with_one_line(tmp_path: Path, data: bytes) -> None:
    outcome = parse_file(_write(tmp_path, data, "notes.txt"), ParseOptions())
    assert outcome.document is None
    assert outcome.error and outcome.error.startswith("notes.txt: ") and "\n" not in outcome.error


def test_double_spaced_korean_bill_is_reflowed(corpus: Path) -> None:
    """Pulled out of a PDF with a blank line after every line, wrapped mid-word ("필요" / "한 나이");
    the file keeps a trailing space where a wrap falls between words ("할 " / "수 있는")."""
    document = _parse(corpus / "kr-bill-1809890-local-public-officials-act-amendment.txt")
    paragraphs = [block.text for block in document.blocks if block.kind == "paragraph"]
    assert any(
        text.startswith("초등학교 저학년의 경우에도 부모의 따뜻한 사랑과 보살핌이 필요한 나이이나, 현재 공무원이")
        and "육아휴직을 할 수 있는 자녀의 나이는" in text
        and text.endswith("개정하려는 것임(안 제63조제2항제4호).")
        for text in paragraphs
    )
    assert "대체고용인력자에게 지급하는 월 급여액을 추정하여 보자." in document.text
    assert ("heading", "부 칙") in [(block.kind, block.text) for block in document.blocks]
    assert not any(re.fullmatch(r"\d+ -", block.text) for block in document.blocks)  # "- 3 -" page numbers


def test_double_spacing_and_word_wraps_need_evidence(tmp_path: Path) -> None:
    prose = "\n\n".join(["The committee met on Monday and", "agreed on the budget for the", "coming year."] * 4)
    english = _parse(_write(tmp_path, prose + "\n\n\n" + "\n\n".join(["A second paragraph that", "ends here."] * 2), "a.txt"))
    texts = [block.text for block in english.blocks]
    assert texts[0].startswith("The committee met on Monday and agreed on the budget for the coming year.")
    assert len(texts) == 2 and texts[1].startswith("A second paragraph that ends here.")
    # no trailing spaces anywhere: no evidence of how wraps were made, so a wrap stays a space
    korean = "\n".join(["위원회는 월요일에 회의를 열고 다음 해의 예산과", "인력 계획에 합의하였으며 그 결과를 공개하였다"] * 8)
    glued = _parse(_write(tmp_path, korean, "k.txt")).text
    assert "예산과 인력" in glued and "예산과인력" not in glued
