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
    assert config.scoring.enabled is False  # null section → defaults (off, as in the original)
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


def test_the_demo_project_loads_with_the_bundled_documents(tmp_path):
    from slm_factory.demo import bundled_documents, create_project

    path = create_project(tmp_path / "demo")
    config = load_config(path)
    assert sorted(p.name for p in config.documents_dir.iterdir()) == sorted(p.name for p in bundled_documents())
    assert len(bundled_documents()) == 6
    assert path.read_text(encoding="utf-8").startswith("#")
    assert (config.teacher.backend, config.teacher.model, config.student.model) == ("llamacpp", "smollm2", "smollm2")
    path.write_text(path.read_text(encoding="utf-8").replace("num_epochs: 4", "num_epochs: 2"), encoding="utf-8")
    create_project(tmp_path / "demo")  # a second demo keeps the user's project.yaml
    assert load_config(path).training.num_epochs == 2


# -- project.language and parsing.formats: only what the prompts and parsers know ---------------

def _prompt_folders() -> list[Path]:
    import slm_factory

    prompts = Path(slm_factory.__file__).parent / "generation" / "prompts"
    return sorted(path for path in prompts.iterdir() if path.is_dir() and path.name.isalpha())


def test_languages_are_the_prompt_folders_and_each_is_complete():
    from slm_factory.config import prompt_languages
    from slm_factory.generation import prompts

    folders = _prompt_folders()
    assert prompt_languages() == tuple(folder.name for folder in folders) and "ko" in prompt_languages()
    assert prompts.LANGUAGES == prompt_languages()  # the prompt loader must not fall back for any of them
    english = sorted(path.name for path in (folders[0].parent / "en").glob("*.txt"))
    for folder in folders:
        assert sorted(path.name for path in folder.glob("*.txt")) == english, folder.name


def test_every_prompt_language_loads_in_any_spelling_of_its_code():
    from slm_factory.config import prompt_languages

    for code in prompt_languages():
        for spelling in (code, code.upper(), f" {code} ", f"{code}-KR", f"{code}_US", f"{code.title()}-Hant"):
            assert parse_config({"project": {"language": spelling}}).project.language == code, spelling


@pytest.mark.parametrize(
    ("value", "hint"),
    [("kr", "; did you mean 'ko'?"), ("korean", "; did you mean 'ko'?"), ("", ""), ("xx", ""),
     ("kr-KR", "; did you mean 'ko'?"), ("한국어", ""), ("enn", "; did you mean 'en'?")],
)
def test_unknown_language_is_one_line_with_the_choices(value: str, hint: str):
    from slm_factory.config import prompt_languages

    with pytest.raises(ConfigError) as caught:
        parse_config({"project": {"language": value}})
    choices = ", ".join(repr(code) for code in prompt_languages()[:-1]) + f" or {prompt_languages()[-1]!r}"
    assert caught.value.lines == [
        f"project.language: got {value!r}; expected {choices} (a language the prompts exist for){hint}"
    ]


def test_every_registry_format_and_extension_loads_as_the_format_the_registry_gives_it():
    from slm_factory.parsing.registry import EXTENSIONS, FORMATS

    for fmt in FORMATS:
        assert parse_config({"parsing": {"formats": [fmt, fmt.upper(), f".{fmt}"]}}).parsing.formats == [fmt] * 3
    for extension, fmt in EXTENSIONS.items():
        for spelling in (extension, extension.lstrip("."), extension.upper(), f" {extension.lstrip('.')} "):
            assert parse_config({"parsing": {"formats": [spelling]}}).parsing.formats == [fmt], spelling
    # the two aliases the registry reads alike
    assert parse_config({"parsing": {"formats": ["htm", "markdown"]}}).parsing.formats == ["html", "md"]


