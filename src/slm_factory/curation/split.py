"""The `split` stage: training pairs (qa_train.json) and held-out test questions (qa_test.json).

Probes mode (the default): a stratified, seeded share of the pairs are parents; for each, the
teacher writes one new question asking for the same answer in other words. The probe (new
question, the parent's answer as reference) goes to qa_test.json; the parent stays in training,
so the test asks about facts the student learnt, in words it never saw (in answer_first mode the
teacher writes a new question for the parent's answer instead: curation/answer_first.py). A probe that is a
near-duplicate of any training question, repeats its parent or does not stand on its own is
turned down (rejected/split.json) and asked for once more with a note saying why; a second
miss drops it. Asking again keeps the seeded choice of parents as it is (choosing another
parent would make the test set depend on the teacher's replies).

Documents mode: whole documents are held out; their pairs are the test set, unchanged, and no
teacher is called. It measures generalisation to unseen documents instead.

Choices are ranked by a hash of (seed, id), never by a shuffled list, so an unchanged input gives
the same choice, and pairs added to one document leave the choice in the others as it was (but
for the one seat that rounding may move).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from string import Template
from typing import Any

from slm_factory.curation import prompts
from slm_factory.curation.answer_first import (
    asks_for_answers,
    fresh_messages,
    fresh_request,
    parse_fresh_question,
)
from slm_factory.curation.common import Sources, input_pairs, reason_counts, write_rejections
from slm_factory.curation.teacher_work import ask_each, merged_stats
# The rule `generate` applies to every question, kept in one place: a question that points at
# its source ("this document", "위 표") cannot be asked without it.
from slm_factory.generation.qa import _DEICTIC as _LEANS_ON_DOCUMENT
from slm_factory.pipeline import StageContext, StageError, StageResult
from slm_factory.records import QAPair, Rejection

# Only pairs written from the documents (or approved by a person) ask about a fact worth
# testing; a paraphrase is already a rewording, and a probe in the input is a test question.
PARENT_ORIGINS = ("generated", "reviewed")
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string"}},
    "required": ["question"],
}
_SHORTEST_QUESTION = 6  # characters; "Why?" asks nothing about a document
# A probe that points at the question it was written from ("What is the answer to this
# question?") asks nothing: small teachers write it when told to reword.
_LEANS_ON_PROMPT = re.compile(
    r"(?i)\b(this|that|the (above|original|same|given))\s+(question|answer|reply)\b"
    r"|\banswer to the question\b|위 질문|이 질문|원래 질문|같은 질문|위 답변|이 답변"
)

# -- choosing what is held out -------------------------------------------------------------------


def rank(seed: int, key: str) -> str:
    """A pair's or document's place in the held-out order: a hash, so it never moves when
    other items come or go."""
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()


def document_key(pair: QAPair) -> str:
    return pair.doc_id or pair.source_doc


def _share(value: float) -> Fraction:
    # Exact arithmetic: 0.1 * 30 must be 3, not 3.0000000000000004 (which would earn a seat).
    return Fraction(value).limit_denominator(10**6)


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def held_out_count(total: int, share: float) -> int:
    """`share` of `total`, rounded, and at least one when there are two or more to choose from
    (a test set of none cannot evaluate anything)."""
    if total < 2:
        return 0
    return min(total - 1, max(1, _round_half_up(_share(share) * total)))


def document_quotas(sizes: dict[str, int], share: float, seed: int) -> dict[str, int]:
    """How many parents each document gives: largest-remainder apportionment of the total.

    Each document gets its exact share `share * size` rounded down or up, never more or less,
    so a document's quota depends on its own size only; the seats left after rounding down go
    to the largest remainders (ties by a seeded hash of the document), so the total is right
    and a one-pair document is not shut out or forced in by the order of the documents."""
    exact = _share(share)
    total = held_out_count(sum(sizes.values()), share)
    quotas = {doc: math.floor(exact * size) for doc, size in sizes.items()}
    seats = total - sum(quotas.values())
    remainders = sorted(
        (doc for doc, size in sizes.items() if exact * size > quotas[doc]),
        key=lambda doc: (-(exact * sizes[doc] - quotas[doc]), rank(seed, doc)),
    )
    for doc in remainders[:max(0, seats)]:
        quotas[doc] += 1
    return quotas


def choose_parents(pairs: list[QAPair], share: float, seed: int) -> list[QAPair]:
    """The pairs that get a probe: each document's quota, taken in hash order, in input order."""
    by_document: dict[str, list[QAPair]] = {}
    for pair in pairs:
        if pair.origin in PARENT_ORIGINS:
            by_document.setdefault(document_key(pair), []).append(pair)
    quotas = document_quotas({doc: len(items) for doc, items in by_document.items()}, share, seed)
    chosen: set[int] = set()
    for doc, items in by_document.items():
        ordered = sorted(items, key=lambda pair: rank(seed, pair.id))
        chosen.update(id(pair) for pair in ordered[: quotas[doc]])
    return [pair for pair in pairs if id(pair) in chosen]


