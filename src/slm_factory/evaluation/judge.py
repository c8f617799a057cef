"""The teacher as judge: each answer graded 1-5 against the reference and the source chunk.

N-gram overlap (BLEU, ROUGE) gives a correct answer in other words a low score; a judge that
reads the reference and the source does not. Grades go through the same crash-safe ledger as the
curation stages' teacher work (curation/teacher_work.py): a rerun asks only for new answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slm_factory.pipeline import StageContext

PROMPTS = "slm_factory.evaluation"


@dataclass(frozen=True)
class Graded:
    """One answer to grade: `key` names it in the ledger (model and question)."""

    key: str
    question: str
    reference: str
    answer: str
    source: str


def judge_messages(item: Graded, language: str) -> list[dict[str, str]]:
    from slm_factory.curation import prompts

    source = prompts.render("judge_source", language, PROMPTS, text=item.source.strip()) if item.source.strip() else ""
    body = prompts.render("judge", language, PROMPTS, source=source, question=item.question.strip(),
                          reference=item.reference.strip(), answer=item.answer.strip() or "(no answer)")
    return [{"role": "user", "content": body}]


def judge(ctx: StageContext, artifact: str, items: list[Graded]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Grades by item key ({"score": 1-5, "reason": ...}) and lines about what failed. A teacher
    that is down leaves the grades out (the n-gram scores still stand) and says so."""
    from slm_factory.curation import prompts
    from slm_factory.curation.score import SCORE_SCHEMA, parse_verdict
    from slm_factory.curation.teacher_work import ask_each

    language = ctx.config.project.language
    instructions = prompts.prompt_text("judge", language, PROMPTS)
    work = ask_each(ctx, artifact=artifact, items=items, item_id=lambda item: item.key,
                    messages=lambda item: judge_messages(item, language), schema=SCORE_SCHEMA,
                    parse=lambda item, data: parse_verdict(item, data, instructions),
                    settings={"task": "judge"}, description="Judging answers")
    lines = []
    if work.stopped:
        lines.append(f"judge: the teacher stopped ({work.stopped}); {len(work.results)} of {len(items)} answers graded")
    elif work.failures:
        lines += [f"judge: {len(work.failures)} answers could not be graded", *work.failure_lines(limit=5)]
    return work.results, lines
