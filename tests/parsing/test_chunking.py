from __future__ import annotations

from pathlib import Path

from slm_factory.parsing.base import DocumentBuilder
from slm_factory.parsing.chunking import chunk_document, estimate_tokens


def build(fill) -> "Document":  # noqa: F821
    builder = DocumentBuilder(Path("/docs/policy.txt"), "txt", b"x")
    fill(builder)
    return builder.build()


def test_every_paragraph_lands_in_a_chunk_within_budget():
    paragraphs = [f"Paragraph {i} explains rule {i} of the housing subsidy in some detail." * 3 for i in range(200)]

    def fill(b):
        b.heading("Housing subsidy", 1)
        for i, text in enumerate(paragraphs):
            if i % 50 == 0:
                b.heading(f"Part {i // 50}", 2)
            b.paragraph(text)

    chunks = chunk_document(build(fill), max_tokens=300, overlap_tokens=100)
    assert len(chunks) > 10
    joined = "\n".join(c.text for c in chunks)
    assert all(p in joined for p in paragraphs)  # nothing dropped
    assert all(c.tokens <= 300 for c in chunks)
    assert chunks[-1].heading == "Housing subsidy > Part 3"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # consecutive chunks of one section share an overlapping paragraph
    shared = [set(a.text.split("\n\n")) & set(b.text.split("\n\n")) for a, b in zip(chunks, chunks[1:]) if a.heading == b.heading]
    assert any(shared)


def test_table_stays_whole_with_its_heading():
    def fill(b):
        b.heading("Fees", 1)
        b.paragraph("The fees below apply from 2024. " * 20)
        b.table([["item", "fee"], ["application", "10,000 won"], ["renewal", "5,000 won"]])

    chunks = chunk_document(build(fill), max_tokens=150, overlap_tokens=40)
    table_chunks = [c for c in chunks if c.has_table]
    assert len(table_chunks) == 1
    assert "| renewal | 5,000 won |" in table_chunks[0].text and table_chunks[0].heading == "Fees"


def test_oversized_table_is_split_by_rows_repeating_the_header():
    rows = [["region", "count"]] + [[f"Region {i}", str(i * 1000)] for i in range(300)]
    chunks = chunk_document(build(lambda b: b.table(rows)), max_tokens=200, overlap_tokens=20)
    assert len(chunks) > 3
    assert all(c.text.startswith("| region | count |") for c in chunks)
    text = "\n".join(c.text for c in chunks)
    assert all(f"| Region {i} | {i * 1000} |" in text for i in range(300))


def test_a_split_table_under_a_group_row_repeats_its_column_labels_too():
    """PDF tables often head their columns with a group row ("Pre-Pawn" over three columns, the rest
    empty) above the row of labels; every piece must carry both, or its rows lose their labels."""
    group = ["", "", "Pre-Pawn", "", ""]
    labels = ["State", "Permit", "Handgun", "Long Gun", "Other"]
    rows = [group, labels] + [[f"State {i}", str(i), str(2 * i), str(3 * i), str(i % 7)] for i in range(200)]
    chunks = chunk_document(build(lambda b: b.table(rows)), max_tokens=200, overlap_tokens=0)
    assert len(chunks) > 3 and all(c.tokens <= 200 for c in chunks)
    for chunk in chunks:
        lines = chunk.text.splitlines()
        assert lines[0] == "|  |  | Pre-Pawn |  |  |" and lines[2] == "| State | Permit | Handgun | Long Gun | Other |"
    text = "\n".join(c.text for c in chunks)
    assert all(f"| State {i} | {i} | {2 * i} | {3 * i} | {i % 7} |" in text for i in range(200))


def test_when_group_and_labels_are_too_big_to_repeat_the_labels_alone_are():
    group = [""] * 3 + ["Pre-Pawn transactions recorded at licensed dealers in every state and territory"] + [""] * 8
    labels = ["State"] + [f"Col{chr(65 + i)}" for i in range(11)]  # no digit: labels, not data
    rows = [group, labels] + [[f"State {i}"] + [str(i * k) for k in range(11)] for i in range(120)]
    from slm_factory.records import table_to_markdown

    budget = 4 * estimate_tokens(table_to_markdown([labels])) + 4  # the labels fit a quarter, with the group row not

    assert estimate_tokens(table_to_markdown([group, labels])) > budget // 4 >= estimate_tokens(table_to_markdown([labels]))
    chunks = chunk_document(build(lambda b: b.table(rows)), max_tokens=budget, overlap_tokens=0)
    assert all(c.tokens <= budget for c in chunks)
    text = "\n".join(c.text for c in chunks)
    assert text.count("Pre-Pawn transactions") == 1  # the group row once
    assert len(chunks) > 3 and all(c.text.startswith("| State | ColA |") for c in chunks[1:])
    assert all(f"| State {i} | " in text for i in range(120))


def test_a_group_row_alone_or_over_data_is_the_only_header_row():
    from slm_factory.parsing.chunking import header_rows

    assert header_rows([["", "", "Pre-Pawn", "", ""], ["State", "Permit", "Handgun", "Long Gun", "Other"],
                        ["Ohio", "1", "2", "3", "4"]]) == 2
    assert header_rows([["", "", "Fees", "", ""], ["Ohio", "1", "2", "3", "4"]]) == 1  # a digit: data
    assert header_rows([["item", "fee"], ["application", "ten"], ["renewal", "five"]]) == 1  # a full first row
    assert header_rows([["", "", "A", "", ""], ["x", "y", "z", "w", "v"], ["q", "r", "s", "t", "u"],
                        ["p", "o", "n", "m", "l"], ["1", "2", "3", "4", "5"]]) == 3  # at most three


def test_korean_is_counted_heavier_than_english():
    assert estimate_tokens("탄소중립녹색성장위원회") > estimate_tokens("carbon neutrality (long)")


def test_long_korean_paragraph_is_split_at_sentence_ends():
    sentence = "지방자치단체는 탄소중립 기본계획을 수립하여야 한다. "
    chunks = chunk_document(build(lambda b: b.paragraph(sentence * 100)), max_tokens=120, overlap_tokens=0)
    assert len(chunks) > 5
    assert all(c.text.rstrip().endswith("한다.") for c in chunks)
