"""analyze: figures about the dataset the student will be trained on, and the warnings they call
for, as output/data_analysis.json and a self-contained output/report.html.

What is measured: counts per category, document and origin; question and answer lengths in
characters (and in the student's tokens when its tokenizer is on this machine); rejections per
stage and rule; scores; the share of each document's chunks that at least one pair was written
from. The report is drawn from the JSON alone (report.py), so the two never disagree.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slm_factory.curation.common import Sources, input_pairs
from slm_factory.pipeline import STAGES, StageContext, StageResult
from slm_factory.records import Chunk, Document, QAPair, Rejection
from slm_factory.workspace import ARTIFACTS, read_records, write_atomic

FORMAT_VERSION = 1
ORIGINS = ("generated", "paraphrase", "reviewed", "probe")

# Warning thresholds, and why:
# - Under 100 pairs a LoRA run sees each fact a handful of times at best; the original
#   slm-factory and most fine-tuning guides put the useful floor in the hundreds.
FEW_PAIRS = 100
# - A document "dominates" when it holds more than half the pairs among 3 or more documents
#   (with two, half each is the even split, so the rule would fire on noise) AND its share of
#   pairs is over 1.5x its share of the chunks: a document that is most of the text may fairly
#   have most of the pairs; one that got far more pairs than its size skews what the student
#   learns towards it.
DOMINANT_SHARE = 0.5
DOMINANT_MIN_DOCUMENTS = 3
DOMINANT_OVER_SIZE = 1.5
# - A category is "almost nothing" when it has under 5 pairs or under 2% of them: too few
#   examples for the student to learn that kind of question. Only with 2+ categories (auto
#   questions all share one).
THIN_CATEGORY_PAIRS = 5
THIN_CATEGORY_SHARE = 0.02
# - An answer within 5% of validation.max_answer_length was likely cut to fit it.
NEAR_LIMIT = 0.95
# - Ending mid-sentence only counts for answers long enough to be sentences (a short answer
#   such as "Paris" or "3 years" ends without a full stop by nature). Counted in words, not
#   characters: a Korean sentence takes about half the characters of its English one.
CUT_MIN_WORDS = 8
EXAMPLES = 5  # shortest/longest pairs shown in the report
CUT_LISTED = 20

# The end of a finished sentence: terminal punctuation, closing brackets or quotes, a table row,
# a code fence, or a Korean sentence ending (also the terse -함/-임/-음 style of Korean notices).
_FINISHED = re.compile(
    r"""(?:[.!?…。！？)\]}"'”’»|`*>~]|다|요|음|함|임|됨|까|죠|오|것|등)\s*$"""
)
# The last line is a list item or a table row: lists end without a full stop.
_LIST_LINE = re.compile(r"(?m)^\s*(?:[-*•·▪◦]|\d+[.)]|[가-하][.)]|\|)\s*[^\n]*\Z")


# -- what the stage reads ------------------------------------------------------------------------


def run(ctx: StageContext) -> StageResult:
    pairs = input_pairs(ctx, "analyze")
    sources = Sources(ctx)
    counter, note = student_token_counter(_student_source(ctx))
    analysis = analyse(
        pairs,
        probes=_probes(ctx),
        rejections=_rejections(ctx),
        documents=sources.documents,
        chunks=sources.chunks,
        max_answer_length=ctx.config.validation.max_answer_length,
        count_tokens=counter,
    )
    analysis["meta"] = {
        "project": ctx.config.project.name,
        "language": ctx.config.project.language,
        "source": ctx.options.get("data") or ARTIFACTS[_pairs_artifact(ctx)],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "student": ctx.config.student.model,
        "tokens_note": note,
        "max_answer_length": ctx.config.validation.max_answer_length,
    }
    ctx.workspace.write_json("data_analysis", analysis)
    from slm_factory.curation.report import render_report

    report = ctx.workspace.path("report")
    write_atomic(report, render_report(analysis).encode("utf-8"))
    return _result(analysis, report)


def _pairs_artifact(ctx: StageContext) -> str:
    from slm_factory.pipeline import pairs_input, stage_named

    return pairs_input(stage_named("analyze"), ctx.config)


