"""Near-duplicate text at scale: MinHash signatures over character shingles, an LSH index
(the banding of datasketch's MinHashLSH, in numpy) for candidates, and an exact check of every
candidate.

Character shingles rather than words, so Korean (no reliable spacing, particles glued to
nouns) works the same as English. Normalising removes what does not change a question's
meaning: Unicode width and compatibility forms (NFKC), case, punctuation, whitespace, and the
particles and polite endings at the end of a Korean word (서울시의 / 서울시, 언제인가요 /
언제입니까). Measured on hand-made Korean variants: syllable 3-grams after that normalising
give Jaccard 1.0 for spacing/particle/ending variants where plain 3-grams gave 0.43-0.73,
while unrelated questions about the same subject stay at 0.45-0.5.

Two texts whose numbers differ ("제1조" / "제2조", "March 30" / "March 31") are never
near-duplicates, however similar the rest: they ask or state different facts.

Signatures are computed for a whole batch at once with numpy (no Python loop per shingle), and
the LSH bands are kept in sorted numpy arrays. Measured in bench/curation.py on 100,000 questions
(2 cores): 7 s with recall 0.9975 of planted near-duplicates; datasketch's MinHash (SHA-1 per
shingle in Python) and MinHashLSH at its defaults, ~48 s extrapolated from 10,000, recall 0.93.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Everything but letters and digits goes, except a decimal point (1.5 is not 15).
_NOT_WORD = re.compile(r"(?!(?<=\d)\.(?=\d))[^\w]|_")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

# Korean particles and sentence endings stripped from the end of a word before shingling; the
# longest first. Stripping a syllable that was really part of a noun (경기도 → 경기) costs
# nothing: both texts are normalised the same way.
_KO_ENDINGS = (
    "입니까 습니까 합니까 됩니까 인가요 인지요 입니다 습니다 합니다 됩니다 이에요 인가 인지 나요 까요 "
    "가요 는가 은가 니까 이다 된다 한다 예요 에요 이요"
).split()  # no single 요/다/까: they end nouns too (주요, 필요, 바다)
_KO_PARTICLES = (
    "에서는 으로는 에서 에게 으로 로는 에는 과의 와의 이며 이고 이나 부터 까지 은 는 이 가 을 를 의 에 "
    "로 와 과 도 만 나"
).split()
_KO_ENDING = re.compile("(?:" + "|".join(sorted(_KO_ENDINGS, key=len, reverse=True)) + ")$")
_KO_PARTICLE = re.compile("(?:" + "|".join(sorted(_KO_PARTICLES, key=len, reverse=True)) + ")$")


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


def _strip_korean_suffix(word: str) -> str:
    """The word without a trailing particle or ending, when at least one syllable is left."""
    if len(word) < 2 or not _is_hangul(word[-1]):
        return word
    for pattern in (_KO_ENDING, _KO_PARTICLE):
        stem = pattern.sub("", word)
        if stem != word and stem:
            return stem
    return word


@lru_cache(maxsize=1 << 16)
def normalise(text: str) -> str:
    """The text as shingles see it: NFKC, casefolded, punctuation and whitespace removed,
    Korean particles and endings dropped from the end of each word."""
    text = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return "".join(_strip_korean_suffix(word) for word in text.split())


def shingles(text: str, k: int = 3) -> set[str]:
    """The normalised text's character k-grams; a text shorter than k is one shingle."""
    norm = normalise(text)
    if len(norm) <= k:
        return {norm} if norm else set()
    return {norm[i : i + k] for i in range(len(norm) - k + 1)}


def numbers(text: str) -> frozenset[str]:
    """The numbers a text states, written one way: thousands separators and leading zeros
    dropped (1,000 = 1000, 2024-03-01 = 2024, 3, 1)."""
    return frozenset(_canonical(n) for n in _NUMBER.findall(unicodedata.normalize("NFKC", text)))


def _canonical(number: str) -> str:
    whole, dot, fraction = number.replace(",", "").partition(".")
    fraction = fraction.rstrip("0")
    return (whole.lstrip("0") or "0") + ("." + fraction if fraction else "")


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def near_duplicate(a: str, b: str, threshold: float = 0.8, k: int = 3) -> bool:
    """The exact test behind every answer: same numbers, Jaccard of shingles >= threshold."""
    if numbers(a) != numbers(b):
        return False
    norm_a, norm_b = normalise(a), normalise(b)
    if norm_a and norm_a == norm_b:
        return True
    return jaccard(shingles(a, k), shingles(b, k)) >= threshold


