"""The `augment` stage: `augment.num_variants` paraphrases of each training question.

One teacher request per question asks for all its rewrites (teacher_work: ledger, cache, retries);
in answer_first mode each rewrite is a new question written for the pair's answer, one request
each (curation/answer_first.py).
Each rewrite is then checked, and every one dropped is recorded with its rule in
rejected/augment.json:
- `same_as_original` / `near_original`: it does not differ from the question (the near-duplicate
  measure of validate and split: character shingles, `validation.near_duplicate_threshold`);
- `contains_answer`: it states the answer instead of asking for it;
- `changed_numbers`: it states other numbers (years, amounts, article numbers) than the
  question, so it asks about another fact;
- `meaning_drift`: its similarity to the question is under the floor -- cosine of sentence
  embeddings (`augment.similarity_model`, `augment.min_similarity`) where the model suits the
  pair's language, else shared character 3-grams (`augment.min_overlap`); the log says which;
- `near_probe`: it is a near-duplicate of a held-out probe question (qa_test.json), which would
  let the student learn a test question;
- `near_variant`: it is a near-duplicate of a rewrite of the same question already kept.
A kept rewrite keeps the original answer; it has `origin: paraphrase`, `parent_id` and an id
derived from both. The checks run after the teacher is asked, so changing a floor costs no call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from slm_factory.curation import prompts
from slm_factory.curation.answer_first import (
    asks_for_answers,
    fresh_messages,
    fresh_request,
    parse_fresh_question,
)
from slm_factory.curation.common import Sources, input_pairs, reason_counts, write_rejections
from slm_factory.curation.dedup import NearDuplicates, near_duplicate, normalise, numbers, shingles
from slm_factory.curation.grounding import load_embedding_model, model_languages
from slm_factory.curation.teacher_work import TeacherWork, ask_each
from slm_factory.pipeline import StageContext, StageError, StageResult
from slm_factory.records import QAPair, Rejection
from slm_factory.workspace import ARTIFACTS, read_records

PARAPHRASED_ORIGINS = ("generated", "reviewed")  # never a paraphrase of a paraphrase, never a probe


def paraphrase_schema(count: int) -> dict[str, Any]:
    # A bounded array: a small model that starts repeating itself is stopped by the grammar.
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": count}},
        "required": ["questions"],
    }


def paraphrase_messages(pair: QAPair, count: int, language: str) -> list[dict[str, str]]:
    body = prompts.render("paraphrase", language, count=count, question=pair.instruction.strip(),
                          answer=pair.output.strip())
    return [{"role": "user", "content": body}]


def parse_paraphrases(pair: QAPair, data: Any, count: int) -> list[str]:
    """The distinct non-trivial questions of a reply, at most `count`; none raises ValueError."""
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise ValueError('expected {"questions": ["...", ...]}')  # noqa: TRY004 - ask_each's contract
    found: dict[str, None] = {}
    for item in data["questions"]:
        if isinstance(item, str) and len(normalise(item)) >= 4:
            found.setdefault(" ".join(item.split()), None)
    if not found:
        raise ValueError("the reply holds no usable question")
    return list(found)[:count]


def gives_answer(question: str, answer: str) -> bool:
    """The rewrite holds the whole answer (short answers like "Yes." are too common to tell)."""
    plain_answer = normalise(answer)
    return len(plain_answer) >= 8 and plain_answer in normalise(question)


def paraphrase_id(parent_id: str, question: str) -> str:
    key = "\x1f".join((parent_id, "paraphrase", " ".join(question.split())))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


# -- meaning kept: embeddings where they suit the language, else a lexical measure ---------------


def lexical_similarity(a: str, b: str) -> float:
    """Dice coefficient of normalised character 3-grams: paraphrases keep their subject's names
    (0.4-0.75 on hand-made English and Korean rewrites), unrelated questions share ~nothing (< 0.1)."""
    grams_a, grams_b = shingles(a), shingles(b)
    if not grams_a or not grams_b:
        return 0.0
    return 2 * len(grams_a & grams_b) / (len(grams_a) + len(grams_b))


@dataclass
class Similarity:
    value: float
    floor: float
    measure: str  # "embedding <model>" or "lexical"

    @property
    def kept(self) -> bool:
        return self.value >= self.floor


class MeaningMeasure:
    """Similarity between a question and its rewrite, per the pair's language. The embedding
    model is loaded only when some pair needs it, and never downloaded."""

    def __init__(self, ctx: StageContext) -> None:
        section = ctx.config.augment
        self.ctx = ctx
        self.model_name = section.similarity_model.strip()
        self.min_similarity = section.min_similarity
        self.min_overlap = section.min_overlap
        self._model: Any = None
        self._unavailable = not self.model_name
        self.used: dict[str, int] = {}  # measure -> rewrites measured with it
        self.why_lexical: dict[str, int] = {}  # reason -> rewrites measured lexically for it

    def wants_model(self, language: str) -> bool:
        return bool(self.model_name) and (language != "ko" or model_languages(self.model_name) == "any")

    def measure(self, items: list[tuple[str, str, str]]) -> list[Similarity]:
        """(question, rewrite, language) -> similarity, in order; embeddings in one batch."""
        results: list[Similarity | None] = [None] * len(items)
        embed = [i for i, (_, _, language) in enumerate(items) if self.wants_model(language)]
        model = self._load() if embed else None
        if model is not None:
            texts = [text for i in embed for text in items[i][:2]]
            vectors = model.encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=False)
            label = f"embedding {self.model_name}"
            for n, i in enumerate(embed):
                value = float(vectors[2 * n] @ vectors[2 * n + 1])
                results[i] = Similarity(round(value, 3), self.min_similarity, label)
        for i, (question, rewrite, language) in enumerate(items):
            if results[i] is None:
                if not self.model_name:
                    reason = "augment.similarity_model is empty"
                elif self.wants_model(language):
                    reason = f"{self.model_name} is not at hand"
                else:
                    reason = f"{self.model_name} is English-only and the pair is Korean"
                self.why_lexical[reason] = self.why_lexical.get(reason, 0) + 1
                results[i] = Similarity(round(lexical_similarity(question, rewrite), 3), self.min_overlap, "lexical")
        for result in results:
            assert result is not None
            self.used[result.measure] = self.used.get(result.measure, 0) + 1
        return [r for r in results if r is not None]

    def _load(self) -> Any:
        if self._model is None and not self._unavailable:
            try:
                self._model = load_embedding_model(self.model_name)
            except (ImportError, OSError, ValueError) as error:
                self.ctx.log.warning(f"augment.similarity_model {self.model_name}: {error}; "
                                     "meaning is checked with the lexical measure (augment.min_overlap)")
                self._unavailable = True
        return self._model

    def summary(self) -> str:
        """One line: which measure judged how many rewrites, and why any were lexical."""
        if not self.used:
            return ""
        parts = []
        for measure, count in self.used.items():
            if measure == "lexical" and self.why_lexical:
                reasons = "; ".join(self.why_lexical)
                parts.append(f"{count} by the lexical measure, floor {self.min_overlap} ({reasons})")
            elif measure == "lexical":
                parts.append(f"{count} by the lexical measure, floor {self.min_overlap}")
            else:
                parts.append(f"{count} by {measure} cosine, floor {self.min_similarity}")
        return "meaning kept checked for " + ", ".join(parts)


# -- the stage -----------------------------------------------------------------------------------


def probe_index(ctx: StageContext) -> NearDuplicates | None:
    """The held-out probe questions, when split wrote them."""
    path = ctx.workspace.path("qa_test")
    if not path.exists():
        return None
    probes = read_records(path, QAPair, ARTIFACTS["qa_test"])
    index = NearDuplicates(ctx.config.validation.near_duplicate_threshold)
    index.add_many((probe.id, probe.instruction) for probe in probes)
    return index


def run(ctx: StageContext) -> StageResult:
    pairs = input_pairs(ctx, "augment")
    section = ctx.config.augment
    count = section.num_variants
    sources = Sources(ctx)
    parents = [pair for pair in pairs if pair.origin in PARAPHRASED_ORIGINS] if count else []
    probes = probe_index(ctx)
    work, rewrites = (ask_fresh_questions if asks_for_answers(ctx.config) else ask_paraphrases)(
        ctx, parents, count, sources)
    if work.stopped:
        raise StageError(f"{work.stopped}; {len(rewrites)} of {len(parents)} questions are paraphrased and saved "
                         f"in {ctx.workspace.partial_path('qa_augmented').name}: run `slm-factory augment` again "
                         "when the teacher works")
    if parents and not rewrites:
        raise StageError(f"no question got a usable paraphrase ({len(work.failures)} requests failed: "
                         f"{next(iter(work.failures.values()), '')}); qa_augmented.json was not written")
    measure = MeaningMeasure(ctx)
    kept, rejections = check_rewrites(ctx, parents, rewrites, sources, measure, probes)
    output = []
    for pair in pairs:
        output.append(pair)
        output.extend(kept.get(pair.id, []))
    ctx.workspace.write_json("qa_augmented", [pair.model_dump() for pair in output])
    write_rejections(ctx, "rejected_augment", rejections)
    result = _result(ctx, work, pairs, output, rejections, probes is not None)
    if measure.summary():
        ctx.log.info(measure.summary())
        result.lines.insert(0, measure.summary())
        result.extra["similarity"] = measure.used
    return result


def ask_paraphrases(ctx: StageContext, parents: list[QAPair], count: int, sources: Sources
                    ) -> tuple[TeacherWork, dict[str, list[str]]]:
    """One request per question for all its rewrites; returns the work and the rewrites by parent id."""
    work = ask_each(ctx, artifact="qa_augmented", items=parents, item_id=lambda pair: pair.id,
                    messages=lambda pair: paraphrase_messages(pair, count, sources.language(pair)),
                    schema=paraphrase_schema(max(1, count)),
                    parse=lambda pair, data: parse_paraphrases(pair, data, count),
                    settings={"task": "paraphrase", "num_variants": count},
                    description="Paraphrasing", max_concurrency=ctx.config.augment.max_concurrency)
    return work, work.results


@dataclass(frozen=True)
class Draw:
    """The k-th new question asked for one pair's answer (answer_first mode)."""

    pair: QAPair
    k: int

    @property
    def id(self) -> str:
        return f"{self.pair.id}#{self.k}"


