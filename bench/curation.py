"""How fast `validate` is on 100,000 pairs, how many planted near-duplicates it finds, and how
well its lexical groundedness check tells grounded answers from ungrounded ones.

    python bench/curation.py [--pairs N] [--corpus DIR] [--json OUT] [--baseline-sample N]

1. Synthetic pairs (default 100,000), Korean and English mixed, from the chunks of real
   documents (tests/data/curation, plus ../shared/corpus when present): each question is a
   handful of the chunk's words in a question frame, each answer a sentence of the chunk. Planted:
   5% near-duplicate copies of another pair (question with a word, ending, spacing, case or
   punctuation changed; answer with a word or two dropped), 1% contradictions (the copy's answer is
   another sentence of the same chunk), 2% ungrounded answers (a sentence of another document).
   The whole `validate` stage runs on them as a user runs it (qa_alpaca.json read, every rule:
   lengths, patterns, language, lexical groundedness, near-duplicates, contradictions, both files
   written). Target (issue): under 60 s on these 2 cores.
2. Near-duplicate search alone on the same 100,000 questions, against baselines in the same run:
   datasketch's own MinHash (SHA-1 per shingle) and MinHashLSH at their defaults (threshold
   0.8), and a naive pairwise difflib ratio; the baselines run on a sample and are extrapolated
   (datasketch linearly, pairwise quadratically), each on the same sample as ours for recall.
3. Lexical groundedness on labelled pairs a scripted teacher made from real chunks
   (tests/curation/pairs.py): precision and recall of rejecting ungrounded answers at the
   configured threshold and around it.
Prints tables and writes bench/results/curation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from slm_factory.config import parse_config  # noqa: E402
from slm_factory.curation import validate  # noqa: E402
from slm_factory.curation.common import Sources  # noqa: E402
from slm_factory.curation.dedup import near_duplicate, near_duplicate_groups, shingles  # noqa: E402
from slm_factory.curation.grounding import LexicalGrounding  # noqa: E402
from slm_factory.parsing.base import ParseOptions  # noqa: E402
from slm_factory.parsing.registry import parse_file  # noqa: E402
from slm_factory.pipeline import StageContext  # noqa: E402
from slm_factory.records import Chunk, QAPair  # noqa: E402
from slm_factory.workspace import Workspace  # noqa: E402
from tests.curation.pairs import make_pairs, sentences  # noqa: E402

FIXTURES = REPO / "tests" / "data" / "curation"
CORPUS_DOCUMENTS = [
    "kr-constitution-of-the-republic-of-korea.txt", "kr-react-docs-thinking-in-react.md",
    "kr-gangnam-legislative-notice-2023-745.hwpx", "kr-mfds-medical-device-admin-notice-2025-477.hwpx",
    "kr-mcst-press-release-paris-olympics-2024-01.hwpx", "kr-mois-public-data-standard-transit-transfer-center-2023.hwpx",
    "wikipedia-duck-full-page.html", "v8-blog-standalone-wasm-emscripten.html", "edge-mojibake-wikipedia-iwan-roberts.txt",
    "us-doj-chapter13-standing-trustee-handbook-2012.docx",
]
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[^\W\d_]{2,}")


def documents(corpus: Path | None) -> list[dict[str, Any]]:
    paths = sorted(FIXTURES.glob("*.txt")) + sorted(FIXTURES.glob("*.md"))
    if corpus and corpus.is_dir():
        paths += [corpus / name for name in CORPUS_DOCUMENTS if (corpus / name).exists()]
    docs = [parse_file(path, ParseOptions()).document for path in paths]
    return [doc.model_dump(mode="json") for doc in docs if doc is not None]


# -- 1. synthetic pairs ------------------------------------------------------------------------


class Planter:
    """Makes the synthetic pairs and remembers what was planted."""

    def __init__(self, chunks: list[Chunk], seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.chunks = [c for c in chunks if sentences(c.text)]
        self.sentences = {c.id: sentences(c.text) for c in self.chunks}
        self.words = {c.id: _WORD.findall(c.text) for c in self.chunks}
        self.korean = {c.id: len(_HANGUL.findall(c.text)) > 0.2 * len(c.text) for c in self.chunks}
        self.planted: dict[str, tuple[str, str]] = {}  # copy id -> (kind, original id)

    def fresh(self, i: int) -> QAPair:
        chunk = self.rng.choice(self.chunks)
        words = self.rng.sample(self.words[chunk.id], min(7, len(self.words[chunk.id])))
        subject = " ".join(words)
        question = (f"{subject}에 관하여 문서는 무엇을 말하나요?" if self.korean[chunk.id]
                    else f"What does the document say about {subject}?")
        return QAPair(id=f"p{i}", instruction=question, output=self.rng.choice(self.sentences[chunk.id]),
                      source_doc=chunk.source_doc, doc_id=chunk.doc_id, chunk_id=chunk.id)

    def near_copy(self, i: int, original: QAPair, contradiction: bool) -> QAPair:
        korean = self.korean[original.chunk_id]
        question = original.instruction
        change = self.rng.choice(["case", "punctuation", "ending", "spacing", "word", "word"])
        if change == "word":  # one word of the subject changed: near-duplicate or not, per measure
            words = question.split()
            spot = self.rng.randrange(len(words) - 1)
            words[spot] = self.rng.choice(self.words[original.chunk_id])
            question = " ".join(words)
        elif change == "case":
            question = question.upper() if not korean else question.replace("?", " ?")
        elif change == "punctuation":
            question = question.rstrip("?") + "!?"
        elif change == "ending":
            question = question.replace("말하나요", "말합니까") if korean else question.replace("What does", "what does")
        else:
            question = "  ".join(question.split())
        if contradiction:
            others = [s for s in self.sentences[original.chunk_id] if not near_duplicate(s, original.output)]
            answer = self.rng.choice(others) if others else original.output
        else:
            words = original.output.split()
            answer = " ".join(w for n, w in enumerate(words) if n < 4 or self.rng.random() > 0.1)
        kind = "contradiction" if contradiction else "near_duplicate"
        self.planted[f"p{i}"] = (kind, original.id)
        return original.model_copy(update={"id": f"p{i}", "instruction": question, "output": answer})

    def ungrounded(self, i: int) -> QAPair:
        pair = self.fresh(i)
        other = self.rng.choice([c for c in self.chunks if c.doc_id != pair.doc_id
                                 and self.korean[c.id] == self.korean[pair.chunk_id]])
        self.planted[f"p{i}"] = ("ungrounded", "")
        return pair.model_copy(update={"output": self.rng.choice(self.sentences[other.id])})

    def pairs(self, count: int) -> list[QAPair]:
        made: list[QAPair] = []
        for i in range(count):
            roll = self.rng.random()
            if roll < 0.05 and made:
                made.append(self.near_copy(i, self.rng.choice(made), contradiction=False))
            elif roll < 0.06 and made:
                made.append(self.near_copy(i, self.rng.choice(made), contradiction=True))
            elif roll < 0.08:
                made.append(self.ungrounded(i))
            else:
                made.append(self.fresh(i))
        return made


@contextmanager
def scratch_project(docs: list[dict]) -> Iterator[StageContext]:
    """A project in a temporary folder whose parsed_documents.json holds `docs`."""
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({"paths": {"output": str(Path(tmp) / "output")}})
        workspace = Workspace(config.output_dir)
        workspace.ensure()
        workspace.write_json("parsed_documents", docs)
        yield StageContext(config=config, workspace=workspace)


def stage_run(docs: list[dict], count: int, seed: int) -> tuple[dict[str, Any], list[tuple[str, str]], list[tuple[str, str]]]:
    with scratch_project(docs) as ctx:
        config, workspace = ctx.config, ctx.workspace
        planter = Planter(list(Sources(ctx).chunks.values()), seed)
        pairs = planter.pairs(count)
        workspace.write_json("qa_alpaca", [p.model_dump() for p in pairs])
        ctx = StageContext(config=config, workspace=workspace)  # fresh: chunks rebuilt inside the timing
        started = time.perf_counter()
        result = validate.run(ctx)
        seconds = time.perf_counter() - started
        rejected = {r["id"]: r["rule"] for r in json.loads(workspace.path("rejected_validate").read_text(encoding="utf-8"))}
    by_id = {p.id: p for p in pairs}
    found: dict[str, list[int]] = {"near_duplicate": [0, 0], "contradiction": [0, 0], "ungrounded": [0, 0]}
    duplicate_rules = ("duplicate", "near_duplicate")
    for copy_id, (kind, original_id) in planted_checked(planter, by_id).items():
        rules = (rejected.get(copy_id), rejected.get(original_id))
        if kind != "ungrounded" and any(rule not in (None, *duplicate_rules, "contradiction") for rule in rules):
            continue  # one side fell to an earlier rule (language, groundedness, ...): not checkable
        found[kind][1] += 1
        if kind == "near_duplicate":  # one of the two dropped as a duplicate (or both as a
            # contradiction: another planted copy in their group disagrees)
            hit = any(rule in duplicate_rules for rule in rules) or rules == ("contradiction", "contradiction")
        elif kind == "contradiction":
            hit = rules == ("contradiction", "contradiction")
        else:
            hit = rules[0] in ("ungrounded", "unsupported_number")
        found[kind][0] += hit
    questions = [(p.id, p.instruction) for p in pairs]
    planted = [(original_id, copy_id) for copy_id, (kind, original_id) in planter.planted.items() if kind != "ungrounded"]
    return {"pairs": count, "seconds": round(seconds, 2), "summary": result.summary,
            "rejected": dict(Counter(rejected.values()).most_common()),
            "planted_found": {k: {"found": f, "planted": n, "recall": round(f / n, 4) if n else None}
                              for k, (f, n) in found.items()}}, questions, planted


def planted_checked(planter: Planter, by_id: dict[str, QAPair]) -> dict[str, tuple[str, str]]:
    """Planted items whose plant is real: a copy whose question truly is a near-duplicate of its
    original's (exact measure), whose original was not rejected by an earlier rule for itself."""
    kept = {}
    for copy_id, (kind, original_id) in planter.planted.items():
        if kind == "ungrounded":
            kept[copy_id] = (kind, original_id)
            continue
        if original_id in planter.planted:
            continue  # a copy of a copy: its group is the original's
        copy, original = by_id[copy_id], by_id[original_id]
        if not near_duplicate(copy.instruction, original.instruction):
            continue
        if kind == "contradiction" and not validate.disagreement(copy.output, original.output):
            continue  # the other sentence happened to agree
        kept[copy_id] = (kind, original_id)
    return kept


