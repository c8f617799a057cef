"""The `eval` stage: ask the model held-out questions (qa_test.json, never trained on) and score
its answers → eval_results.json and eval_results.html.

The questions are the split stage's probes: the same facts as training pairs, asked in other
words, so a high score means the student knows the documents, not that it recalls its training
strings. `--data` evaluates any other file of questions and reference answers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from slm_factory.evaluation.generate import ModelRef, Question, model_ref, open_answerer, read_questions
from slm_factory.evaluation.judge import Graded, judge
from slm_factory.pipeline import StageContext, StageResult
from slm_factory.workspace import write_atomic


def run(ctx: StageContext) -> StageResult:
    config = ctx.config
    ref = model_ref(config, ctx.workspace, ctx.options.get("model"), ctx.options.get("backend"),
                    ctx.options.get("api_base"))
    questions, label = read_questions(ctx, ctx.options.get("data"), config.eval.max_samples)
    answers = ask(ctx, ref, questions)
    items, lines = scored_items(ctx, "eval_results", ref, questions, answers)
    from slm_factory.evaluation.metrics import aggregate

    results = {
        "model": ref.describe(), "data": label, "created": timestamp(), "language": config.project.language,
        "metrics": list(config.eval.metrics), "aggregate": aggregate([item["scores"] for item in items]),
        "items": items,
    }
    from slm_factory.evaluation.report import eval_html

    write_results(ctx, "eval_results", "eval_report", results, eval_html)
    return StageResult(items=len(items), counts={"questions": len(items)}, lines=lines,
                       extra={"aggregate": results["aggregate"]},
                       summary=f"Evaluation complete: {_questions(len(items))} to {ref.name} "
                               f"({score_figures(results['aggregate'])}) → {ctx.workspace.path('eval_results')}")


def ask(ctx: StageContext, ref: ModelRef, questions: list[Question]) -> list[str]:
    """Each question's answer from `ref`, with a progress bar; the model is let go afterwards."""
    answerer = open_answerer(ref, ctx.config)
    try:
        with ctx.progress.task(f"Answering ({ref.name})", len(questions)) as advance:
            return answerer.answer([q.messages for q in questions], ctx.config.eval.max_new_tokens, advance)
    finally:
        answerer.close()


def scored_items(ctx: StageContext, artifact: str, ref: ModelRef, questions: list[Question],
                 answers: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """One record per question: the answer and its scores (the judge's grade among them when
    eval.metrics has `judge`)."""
    from slm_factory.evaluation.metrics import overall, score_answer

    config = ctx.config
    metrics = list(config.eval.metrics)
    grades, lines = _grades(ctx, artifact, ref, questions, answers) if "judge" in metrics else ({}, [])
    items = []
    for question, answer in zip(questions, answers):
        scores: dict[str, Any] = score_answer(answer, question.reference, config.project.language,
                                              [m for m in metrics if m != "judge"], question.text)
        grade = grades.get(_grade_key(ref, question))
        if "judge" in metrics:
            scores["judge"] = grade["score"] if grade else None
        scores["overall"] = overall(scores)
        items.append({"id": question.id, "question": question.text, "reference": question.reference,
                      "answer": answer, "scores": scores, "judge_reason": grade["reason"] if grade else None})
    return items, lines


def _grades(ctx: StageContext, artifact: str, ref: ModelRef, questions: list[Question],
            answers: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    from slm_factory.curation.common import Sources

    chunks = Sources(ctx).chunks if ctx.workspace.path("parsed_documents").exists() else {}
    graded = [Graded(_grade_key(ref, q), q.text, q.reference, answer,
                     chunks[q.chunk_id].text if q.chunk_id in chunks else "")
              for q, answer in zip(questions, answers)]
    return judge(ctx, artifact, graded)


def _grade_key(ref: ModelRef, question: Question) -> str:
    return f"{ref.backend}:{ref.name}:{question.id}"


def write_results(ctx: StageContext, artifact: str, page: str, results: dict[str, Any],
                  render: Callable[[dict[str, Any]], str]) -> None:
    """The results JSON and its HTML page (`render` draws it from the same dict)."""
    ctx.workspace.write_json(artifact, results)
    write_atomic(ctx.workspace.path(page), render(results).encode("utf-8"))


def score_figures(aggregate: dict[str, Any]) -> str:
    names = {"rougeL": "ROUGE-L", "bleu": "BLEU", "key_facts": "key facts", "judge": "judge"}
    shown = [f"{label} {aggregate[key]:.2f}" for key, label in names.items()
             if isinstance(aggregate.get(key), (int, float))]
    return ", ".join(shown) or "no scores"


def _questions(count: int) -> str:
    return f"{count} held-out question{'' if count == 1 else 's'}"


def timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