def ask_fresh_questions(ctx: StageContext, parents: list[QAPair], count: int, sources: Sources
                        ) -> tuple[TeacherWork, dict[str, list[str]]]:
    """answer_first mode (curation/answer_first.py): `count` new questions per pair, each a request
    of its own for the pair's answer with a seed of its own; returns the work (failures keyed by
    parent id) and the questions by parent id."""
    draws = [Draw(pair, k) for pair in parents for k in range(count)]
    messages = {draw.id: fresh_messages(draw.pair, sources.language(draw.pair)) for draw in draws}
    work = ask_each(ctx, artifact="qa_augmented", items=draws, item_id=lambda draw: draw.id,
                    messages=lambda draw: messages[draw.id], schema=None,
                    parse=lambda draw, text: parse_fresh_question(draw.pair, text, messages[draw.id]),
                    request=lambda draw: fresh_request(ctx.config, f"variant\x1f{draw.id}"),
                    settings={"task": "paraphrase", "mode": "answer_first"},
                    description="Paraphrasing", max_concurrency=ctx.config.augment.max_concurrency)
    rewrites: dict[str, list[str]] = {}
    for draw in draws:
        if draw.id in work.results:
            rewrites.setdefault(draw.pair.id, []).append(work.results[draw.id])
    work.failures = {draw.pair.id: work.failures[draw.id] for draw in draws if draw.id in work.failures}
    return work, rewrites