def test_unknown_formats_get_one_line_each_naming_the_entry():
    with pytest.raises(ConfigError) as caught:
        parse_config({"parsing": {"formats": ["pdf", "pfd", "docs", "xlsx", "hwpx"]}})
    lines = caught.value.lines
    assert [line.split(":")[0] for line in lines] == ["parsing.formats.1", "parsing.formats.2", "parsing.formats.3"]
    assert lines[0].startswith("parsing.formats.1: got 'pfd'; expected 'pdf', 'hwpx', 'hwp'")
    assert lines[0].endswith("(a format the parsers read); did you mean 'pdf'?")
    assert lines[1].endswith("did you mean 'docx'?") and "did you mean" not in lines[2]


def test_no_string_outside_the_registry_is_accepted_as_a_format():
    """Every near miss of a known format (one character dropped, doubled, swapped or replaced)
    is either a known spelling or an error that suggests the format it came from."""
    from slm_factory.parsing.registry import EXTENSIONS, FORMATS

    known = set(FORMATS) | {ext.lstrip(".") for ext in EXTENSIONS}
    for word in sorted(known):
        variants = {word[:i] + word[i + 1:] for i in range(len(word))}
        variants |= {word[:i] + word[i] + word[i:] for i in range(len(word))}
        variants |= {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)}
        variants |= {word[:i] + "q" + word[i + 1:] for i in range(len(word))}
        for variant in sorted(variants - known - {""}):
            with pytest.raises(ConfigError) as caught:
                parse_config({"parsing": {"formats": [variant]}})
            line = caught.value.lines[0]
            assert len(caught.value.lines) == 1 and line.startswith(f"parsing.formats.0: got {variant!r}; expected")
            assert "did you mean '" in line, line


def test_binary_hwp_is_a_known_format_whose_files_get_the_save_as_hwpx_advice(tmp_path: Path):
    """`hwp` stays accepted (it is in the defaults): each .hwp file gets one line of advice
    instead of being skipped without a word."""
    import subprocess
    import sys

    assert parse_config({"parsing": {"formats": ["hwp"]}}).parsing.formats == ["hwp"]
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "form.hwp").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    (tmp_path / "documents" / "note.txt").write_text("A note that parses.", encoding="utf-8")
    (tmp_path / "project.yaml").write_text("parsing:\n  formats: [txt, HWP]\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "slm_factory", "parse", "-c", str(tmp_path / "project.yaml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "form.hwp: binary HWP is not supported; open it in Hangul and save as HWPX" in done.stderr


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("project:\n  language: kr\n",
         "project.language: got 'kr'; expected 'en' or 'ko' (a language the prompts exist for); did you mean 'ko'?"),
        ("parsing:\n  formats: [pdf, markdown, pfd]\n", "parsing.formats.2: got 'pfd'; expected 'pdf', "),
    ],
)
def test_cli_answers_an_unknown_language_or_format_with_one_line(tmp_path: Path, yaml_text: str, expected: str):
    import subprocess
    import sys

    (tmp_path / "documents").mkdir()
    (tmp_path / "project.yaml").write_text(yaml_text, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "slm_factory", "parse", "-c", str(tmp_path / "project.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2  # the CLI's exit code for an unusable project.yaml
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), lines
    assert not (tmp_path / "output" / "parsed_documents.json").exists()


def test_init_refuses_an_unknown_language_in_one_line(tmp_path: Path):
    from typer.testing import CliRunner

    from slm_factory.cli import app

    result = CliRunner().invoke(app, ["init", "--name", "p", "--path", str(tmp_path), "--language", "kr"])
    assert result.exit_code == 1
    assert "--language 'kr': expected 'en' or 'ko'" in result.output and "did you mean 'ko'?" in result.output
    assert not (tmp_path / "p" / "project.yaml").exists()
    ok = CliRunner().invoke(app, ["init", "--name", "p", "--path", str(tmp_path), "--language", "KO"])
    assert ok.exit_code == 0 and load_config(tmp_path / "p" / "project.yaml").project.language == "ko"


def test_a_renamed_artifact_is_noted_not_silently_ignored():
    from slm_factory.config import parse_config

    config = parse_config({"analyzer": {"output_file": "stats.json"}})
    assert any("analyzer.output_file" in n and "data_analysis.json" in n for n in config.notices)
    assert parse_config({}).notices == []