# -- 2. near-duplicate search against baselines ---------------------------------------------------


def recall(groups: list[list[str]], planted: list[tuple[str, str]], text: dict[str, str]) -> float:
    group_of = {key: n for n, group in enumerate(groups) for key in group}
    truth = [(a, b) for a, b in planted if a in text and b in text and near_duplicate(text[a], text[b])]
    hits = sum(a in group_of and group_of[a] == group_of.get(b) for a, b in truth)
    return round(hits / len(truth), 4) if truth else 1.0


def datasketch_groups(items: list[tuple[str, str]]) -> list[list[str]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    signatures = {}
    for key, text in items:
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in shingles(text)])
        signatures[key] = m
        lsh.insert(key, m)
    parent = {key: key for key, _ in items}

    def find(key: str) -> str:
        while parent[key] != key:
            key = parent[key]
        return key

    for key, m in signatures.items():
        for other in lsh.query(m):
            if other != key:
                parent[find(other)] = find(key)
    members: dict[str, list[str]] = {}
    for key, _ in items:
        members.setdefault(find(key), []).append(key)
    return [g for g in members.values() if len(g) > 1]


def difflib_groups(items: list[tuple[str, str]], threshold: float = 0.8) -> list[list[str]]:
    from difflib import SequenceMatcher

    parent = {key: key for key, _ in items}

    def find(key: str) -> str:
        while parent[key] != key:
            key = parent[key]
        return key

    for n, (a, ta) in enumerate(items):
        matcher = SequenceMatcher(None, b=ta)  # b is cached; a changes
        for b, tb in items[n + 1 :]:
            matcher.set_seq1(tb)
            if matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold:
                parent[find(b)] = find(a)
    members: dict[str, list[str]] = {}
    for key, _ in items:
        members.setdefault(find(key), []).append(key)
    return [g for g in members.values() if len(g) > 1]


