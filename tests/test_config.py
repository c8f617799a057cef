from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slm_factory.config import ConfigError, ProjectConfig, load_config, parse_config
from slm_factory.project_template import render_template

ORIGINAL_STYLE_YAML = """
project:
  name: policy-bot
  language: ko
paths:
  documents: ./docs
  output: ./out
parsing:
  formats: [pdf, hwpx]
  pdf: {extract_tables: false}
teacher:
  backend: ollama
  model: qwen3:8b
  api_base: http://localhost:11434
  temperature: 0.3
questions:
  categories:
    overview: ["What is this document about?"]
validation:
  groundedness: {enabled: false}
training:
  lora: {r: 8, alpha: 16}
  num_epochs: auto
export:
  ollama: {model_name: policy-bot}
scoring: null
"""


def test_defaults_match_the_original_tool():
    config = ProjectConfig()
    assert (config.teacher.backend, config.teacher.model, config.teacher.api_base) == (
        "ollama", "qwen3:8b", "http://localhost:11434")
    assert (config.teacher.temperature, config.teacher.timeout) == (0.3, 180)
    assert (config.teacher.max_context_chars, config.teacher.max_concurrency) == (12000, 4)
    assert (config.student.model, config.student.max_seq_length) == ("google/gemma-3-1b-it", 4096)
    lora = config.training.lora
    assert (lora.r, lora.alpha, lora.dropout) == (16, 32, 0.05)
    assert (config.training.batch_size, config.training.gradient_accumulation_steps) == (4, 4)
    assert (config.training.lr_scheduler, config.training.warmup_ratio, config.training.train_split) == ("cosine", 0.1, 0.9)
    assert config.training.learning_rate == 2e-4  # deliberately not the original 2e-5
    assert (config.validation.min_answer_length, config.validation.max_answer_length) == (20, 2000)
    assert any("문서" in pattern for pattern in config.validation.reject_patterns)
    assert config.scoring.threshold == 3.0 and config.augment.num_variants == 2
    assert config.gguf_export.quantization_type == "q4_k_m"
    assert config.export.ollama.parameters == {"temperature": 0.7, "top_p": 0.9, "num_ctx": 4096}


def test_original_project_yaml_loads_and_resolves_paths(tmp_path: Path):
    (tmp_path / "project.yaml").write_text(ORIGINAL_STYLE_YAML, encoding="utf-8")
    config = load_config(tmp_path / "project.yaml")
    assert config.project.language == "ko"
    assert config.documents_dir == (tmp_path / "docs").resolve()
    assert config.output_dir == (tmp_path / "out").resolve()
    assert config.parsing.pdf.extract_tables is False
    assert config.training.num_epochs == "auto" and config.training.lora.r == 8
    assert config.scoring.enabled is True  # null section → defaults
    assert config.questions.categories["overview"] == ["What is this document about?"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"teacher": {"modle": "x"}}, "teacher.modle: unknown key; did you mean teacher.model?"),
        ({"tacher": {}}, "tacher: unknown key; did you mean teacher?"),
        ({"training": {"lora": {"alpah": 3}}}, "training.lora.alpah: unknown key; did you mean training.lora.alpha?"),
        ({"training": {"batch_size": "four"}}, "training.batch_size: got 'four'; expected a valid integer"),
        ({"teacher": {"backend": "vllm"}}, "teacher.backend: got 'vllm'; expected 'ollama', 'openai' or 'llamacpp'"),
        ({"validation": {"reject_patterns": ["(unclosed"]}}, "is not a valid regular expression"),
        ({"dialogue": {"min_turns": 6, "max_turns": 2}}, "dialogue: min_turns must not exceed max_turns"),
    ],
)
def test_bad_keys_and_values_name_their_path(raw, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert any(expected in line for line in caught.value.lines), caught.value.lines


def test_union_type_errors_are_one_line():
    with pytest.raises(ConfigError) as caught:
        parse_config({"training": {"num_epochs": "many"}})
    assert len(caught.value.lines) == 1
    assert "training.num_epochs: got 'many'" in caught.value.lines[0] and "'auto'" in caught.value.lines[0]


def test_api_key_from_environment_is_never_shown(monkeypatch):
    monkeypatch.setenv("SLM_TEST_KEY", "sk-secret-123")
    config = parse_config({"teacher": {"backend": "openai", "api_key": "${SLM_TEST_KEY}"}})
    assert config.teacher.api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(config) and "sk-secret-123" not in str(config.model_dump())


def test_missing_environment_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SLM_NOT_SET", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config({"teacher": {"api_key": "${SLM_NOT_SET}"}})
    assert caught.value.lines == ["teacher.api_key: environment variable SLM_NOT_SET is not set"]


def test_wrong_typed_secret_is_masked():
    with pytest.raises(ConfigError) as caught:
        parse_config({"teacher": {"api_key": ["sk-leak"]}})
    assert "sk-leak" not in "\n".join(caught.value.lines)


def test_legacy_sections_are_ignored_with_a_notice():
    config = parse_config({"rag": {"top_k": 5}, "evolve": None})
    assert len(config.notices) == 2 and "rag" in config.notices[0]


def test_invalid_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "project.yaml"
    path.write_text("teacher:\n  model: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "not valid YAML (line" in caught.value.lines[0]


def test_template_documents_every_key_and_loads_to_defaults():
    text = render_template("demo", "ko")
    config = parse_config(yaml.safe_load(text))
    expected = ProjectConfig().model_dump()
    expected["project"].update(name="demo", language="ko")
    expected["export"]["ollama"]["model_name"] = "demo-model"
    assert config.model_dump() == expected
    # every key carries a comment line above it
    for name, field in ProjectConfig.model_fields["teacher"].annotation.model_fields.items():
        assert f"# {field.description}\n  {name}:" in text


def test_every_shipped_example_config_loads():
    repo = Path(__file__).resolve().parents[1]
    examples = sorted(repo.glob("examples/**/project.yaml"))
    assert examples
    for path in examples:
        config = load_config(path)
        assert config.documents_dir.is_dir(), path
        assert path.read_text(encoding="utf-8").startswith("#"), f"{path} should start with the command that runs it"
