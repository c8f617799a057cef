"""The `score` stage: the teacher judges each pair 1-5 against a rubric and the pair's own source.

The original slm-factory's judge saw only the question and the answer, so it could not tell a
fluent wrong answer from a right one; here it reads the chunk the pair was written from
(correct per the source, complete, self-contained question, useful). The reply is structured
({"score": 1-5, "reason": ...}); one that cannot be read is asked again and never counts as a
pass. A pair still without a verdict is left out of qa_scored.json and counted as failed; a
rerun asks only for those (teacher_work's ledger). `scoring.threshold` is applied after the
teacher is asked, so changing it costs no teacher call.

In answer_first mode (a small teacher) a pair's answer is a passage of its chunk word for word, so
correctness holds by construction and the chunk tells the judge nothing more: the prompt is the
question, the answer and a three-line rubric about the question, and the reply is the score alone
({"score": 4}, held to the schema by the server's grammar). Measured with the embedded teacher on
the demo: the full prompt with the chunk and a reasoned JSON verdict took 4.3 s a pair and a quarter
of the replies were unusable; asked for "the score, then a few words" in plain text, SmolLM2
answered the question instead of scoring it.
"""

from __future__ import annotations

import re
from typing import Any

from slm_factory.curation import prompts
from slm_factory.curation.answer_first import asks_for_answers
from slm_factory.curation.common import Sources, input_pairs, reason_counts, write_rejections
from slm_factory.curation.teacher_work import TeacherWork, ask_each, merged_work
from slm_factory.pipeline import StageContext, StageResult
from slm_factory.records import QAPair, Rejection

_WORD = re.compile(r"\w")  # a reason of "..." (the prompt's placeholder) or punctuation says nothing

# An enum, not minimum/maximum: llama.cpp's grammar and every structured-output server honour
# it, and the pool's own schema check re-asks when a reply falls outside it.
SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "reason": {"type": "string"},
    },
    "required": ["score", "reason"],
}


def score_messages(pair: QAPair, title: str, source: str, language: str) -> list[dict[str, str]]:
    """The judge's prompt; `source` empty means the pair's chunk could not be found."""
    block = prompts.render("score_source", language, text=source.strip()) if source.strip() else \
        prompts.prompt_text("score_no_source", language)
    body = prompts.render("score", language, title=title, source=block.strip() + "\n",
                          question=pair.instruction.strip(), answer=pair.output.strip())
    return [{"role": "user", "content": body}]


SHORT_VERDICT_TOKENS = 16  # {"score": 4} and nothing after it
SHORT_SCORE_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"score": SCORE_SCHEMA["properties"]["score"]}, "required": ["score"],
}
SHORT_REASON = "scored by the question and its verbatim answer (answer_first)"


def answer_first_messages(pair: QAPair, title: str, language: str) -> list[dict[str, str]]:
    """The short prompt of answer_first mode: the question judged against its verbatim answer."""
    body = prompts.render("score_answer_first", language, title=title, question=pair.instruction.strip(),
                          answer=pair.output.strip())
    return [{"role": "user", "content": body}]


def parse_short_verdict(pair: QAPair, data: Any) -> dict[str, Any]:
    """{"score": 1-5} → a verdict whose reason says how it was reached; ValueError otherwise."""
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"score must be an integer from 1 to 5, got {score!r}")
    return {"score": score, "reason": SHORT_REASON}


def verbatim(pair: QAPair, sources: Sources) -> bool:
    """Whether the pair's answer is a passage of its chunk, every line of it (a table answer is its
    column labels and its row, lines apart in the chunk)."""
    chunk = sources.chunk_text(pair)
    lines = [line.strip() for line in pair.output.strip().splitlines() if line.strip()]
    return bool(lines) and all(line in chunk for line in lines)


