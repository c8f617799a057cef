"""The whole back half on the demo student, as a user runs it: train → export → export-gguf →
chat → eval → compare (issue 10's "done when").

SmolLM2-135M is trained once per session on two phrasings of 20 invented facts (the
`trained_facts` fixture); the third phrasing of each fact is never trained on and is what eval and
compare ask. Each command runs through the CLI on a project.yaml, as a user types it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slm_factory.cli import app
from tests.training.facts import held_out_records, invented_facts, project_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(trained_facts):
    """The trained project as a project.yaml, its adapter exported (merged) through the CLI, and
    the held-out questions as a --data file."""
    ctx, _ = trained_facts
    root = ctx.workspace.root.parent
    settings = project_settings(root)
    settings["eval"] = {"max_samples": 20, "max_new_tokens": 16, "metrics": ["bleu", "rouge", "key_facts"]}
    settings["gguf_export"] = {"quantization_type": "q8_0"}
    config = root / "project.yaml"
    config.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    questions = root / "held_out.json"
    questions.write_text(json.dumps(held_out_records(invented_facts()), ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(app, ["export", "--config", str(config), "--adapter", str(ctx.workspace.path("adapter"))])
    assert result.exit_code == 0, result.output
    return ctx, config, questions, result.output


def test_the_merged_export_answers_exactly_as_base_plus_adapter(exported):
    from slm_factory.evaluation.generate import TransformersAnswerer
    from tests.training.facts import SYSTEM_PROMPT

    ctx, _, _, output = exported
    assert "Export complete! Merged model saved to:" in output and "renders" in output
    conversations = [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": fact["test_question"]}]
                     for fact in invented_facts()]
    merged = TransformersAnswerer(ctx.workspace.path("merged_model")).answer(conversations, 16)
    adapter = TransformersAnswerer(ctx.workspace.path("adapter")).answer(conversations, 16)
    assert merged == adapter


def test_eval_scores_the_held_out_questions(exported):
    ctx, config, questions, _ = exported
    result = runner.invoke(app, ["eval", "--config", str(config), "--data", str(questions)])
    assert result.exit_code == 0, result.output
    results = json.loads(ctx.workspace.path("eval_results").read_text(encoding="utf-8"))
    print("eval aggregate:", results["aggregate"])
    assert results["model"]["backend"] == "transformers" and len(results["items"]) == 20
    assert results["aggregate"]["key_facts"] >= 0.5  # the test in tests/training saw 16/20 facts given
    assert ctx.workspace.path("eval_report").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


def test_compare_finds_the_finetuned_student_better_than_the_base_beyond_noise(exported):
    ctx, config, questions, _ = exported
    result = runner.invoke(app, ["compare", "--config", str(config), "--data", str(questions)])
    assert result.exit_code == 0, result.output
    results = json.loads(ctx.workspace.path("compare_results").read_text(encoding="utf-8"))
    summary = results["summary"]
    print("compare summary:", json.dumps(summary, indent=1))
    assert results["base"]["name"] == "smollm2"
    assert summary["finetuned"]["key_facts"] > summary["base"]["key_facts"] + 0.4
    assert summary["test"]["wins"] >= 10 and summary["test"]["significant"]
    assert "Comparison complete: fine-tuned won" in result.output


def test_chat_once_answers_a_held_out_question_with_the_fact(exported):
    ctx, config, _, _ = exported
    facts = invented_facts()
    answered = []
    for fact in facts[:3]:
        result = runner.invoke(app, ["chat", "--config", str(config), "--once", fact["test_question"]])
        assert result.exit_code == 0, result.output
        answered.append(fact["key"].lower() in result.output.lower())
    assert sum(answered) >= 2, answered


def test_export_gguf_then_chat_with_the_gguf(exported):
    ctx, config, _, _ = exported
    result = runner.invoke(app, ["export-gguf", "--config", str(config), "--model-dir", str(ctx.workspace.path("merged_model"))])
    assert result.exit_code == 0, result.output
    gguf = ctx.workspace.path("gguf") / "model-q8_0.gguf"
    assert gguf.is_file() and (ctx.workspace.path("gguf") / "Modelfile").is_file()
    check = json.loads((ctx.workspace.path("gguf") / "gguf_check.json").read_text(encoding="utf-8"))
    print("gguf check:", json.dumps(check)[:2000])
    fact = invented_facts()[0]
    chat = runner.invoke(app, ["chat", "--config", str(config), "--model", str(gguf), "--once", fact["test_question"]])
    assert chat.exit_code == 0, chat.output
    assert chat.output.strip()
