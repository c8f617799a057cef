"""A scripted teacher for curation tests and bench/curation.py: QA pairs made from real document
chunks, each labelled with what it is, so a rule's precision and recall can be measured.

Grounded answers restate a sentence of the pair's own chunk the way teachers do (verbatim, with
a lead-in, shortened, Korean endings changed); ungrounded ones come from another document, from
a distant chunk of the same document (same vocabulary, other facts), or change the sentence's
numbers."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from slm_factory.records import Chunk, Document, QAPair

_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|(?<=다\.)\s*|\n+")
_NUMBER = re.compile(r"\d+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")

GROUNDED = ("verbatim", "lead_in", "shortened", "reworded", "combined", "explained")
# What teachers add around the facts: grounded answers still, with words the source lacks.
_ADDED = {
    "en": ["This is meant to protect the people concerned.", "In short, this is the rule that applies here.",
           "This helps readers understand the main point.", "It is an important part of the overall process."],
    "ko": ["이는 관련된 사람들을 보호하기 위한 것입니다.", "요약하면 이것이 여기에 적용되는 규칙입니다.",
           "이 내용은 전체 절차에서 중요한 부분입니다.", "따라서 이 점을 반드시 확인해야 합니다."],
}
UNGROUNDED = ("other_document", "same_document", "numbers_changed")


@dataclass
class Labelled:
    pair: QAPair
    kind: str  # one of GROUNDED or UNGROUNDED

    @property
    def grounded(self) -> bool:
        return self.kind in GROUNDED


def load_chunks(paths: list[Path], max_tokens: int = 512) -> tuple[list[Document], list[Chunk]]:
    """Parse and chunk real documents the way parse and generate do."""
    from slm_factory.parsing.base import ParseOptions
    from slm_factory.parsing.chunking import chunk_document
    from slm_factory.parsing.registry import parse_file

    documents, chunks = [], []
    for path in paths:
        outcome = parse_file(path, ParseOptions())
        if outcome.document is None:
            continue
        documents.append(outcome.document)
        chunks.extend(chunk_document(outcome.document, max_tokens, 64))
    return documents, chunks


def sentences(text: str) -> list[str]:
    """Sentences long enough to be an answer: 40-300 characters, mostly letters."""
    found = []
    for piece in _SENTENCE_END.split(text):
        piece = " ".join(piece.split())
        letters = sum(ch.isalpha() for ch in piece)
        if 40 <= len(piece) <= 300 and letters >= 0.6 * len(piece) and "|" not in piece:
            found.append(piece)
    return found


def _question(sentence: str, korean: bool) -> str:
    words = sentence.split()[:4]
    subject = " ".join(words).rstrip(",.;:")
    return f"{subject}에 대해 문서는 무엇이라고 하나요?" if korean else f"What does the document say about {subject}?"


def _grounded(kind: str, sentence: str, korean: bool, rng: random.Random, own: list[str]) -> str:
    if kind == "combined":  # two sentences of the chunk, shortened, joined
        second = rng.choice(own)
        words = [w for w in f"{sentence} {'또한' if korean else 'Also,'} {second}".split() if rng.random() > 0.35]
        return " ".join(words)
    if kind == "explained":  # the fact, then a sentence of the teacher's own
        return f"{sentence} {rng.choice(_ADDED['ko' if korean else 'en'])}"
    if kind == "verbatim":
        return sentence
    if kind == "lead_in":
        return ("문서에 따르면 " if korean else "According to the document, ") + sentence
    words = sentence.split()
    if kind == "shortened":  # a teacher's summary keeps most words, drops some
        kept = [w for i, w in enumerate(words) if i < 3 or rng.random() > 0.3]
        return " ".join(kept)
    # reworded: endings and particles changed (Korean), words moved (English)
    if korean:
        text = re.sub(r"한다\b", "합니다", sentence)
        text = re.sub(r"이다\b", "입니다", text)
        text = re.sub(r"(\w)은 ", r"\1는 ", text)
        return text.replace("의 ", " ")
    cut = max(1, len(words) // 2)
    return " ".join(words[cut:] + ["-"] + words[:cut])


def _numbers_changed(sentence: str) -> str | None:
    if not _NUMBER.search(sentence):
        return None
    return _NUMBER.sub(lambda m: str(int(m.group()) + 7), sentence)


def make_pairs(chunks: list[Chunk], seed: int = 0, per_chunk: int = 2) -> list[Labelled]:
    """Labelled pairs from chunks: about half grounded, half not."""
    rng = random.Random(seed)
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_doc.setdefault(chunk.doc_id, []).append(chunk)
    language = {doc: "ko" if len(_HANGUL.findall(" ".join(c.text for c in cs[:5]))) > 50 else "en"
                for doc, cs in by_doc.items()}
    labelled: list[Labelled] = []
    for chunk in chunks:
        own = sentences(chunk.text)
        if not own:
            continue
        korean = language[chunk.doc_id] == "ko"
        same_language = [d for d in by_doc if d != chunk.doc_id and language[d] == language[chunk.doc_id]]
        siblings = [c for c in by_doc[chunk.doc_id] if abs(c.index - chunk.index) > 3]
        for n in range(per_chunk):
            sentence = rng.choice(own)
            answer, kind = None, ""
            if rng.random() < 0.5:
                kind = rng.choice(GROUNDED)
                answer = _grounded(kind, sentence, korean, rng, own)
            else:
                kind = rng.choice(UNGROUNDED)
                if kind == "numbers_changed":
                    answer = _numbers_changed(sentence)
                else:
                    pool = siblings if kind == "same_document" else [c for d in same_language for c in by_doc[d]]
                    if pool:
                        other = sentences(rng.choice(pool).text)
                        answer = rng.choice(other) if other else None
            if not answer:
                continue
            pair = QAPair(instruction=_question(sentence, korean), output=answer, source_doc=chunk.source_doc,
                          doc_id=chunk.doc_id, chunk_id=chunk.id, id=f"{chunk.id}:{n}")
            labelled.append(Labelled(pair, kind))
    return labelled