def choose_documents(keys: Iterable[str], share: float, seed: int) -> set[str]:
    """Whole documents held out: `share` of them, at least one of two or more, never all."""
    unique = sorted(set(keys))
    ordered = sorted(unique, key=lambda key: rank(seed, key))
    return set(ordered[: held_out_count(len(unique), share)])


# -- prompts -------------------------------------------------------------------------------------


@cache
def problem_texts(language: str) -> dict[str, str]:
    """Why a probe was turned down, said to the teacher when it is asked again (rule: text)."""
    lines = prompts.prompt_text("probe_problems", language).splitlines()
    return {rule.strip(): text.strip() for rule, _, text in (line.partition(":") for line in lines) if text}


def probe_messages(parent: QAPair, source: str, language: str) -> list[dict[str, str]]:
    source_block = prompts.render("probe_source", language, text=source) if source else ""
    body = prompts.render("probe", language, source=source_block, question=parent.instruction, answer=parent.output)
    return [{"role": "user", "content": body}]


def retry_messages(first: list[dict[str, str]], previous: str, verdict: Verdict, language: str) -> list[dict[str, str]]:
    """The first request, the turned-down reply, and a note saying what was wrong with it."""
    problem = Template(problem_texts(language)[verdict.rule]).substitute(near=verdict.near)
    note = prompts.render("probe_retry", language, problem=problem)
    reply = json.dumps({"question": previous}, ensure_ascii=False)
    return [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": note}]


class ProbeReplyError(ValueError):
    """The teacher's reply holds no usable question: it never becomes a probe."""


def parse_probe(data: Any) -> str:
    question = data.get("question") if isinstance(data, dict) else None
    if not isinstance(question, str):
        raise ProbeReplyError('expected {"question": "..."}')
    question = " ".join(question.split())
    if len(question) < _SHORTEST_QUESTION:
        raise ProbeReplyError(f"the question {question!r} is too short to ask anything")
    return question


# -- guards --------------------------------------------------------------------------------------

@dataclass
class Verdict:
    rule: str
    detail: str
    near: str = ""  # the training question it is too close to, quoted to the teacher


@dataclass
class TrainingQuestions:
    """Every training question in a near-duplicate index (keys are positions: ids may repeat in
    a --data file)."""

    pairs: list[QAPair]
    threshold: float

    def __post_init__(self) -> None:
        from slm_factory.curation.dedup import NearDuplicates

        self.index = NearDuplicates(self.threshold)
        self.index.add_many((str(position), pair.instruction) for position, pair in enumerate(self.pairs))

    def nearest(self, question: str) -> tuple[QAPair, float] | None:
        """The most similar training pair whose question is a near-duplicate of `question`."""
        from slm_factory.curation.dedup import jaccard, shingles

        matches = [self.pairs[int(key)] for key in self.index.query(question)]
        if not matches:
            return None
        grams = shingles(question)
        scored = [(pair, jaccard(grams, shingles(pair.instruction))) for pair in matches]
        return max(scored, key=lambda item: item[1])


def probe_problem(question: str, parent: QAPair, training: TrainingQuestions) -> Verdict | None:
    """Why `question` cannot be a probe of `parent` (which is one of the training pairs), or None."""
    from slm_factory.curation.dedup import normalise

    if normalise(question) == normalise(parent.instruction):
        return Verdict("probe_same_as_parent", "the probe repeats its parent's question", parent.instruction)
    near = training.nearest(question)
    if near is not None:
        pair, similarity = near
        return Verdict("probe_near_training", f"a near-duplicate (similarity {similarity:.2f}) of training "
                       f"question {pair.id}: {pair.instruction[:120]!r}", pair.instruction)
    if _LEANS_ON_DOCUMENT.search(question) or _LEANS_ON_PROMPT.search(question):
        return Verdict("probe_not_self_contained",
                       "the probe refers to its document or to the question it rewords instead of naming its subject")
    return None


def probe_id(parent: QAPair, question: str) -> str:
    key = "\x1f".join(("probe", parent.id, " ".join(question.split())))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def make_probe(parent: QAPair, question: str) -> QAPair:
    """The held-out question: new words, the parent's answer as reference, its provenance."""
    return QAPair(
        id=probe_id(parent, question), instruction=question, output=parent.output,
        source_doc=parent.source_doc, doc_id=parent.doc_id, chunk_id=parent.chunk_id,
        pages=parent.pages, section=parent.section, category=parent.category,
        teacher=parent.teacher, origin="probe", parent_id=parent.id,
    )


# -- the stage -----------------------------------------------------------------------------------

# The probes' ledger is the stage output's partial file, the one a Ctrl-C message points to.
LEDGER = "qa_train"
_TOO_CLOSE = ("probe_same_as_parent", "probe_near_training")


@dataclass
class Probing:
    """What writing the probes gave: the probes, every turned-down probe, what failed."""

    probes: list[QAPair] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    asked_again: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # parent id -> the rule its last probe broke
    failures: dict[str, str] = field(default_factory=dict)
    reused: int = 0
    teacher: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None


def run(ctx: StageContext) -> StageResult:
    pairs = input_pairs(ctx, "split")
    if not pairs:
        raise StageError(f"{_input_label(ctx)} holds no pairs; there is nothing to split (run the earlier stages again)")
    # A probe in the input (a --data file that holds a test set) is never trained on.
    train = [pair for pair in pairs if pair.origin != "probe"]
    rejections = [Rejection(id=pair.id, stage="split", rule="probe_in_input",
                            detail="a held-out probe in the input is never trained on", pair=pair.model_dump())
                  for pair in pairs if pair.origin == "probe"]
    if ctx.config.eval.holdout == "documents":
        return _split_documents(ctx, train, rejections)
    return _split_probes(ctx, train, rejections)


def _input_label(ctx: StageContext) -> str:
    from slm_factory.pipeline import pairs_input, stage_named
    from slm_factory.workspace import ARTIFACTS

    data = ctx.options.get("data")
    return f"--data {data}" if data else ARTIFACTS[pairs_input(stage_named("split"), ctx.config)]


def _write(ctx: StageContext, train: list[QAPair], test: list[QAPair], rejections: list[Rejection]) -> None:
    ctx.workspace.write_json("qa_train", [pair.model_dump() for pair in train])
    ctx.workspace.write_json("qa_test", [pair.model_dump() for pair in test])
    write_rejections(ctx, "rejected_split", rejections)


def _split_probes(ctx: StageContext, train: list[QAPair], rejections: list[Rejection]) -> StageResult:
    section = ctx.config.eval
    parents = choose_parents(train, section.test_split, section.seed)
    probing = write_probes(ctx, train, parents)
    if probing.stopped:
        return StageResult(failed=True, lines=[probing.stopped, "the probes written so far are saved; "
                                               "run `slm-factory split` again when the teacher works"])
    rejections = [*rejections, *probing.rejections]
    _write(ctx, train, probing.probes, rejections)
    result = StageResult(
        items=len(train),
        counts={"train": len(train), "probes": len(probing.probes), "parents": len(parents),
                "dropped": len(probing.dropped),
                "asked_again": probing.asked_again, "failed": len(probing.failures), "reused": probing.reused},
        extra={"holdout": "probes", "rejections": reason_counts(rejections),
               **({"teacher": probing.teacher} if probing.teacher else {})},
        summary=_probes_summary(len(train), probing),
    )
    if len(parents) == 0:
        result.lines.append(f"no probe was written: at least 2 pairs from the documents are needed to hold one out "
                            f"({len(train)} in {_input_label(ctx)}); qa_test.json is empty")
    if probing.failures:
        for line in list(probing.failures.items())[:20]:
            ctx.log.warning("probe of %s: %s", *line)
        if asks_for_answers(ctx.config):  # drawn three times already; a rerun would draw the same
            result.lines.append(f"{len(probing.failures)} parents got no usable question in three draws "
                                "and have no probe")
        else:
            result.lines.append(f"{len(probing.failures)} probe requests failed; "
                                "run `slm-factory split` again to retry only those")
    return result


def _probes_summary(train: int, probing: Probing) -> str:
    close = sum(1 for rule in probing.dropped.values() if rule in _TOO_CLOSE)
    reasons = []
    if close:
        reasons.append(f"{close} dropped as too close to training questions")
    if len(probing.dropped) - close:
        reasons.append(f"{len(probing.dropped) - close} dropped as not standing on their own")
    tail = f" ({'; '.join(reasons)})" if reasons else ""
    return f"Split complete: {_count(train, 'training pair')}, {_count(len(probing.probes), 'held-out probe')}{tail}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _check_probes(parents: list[QAPair], replies: dict[str, str], training: TrainingQuestions
                  ) -> tuple[dict[str, str], dict[str, tuple[str, Verdict]]]:
    """Split the teacher's questions into accepted probes and turned-down ones with their verdict."""
    accepted: dict[str, str] = {}
    turned_down: dict[str, tuple[str, Verdict]] = {}
    for parent in parents:
        question = replies.get(parent.id)
        if question is None:
            continue
        verdict = probe_problem(question, parent, training)
        if verdict is None:
            accepted[parent.id] = question
        else:
            turned_down[parent.id] = (question, verdict)
    return accepted, turned_down


