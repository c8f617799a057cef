"""Hangul line wraps: left in the text by the PDF parser, decided by Kiwi (the real model)."""

from __future__ import annotations

from slm_factory.parsing import korean
from slm_factory.parsing.korean import WRAP
from slm_factory.records import Block, Document, Section


def test_windows_are_the_word_pieces_around_each_wrap() -> None:
    text = f"회의의 남은{WRAP}기간에 각각회{WRAP}부하고자 합니다"
    assert korean.windows(text) == [("남은", "기간에"), ("각각회", "부하고자")]
    assert korean.windows("no wraps here") == []


def test_kiwi_puts_a_space_between_words_and_none_inside_one() -> None:
    joins = korean.decide([("남은", "기간에"), ("탄소중", "립기본계획을"), ("의견을", "최대한")], use_kiwi=True)
    assert joins == {("남은", "기간에"): " ", ("탄소중", "립기본계획을"): "", ("의견을", "최대한"): " "}
    assert set(korean.decide([("남은", "기간에")], use_kiwi=False).values()) == {""}


def test_a_document_is_settled_everywhere_alike() -> None:
    heading = f"남은{WRAP}기간"
    paragraph = f"탄소중{WRAP}립기본계획을 세우고 의견을{WRAP}최대한 듣는다"
    document = Document(
        id="x", path="x.pdf", format="pdf", title=heading,
        sections=[Section(title=heading, blocks=[Block(kind="heading", text=heading), Block(kind="paragraph", text=paragraph)])],
        text=f"{heading}\n\n{paragraph}",
    )
    korean.settle_documents([document])
    assert document.title == document.sections[0].title == "남은 기간"
    assert document.blocks[1].text == "탄소중립기본계획을 세우고 의견을 최대한 듣는다"
    assert document.text == "남은 기간\n\n탄소중립기본계획을 세우고 의견을 최대한 듣는다"


def test_one_kiwi_per_process() -> None:
    # Parsing asks for one thread per core and chunking for one: both get the same ~250 MB Kiwi.
    wide = korean.kiwi(2)
    assert korean.kiwi() is wide
    assert korean.kiwi(1) is wide
    assert korean.kiwi(2) is wide