def _probes(ctx: StageContext) -> list[QAPair]:
    path = ctx.workspace.path("qa_test")
    return read_records(path, QAPair, ARTIFACTS["qa_test"]) if path.is_file() else []


def _rejections(ctx: StageContext) -> dict[str, list[Rejection]]:
    """Every rejected/<stage>.json there is, in pipeline order (a stage turned off since may
    have left one: its reasons still explain where pairs went)."""
    found: dict[str, list[Rejection]] = {}
    for stage in STAGES:
        for name in stage.also_writes:
            path = ctx.workspace.path(name)
            if name.startswith("rejected_") and path.is_file():
                found[stage.name] = read_records(path, Rejection, ARTIFACTS[name])
    return found


def _student_source(ctx: StageContext) -> str:
    """Where the student's tokenizer is: the `smollm2` alias and a .gguf file mean the transformers
    folder they are converted to once (train converts and caches the same folder)."""
    model = ctx.config.student.model.strip()
    if model.lower() != "smollm2" and not model.lower().endswith(".gguf"):
        return model
    from slm_factory.pipeline import StageError
    from slm_factory.training.models import resolve_student

    try:
        return str(resolve_student(ctx.config))
    except (StageError, ImportError):
        return model


def student_token_counter(model: str) -> tuple[Callable[[list[str]], list[int]] | None, str]:
    """A function counting the student's tokens, when its tokenizer is on this machine (a
    folder, or an HF name already in the local cache); never downloads. Else None and why."""
    if not _tokenizer_at_hand(model):
        return None, f"student tokenizer {model} is not on this machine (no folder, not in the HF cache): token lengths skipped"
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    except ImportError:
        return None, "transformers is not installed (pip install 'slm-factory[train]'): token lengths skipped"
    except Exception as error:  # a damaged or partial folder: the report goes on without tokens
        return None, f"student tokenizer {model} could not be loaded ({type(error).__name__}): token lengths skipped"
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous

    def count(texts: list[str]) -> list[int]:
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        return [len(ids) for ids in encoded]

    return count, f"token lengths counted with the student tokenizer {model}"


def _tokenizer_at_hand(model: str) -> bool:
    """Cheap check before importing transformers (seconds): a local folder, or a cached hub
    entry holding a tokenizer file."""
    if Path(model).expanduser().is_dir():
        return True
    if model.count("/") > 1 or model.startswith((".", "/", "~")):
        return False  # a path that does not exist
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
        try:
            if isinstance(try_to_load_from_cache(model, filename), str):
                return True
        except Exception:  # an invalid repo id
            return False
    return False


# -- the figures ---------------------------------------------------------------------------------


@dataclass
class _Doc:
    key: str
    name: str
    title: str = ""
    language: str = ""
    chunk_ids: set[str] = field(default_factory=set)
    pairs: int = 0
    probes: int = 0
    covered: set[str] = field(default_factory=set)


def analyse(
    pairs: Sequence[QAPair],
    probes: Sequence[QAPair] = (),
    rejections: dict[str, list[Rejection]] | None = None,
    documents: dict[str, Document] | None = None,
    chunks: dict[str, Chunk] | None = None,
    max_answer_length: int = 2000,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
) -> dict[str, Any]:
    """Every figure of data_analysis.json (but `meta`), from the pairs and their sources."""
    rejections = rejections or {}
    docs = _documents(pairs, probes, documents or {}, chunks or {})
    questions = [p.instruction for p in pairs]
    answers = [p.output for p in pairs]
    lengths = {
        "question_chars": distribution([len(q) for q in questions]),
        "answer_chars": distribution([len(a) for a in answers]),
    }
    if count_tokens is not None:
        lengths["question_tokens"] = distribution(count_tokens(questions))
        lengths["answer_tokens"] = distribution(count_tokens(answers))
    unmatched = sum(1 for p in pairs if chunks and p.chunk_id and p.chunk_id not in chunks)
    cut = cut_answers(pairs, max_answer_length)
    by_category = dict(Counter(p.category or "(none)" for p in pairs).most_common())
    by_document = [_document_row(doc) for doc in sorted(docs.values(), key=lambda d: (-d.pairs, d.name))]
    all_chunks = sum(len(d.chunk_ids) for d in docs.values())
    covered = sum(len(d.covered) for d in docs.values())
    origins = _origin_counts(pairs, probes)
    analysis: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "totals": {
            "pairs": len(pairs),
            "probes": len(probes),
            "documents": len(docs),
            "chunks": all_chunks,
            "covered_chunks": covered,
            "coverage": round(covered / all_chunks, 4) if all_chunks else None,
            "rejected": sum(len(items) for items in rejections.values()),
            "unmatched_chunk": unmatched,
            "without_chunk": sum(1 for p in pairs if not p.chunk_id),
        },
        "by_origin": {origin: origins[origin] for origin in ORIGINS if origins[origin]},
        "by_category": by_category,
        "by_document": by_document,
        "lengths": lengths,
        "rejections": {stage: _reasons(items) for stage, items in rejections.items()},
        "scores": score_histogram(pairs, rejections.get("score", [])),
        "cut_answers": cut[:CUT_LISTED],
        "examples": examples(pairs),
    }
    analysis["warnings"] = warnings(analysis, len(cut), max_answer_length)
    return analysis


