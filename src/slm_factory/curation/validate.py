"""The `validate` stage: rules that need no teacher, over all pairs at once.

Every dropped pair gets one Rejection (rule, detail) in rejected/validate.json; the first rule
that fails is the one recorded. In order:
1. the original slm-factory's rules (`validation.*`): `empty` question or answer, `too_short` /
   `too_long` answers (characters), `reject_pattern` (the answer matches one of
   `validation.reject_patterns`);
2. `language`: the question or the answer is clearly in another language than the pair's
   document (langcheck.py says when a text is too little to tell);
3. groundedness against the pair's own source chunk (grounding.py): `ungrounded` when too little
   of the answer's wording is in the chunk (or, with `validation.groundedness.enabled`, its
   embedding similarity is under the threshold), `unsupported_number` when it states a number
   the chunk does not. Pairs whose chunk cannot be found (--data from elsewhere) skip it, counted;
4. near-duplicates among what is left (dedup.py, `validation.near_duplicate_threshold`):
   pairs whose questions are near-duplicates are compared by their answers:
   - answers that agree (near-duplicates, or one holds the other's numbers, or one's wording is
     mostly in the other) make the pairs duplicates: the best is kept (highest groundedness,
     then the longer answer, then the id), the others are `duplicate` (same normalised
     question: the original's exact-duplicate rule) or `near_duplicate`;
   - answers that disagree are a `contradiction`, and both pairs are rejected, each naming the
     other and both answers: training on both would teach the student two facts for one
     question, and nothing here knows which is right. Disagree means: both state numbers and
     neither's numbers hold the other's (a changed date, amount, article), or they share almost
     no wording (under 25% of the shorter answer's n-grams are in the longer: other names,
     other facts). Two correct answers phrased differently usually share their key terms and
     numbers, so they count as duplicates, not as a contradiction.
Ungrounded pairs go before duplicates are judged, so a grounded answer is never dropped as the
duplicate of an ungrounded one, nor flagged as contradicting it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING

from slm_factory.curation.common import Sources, input_pairs, reason_counts, write_rejections
from slm_factory.curation.dedup import NearDuplicates, near_duplicate, normalise, numbers
from slm_factory.curation.grounding import (
    EmbeddingGrounding,
    LexicalGrounding,
    load_embedding_model,
    model_languages,
    support_grams,
)
from slm_factory.curation.langcheck import wrong_language
from slm_factory.pipeline import StageContext, StageError, StageResult, pairs_input, stage_named
from slm_factory.records import QAPair, Rejection
from slm_factory.workspace import ARTIFACTS

if TYPE_CHECKING:
    from slm_factory.config import ValidationSection

STAGE = "validate"
# Under this share of the shorter answer's n-grams in the longer one, two answers to one
# question state different things.
DISAGREE_BELOW = 0.25
# A group of near-duplicate questions larger than this is compared against its best pairs only.
_PAIRWISE_LIMIT = 200


@dataclass(eq=False)  # one per pair, compared by identity
class Checked:
    """A pair on its way through the rules, with what was measured about it."""

    pair: QAPair
    language: str
    source: str  # the source chunk's text; "" when it cannot be found
    grounded: float | None = None  # the groundedness used to pick the best duplicate
    rejection: Rejection | None = None

    def reject(self, rule: str, detail: str) -> None:
        if self.rejection is None:
            self.rejection = Rejection(id=self.pair.id, stage=STAGE, rule=rule, detail=detail,
                                       pair=self.pair.model_dump())


@dataclass
class Notes:
    """What the log says besides the rejections."""

    without_source: int = 0
    lexical_only: int = 0
    embedding_scored: int = 0
    model: str = ""
    lines: list[str] = field(default_factory=list)


def run(ctx: StageContext) -> StageResult:
    pairs = input_pairs(ctx, STAGE)
    if not pairs:
        raise StageError(f"{_input_name(ctx)} holds no QA pairs; nothing to validate")
    sources = Sources(ctx)
    checked = [Checked(pair, sources.language(pair), sources.chunk_text(pair)) for pair in pairs]
    notes = Notes()
    section = ctx.config.validation
    apply_rules(checked, section)
    if section.check_language:
        check_language(checked)
    check_groundedness(ctx, checked, notes)
    judge_near_duplicates(checked, section.near_duplicate_threshold, section.deduplicate, section.contradictions)
    accepted = [item.pair for item in checked if item.rejection is None]
    rejections = [item.rejection for item in checked if item.rejection is not None]
    ctx.workspace.write_json("qa_validated", [pair.model_dump() for pair in accepted])
    write_rejections(ctx, "rejected_validate", rejections)
    return _result(pairs, accepted, rejections, notes)


def _input_name(ctx: StageContext) -> str:
    data = ctx.options.get("data")
    return f"--data {data}" if data else ARTIFACTS[pairs_input(stage_named(STAGE), ctx.config)]


def _result(pairs: list[QAPair], accepted: list[QAPair], rejections: list[Rejection], notes: Notes) -> StageResult:
    reasons = reason_counts(rejections)
    lines = []
    if reasons:
        lines.append("rejected: " + ", ".join(f"{rule} {count}" for rule, count in reasons.items())
                     + " (details in rejected/validate.json)")
    if notes.without_source:
        lines.append(f"groundedness not checked for {notes.without_source} pairs: their source chunk is not in "
                     "parsed_documents.json (pairs from elsewhere, or documents changed since)")
    lines.extend(notes.lines)
    if not accepted:
        lines.append("no pair was accepted; qa_validated.json is empty: see rejected/validate.json")
    return StageResult(
        items=len(accepted),
        counts={"accepted": len(accepted), "rejected": len(rejections), **reasons,
                "without_source": notes.without_source},
        lines=lines,
        extra={"rejections": reasons, "embedding_scored": notes.embedding_scored, "lexical_only": notes.lexical_only},
        summary=f"Validation complete: {len(accepted)} accepted, {len(rejections)} rejected (out of {len(pairs)})",
    )


# -- 1. the original rules -----------------------------------------------------------------------


def apply_rules(checked: list[Checked], section: ValidationSection) -> None:
    patterns = [(i, re.compile(p)) for i, p in enumerate(section.reject_patterns)]
    for item in checked:
        question, answer = item.pair.instruction.strip(), item.pair.output.strip()
        if section.remove_empty and (not question or not answer):
            item.reject("empty", "the question is empty" if not question else "the answer is empty")
            continue
        if len(answer) < section.min_answer_length:
            item.reject("too_short", f"answer has {len(answer)} characters, fewer than "
                                     f"validation.min_answer_length {section.min_answer_length}")
        elif len(answer) > section.max_answer_length:
            item.reject("too_long", f"answer has {len(answer)} characters, more than "
                                    f"validation.max_answer_length {section.max_answer_length}")
        else:
            for index, pattern in patterns:
                match = pattern.search(answer)
                if match:
                    item.reject("reject_pattern", f"answer matches validation.reject_patterns[{index}] "
                                                  f"{pattern.pattern!r} at {match.group()!r}")
                    break


# -- 2. language ---------------------------------------------------------------------------------


def check_language(checked: list[Checked]) -> None:
    for item in _open(checked):
        for part, text in (("question", item.pair.instruction), ("answer", item.pair.output)):
            found = wrong_language(text, item.language)
            if found:
                item.reject("language", f"the {part} is in {found}, its document in {item.language}")
                break


# -- 3. groundedness -----------------------------------------------------------------------------


def check_groundedness(ctx: StageContext, checked: list[Checked], notes: Notes) -> None:
    settings = ctx.config.validation.groundedness
    lexical = LexicalGrounding()
    sourced = []
    for item in _open(checked):
        if not item.source:
            notes.without_source += 1
            continue
        support = lexical.score(item.pair.output, item.source)
        item.grounded = support.lexical
        if settings.check_numbers and support.missing_numbers:
            item.reject("unsupported_number", f"the answer states {', '.join(support.missing_numbers)}, "
                                              f"which its source chunk {item.pair.chunk_id} does not")
        elif support.lexical < settings.lexical_threshold:
            item.reject("ungrounded", f"{support.lexical:.0%} of the answer's wording is in its source chunk "
                                      f"{item.pair.chunk_id} (validation.groundedness.lexical_threshold "
                                      f"{settings.lexical_threshold})")
        else:
            sourced.append(item)
    if settings.enabled and sourced:
        check_embeddings(ctx, sourced, notes)


def check_embeddings(ctx: StageContext, items: list[Checked], notes: Notes) -> None:
    settings = ctx.config.validation.groundedness
    languages = model_languages(settings.model)
    scored = [item for item in items if languages == "any" or item.language == languages]
    notes.lexical_only = len(items) - len(scored)
    notes.model = settings.model
    if notes.lexical_only:
        other = sorted({item.language for item in items if item not in scored})
        notes.lines.append(f"{notes.lexical_only} pairs in {', '.join(other)} scored lexically only: "
                           f"{settings.model} is English-only (validation.groundedness.model)")
    if not scored:
        return
    try:
        model = load_embedding_model(settings.model)
    except (ImportError, OSError, ValueError) as error:
        raise StageError(f"validation.groundedness.model: cannot load {settings.model!r} ({_first_line(error)}); "
                         "set a local model folder, or validation.groundedness.enabled: false") from None
    scores = EmbeddingGrounding(model).score_many([(item.pair.output, item.source) for item in scored])
    notes.embedding_scored = len(scored)
    notes.lines.append(f"{len(scored)} pairs also scored with {settings.model} (threshold {settings.threshold})")
    for item, score in zip(scored, scores):
        item.grounded = score
        if score < settings.threshold:
            item.reject("ungrounded", f"embedding similarity {score:.2f} to its source chunk {item.pair.chunk_id}, "
                                      f"under validation.groundedness.threshold {settings.threshold}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# -- 4. near-duplicates and contradictions ---------------------------------------------------------


def judge_near_duplicates(checked: list[Checked], threshold: float, deduplicate: bool, contradictions: bool) -> None:
    if not (deduplicate or contradictions):
        return
    candidates = list(_open(checked))
    index = NearDuplicates(threshold)
    index.add_many((str(i), item.pair.instruction) for i, item in enumerate(candidates))
    for group in index.groups():
        members = sorted((candidates[int(key)] for key in group), key=_rank)
        conflicts = _conflicts(members, threshold) if contradictions else {}
        for item, (other, why) in conflicts.items():
            item.reject("contradiction", f"its question is a near-duplicate of pair {other.pair.id}'s but the "
                                         f"answers disagree ({why}): {_clip(item.pair.output)!r} vs "
                                         f"{_clip(other.pair.output)!r}")
        if not deduplicate:
            continue
        kept = [item for item in members if item not in conflicts]
        for item in kept[1:]:
            same = normalise(item.pair.instruction) == normalise(kept[0].pair.instruction)
            item.reject("duplicate" if same else "near_duplicate",
                        f"{'same question as' if same else 'near-duplicate of'} pair {kept[0].pair.id}, "
                        "which is kept (better grounded or longer answer)")


def _rank(item: Checked) -> tuple[float, int, str]:
    """Best first: highest groundedness (to 0.1: finer differences are noise), then the longer
    answer, then the id (stable)."""
    grounded = round(item.grounded, 1) if item.grounded is not None else 0.0
    return (-grounded, -len(item.pair.output.strip()), item.pair.id)


def _conflicts(members: list[Checked], threshold: float) -> dict[Checked, tuple[Checked, str]]:
    """Each member whose answer disagrees with a member whose question is its near-duplicate,
    with the first such member and why."""
    found: dict[Checked, tuple[Checked, str]] = {}
    for a, b in _compared(members):
        if not near_duplicate(a.pair.instruction, b.pair.instruction, threshold):
            continue  # in one group through others, not near-duplicates themselves
        why = disagreement(a.pair.output, b.pair.output, threshold)
        if why:
            found.setdefault(a, (b, why))
            found.setdefault(b, (a, why))
    return found


def _compared(members: list[Checked]) -> Iterator[tuple[Checked, Checked]]:
    """Every two members; in a very large group, every member against the best ones only
    (a thousand copies of one question are not worth half a million comparisons)."""
    if len(members) <= _PAIRWISE_LIMIT:
        yield from combinations(members, 2)
        return
    head = members[:_PAIRWISE_LIMIT // 4]
    yield from combinations(head, 2)
    for item in members[len(head):]:
        for best in head:
            yield best, item


def disagreement(a: str, b: str, threshold: float = 0.8) -> str:
    """Why two answers to one question disagree, or "" when they agree (see the module doc)."""
    if near_duplicate(a, b, threshold):
        return ""
    numbers_a, numbers_b = numbers(a), numbers(b)
    if numbers_a and numbers_b and not (numbers_a <= numbers_b or numbers_b <= numbers_a):
        only = sorted(numbers_a ^ numbers_b)
        return f"different numbers: {', '.join(only[:6])}"
    grams_a, grams_b = support_grams(a), support_grams(b)
    shorter, longer = (grams_a, grams_b) if len(grams_a) <= len(grams_b) else (grams_b, grams_a)
    shared = len(shorter & longer) / len(shorter) if shorter else 1.0
    if shared < DISAGREE_BELOW and not (numbers_a and numbers_b):
        return f"they share {shared:.0%} of their wording"
    return ""


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _open(checked: list[Checked]) -> Iterator[Checked]:
    return (item for item in checked if item.rejection is None)
