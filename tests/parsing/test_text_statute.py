"""Plain-text rules shared with preformatted HTML: US statute headings and numbered items."""

from __future__ import annotations

from pathlib import Path

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document

STATUTE = """\
Public Law 107-56

SEC. 2. CONSTRUCTION; SEVERABILITY.

Any provision of this Act held to be invalid or unenforceable by its
terms shall be deemed severable from this Act.

TITLE I--ENHANCING DOMESTIC SECURITY AGAINST TERRORISM

Sec. 101. Counterterrorism fund.
Sec. 102. Sense of Congress.

Subtitle A--Counterterrorism Fund

SEC. 101. COUNTERTERRORISM FUND.

(a) Establishment.--There is hereby established in the Treasury of
the Department of Justice a fund to reimburse costs incurred in
connection with--
(1) reestablishing the operational capability of an office or
facility that has been damaged;
(2) providing support to counter terrorism.

SEC. 102. SENSE OF CONGRESS CONDEMNING DISCRIMINATION AGAINST ARAB
AND MUSLIM AMERICANS.

It is the sense of Congress that the civil rights of all Americans
must be protected.

TITLE II--ENHANCED SURVEILLANCE PROCEDURES

SEC. 201. AUTHORITY TO INTERCEPT WIRE, ORAL, AND ELECTRONIC
COMMUNICATIONS RELATING TO TERRORISM.

Section 2516(1) of title 18, United States Code, is amended.
"""


def _parse_text(tmp_path: Path, text: str, name: str = "law.txt") -> Document:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    outcome = parse_file(path, ParseOptions())
    assert outcome.document is not None, outcome.error
    return outcome.document


def test_statute_headings_nest_title_subtitle_section(tmp_path: Path) -> None:
    document = _parse_text(tmp_path, STATUTE)
    headings = [(b.level, b.text) for b in document.blocks if b.kind == "heading"]
    assert headings == [
        (1, "Public Law 107-56"),  # the file's title line
        (4, "SEC. 2. CONSTRUCTION; SEVERABILITY."),
        (2, "TITLE I--ENHANCING DOMESTIC SECURITY AGAINST TERRORISM"),
        (3, "Subtitle A--Counterterrorism Fund"),
        (4, "SEC. 101. COUNTERTERRORISM FUND."),
        (4, "SEC. 102. SENSE OF CONGRESS CONDEMNING DISCRIMINATION AGAINST ARAB AND MUSLIM"
         " AMERICANS."),
        (2, "TITLE II--ENHANCED SURVEILLANCE PROCEDURES"),
        (4, "SEC. 201. AUTHORITY TO INTERCEPT WIRE, ORAL, AND ELECTRONIC COMMUNICATIONS RELATING"
         " TO TERRORISM."),
    ]  # fmt: skip
    # the table of contents lines are not headings
    assert any(b.text.startswith("Sec. 101. Counterterrorism fund.") for b in document.blocks)


def test_numbered_items_keep_their_numbers_bullets_do_not(tmp_path: Path) -> None:
    document = _parse_text(tmp_path, STATUTE)
    items = [b.text for b in document.blocks if b.kind == "list_item"]
    assert items == [
        "(1) reestablishing the operational capability of an office or facility that has been"
        " damaged;",
        "(2) providing support to counter terrorism.",
    ]
    text = (
        "Required papers\n\n- a passport\n- a photo\n\n"
        "1. Apply online\n2. Pay the fee\n\n가. 신청서\n나. 사진\n"
    )
    document = _parse_text(tmp_path, text, "list.txt")
    items = [b.text for b in document.blocks if b.kind == "list_item"]
    assert items == [
        "a passport", "a photo", "1. Apply online", "2. Pay the fee", "가. 신청서", "나. 사진",
    ]  # fmt: skip


def test_lowercase_or_sentence_lines_after_a_heading_are_not_part_of_it(tmp_path: Path) -> None:
    text = (
        "SEC. 5. DEFINITIONS\n"
        "In this Act the term Secretary means the Secretary of the Treasury.\n\n"
        "CHAPTER I\n"
        "THE END OF THE WAR\n"
    )
    document = _parse_text(tmp_path, text)
    headings = [b.text for b in document.blocks if b.kind == "heading"]
    assert "SEC. 5. DEFINITIONS" in headings and "CHAPTER I" in headings
    assert not any("Secretary" in heading or "WAR" in heading for heading in headings)