def _origin_counts(pairs: Sequence[QAPair], probes: Sequence[QAPair]) -> Counter[str]:
    counts = Counter(p.origin for p in pairs)
    counts["probe"] += len(probes)  # qa_test.json holds probes whatever their records say
    return counts


def _documents(
    pairs: Sequence[QAPair], probes: Sequence[QAPair], documents: dict[str, Document], chunks: dict[str, Chunk]
) -> dict[str, _Doc]:
    docs = {
        doc.id: _Doc(doc.id, Path(doc.path).name, doc.title, doc.language) for doc in documents.values()
    }
    for chunk in chunks.values():
        docs.setdefault(chunk.doc_id, _Doc(chunk.doc_id, chunk.source_doc)).chunk_ids.add(chunk.id)
    # Records from other tools name their document by file only.
    by_name = {doc.name: key for key, doc in docs.items()}

    def doc_of(pair: QAPair) -> _Doc:
        key = pair.doc_id or by_name.get(pair.source_doc) or pair.source_doc or "(unknown)"
        return docs.setdefault(key, _Doc(key, pair.source_doc or "(unknown)"))

    for pair in pairs:
        doc = doc_of(pair)
        doc.pairs += 1
        if pair.chunk_id in doc.chunk_ids:
            doc.covered.add(pair.chunk_id)
    for probe in probes:
        doc_of(probe).probes += 1
    return docs


def _document_row(doc: _Doc) -> dict[str, Any]:
    chunks = len(doc.chunk_ids)
    return {
        "doc_id": doc.key,
        "name": doc.name,
        "title": doc.title,
        "language": doc.language,
        "pairs": doc.pairs,
        "probes": doc.probes,
        "chunks": chunks,
        "covered_chunks": len(doc.covered),
        "coverage": round(len(doc.covered) / chunks, 4) if chunks else None,
    }


def _reasons(rejections: Iterable[Rejection]) -> dict[str, int]:
    return dict(Counter(r.rule for r in rejections).most_common())


def distribution(values: Sequence[int]) -> dict[str, Any]:
    """Summary figures and a histogram of non-negative integers (lengths)."""
    if not values:
        return {"count": 0, "min": None, "max": None, "mean": None, "median": None, "p90": None,
                "histogram": {"edges": [], "counts": []}}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 1),
        "median": _clean(statistics.median(ordered)),
        "p90": ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)],
        "histogram": histogram(ordered),
    }