# -- signatures --------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _shingle_codes(norms: list[str], k: int) -> tuple["np.ndarray", "np.ndarray"]:
    """One 64-bit code per shingle of every normalised text (its k code points side by side),
    and how many shingles each text has. A text shorter than k is padded to one shingle."""
    import numpy as np

    padded = [norm if len(norm) >= k else norm + "\0" * (k - len(norm)) for norm in norms]
    points = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.fromiter((len(p) for p in padded), dtype=np.int64, count=len(padded))
    span = len(points) - k + 1
    codes = np.zeros(span, dtype=np.uint64)
    for offset in range(k):  # 21 bits a code point: exact for k <= 3, mixed above
        codes = (codes << np.uint64(21)) ^ points[offset : offset + span]
    counts = lengths - k + 1
    # Keep the shingles that start inside one text and end inside it too.
    text_starts = np.cumsum(lengths) - lengths
    first_shingle = np.cumsum(counts) - counts
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first_shingle, counts)
    return codes[np.repeat(text_starts, counts) + within], counts


class Rarity:
    """How many texts hold each shingle, measured once on a large batch, so that signatures
    can leave out the common ones.

    Shingles found in more than 1% of the texts (question frames such as "What does the
    document say about", common syllables and letter groups) make unrelated texts look alike to
    MinHash (~0.35 Jaccard between questions sharing a frame), and at that similarity LSH proposes
    a share of all n^2/2 pairs: measured on 30,000 framed questions, 3.3 million candidates to
    check. Each text's signature is taken over its shingles less the common ones, but never
    fewer than its rarest half (or `keep`): a short text, or one made of common words, is still
    judged on most of itself, and two near-duplicates, having the same make-up, keep nearly the
    same shingles. The exact check always uses all shingles.
    """

    def __init__(self, norms: list[str], k: int, share: float = 0.01, least: int = 20, keep: int = 12) -> None:
        import numpy as np

        codes, _ = _shingle_codes(norms, k)
        # Occurrences, not texts: a shingle seldom repeats within one short text.
        self.codes, self.found_in = np.unique(codes, return_counts=True)
        self.cutoff = max(least, share * len(norms))
        self.keep = keep

    def select(self, codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each text's shingles that are not common, or among its `keep` rarest; new counts."""
        import numpy as np

        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        found_in = np.where(self.codes[at] == codes, self.found_in[at], 0)
        text = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
        if len(counts) < 1 << 20:  # per text, rarest first, ties by code: one sort of one key
            key = (text << np.uint64(44)) | (np.minimum(found_in, (1 << 20) - 1).astype(np.uint64) << np.uint64(24))
            order = np.argsort(key | (_mix(codes) >> np.uint64(40)))
        else:
            order = np.lexsort((codes, found_in, text))
        starts = np.cumsum(counts) - counts
        rank = np.arange(len(codes)) - np.repeat(starts, counts)
        keep = np.empty(len(codes), dtype=bool)
        least = np.repeat(np.maximum(self.keep, counts // 2), counts)  # never under half of them
        keep[order] = (found_in[order] <= self.cutoff) | (rank < least)
        return codes[keep], np.add.reduceat(keep.astype(np.int64), starts)


def _mix(codes: "np.ndarray") -> "np.ndarray":
    """splitmix64's finaliser: shingle codes (structured) to well-spread 64-bit hashes."""
    import numpy as np

    z = codes + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class _Permutations:
    """num_perm hash functions h_i(x) = (a_i * x + b_i) >> 32 over 64-bit mixed shingles
    (multiply-shift), applied to many texts at once."""

    def __init__(self, num_perm: int, seed: int = 1) -> None:
        import numpy as np

        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)

    def signatures(self, norms: list[str], k: int, rarity: Rarity | None = None,
                   block: int = 1 << 17) -> "np.ndarray":
        """A (len(norms), num_perm) array of MinHash values over each text's shingles (those
        `rarity` selects, when given); every norm must be non-empty."""
        import numpy as np

        codes, counts = _shingle_codes(norms, k)
        if rarity is not None:
            codes, counts = rarity.select(codes, counts)
        hashed = _mix(codes)
        ends = np.cumsum(counts)
        out = np.empty((len(norms), len(self.a)), dtype=np.uint64)
        a, b, shift = self.a[:, None], self.b[:, None], np.uint64(32)
        first = 0
        while first < len(norms):
            # Texts first..last-1 hold about `block` shingles: bounded memory.
            low = int(ends[first] - counts[first])
            last = max(first + 1, int(np.searchsorted(ends, low + block, side="right")))
            values = a * hashed[None, low : int(ends[last - 1])]
            values += b
            values >>= shift
            offsets = (ends[first:last] - counts[first:last]) - low
            # permutations x shingles, reduced along the shingles: 3.5x faster than the transpose
            out[first:last] = np.minimum.reduceat(values, offsets, axis=1).T
            first = last
        return out


class _Bands:
    """The LSH index: a signature's rows cut into bands, each band hashed to one 64-bit key;
    texts sharing any band key are candidates. The same banding as datasketch's MinHashLSH,
    kept in numpy arrays (one sort per band) instead of a Python set per bucket: measured for
    100,000 texts, MinHashLSH.insert took ~5 s and 1.8 million sets, this ~0.2 s
    (bench/curation.py compares them)."""

    def __init__(self, bands: int, rows: int, num_perm: int, seed: int = 2) -> None:
        import numpy as np

        self.bands, self.rows = bands, rows
        self._weights = np.random.default_rng(seed).integers(1, 1 << 63, size=bands * rows, dtype=np.uint64)
        self._chunks: list[np.ndarray] = []
        self._sorted: list[tuple[np.ndarray, np.ndarray]] | None = None

    def keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) band keys: a random linear hash of each band's values (mod 2^64)."""
        used = signatures[:, : self.bands * self.rows] * self._weights
        return used.reshape(len(signatures), self.bands, self.rows).sum(axis=2, dtype="uint64")

    def add(self, signatures: np.ndarray) -> None:
        self._chunks.append(self.keys(signatures))
        self._sorted = None

    def clear(self) -> None:
        self._chunks, self._sorted = [], None

    def _by_band(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per band: row numbers in the order of their key, and the keys in that order."""
        import numpy as np

        if self._sorted is None:
            keys = np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.bands), np.uint64)
            self._sorted = []
            for band in range(self.bands):
                order = np.argsort(keys[:, band], kind="stable")
                self._sorted.append((order, keys[order, band]))
        return self._sorted

    def buckets(self) -> Iterator[np.ndarray]:
        """Row numbers that share a band key, two or more, band by band."""
        import numpy as np

        for order, keys in self._by_band():
            if len(keys) < 2:
                continue
            starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
            ends = np.append(starts[1:], len(keys))
            for start, end in zip(starts[ends - starts >= 2], ends[ends - starts >= 2]):
                yield order[start:end]

    def candidates(self, signature: np.ndarray) -> set[int]:
        """Rows sharing at least one band key with one signature."""
        found: set[int] = set()
        query = self.keys(signature[None, :])[0]
        for (order, keys), key in zip(self._by_band(), query):
            low, high = keys.searchsorted(key, "left"), keys.searchsorted(key, "right")
            found.update(order[low:high].tolist())
        return found


# From this many distinct texts on, signatures leave out common shingles (see Rarity).
COMMON_AFTER = 1000


class NearDuplicates:
    """An index of texts by key; `query` finds the keys whose text is a near-duplicate.

    Near-duplicate means: the same numbers, and Jaccard similarity of the normalised character
    shingles at least `threshold`. MinHash/LSH only proposes candidates (signatures over each
    text's rarer shingles, see Rarity; bands chosen so that a pair 0.1 under the threshold is
    proposed 95% of the time, see `_bands`); each candidate is then checked exactly on its full
    shingle sets, so LSH false positives never count. Texts whose normalised form is identical
    share one LSH entry (a thousand copies of one question cost one entry, not half a million
    candidate checks).
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, k: int = 3) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.k = k
        self._permutations = _Permutations(num_perm)
        # Banded for 0.1 under the threshold: signatures leave out common shingles, which makes
        # near-duplicates look less alike to them than they are. Measured on the 100,000 bench
        # questions: recall of planted near-duplicates 0.985 banded at the threshold - 0.05,
        # 0.9975 at - 0.1, in the same time (bench/curation.py).
        self._bands = _Bands(*_bands(max(0.05, threshold - 0.1), num_perm), num_perm)
        self._norms: list[str] = []  # LSH row -> normalised text
        self._rarity: Rarity | None = None  # measured once enough texts are in
        self._keys_by_norm: dict[str, list[str]] = {}
        self._norm_by_key: dict[str, str] = {}
        self._numbers_by_norm: dict[str, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._norm_by_key)

    def add(self, key: str, text: str) -> None:
        self.add_many([(key, text)])

    def add_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Index many texts; signatures for the new distinct texts are computed in one batch."""
        new_norms: list[str] = []
        for key, text in items:
            if key in self._norm_by_key:
                raise ValueError(f"key {key!r} is already in the index")
            norm = normalise(text)
            self._norm_by_key[key] = norm
            if not norm:
                continue  # an empty text is nobody's near-duplicate
            keys = self._keys_by_norm.setdefault(norm, [])
            if not keys:
                new_norms.append(norm)
                self._numbers_by_norm[norm] = numbers(text)
            keys.append(key)
        if not new_norms:
            return
        if self._rarity is None and len(self._norms) + len(new_norms) >= COMMON_AFTER:
            # Enough texts to tell common shingles: measure once, and sign the earlier texts again.
            self._norms.extend(new_norms)
            self._rarity = Rarity(self._norms, self.k)
            self._bands.clear()
            self._bands.add(self._permutations.signatures(self._norms, self.k, self._rarity))
            return
        self._bands.add(self._permutations.signatures(new_norms, self.k, self._rarity))
        self._norms.extend(new_norms)

    def query(self, text: str) -> list[str]:
        """Keys whose text is a near-duplicate of `text` (its own key too, when indexed), in the
        order they were added."""
        norm = normalise(text)
        if not norm:
            return []
        wanted = numbers(text)
        grams = self._grams(norm)
        found = []
        signature = self._permutations.signatures([norm], self.k, self._rarity)[0]
        for row in sorted(self._bands.candidates(signature)):
            other = self._norms[row]
            if other == norm or (
                self._numbers_by_norm[other] == wanted and jaccard(grams, self._grams(other)) >= self.threshold
            ):
                found.extend(self._keys_by_norm[other])
        return found


    def _grams(self, norm: str) -> set[str]:
        if len(norm) <= self.k:
            return {norm}
        return {norm[i : i + self.k] for i in range(len(norm) - self.k + 1)}

    def groups(self) -> list[list[str]]:
        """Connected components of the near-duplicate relation, size >= 2, keys in the order
        they were added; groups ordered by their first key."""
        parent = list(range(len(self._norms)))

        def find(row: int) -> int:
            while parent[row] != row:
                parent[row] = parent[parent[row]]
                row = parent[row]
            return row

        grams: dict[int, set[str]] = {}

        def same(row: int, other: int) -> bool:
            """The exact test: same numbers, shingle Jaccard >= threshold."""
            norm, other_norm = self._norms[row], self._norms[other]
            if self._numbers_by_norm[norm] != self._numbers_by_norm[other_norm]:
                return False
            for r, n in ((row, norm), (other, other_norm)):
                if r not in grams:
                    grams[r] = self._grams(n)
            return jaccard(grams[row], grams[other]) >= self.threshold

        refused: set[tuple[int, int]] = set()
        for bucket in self._bands.buckets():
            rows = sorted(bucket.tolist())
            for i, row in enumerate(rows):
                for other in rows[i + 1 :]:
                    if find(row) == find(other) or (row, other) in refused:
                        continue  # already joined, or already checked: no need to check again
                    if same(row, other):
                        parent[find(other)] = find(row)
                    else:
                        refused.add((row, other))
        row_of = {norm: row for row, norm in enumerate(self._norms)}
        members: dict[int, list[str]] = {}
        for key, norm in self._norm_by_key.items():
            if norm:
                members.setdefault(find(row_of[norm]), []).append(key)
        return [keys for keys in members.values() if len(keys) >= 2]


def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH bands x rows with at least 95% chance that a pair at `threshold` shares a band (so
    few true near-duplicates are missed; false candidates are removed by the exact check).
    datasketch's own choice for MinHashLSH balances misses and false candidates: at 0.8 it
    proposes a pair at Jaccard 0.8 only 40% of the time."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if bands >= 2 and 1 - (1 - threshold**rows) ** bands >= 0.95:
            return bands, rows
    return num_perm, 1


def near_duplicate_groups(items: list[tuple[str, str]], threshold: float = 0.8) -> list[list[str]]:
    """Clusters (connected components) of keys whose texts are near-duplicates; groups of two
    or more only, in input order."""
    index = NearDuplicates(threshold)
    index.add_many(items)
    return index.groups()
