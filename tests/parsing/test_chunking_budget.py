"""Issue 7, item 1: a chunk never exceeds chunking.max_tokens, and nothing is dropped.

Rules tested as properties: over every corpus document at several budgets, over worst cases
built here (English and Korean), and over seeded random documents mixing headings, paragraphs,
lists, code and tables of random shapes.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from slm_factory.parsing.base import DocumentBuilder, ParseOptions
from slm_factory.parsing.chunking import chunk_document, heading_of, split_text
from slm_factory.parsing.registry import parse_file
from slm_factory.parsing.sentences import KIWI_BLOCK, sentence_ends
from slm_factory.records import Chunk, Document
from slm_factory.tokens import estimate_tokens

BUDGETS = (64, 256, 1024)
KO_SENTENCES = [
    "다양한 지원 사업이 필요한 가구는 주민센터에 요청할 수 있다.",
    "신청서는 요청일로부터 14일 이내에 처리하여야 합니다.",
    "필요한 서류가 무엇인지 담당자에게 물어보세요.",
    "지방자치단체는 탄소중립 기본계획을 수립하여야 한다.",
    "이 사업은 다양한 요구를 반영해 해마다 고쳐졌어요.",
]
EN_SENTENCES = [
    "The U.S. Department of Housing, e.g. its regional office, pays 3.5 percent more.",
    "Tenants apply before Jan. 31 each year.",
    "Dr. Kim reviews every file by hand!",
]
EN_WORDS = "the housing subsidy applies to tenants whose income is below the threshold set by the ministry".split()
KO_WORDS = (
    "주택 보조금 지원 대상 소득 기준 이하 임차인 신청 서류 다양한 필요한 요청 처리 기간".split()
)


def build(fill, name: str = "built.txt") -> Document:
    builder = DocumentBuilder(Path(f"/docs/{name}"), "txt", name.encode())
    fill(builder)
    return builder.build()


# -- the checks ----------------------------------------------------------------------------


def content_of(document: Document) -> list[str]:
    """What must reach the chunks, in reading order: each non-heading block's words (a table's
    cell words row by row)."""
    words: list[str] = []
    for block in document.blocks:
        if block.kind == "heading":
            continue
        if block.kind == "table" and block.table is not None:
            words.extend(
                w for row in document.tables[block.table].rows for cell in row for w in cell.split()
            )
        else:
            words.extend(block.text.split())
    return words


def uncovered(document: Document, chunks: list[Chunk]) -> str | None:
    """The first word of content not found, in order, in the chunks' characters (spaces ignored:
    a cut may fall inside a word, and a cell's label may stand between its two halves); None
    when every character of content lands in some chunk in reading order."""
    stream = "".join("".join(chunk.text.split()) for chunk in chunks)
    position = 0
    for word in content_of(document):
        word = word.replace("|", "")  # Markdown escapes a cell's pipe as "\|"
        if stream.startswith(word, position):
            position += len(word)
            continue
        for char in word:
            found = stream.find(char, position)
            if found < 0:
                return word
            position = found + 1
    return None


def check(document: Document, max_tokens: int, overlap: int = 128) -> list[Chunk]:
    chunks = chunk_document(document, max_tokens, overlap)
    name = Path(document.path).name
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.tokens == estimate_tokens(chunk.text)
        where = (name, max_tokens, chunk.index)
        assert chunk.tokens <= max_tokens, (*where, chunk.tokens, chunk.text[:200])
        assert chunk.text.strip(), where
        assert estimate_tokens(chunk.heading) <= max(16, max_tokens // 8), (*where, chunk.heading)
    missing = uncovered(document, chunks)
    assert missing is None, f"{name} at {max_tokens}: {missing[:80]!r} is in no chunk"
    return chunks


def no_spaces(text: str) -> str:
    return "".join(text.split())


# -- (a) every corpus document, several budgets --------------------------------------------


@pytest.fixture(scope="module")
def corpus_documents(corpus: Path) -> list[Document]:
    """Every corpus file that parses, parsed once for this module."""
    documents = []
    for path in sorted(corpus.iterdir()):
        if path.suffix.lower() != ".tsv":
            outcome = parse_file(path, ParseOptions())
            if outcome.document is not None:
                documents.append(outcome.document)
    assert len(documents) >= 20
    return documents


@pytest.mark.parametrize("max_tokens", BUDGETS)
def test_every_corpus_chunk_fits_the_budget_and_covers_the_document(corpus_documents, max_tokens):
    for document in corpus_documents:
        check(document, max_tokens, overlap=max_tokens // 8)


def test_the_coverage_check_finds_a_missing_chunk(corpus_documents):
    """The property above can fail: drop any one chunk of a document and the check says so."""
    document = next(d for d in corpus_documents if Path(d.path).name.startswith("kr-constitution"))
    chunks = chunk_document(document, 256, 0)
    assert uncovered(document, chunks) is None
    for index in range(1, len(chunks) - 1, max(1, len(chunks) // 15)):
        assert uncovered(document, chunks[:index] + chunks[index + 1 :]) is not None, index


def test_a_page_with_an_article_table_and_a_wide_form_chunks_within_budget(data_dir: Path):
    """tests/data/chunking/oversized-tables.html (written for these tests): an article in a
    one-cell table and a 20-column Korean form whose rows alone are ~4,000 tokens."""
    outcome = parse_file(data_dir / "chunking" / "oversized-tables.html", ParseOptions())
    assert outcome.document is not None, outcome.error
    for max_tokens in BUDGETS:
        chunks = check(outcome.document, max_tokens)
        form = "\n".join(c.text for c in chunks if c.has_table)
        assert "주소: " in form and "지급 계좌: " in form  # cells keep their column labels
    pieces_of_row_2 = [
        c.text for c in chunks if "이의 신청: " in c.text and c.text.startswith("구분: 2")
    ]
    assert pieces_of_row_2  # a later piece of a row opens with the row's first cell


# -- (b) worst cases built here ------------------------------------------------------------


def english_prose(length: int) -> str:
    text = ""
    while len(text) < length:
        text += random.Random(len(text)).choice(EN_SENTENCES) + " "
    return text[:length].strip()


def korean_prose(length: int) -> str:
    text = ""
    while len(text) < length:
        text += random.Random(len(text)).choice(KO_SENTENCES) + " "
    return text[:length].strip()


def endless(words: list[str], length: int, joiner: str = " ") -> str:
    """A 'sentence' that never ends: words without a full stop, `length` characters long."""
    rng = random.Random(length)
    text = ""
    while len(text) < length:
        text += rng.choice(words) + joiner
    return text[:length].strip()


# Kiwi reads ~15,000 Korean characters a second here: one 100,000-character Korean text serves
# the paragraph and the table cases at every budget (sentence ends are cached per text); the
# other Korean shapes are 20,000 characters long.
WORST_TEXTS = {
    "en-sentences": english_prose(100_000),
    "en-no-sentence-end": endless(EN_WORDS, 100_000),
    "en-one-word": "x" * 100_000,
    "ko-no-sentence-end": endless(KO_WORDS, 100_000),
    "ko-sentences": korean_prose(20_000),
    "ko-no-spaces": endless(KO_WORDS, 20_000, joiner=""),
}


@pytest.mark.parametrize("kind", sorted(WORST_TEXTS))
@pytest.mark.parametrize("max_tokens", (64, 1024))
def test_a_huge_paragraph_is_cut_within_budget_losing_nothing(kind, max_tokens):
    text = WORST_TEXTS[kind]

    def fill(b):
        b.heading("Housing subsidy rules", 1)
        b.paragraph(text)

    chunks = check(build(fill), max_tokens, overlap=0)
    # in order, nothing lost and nothing added
    assert no_spaces("".join(c.text for c in chunks)) == no_spaces(text)
    assert all(c.heading == "Housing subsidy rules" for c in chunks)
    if kind.endswith("sentences"):  # whole sentences, as many as fit: the next one would not
        assert all(c.text.endswith((".", "!")) for c in chunks[:-1])
        sentences = EN_SENTENCES + KO_SENTENCES
        for chunk, following in itertools.pairwise(chunks[:-1]):  # the last one is cut short
            next_sentence = next(s for s in sentences if following.text.startswith(s))
            assert estimate_tokens(f"{chunk.text} {next_sentence}") > max_tokens
    else:  # cut at spaces or characters, each piece is filled near the budget
        assert len(chunks) <= 1.3 * estimate_tokens(text) / max_tokens + 2


@pytest.mark.parametrize(
    "kind", ["en-sentences", "en-no-sentence-end", "ko-no-sentence-end", "ko-no-spaces"]
)
def test_a_1x1_table_of_100k_characters_is_cut_within_budget(kind):
    text = WORST_TEXTS[kind]
    chunks = check(build(lambda b: b.table([[text]])), 1024, overlap=128)
    assert len(chunks) >= estimate_tokens(text) // 1024 and all(c.has_table for c in chunks)
    assert no_spaces("".join(c.text for c in chunks)) == no_spaces(text)


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_30_column_row_of_500_character_cells_is_cut_by_cells_with_labels(language):
    labels = [f"Column {i}" if language == "en" else f"항목 {i}" for i in range(30)]
    make = english_prose if language == "en" else korean_prose
    row = [f"r{i} " + make(496 + i)[:496] for i in range(30)]
    rows = [labels, ["Seoul" if language == "en" else "서울", *row[1:]], row]

    def fill(b):
        b.heading("Form", 1)
        b.table(rows)

    for max_tokens in BUDGETS:
        chunks = check(build(fill), max_tokens, overlap=64)
        text = "\n".join(c.text for c in chunks)
        for i, value in enumerate(row[1:], start=1):
            first_words = " ".join(value.split()[:2])
            # each value (or its first part) sits right after its own column label
            assert f"{labels[i]}: {first_words}" in text, (max_tokens, i)
        assert all(c.heading == "Form" for c in chunks)


def test_an_oversized_table_repeats_only_a_small_header():
    small = [["region", "count"]] + [[f"Region {i}", str(i)] for i in range(400)]
    chunks = check(build(lambda b: b.table(small)), 128, overlap=0)
    assert len(chunks) > 5 and all(
        c.text.startswith("| region | count |\n|---|---|") for c in chunks
    )
    wide = [[f"header label number {i}" for i in range(12)]] + [
        [str(r * 100 + i) for i in range(12)] for r in range(200)
    ]
    chunks = check(build(lambda b: b.table(wide)), 256, overlap=0)
    assert wide[0][0] not in chunks[1].text  # the header takes more than a quarter: not repeated
    assert "|---|" not in chunks[1].text  # and no data row is dressed up as a header


def test_merged_cells_left_empty_are_no_trouble():
    rows = [["Region", "", "Count"], ["North", "", ""], ["", "", "x" * 5000]] + [["a", "", ""]] * 50
    check(build(lambda b: b.table(rows)), 64, overlap=0)


def test_a_huge_heading_trail_is_capped():
    title = english_prose(20_000)

    def fill(b):
        b.heading(title, 1)
        b.heading("Article 5", 2)
        b.paragraph(english_prose(5_000))

    for max_tokens in BUDGETS:
        chunks = check(build(fill), max_tokens)
        assert all(c.heading.endswith("Article 5") for c in chunks), chunks[0].heading
    assert heading_of(("Chapter 2", "Article 5"), (), 64) == "Chapter 2 > Article 5"  # as it was
    many = heading_of(("Part",), tuple((f"Annex {i}",) for i in range(100)), 64)
    assert many.startswith("Part | Annex 0") and many.endswith("…") and estimate_tokens(many) <= 64


def test_overlap_never_pushes_a_chunk_over_budget():
    paragraphs = [english_prose(100 + 10 * i) for i in range(60)]

    def fill(b):
        b.heading("Rules", 1)
        for text in paragraphs:
            b.paragraph(text)

    for overlap in (0, 50, 200, 5_000):
        chunks = check(build(fill), 256, overlap)
        if overlap:  # overlap still happens where it fits
            assert any(
                set(a.text.split("\n\n")) & set(b.text.split("\n\n"))
                for a, b in itertools.pairwise(chunks)
            )


def test_a_cut_never_splits_a_character_from_its_combining_marks():
    decomposed = "가\u1100\u1161\u11a8e\u0301" * 20_000  # Hangul as jamo, e + combining acute
    pieces = split_text(decomposed, 64)
    assert "".join(pieces) == decomposed
    for piece in pieces[1:]:
        assert piece[0] not in "\u1161\u11a8\u0301", repr(piece[:3])


# -- (c) Korean sentence ends ----------------------------------------------------------------


def test_korean_sentence_ends_are_kiwis_not_every_da_or_yo():
    text = "다양한 서비스가 필요한 가구는 요청서를 냈다. 담당자가 요청을 검토했어요 그리고 필요하면 다시 연락해요. 다음 단계는 무엇인가요?"
    ends = sentence_ends(text, "ko")
    pieces = [text[a:b].strip() for a, b in zip([0, *ends], [*ends, len(text)])]
    assert pieces[0] == "다양한 서비스가 필요한 가구는 요청서를 냈다."
    assert pieces[-1] == "다음 단계는 무엇인가요?"
    assert "담당자가 요청을 검토했어요" in pieces  # an end without a full stop is still an end
    assert "그리고 필요하면 다시 연락해요." in pieces
    for word in ("다양한", "필요한", "요청서를", "요청을", "필요하면"):  # 다/요 inside: no end
        start = text.index(word)
        assert not any(start < end < start + len(word) for end in ends), word


def test_korean_sentence_ends_hold_across_kiwi_blocks():
    text = korean_prose(10 * KIWI_BLOCK)
    ends = sentence_ends(text, "ko")
    assert len(ends) == text.count(". ")  # every end found, block edges or not, and no other
    assert all(text[end - 1] == "." for end in ends)


def test_english_sentence_ends_keep_abbreviations_and_decimals_whole():
    text = "The U.S. Army, e.g. its 3.5 divisions, met Dr. Smith at 5 p.m. on Friday. Then it left! Why? Nobody knows."
    ends = sentence_ends(text, "en")
    pieces = [text[a:b].strip() for a, b in zip([0, *ends], [*ends, len(text)])]
    assert pieces == [
        "The U.S. Army, e.g. its 3.5 divisions, met Dr. Smith at 5 p.m. on Friday.",
        "Then it left!",
        "Why?",
        "Nobody knows.",
    ]


def test_a_long_korean_paragraph_is_cut_only_at_real_sentence_ends():
    text = " ".join(KO_SENTENCES * 40)
    chunks = check(build(lambda b: b.paragraph(text)), 100, overlap=0)
    starts = {s.split()[0] for s in KO_SENTENCES}
    assert all(c.text.split()[0] in starts for c in chunks)  # every chunk starts a sentence
    assert all(c.text.endswith(".") for c in chunks)


# -- (d) random documents --------------------------------------------------------------------


POOLS = {  # random documents take slices of these at random offsets
    "en": english_prose(12_000),
    "en-endless": endless(EN_WORDS, 12_000),
    "ko": korean_prose(12_000),
    "ko-endless": endless(KO_WORDS, 12_000),
    "ko-no-spaces": endless(KO_WORDS, 12_000, joiner=""),
    "url": "https://example.org/" + "a" * 3_000,
    "pipes": "|" * 3_000,
}


def random_text(rng: random.Random, longest: int = 5_000) -> str:
    length = min(longest, rng.choice([3, 40, 300, 1_500, 4_000]))
    parts = []
    for _ in range(rng.choice([1, 1, 1, 3])):  # sometimes English, Korean and a URL in one text
        pool = POOLS[rng.choice(sorted(POOLS))]
        offset = rng.randrange(len(pool) - length) if len(pool) > length else 0
        parts.append(pool[offset : offset + length])
    return " ".join(parts)


def random_table(rng: random.Random) -> list[list[str]]:
    width, height = rng.choice([1, 2, 5, 12, 30]), rng.randint(1, 30)

    def cell() -> str:  # mostly short or empty (merged), now and then a whole article
        roll = rng.random()
        if roll < 0.4:
            return "" if roll < 0.3 else "7"
        return random_text(rng, 60 if roll < 0.99 else 5_000)

    return [[cell() for _ in range(width)] for _ in range(height)]


def random_document(seed: int) -> Document:
    rng = random.Random(seed)

    def fill(b):
        for _ in range(rng.randint(1, 15)):
            roll = rng.random()
            if roll < 0.2:
                b.heading(random_text(rng, rng.choice([20, 200, 3_000])), rng.randint(1, 4))
            elif roll < 0.55:
                b.paragraph(random_text(rng))
            elif roll < 0.65:
                b.list_item(random_text(rng))
            elif roll < 0.7:
                lines = [
                    f"    line {i} = {random_text(rng, 80)}" for i in range(rng.randint(1, 200))
                ]
                b.paragraph("\n".join(lines), kind="code")
            else:
                b.table(random_table(rng))

    return build(fill, f"random-{seed}.txt")


@pytest.mark.parametrize("seed", range(24))
def test_random_documents_fit_every_budget_and_lose_nothing(seed):
    document = random_document(seed)
    rng = random.Random(seed)
    for max_tokens in (64, rng.choice([80, 150, 300, 700]), 1024):
        check(document, max_tokens, overlap=rng.choice([0, 16, 128, 2_000]))