def search_comparison(items: list[tuple[str, str]], planted: list[tuple[str, str]], sample: int) -> list[dict[str, Any]]:
    count = len(items)
    text = dict(items)
    rows = []
    started = time.perf_counter()
    groups = near_duplicate_groups(items)
    ours = time.perf_counter() - started
    rows.append({"method": "ours: numpy MinHash + banded LSH + exact check", "texts": count,
                 "seconds": round(ours, 2), "seconds_for_all": round(ours, 2), "recall": recall(groups, planted, text)})
    small = items[:sample]
    small_text = dict(small)
    started = time.perf_counter()
    small_groups = near_duplicate_groups(small)
    ours_small = time.perf_counter() - started
    rows.append({"method": "ours (same sample as datasketch)", "texts": sample, "seconds": round(ours_small, 2),
                 "seconds_for_all": round(ours_small * count / sample, 2), "recall": recall(small_groups, planted, small_text)})
    try:
        started = time.perf_counter()
        ds = datasketch_groups(small)
        seconds = time.perf_counter() - started
        rows.append({"method": "datasketch MinHash + MinHashLSH defaults (0.8, no check)", "texts": sample,
                     "seconds": round(seconds, 2), "seconds_for_all": round(seconds * count / sample, 2),
                     "recall": recall(ds, planted, small_text)})
    except ImportError:
        rows.append({"method": "datasketch (not installed: pip install datasketch)", "texts": 0})
    tiny = items[: max(200, sample // 10)]
    started = time.perf_counter()
    dl = difflib_groups(tiny)
    seconds = time.perf_counter() - started
    rows.append({"method": "pairwise difflib ratio >= 0.8", "texts": len(tiny), "seconds": round(seconds, 2),
                 "seconds_for_all": round(seconds * (count / len(tiny)) ** 2, 1), "recall": recall(dl, planted, dict(tiny))})
    return rows


# -- 3. groundedness calibration ----------------------------------------------------------------


def groundedness_figures(docs: list[dict], seed: int, threshold: float) -> dict[str, Any]:
    with scratch_project(docs) as ctx:
        chunks = list(Sources(ctx).chunks.values())
        text = {c.id: c.text for c in chunks}
    labelled = make_pairs(chunks, seed=seed)
    lexical = LexicalGrounding()
    supports = lexical.score_many((l.pair.output, text[l.pair.chunk_id]) for l in labelled)
    rows = []
    for t in sorted({0.3, 0.35, 0.4, 0.45, 0.5, 0.6, threshold}):
        flagged = [bool(s.missing_numbers) or s.lexical < t for s in supports]
        tp = sum(f and not l.grounded for f, l in zip(flagged, labelled))
        fp = sum(f and l.grounded for f, l in zip(flagged, labelled))
        positives = sum(not l.grounded for l in labelled)
        rows.append({"lexical_threshold": t, "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                     "recall": round(tp / positives, 4), "grounded_rejected": fp,
                     "grounded": len(labelled) - positives, "ungrounded": positives})
    by_kind: dict[str, list[float]] = {}
    for support, l in zip(supports, labelled):
        by_kind.setdefault(l.kind, []).append(support.lexical)
    korean = sum(bool(_HANGUL.search(l.pair.output)) for l in labelled)
    per_language = {}
    for name, wanted in (("ko", True), ("en", False)):
        subset = [(s, l) for s, l in zip(supports, labelled) if bool(_HANGUL.search(text[l.pair.chunk_id][:2000])) == wanted]
        flagged = [(bool(s.missing_numbers) or s.lexical < threshold, l) for s, l in subset]
        tp = sum(f and not l.grounded for f, l in flagged)
        fp = sum(f and l.grounded for f, l in flagged)
        positives = sum(not l.grounded for _, l in flagged)
        per_language[name] = {"pairs": len(subset), "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                              "recall": round(tp / positives, 4) if positives else None}
    return {"pairs": len(labelled), "korean_pairs": korean, "documents": len(docs), "sweep": rows,
            "at_threshold_by_language": per_language,
            "mean_score_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())}}


# -- main ----------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--baseline-sample", type=int, default=10_000)
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("SLM_FACTORY_CORPUS", REPO.parent / "shared" / "corpus")))
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "curation.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    docs = documents(args.corpus)
    print(f"{len(docs)} documents ({'with' if args.corpus.is_dir() else 'without'} {args.corpus})")
    stage, questions, planted = stage_run(docs, args.pairs, args.seed)
    print(f"\n1. validate on {args.pairs:,} pairs: {stage['seconds']} s (target < 60 s)\n   {stage['summary']}")
    print("   rejected: " + ", ".join(f"{k} {v}" for k, v in stage["rejected"].items()))
    print(table([{"kind": k, **v} for k, v in stage["planted_found"].items()], ["kind", "found", "planted", "recall"]))

    search = search_comparison(questions, planted, args.baseline_sample)
    print(f"\n2. near-duplicate search on the {args.pairs:,} questions (baselines on a sample, extrapolated);"
          " recall of the planted copies whose question is a near-duplicate (exact measure)")
    print(table(search, ["method", "texts", "seconds", "seconds_for_all", "recall"]))

    threshold = parse_config({}).validation.groundedness.lexical_threshold
    grounded = groundedness_figures(docs, args.seed, threshold)
    print(f"\n3. lexical groundedness on {grounded['pairs']} labelled pairs ({grounded['korean_pairs']} Korean) "
          f"from {grounded['documents']} documents; configured threshold {threshold}")
    print(table(grounded["sweep"], ["lexical_threshold", "precision", "recall", "grounded_rejected", "grounded", "ungrounded"]))
    print("   mean lexical score by kind: " + ", ".join(f"{k} {v}" for k, v in grounded["mean_score_by_kind"].items()))
    print("   at the configured threshold, by the chunk's script: " + ", ".join(
        f"{k}: {v['pairs']} pairs, precision {v['precision']}, recall {v['recall']}"
        for k, v in grounded["at_threshold_by_language"].items()))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "validate": stage, "search": search,
                                     "groundedness": grounded}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
