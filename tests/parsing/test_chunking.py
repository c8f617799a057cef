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


def test_korean_is_counted_heavier_than_english():
    assert estimate_tokens("탄소중립녹색성장위원회") > estimate_tokens("carbon neutrality (long)")


def test_long_korean_paragraph_is_split_at_sentence_ends():
    sentence = "지방자치단체는 탄소중립 기본계획을 수립하여야 한다. "
    chunks = chunk_document(build(lambda b: b.paragraph(sentence * 100)), max_tokens=120, overlap_tokens=0)
    assert len(chunks) > 5
    assert all(c.text.rstrip().endswith("한다.") for c in chunks)