def check_rewrites(ctx: StageContext, parents: list[QAPair], rewrites: dict[str, list[str]], sources: Sources,
                   measure: MeaningMeasure, probes: NearDuplicates | None) -> tuple[dict[str, list[QAPair]], list[Rejection]]:
    """The rules of the module doc, in order; returns the kept rewrites by parent id."""
    threshold = ctx.config.validation.near_duplicate_threshold
    rejections: list[Rejection] = []
    candidates: list[tuple[QAPair, QAPair]] = []  # (parent, rewrite) that differ from the parent

    def reject(rewrite: QAPair, rule: str, detail: str) -> None:
        rejections.append(Rejection(id=rewrite.id, stage="augment", rule=rule, detail=detail, pair=rewrite.model_dump()))

    for parent in parents:
        for question in rewrites.get(parent.id, []):
            rewrite = as_paraphrase(parent, question, ctx.config.teacher.model)
            if normalise(question) == normalise(parent.instruction):
                reject(rewrite, "same_as_original", f"the same as {parent.instruction!r}")
            elif gives_answer(question, parent.output):
                reject(rewrite, "contains_answer", f"it states the answer {parent.output[:80]!r}")
            elif numbers(question) != numbers(parent.instruction):
                reject(rewrite, "changed_numbers", f"numbers {sorted(numbers(question))} instead of "
                                                   f"{sorted(numbers(parent.instruction))} in {parent.instruction!r}")
            elif near_duplicate(question, parent.instruction, threshold):
                reject(rewrite, "near_original", f"a near-duplicate of {parent.instruction!r}")
            else:
                candidates.append((parent, rewrite))
    similarities = measure.measure([(parent.instruction, rewrite.instruction, sources.language(parent))
                                    for parent, rewrite in candidates])
    kept: dict[str, list[QAPair]] = {}
    for (parent, rewrite), similarity in zip(candidates, similarities):
        siblings = kept.get(parent.id, [])
        near_probes = probes.query(rewrite.instruction) if probes is not None else []
        if not similarity.kept:
            reject(rewrite, "meaning_drift", f"similarity {similarity.value:.3f} < {similarity.floor} "
                                             f"({similarity.measure}) to {parent.instruction!r}")
        elif near_probes:
            reject(rewrite, "near_probe", f"a near-duplicate of held-out probe {near_probes[0]}")
        elif any(near_duplicate(rewrite.instruction, other.instruction, threshold) for other in siblings):
            reject(rewrite, "near_variant", "a near-duplicate of another kept paraphrase of the same question")
        else:
            kept.setdefault(parent.id, []).append(rewrite)
    return kept, rejections


