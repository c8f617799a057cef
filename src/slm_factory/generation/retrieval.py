"""Lexical retrieval (BM25) of a document's chunks for the configured questions.

Korean words carry particles (정책은, 정책의), so Hangul is indexed as character bigrams;
other scripts as lower-cased words.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from slm_factory.records import Chunk

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_HANGUL = re.compile(r"[\uac00-\ud7a3]+")


def terms(text: str) -> list[str]:
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        if _HANGUL.fullmatch(word):
            found.extend(word[i : i + 2] for i in range(max(1, len(word) - 1)))
        else:
            found.append(word)
    return found


def rank_chunks(question: str, chunks: list[Chunk], k1: float = 1.5, b: float = 0.75) -> list[tuple[float, Chunk]]:
    """Chunks by BM25 score for the question, best first; chunks sharing no term score 0."""
    docs = [Counter(terms(chunk.text + " " + chunk.heading)) for chunk in chunks]
    if not docs:
        return []
    average = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    frequency = Counter(term for d in docs for term in d)
    scored = []
    for chunk, counts in zip(chunks, docs):
        length = sum(counts.values())
        score = 0.0
        for term in set(terms(question)):
            if term not in counts:
                continue
            idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            tf = counts[term]
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))
        scored.append((score, chunk))
    return sorted(scored, key=lambda pair: -pair[0])


def context_for(question: str, chunks: list[Chunk], max_chars: int, top: int = 3) -> list[Chunk]:
    """Up to `top` best-matching chunks (each at least half as good as the best) that fit in
    max_chars together, in document order."""
    chosen: list[Chunk] = []
    used = 0
    ranked = rank_chunks(question, chunks)
    best = ranked[0][0] if ranked else 0.0
    for score, chunk in ranked[:top]:
        if score <= 0 or score < best / 2:
            break
        if used + len(chunk.text) > max_chars:
            if chosen:
                break
            continue
        chosen.append(chunk)
        used += len(chunk.text)
    return sorted(chosen, key=lambda chunk: chunk.index)