def parse_verdict(pair: QAPair, data: Any, instructions: str = "") -> dict[str, Any]:
    """{"score": int 1-5, "reason": str}; anything else raises ValueError (asked again). A reason
    found word for word in `instructions` (the prompt's own text) was copied, not given."""
    if not isinstance(data, dict):
        raise ValueError('expected {"score": 1-5, "reason": "..."}')  # noqa: TRY004 - ask_each's contract
    score = data.get("score")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"score must be an integer from 1 to 5, got {score!r}")
    reason = data.get("reason")
    if not isinstance(reason, str) or not _WORD.search(reason):
        raise ValueError("the reason is empty; say in one sentence why the pair gets this score")
    reason = " ".join(reason.split())
    if instructions and _plain(reason) in _plain(instructions):
        raise ValueError("the reason repeats the instructions; give your own reason for this pair")
    return {"score": score, "reason": reason}


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def run(ctx: StageContext) -> StageResult:
    pairs = input_pairs(ctx, "score")
    sources = Sources(ctx)
    section = ctx.config.scoring
    unsourced = [pair for pair in pairs if not sources.chunk_text(pair)]
    if unsourced:
        ctx.log.warning(f"{len(unsourced)} of {len(pairs)} pairs have no findable source chunk (pairs from "
                        "--data or documents parsed since); they are judged without it")

    brief_ids = {pair.id for pair in pairs if verbatim(pair, sources)} if asks_for_answers(ctx.config) else set()

    def messages(pair: QAPair, title: str | None = None) -> list[dict[str, str]]:
        document = sources.documents.get(pair.doc_id)
        if title is None:
            title = (document.title if document is not None else "") or pair.source_doc or "?"
        if pair.id in brief_ids:
            return answer_first_messages(pair, title, sources.language(pair))
        return score_messages(pair, title, sources.chunk_text(pair), sources.language(pair))

    def key_messages(pair: QAPair) -> list[dict[str, str]]:
        # A title is often the file's name: the verdict is keyed by the document's content id
        # instead, so renaming a file (update) asks nothing again.
        return messages(pair, f"document {pair.doc_id}" if pair.doc_id else None)

    full = [pair for pair in pairs if pair.id not in brief_ids]
    work = ask_each(ctx, artifact="qa_scored", items=full, item_id=lambda pair: pair.id, messages=messages,
                    key_messages=key_messages, schema=SCORE_SCHEMA, settings={"task": "score"},
                    parse=lambda pair, data: parse_verdict(pair, data, prompts.prompt_text("score", sources.language(pair))),
                    description="Scoring", max_concurrency=section.max_concurrency)
    if brief_ids and not work.stopped:
        brief = ask_each(ctx, artifact="qa_scored", items=[pair for pair in pairs if pair.id in brief_ids],
                         item_id=lambda pair: pair.id, messages=messages, key_messages=key_messages,
                         schema=SHORT_SCORE_SCHEMA,
                         settings={"task": "score", "mode": "answer_first"}, parse=parse_short_verdict,
                         request=lambda pair: {"max_tokens": SHORT_VERDICT_TOKENS},
                         description="Scoring", max_concurrency=section.max_concurrency)
        work = merged_work(work, brief)
    if work.stopped:
        saved = (f"{len(work.results)} of {len(pairs)} verdicts are saved in "
                 f"{ctx.workspace.partial_path('qa_scored').name}; run `slm-factory score` again when the teacher works")
        return StageResult(failed=True, lines=[work.stopped, saved])
    if pairs and not work.results:
        return StageResult(failed=True, lines=[
            f"no pair got a readable verdict ({len(work.failures)} failed); qa_scored.json was not written",
            *work.failure_lines(limit=3)])
    kept: list[QAPair] = []
    rejections: list[Rejection] = []
    for pair in pairs:
        verdict = work.results.get(pair.id)
        if verdict is None:
            continue
        judged = pair.model_copy(update={"score": float(verdict["score"]), "score_reason": verdict["reason"]})
        if verdict["score"] >= section.threshold:
            kept.append(judged)
        else:
            rejections.append(Rejection(id=pair.id, stage="score", rule="low_score",
                                        detail=f"score {verdict['score']}: {verdict['reason']}",
                                        pair=judged.model_dump()))
    ctx.workspace.write_json("qa_scored", [pair.model_dump() for pair in kept])
    write_rejections(ctx, "rejected_score", rejections)
    return _result(ctx, work, pairs, kept, rejections, len(unsourced))


def _result(ctx: StageContext, work: TeacherWork, pairs: list[QAPair], kept: list[QAPair], rejections: list[Rejection],
            unsourced: int) -> StageResult:
    histogram = {str(s): 0 for s in range(1, 6)}
    for verdict in work.results.values():
        histogram[str(verdict["score"])] += 1
    result = StageResult(
        items=len(kept),
        counts={"passed": len(kept), "filtered": len(rejections), "failed": len(work.failures),
                "reused": work.reused, "without_source": unsourced},
        extra={"teacher": work.teacher_stats, "rejections": reason_counts(rejections), "scores": histogram},
        summary=f"Score complete: {len(kept)} passed, {len(rejections)} filtered (out of {len(pairs)} validated)",
    )
    work.log_pair_failures(ctx.log, pairs)
    if work.failures:
        result.lines.append(f"{len(work.failures)} pairs got no readable verdict and are left out of qa_scored.json; "
                            "run `slm-factory score` again to retry only those")
    return result