def as_paraphrase(parent: QAPair, question: str, teacher: str) -> QAPair:
    # The answer, provenance and category are the parent's; the score judged the parent's wording.
    return parent.model_copy(update={"id": paraphrase_id(parent.id, question), "instruction": question,
                                     "origin": "paraphrase", "parent_id": parent.id, "teacher": teacher,
                                     "score": None, "score_reason": ""})


def _result(ctx: StageContext, work: TeacherWork, pairs: list[QAPair], output: list[QAPair], rejections: list[Rejection],
            guarded: bool) -> StageResult:
    made = len(output) - len(pairs)
    result = StageResult(
        items=len(output),
        counts={"originals": len(pairs), "paraphrases": made, "rejected": len(rejections),
                "failed": len(work.failures), "reused": work.reused},
        extra={"teacher": work.teacher_stats, "rejections": reason_counts(rejections), "probe_guard": guarded},
        summary=f"Augmentation complete: {len(pairs)} → {len(output)}",
    )
    work.log_pair_failures(ctx.log, pairs)
    if work.failures and asks_for_answers(ctx.config):  # seeded draws: a rerun would draw the same
        result.lines.append(f"{len(work.failures)} questions got fewer new questions than asked for "
                            "(a draw gave no usable question in three tries)")
    elif work.failures:
        result.lines.append(f"{len(work.failures)} questions got no usable paraphrase; "
                            "run `slm-factory augment` again to retry only those")
    return result