def write_probes(ctx: StageContext, train: list[QAPair], parents: list[QAPair]) -> Probing:
    """One probe per parent: ask, check, ask once more where the check fails (with a note saying
    why; in answer_first mode, a new draw: curation/answer_first.py)."""
    parents = list({parent.id: parent for parent in parents}.values())  # a repeated pair gets one probe
    if not parents:
        return Probing()
    sources = Sources(ctx)
    training = TrainingQuestions(train, ctx.config.validation.near_duplicate_threshold)
    language = {parent.id: sources.language(parent) for parent in parents}
    asking = _FreshAsking(ctx, language) if asks_for_answers(ctx.config) else _RewordAsking(ctx, sources, language)

    probing = Probing()
    work = asking.first(parents)
    _account(probing, work)
    if probing.stopped:
        return probing
    accepted, turned_down = _check_probes(parents, work.results, training)
    for parent in parents:
        if parent.id in turned_down:
            probing.rejections.append(_rejection(parent, *turned_down[parent.id], "(asked again)"))
    again = [parent for parent in parents if parent.id in turned_down]
    probing.asked_again = len(again)
    if again:
        retry = asking.again(again, turned_down)
        _account(probing, retry)
        if probing.stopped:
            return probing
        accepted_again, still_wrong = _check_probes(again, retry.results, training)
        accepted.update(accepted_again)
        for parent in again:
            if parent.id in still_wrong:
                question, verdict = still_wrong[parent.id]
                probing.rejections.append(_rejection(parent, question, verdict, "(dropped after asking twice)"))
                probing.dropped[parent.id] = verdict.rule
    probing.probes = [make_probe(parent, accepted[parent.id]) for parent in parents if parent.id in accepted]
    return probing


