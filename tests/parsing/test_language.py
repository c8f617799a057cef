"""guess_language on samples cut from the corpus documents."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from slm_factory.parsing.language import guess_language


def _lines(path: Path, encoding: str = "utf-8") -> list[str]:
    return [
        line.strip() for line in path.read_bytes().decode(encoding).splitlines() if line.strip()
    ]


def test_korean_statute(corpus: Path) -> None:
    article = next(
        line
        for line in _lines(corpus / "kr-constitution-of-the-republic-of-korea.txt")
        if line.startswith("제1조")
    )
    assert guess_language(article) == "ko"


def test_korean_page_full_of_latin_terms(corpus: Path) -> None:
    """The MDN table is mostly MIME types in Latin letters; its prose and labels are Korean."""
    raw = (corpus / "kr-mdn-http-mime-types-table.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", raw.split("---", 2)[2])
    assert guess_language(text) == "ko"


def test_english_novel(corpus: Path) -> None:
    text = (corpus / "en-tolstoy-war-and-peace-full.txt").read_text(encoding="utf-8")[:5000]
    assert guess_language(text) == "en"


def test_german_sentence(corpus: Path) -> None:
    german = next(
        line
        for line in _lines(corpus / "edge-cp1252-encoded-multilingual.html", "cp1252")
        if line.startswith("Die schöne Frau")
    )
    assert guess_language(german) == "de"


def test_german_lecture_notes_with_maths(corpus: Path) -> None:
    """Variables such as x and y must not read as the Spanish word "y"."""
    pymupdf = pytest.importorskip("pymupdf")
    with pymupdf.open(corpus / "de-geometrie-und-topologie-lecture-notes.pdf") as pdf:
        page = pdf[30].get_text()
    assert "Mannigfaltigkeit" in page
    assert guess_language(page) == "de"


def test_russian_contract(corpus: Path) -> None:
    with zipfile.ZipFile(corpus / "ru-spb-state-contract-it-committee-2016.docx") as docx:
        xml = docx.read("word/document.xml").decode("utf-8")
    text = " ".join(re.findall(r"<w:t[^>]*>([^<]*)</w:t>", xml))
    assert "Комитет по информатизации и связи" in text
    assert guess_language(text) == "ru"


def test_chinese() -> None:
    # The corpus's only Chinese document is a scan without a text layer, so this sample is
    # written here: the kind of heading that scan carries (a customs penalty decision).
    text = (
        "中华人民共和国常州海关行政处罚决定书。当事人违反海关监管规定，本关依法作出如下处罚决定。"
    )
    assert guess_language(text) == "zh"


@pytest.mark.parametrize("text", ["", "   \n\t ", "2024-05-07 12:00 | 3.14 + 42"])
def test_no_letters_means_no_language(text: str) -> None:
    assert guess_language(text) == ""