def histogram(values: Sequence[float], bins: int = 20) -> dict[str, list[float]]:
    """Counts over equal bins from 0 whose width is a round number (1, 2 or 5 x 10^k), so the
    axis reads naturally; `edges` has one more entry than `counts`."""
    if not values:
        return {"edges": [], "counts": []}
    top = max(values)
    width = _round_width(top / bins if top > 0 else 1)
    n = max(1, math.floor(top / width) + 1)
    counts = [0] * n
    for value in values:
        counts[min(n - 1, int(value // width))] += 1
    return {"edges": [_clean(i * width) for i in range(n + 1)], "counts": counts}


def _round_width(raw: float) -> float:
    exponent = math.floor(math.log10(raw)) if raw > 0 else 0
    for step in (1, 2, 5, 10):
        width = step * 10**exponent
        if width >= raw:
            return max(width, 1)  # lengths are whole numbers: no bin narrower than 1
    return 10 ** (exponent + 1)


def _clean(number: float) -> float:
    return int(number) if float(number).is_integer() else round(number, 6)


def score_histogram(pairs: Sequence[QAPair], rejected: Sequence[Rejection]) -> dict[str, Any] | None:
    """Scores of the kept pairs and of those the score stage dropped, per score value (half
    steps when any score is fractional); None when nothing was scored."""
    kept = [p.score for p in pairs if p.score is not None]
    dropped = [r.pair["score"] for r in rejected if isinstance(r.pair.get("score"), (int, float))]
    if not kept and not dropped:
        return None
    step = 1.0 if all(float(s).is_integer() for s in (*kept, *dropped)) else 0.5
    low = min(1.0, *(s for s in (*kept, *dropped)))
    high = max(5.0, *(s for s in (*kept, *dropped)))
    labels = [_clean(low + i * step) for i in range(int(round((high - low) / step)) + 1)]

    def per_label(scores: Sequence[float]) -> list[int]:
        counts = Counter(_clean(round(s / step) * step) for s in scores)
        return [counts.get(label, 0) for label in labels]

    return {"labels": labels, "kept": per_label(kept), "rejected": per_label(dropped),
            "mean_kept": round(statistics.fmean(kept), 2) if kept else None}


def answer_looks_cut(answer: str, max_answer_length: int) -> str | None:
    """Why an answer looks cut short ("near the length limit", "ends mid-sentence"), or None."""
    text = answer.rstrip()
    if len(text) >= NEAR_LIMIT * max_answer_length:
        return f"{len(text)} characters, at the limit of {max_answer_length}"
    if len(text.split()) >= CUT_MIN_WORDS and not _FINISHED.search(text) and not _LIST_LINE.search(text):
        return "ends mid-sentence"
    return None


def cut_answers(pairs: Sequence[QAPair], max_answer_length: int) -> list[dict[str, Any]]:
    found = []
    for pair in pairs:
        reason = answer_looks_cut(pair.output, max_answer_length)
        if reason:
            found.append({"id": pair.id, "source_doc": pair.source_doc, "question": pair.instruction,
                          "ending": pair.output.rstrip()[-120:], "length": len(pair.output), "reason": reason})
    return found


def examples(pairs: Sequence[QAPair]) -> dict[str, list[dict[str, Any]]]:
    """The extremes worth a look: the shortest questions and answers, the longest answers."""

    def row(pair: QAPair) -> dict[str, Any]:
        return {"id": pair.id, "source_doc": pair.source_doc, "category": pair.category,
                "question": pair.instruction[:400], "answer": pair.output[:400],
                "question_chars": len(pair.instruction), "answer_chars": len(pair.output)}

    by_question = sorted(pairs, key=lambda p: (len(p.instruction), p.id))
    by_answer = sorted(pairs, key=lambda p: (len(p.output), p.id))
    return {
        "shortest_questions": [row(p) for p in by_question[:EXAMPLES]],
        "shortest_answers": [row(p) for p in by_answer[:EXAMPLES]],
        "longest_answers": [row(p) for p in reversed(by_answer[-EXAMPLES:])],
    }


# -- warnings ------------------------------------------------------------------------------------


def warnings(analysis: dict[str, Any], cut: int, max_answer_length: int) -> list[dict[str, str]]:
    """What a user should look at before training, each as {code, message}."""
    totals = analysis["totals"]
    pairs = totals["pairs"]
    found: list[dict[str, str]] = []

    def warn(code: str, message: str) -> None:
        found.append({"code": code, "message": message})

    if pairs < FEW_PAIRS:
        warn("few_pairs", f"only {pairs} training pairs (fewer than {FEW_PAIRS}): the student will see too few "
             "examples; add documents or questions (questions.questions_per_chunk, augment)")
    documents = analysis["by_document"]
    dominant = _dominant_document(documents, pairs, totals["chunks"])
    if dominant:
        warn("dominant_document", dominant)
    thin = _thin_categories(analysis["by_category"], pairs)
    if thin:
        warn("thin_categories", f"categories with almost no pairs (under {THIN_CATEGORY_PAIRS} or "
             f"{THIN_CATEGORY_SHARE:.0%}): {', '.join(f'{name} ({n})' for name, n in thin)}")
    if cut:
        warn("cut_answers", f"{cut} answer{'s' if cut != 1 else ''} ({cut / pairs:.1%}) look{'' if cut != 1 else 's'} cut short (within "
             f"{1 - NEAR_LIMIT:.0%} of validation.max_answer_length = {max_answer_length}, or ending mid-sentence); "
             "see the list in report.html")
    empty = [doc["name"] for doc in documents if doc["pairs"] == 0]
    if empty:
        listed = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        warn("documents_without_pairs", f"{len(empty)} document{'s' if len(empty) != 1 else ''} without any pair: {listed}")
    if totals["unmatched_chunk"]:
        unmatched = totals["unmatched_chunk"]
        warn("unmatched_chunks", f"{unmatched} pair{'s' if unmatched != 1 else ''} name{'' if unmatched != 1 else 's'} a chunk that parsed_documents.json no "
             "longer has (documents or chunking changed since generate); coverage leaves them out")
    if totals["without_chunk"]:
        warn("pairs_without_source", f"{totals['without_chunk']} of {pairs} pairs carry no chunk_id (records from "
             "another tool?): coverage cannot count them")
    return found


def _dominant_document(documents: list[dict[str, Any]], pairs: int, chunks: int) -> str | None:
    with_pairs = [doc for doc in documents if doc["pairs"]]
    if len(documents) < DOMINANT_MIN_DOCUMENTS or not with_pairs or not pairs:
        return None
    top = max(with_pairs, key=lambda doc: doc["pairs"])
    share = top["pairs"] / pairs
    if share <= DOMINANT_SHARE:
        return None
    size = top["chunks"] / chunks if chunks else None
    if size is not None and share <= DOMINANT_OVER_SIZE * size:
        return None  # it is most of the text too
    of_text = f" but {size:.0%} of the chunks" if size is not None else ""
    return (f"{top['name']} has {share:.0%} of the pairs ({top['pairs']} of {pairs}){of_text}: the student will "
            "learn mostly this document; balance with questions.questions_per_chunk or more documents")


def _thin_categories(by_category: dict[str, int], pairs: int) -> list[tuple[str, int]]:
    if len(by_category) < 2:
        return []
    return [(name, n) for name, n in by_category.items()
            if n < THIN_CATEGORY_PAIRS or n < THIN_CATEGORY_SHARE * pairs]


# -- the terminal summary ------------------------------------------------------------------------


def _result(analysis: dict[str, Any], report: Path) -> StageResult:
    totals = analysis["totals"]
    coverage = f"{totals['coverage']:.0%}" if totals["coverage"] is not None else "n/a"
    answer = analysis["lengths"]["answer_chars"]
    rows = [
        ("training pairs", str(totals["pairs"])),
        ("held-out probes", str(totals["probes"])),
        ("documents", str(totals["documents"])),
        ("chunk coverage", f"{coverage} ({totals['covered_chunks']} of {totals['chunks']} chunks)"),
        ("rejected", str(totals["rejected"])),
        ("categories", ", ".join(f"{k} {v}" for k, v in list(analysis["by_category"].items())[:6]) or "-"),
        ("answer length (chars)", f"median {answer['median']}, max {answer['max']}" if answer["count"] else "-"),
    ]
    scores = analysis["scores"]
    if scores and scores["mean_kept"] is not None:
        rows.append(("mean score", str(scores["mean_kept"])))
    rows.append(("report", _shown(report)))
    note = analysis["meta"]["tokens_note"]
    return StageResult(
        items=totals["pairs"],
        counts={"pairs": totals["pairs"], "probes": totals["probes"], "warnings": len(analysis["warnings"])},
        lines=[note] if "skipped" in note else [],
        summary=(f"Analysis complete: {totals['pairs']} pairs, {totals['documents']} documents, coverage "
                 f"{coverage}, {len(analysis['warnings'])} warnings"),
        extra={"analysis": {"rows": rows, "warnings": [w["message"] for w in analysis["warnings"]]}},
    )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