@dataclass
class _RewordAsking:
    """A capable teacher rewords the parent's question, seeing its source; asked again, it is told why
    its probe was turned down."""

    ctx: StageContext
    sources: Sources
    language: dict[str, str]

    def first(self, parents: list[QAPair]) -> Any:
        self.messages = {parent.id: probe_messages(parent, self.sources.chunk_text(parent), self.language[parent.id])
                         for parent in parents}
        return self._ask(parents, self.messages, "Writing probes")

    def again(self, parents: list[QAPair], turned_down: dict[str, tuple[str, Verdict]]) -> Any:
        second = {parent.id: retry_messages(self.messages[parent.id], *turned_down[parent.id],
                                            self.language[parent.id]) for parent in parents}
        return self._ask(parents, second, "Rewriting probes")

    def _ask(self, items: list[QAPair], messages: dict[str, list[dict[str, str]]], description: str) -> Any:
        return ask_each(self.ctx, artifact=LEDGER, items=items, item_id=lambda parent: parent.id,
                        messages=lambda parent: messages[parent.id], schema=PROBE_SCHEMA,
                        parse=lambda parent, data: parse_probe(data), settings={"task": "probe"},
                        description=description)


@dataclass
class _FreshAsking:
    """A small teacher writes a new question for the parent's answer without seeing its question;
    asked again, it draws once more with another seed (a note would be lost on it)."""

    ctx: StageContext
    language: dict[str, str]

    def first(self, parents: list[QAPair]) -> Any:
        return self._ask(parents, 1, "Writing probes")

    def again(self, parents: list[QAPair], turned_down: dict[str, tuple[str, Verdict]]) -> Any:
        return self._ask(parents, 2, "Rewriting probes")

    def _ask(self, items: list[QAPair], attempt: int, description: str) -> Any:
        messages = {parent.id: fresh_messages(parent, self.language[parent.id]) for parent in items}
        return ask_each(self.ctx, artifact=LEDGER, items=items, item_id=lambda parent: parent.id,
                        messages=lambda parent: messages[parent.id], schema=None,
                        parse=lambda parent, text: parse_fresh_question(parent, text, messages[parent.id]),
                        request=lambda parent: fresh_request(self.ctx.config, f"probe\x1f{parent.id}\x1f{attempt}"),
                        settings={"task": "probe", "mode": "answer_first"}, description=description)


