"""The `compare` stage: the base student and the fine-tuned model (or any two models) answer the
same held-out questions → compare_results.json and compare_results.html, with who won each
question and whether the difference is more than noise (a paired bootstrap and a sign test).
"""

from __future__ import annotations

from typing import Any

from slm_factory.evaluation.evaluate import ask, score_figures, scored_items, timestamp, write_results
from slm_factory.evaluation.generate import ModelRef, model_ref, read_questions
from slm_factory.pipeline import StageContext, StageError, StageResult

TIE = 1e-9  # overall scores closer than this are a tie


def models(ctx: StageContext) -> tuple[ModelRef, ModelRef]:
    """--base-model / compare.base_model, else the student; --finetuned-model /
    compare.finetuned_model, else the project's own export."""
    config = ctx.config
    base = ctx.options.get("base_model") or config.compare.base_model or "student"
    tuned = ctx.options.get("finetuned_model") or config.compare.finetuned_model or None
    base_ref = model_ref(config, ctx.workspace, base, key="--base-model")
    tuned_ref = model_ref(config, ctx.workspace, tuned, key="--finetuned-model")
    if base_ref == tuned_ref:
        raise StageError(f"--base-model and --finetuned-model name the same model ({base_ref.name}); compare two models")
    return base_ref, tuned_ref


def run(ctx: StageContext) -> StageResult:
    from slm_factory.evaluation.metrics import aggregate
    from slm_factory.evaluation.stats import paired_comparison

    config = ctx.config
    base_ref, tuned_ref = models(ctx)
    questions, label = read_questions(ctx, ctx.options.get("data"), config.compare.max_samples)
    base_items, base_lines = scored_items(ctx, "compare_results", base_ref, questions, ask(ctx, base_ref, questions))
    tuned_items, tuned_lines = scored_items(ctx, "compare_results", tuned_ref, questions, ask(ctx, tuned_ref, questions))
    items = [_side_by_side(b, t) for b, t in zip(base_items, tuned_items)]
    test = paired_comparison([b["scores"]["overall"] for b in base_items],
                             [t["scores"]["overall"] for t in tuned_items], seed=config.eval.seed)
    wins, losses = test["wins"], test["losses"]
    summary = {
        "base": aggregate([b["scores"] for b in base_items]),
        "finetuned": aggregate([t["scores"] for t in tuned_items]),
        "test": test,
        "win_rate": wins / (wins + losses) if wins + losses else None,
    }
    results = {"base": base_ref.describe(), "finetuned": tuned_ref.describe(), "data": label, "created": timestamp(),
               "language": config.project.language, "metrics": list(config.eval.metrics), "summary": summary,
               "items": items}
    from slm_factory.evaluation.report import compare_html

    write_results(ctx, "compare_results", "compare_report", results, compare_html)
    lines = [*base_lines, *tuned_lines,
             f"base {base_ref.name}: {score_figures(summary['base'])}",
             f"fine-tuned {tuned_ref.name}: {score_figures(summary['finetuned'])}"]
    return StageResult(items=len(items), counts={"questions": len(items), "finetuned_wins": wins, "base_wins": losses},
                       lines=lines, extra={"summary": summary},
                       summary=f"Comparison complete: fine-tuned won {wins}, base won {losses}, "
                               f"{test['ties']} ties; {test['verdict']} → {ctx.workspace.path('compare_results')}")


def _side_by_side(base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, Any]:
    return {"id": base["id"], "question": base["question"], "reference": base["reference"],
            "base": {"answer": base["answer"], "scores": base["scores"], "judge_reason": base["judge_reason"]},
            "finetuned": {"answer": tuned["answer"], "scores": tuned["scores"], "judge_reason": tuned["judge_reason"]},
            "winner": winner(base["scores"]["overall"], tuned["scores"]["overall"])}


def winner(base: float | None, tuned: float | None) -> str | None:
    """Who won a question by its overall score; None when either answer has no score (a judge-only
    evaluation whose judge failed): such a question counts for neither, as in the paired test."""
    if base is None or tuned is None:
        return None
    difference = tuned - base
    return "tie" if abs(difference) <= TIE else ("finetuned" if difference > 0 else "base")
