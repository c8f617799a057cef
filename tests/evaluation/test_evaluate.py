"""The eval and compare stages on tiny models: what they write, the judge, and user mistakes.
(tests/evaluation/test_trained_student.py runs both on a really trained SmolLM2.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.evaluation import compare, evaluate
from slm_factory.pipeline import StageContext, StageError
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend
from tests.evaluation.conftest import noisy_student
from tests.training.tiny import save_tiny_student

PROBES = [
    {"id": "p1", "instruction": "When is the subsidy deadline?", "output": "The deadline is 30 June 2024.",
     "origin": "probe", "chunk_id": "c1"},
    {"id": "p2", "instruction": "청년 주거 지원금은 한 달에 얼마인가요?", "output": "한 달에 최대 200,000원입니다.",
     "origin": "probe"},
    {"id": "p3", "instruction": "How many books may members borrow?", "output": "Members may borrow up to ten books.",
     "origin": "probe"},
]


def project(tmp_path: Path, metrics=("bleu", "rouge", "key_facts"), **extra) -> StageContext:
    raw = {"paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
           "student": {"model": str(save_tiny_student(tmp_path / "student"))},
           "eval": {"metrics": list(metrics), "max_new_tokens": 8}, **extra}
    config = parse_config(raw)
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    ctx.workspace.ensure()
    ctx.workspace.write_json("qa_test", PROBES)
    noisy_student(ctx.workspace.path("merged_model"))
    return ctx


def test_eval_writes_answers_scores_and_a_page(tmp_path):
    ctx = project(tmp_path)
    result = evaluate.run(ctx)
    results = json.loads(ctx.workspace.path("eval_results").read_text(encoding="utf-8"))
    assert results["model"] == {"name": str(ctx.workspace.path("merged_model")), "backend": "transformers"}
    assert results["data"] == "qa_test.json" and [item["id"] for item in results["items"]] == ["p1", "p2", "p3"]
    for item, probe in zip(results["items"], PROBES):
        assert item["question"] == probe["instruction"] and item["reference"] == probe["output"]
        assert isinstance(item["answer"], str)
        assert {"bleu", "rouge1", "rouge2", "rougeL", "key_facts", "overall"} <= set(item["scores"])
        assert 0 <= item["scores"]["overall"] <= 1
    assert results["aggregate"]["n"] == 3
    page = ctx.workspace.path("eval_report").read_text(encoding="utf-8")
    assert "청년 주거 지원금은 한 달에 얼마인가요?" in page
    assert result.summary.startswith("Evaluation complete: 3 held-out questions")


def test_eval_takes_at_most_max_samples_questions(tmp_path):
    ctx = project(tmp_path, eval={"max_samples": 2, "max_new_tokens": 4})
    assert evaluate.run(ctx).items == 2


def _judge(request) -> str:
    answer = re.search(r"Model's answer: (.*)", request.messages[-1]["content"]).group(1)
    score = 2 if answer == "(no answer)" else 4
    return json.dumps({"score": score, "reason": f"Graded {score} for this particular reply."})


def test_the_judge_grades_each_answer_and_a_rerun_asks_only_for_new_answers(tmp_path):
    ctx = project(tmp_path, metrics=("rouge", "judge"))
    ctx.teacher_backend = ScriptedBackend(_judge)
    evaluate.run(ctx)
    results = json.loads(ctx.workspace.path("eval_results").read_text(encoding="utf-8"))
    prompts = [r.messages[-1]["content"] for r in ctx.teacher_backend.requests]
    assert len(prompts) == 3 and all("Reference answer:" in p for p in prompts)
    assert "The deadline is 30 June 2024." in prompts[0] or any("30 June 2024" in p for p in prompts)
    for item in results["items"]:
        assert item["scores"]["judge"] in (2, 4) and item["judge_reason"].startswith("Graded")
    assert results["aggregate"]["judge"] in (2.0, 4.0) or 2 <= results["aggregate"]["judge"] <= 4
    again = ScriptedBackend(_judge)
    ctx.teacher_backend = again
    evaluate.run(ctx)
    assert again.requests == []  # the same answers: the grades come from the ledger


def test_a_judge_that_is_down_leaves_the_other_scores(tmp_path):
    from slm_factory.teacher import AttemptError

    ctx = project(tmp_path, metrics=("rouge", "judge"))
    ctx.teacher_backend = ScriptedBackend(lambda request: AttemptError("connection refused", "unreachable"))
    result = evaluate.run(ctx)
    results = json.loads(ctx.workspace.path("eval_results").read_text(encoding="utf-8"))
    assert all(item["scores"]["judge"] is None and item["scores"]["rougeL"] is not None for item in results["items"])
    assert any(line.startswith("judge: the teacher stopped") for line in result.lines), result.lines


def test_compare_puts_two_models_side_by_side_with_a_winner_per_question(tmp_path):
    ctx = project(tmp_path)
    tuned = ctx.workspace.path("merged_model")  # shaken weights: other answers than the student's
    result = compare.run(ctx)
    results = json.loads(ctx.workspace.path("compare_results").read_text(encoding="utf-8"))
    assert results["base"]["name"] == str(ctx.config.student.model)
    assert results["finetuned"]["name"] == str(tuned)
    for item in results["items"]:
        base, fine = item["base"]["scores"]["overall"], item["finetuned"]["scores"]["overall"]
        assert item["winner"] == compare.winner(base, fine)
    assert [compare.winner(0.5, 0.5), compare.winner(0.2, 0.7), compare.winner(0.7, 0.2), compare.winner(None, 0.7)] \
        == ["tie", "finetuned", "base", None]
    test = results["summary"]["test"]
    assert test["wins"] + test["losses"] + test["ties"] == 3 and isinstance(test["verdict"], str)
    assert "compare_results" not in ctx.workspace.path("compare_report").read_text(encoding="utf-8")[:15]
    assert result.summary.startswith("Comparison complete: fine-tuned won")


def test_comparing_a_model_with_itself_is_one_line(tmp_path):
    ctx = project(tmp_path)
    ctx.options["finetuned_model"] = "student"
    with pytest.raises(StageError, match="name the same model"):
        compare.run(ctx)


@pytest.mark.slow
def test_the_judge_works_with_a_real_teacher_server(tmp_path, llama_server):
    """The judge prompt through a real OpenAI-compatible server (llama.cpp with SmolLM2, which
    grades poorly but must give replies that parse into grades)."""
    ctx = project(tmp_path, metrics=("key_facts", "judge"),
                  teacher={"backend": "openai", "model": "smollm2", "api_base": f"{llama_server}/v1", "temperature": 0.0})
    result = evaluate.run(ctx)
    results = json.loads(ctx.workspace.path("eval_results").read_text(encoding="utf-8"))
    grades = [item["scores"]["judge"] for item in results["items"]]
    assert any(isinstance(grade, int) and 1 <= grade <= 5 for grade in grades), (grades, result.lines)
    assert results["aggregate"]["judge"] is not None


def test_compare_with_a_judge_that_is_down_counts_no_winner(tmp_path):
    from slm_factory.teacher import AttemptError

    ctx = project(tmp_path, metrics=("judge",))
    ctx.teacher_backend = ScriptedBackend(lambda request: AttemptError("connection refused", "unreachable"))
    result = compare.run(ctx)
    results = json.loads(ctx.workspace.path("compare_results").read_text(encoding="utf-8"))
    assert [item["winner"] for item in results["items"]] == [None, None, None]
    assert results["summary"]["test"]["skipped"] == 3 and results["summary"]["win_rate"] is None
    assert "None" not in ctx.workspace.path("compare_report").read_text(encoding="utf-8")
    assert result.counts["finetuned_wins"] == 0
