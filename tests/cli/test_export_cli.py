"""export, export-gguf, chat, eval and compare as a user types them, mistakes included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.test_cli import invoke
from tests.evaluation.conftest import noisy_student
from tests.training.tiny import save_tiny_student


@pytest.fixture
def config(tmp_path: Path) -> Path:
    settings = {"paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
                "student": {"model": str(save_tiny_student(tmp_path / "student"))},
                "eval": {"max_new_tokens": 6}}
    (tmp_path / "documents").mkdir()
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def one_error_line(output: str) -> str:
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_chat_once_answers_with_the_projects_export(config, tmp_path):
    noisy_student(tmp_path / "output" / "merged_model")
    result = invoke("chat", "--config", str(config), "--once", "When does the library open?")
    assert result.exit_code == 0, result.output
    assert result.output.strip()


def test_chat_talks_until_exit(config, tmp_path):
    model = noisy_student(tmp_path / "somewhere" / "model")
    result = invoke("chat", "--config", str(config), "--model", str(model), input="Hello there\nexit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("model>") == 1 and "Talking to" in result.output


@pytest.mark.parametrize("args, expected", [
    (["chat", "--once", "hi"], "no exported model"),
    (["chat", "--model", "./nowhere", "--once", "hi"], "--model ./nowhere: no such file or folder"),
    (["chat", "--model", "x", "--backend", "vllm", "--once", "hi"], "--backend vllm: unknown"),
    (["eval", "--model", "./nowhere.gguf"], "--model ./nowhere.gguf: no such file or folder"),
    (["eval", "--model", "student", "--data", "missing.json"], "--data missing.json: no such file"),
    (["compare", "--base-model", "student", "--finetuned-model", "student", "--data", "q.json"], "name the same model"),
    (["export", "--adapter", "./no_adapter"], "--adapter no_adapter: no adapter folder"),
    (["export-gguf", "--model-dir", "./nothing"], "nothing"),
])
def test_a_mistake_is_one_line_and_exit_1(config, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.json").write_text(json.dumps([{"instruction": "Q?", "output": "A."}]))
    result = invoke(*args[:1], "--config", str(config), *args[1:])
    assert result.exit_code == 1, result.output
    assert expected in one_error_line(result.output)


def test_eval_with_a_model_and_data_runs_alone_and_writes_its_results(config, tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"instruction": "How many books may members borrow?",
                                      "output": "Members may borrow up to ten books."}]))
    model = noisy_student(tmp_path / "model")
    result = invoke("eval", "--config", str(config), "--model", str(model), "--data", str(questions))
    assert result.exit_code == 0, result.output
    assert "Evaluation complete: 1 held-out question to" in result.output
    results = json.loads((tmp_path / "output" / "eval_results.json").read_text(encoding="utf-8"))
    assert results["model"]["name"] == str(model) and results["data"] == str(questions)