def _account(probing: Probing, work: Any) -> None:
    probing.failures.update(work.failures)
    probing.reused += work.reused
    probing.stopped = work.stopped
    probing.teacher = merged_stats(probing.teacher, work.teacher_stats)


def _rejection(parent: QAPair, question: str, verdict: Verdict, outcome: str) -> Rejection:
    probe = make_probe(parent, question)
    return Rejection(id=probe.id, stage="split", rule=verdict.rule, detail=f"{verdict.detail} {outcome}",
                     pair=probe.model_dump())


def _split_documents(ctx: StageContext, train: list[QAPair], rejections: list[Rejection]) -> StageResult:
    """Whole documents held out: their pairs are the test set as they are; no teacher."""
    section = ctx.config.eval
    documents = {document_key(pair): pair.source_doc or document_key(pair) for pair in train}
    held_out = choose_documents(documents, section.test_split, section.seed)
    # A pair repeated in the input is asked once: eval and augment key the test set by id.
    test = list({pair.id: pair for pair in train if document_key(pair) in held_out}.values())
    kept = [pair for pair in train if document_key(pair) not in held_out]
    _write(ctx, kept, test, rejections)
    names = sorted(documents[key] for key in held_out)
    result = StageResult(
        items=len(kept),
        counts={"train": len(kept), "test": len(test), "documents": len(documents), "held_out_documents": len(held_out)},
        extra={"holdout": "documents", "held_out_documents": names, "rejections": reason_counts(rejections)},
        summary=(f"Split complete: {_count(len(kept), 'training pair')}, {_count(len(test), 'held-out pair')} "
                 f"from {len(held_out)} of {_count(len(documents), 'document')}"),
    )
    if not held_out:
        result.lines.append(f"nothing held out: eval.holdout documents needs pairs from at least 2 documents "
                            f"({len(documents)} in {_input_label(ctx)}); qa_test.json is empty")
    else:
        result.lines.append(f"held out: {', '.join(names[:10])}{' …' if len(names) > 10 else ''}")
    return result
