"""The CLI as a user runs it: real subprocesses for start-up, Typer's runner for the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from slm_factory.cli import app

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def make_project(tmp_path: Path, **teacher) -> Path:
    assert invoke("init", "--name", "proj", "--path", str(tmp_path)).exit_code == 0
    config = tmp_path / "proj" / "project.yaml"
    if teacher:
        raw = yaml.safe_load(config.read_text())
        raw["teacher"].update(teacher)
        config.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return config


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from slm_factory.cli import app; print(sorted(m for m in ('torch','transformers','fitz','pymupdf','docx','trafilatura','kiwipiepy','aiohttp','llama_cpp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "slm_factory", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "parse" in help_text.stdout and "--install-completion" in help_text.stdout


def test_version():
    from slm_factory import __version__

    result = invoke("version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_every_command_takes_verbose_and_quiet():
    for command in ("version", "init", "check", "status", "clean", "parse", "run"):
        text = invoke(command, "--help").stdout
        assert "--verbose" in text and "--quiet" in text, command


def test_init_creates_project_and_asks_before_overwrite(tmp_path: Path):
    config = make_project(tmp_path)
    assert (tmp_path / "proj" / "documents").is_dir() and (tmp_path / "proj" / "output").is_dir()
    config.write_text(config.read_text() + "\n# my edit\n")
    refused = invoke("init", "--name", "proj", "--path", str(tmp_path), input="n\n")
    assert refused.exit_code != 0 and "# my edit" in config.read_text()
    forced = invoke("init", "--name", "proj", "--path", str(tmp_path), "--yes")
    assert forced.exit_code == 0 and "# my edit" not in config.read_text()


def test_bad_config_is_one_line_without_traceback(tmp_path: Path):
    config = make_project(tmp_path)
    config.write_text(config.read_text().replace("  model: qwen3:8b", "  modle: qwen3:8b"))
    result = invoke("status", "-c", str(config))
    assert result.exit_code == 2
    assert "teacher.modle: unknown key; did you mean teacher.model?" in result.output
    assert "Traceback" not in result.output


def test_check_reports_each_problem_with_advice(tmp_path: Path):
    config = make_project(tmp_path, api_base="http://127.0.0.1:9")  # nothing listens on port 9
    result = invoke("check", "-c", str(config))
    assert result.exit_code == 1
    assert "no documents in" in result.output
    assert "Ollama does not answer at http://127.0.0.1:9" in result.output and "ollama serve" in result.output
    assert "is writable" in result.output


def test_check_llamacpp_model_file(tmp_path: Path):
    config = make_project(tmp_path, backend="llamacpp", model=str(tmp_path / "missing.gguf"))
    (tmp_path / "proj" / "documents" / "a.txt").write_text("Some text.")
    result = invoke("check", "-c", str(config))
    assert result.exit_code == 1 and "missing.gguf not found" in result.output
    assert "documents: 1 files" in result.output


def test_parse_status_clean_round_trip(tmp_path: Path):
    config = make_project(tmp_path)
    docs = tmp_path / "proj" / "documents"
    (docs / "policy.txt").write_text("Youth housing subsidy.\n\nThe deadline is 30 June 2024.", encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"")
    result = invoke("parse", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "broken.pdf: empty file (0 bytes)" in result.output
    assert invoke("parse", "-c", str(config), "--strict").exit_code == 1

    status = json.loads(invoke("status", "-c", str(config), "--json").stdout)
    parse_row = status["stages"][0]
    assert parse_row["name"] == "parse" and parse_row["items"] == 1 and parse_row["up_to_date"]
    assert status["resume_from"] == "generate"  # the next stage has not run yet

    output = tmp_path / "proj" / "output"
    (output / "qa_scored.json").write_text("[]")
    refused = invoke("clean", "-c", str(config), input="n\n")
    assert refused.exit_code == 1 and (output / "qa_scored.json").exists()
    assert invoke("clean", "-c", str(config), "--yes").exit_code == 0
    assert not (output / "qa_scored.json").exists() and (output / "parsed_documents.json").exists()
    assert invoke("clean", "-c", str(config), "--all", "--yes").exit_code == 0
    assert list(output.iterdir()) == []


def test_parse_with_nothing_parsable_fails(tmp_path: Path):
    config = make_project(tmp_path)
    (tmp_path / "proj" / "documents" / "fake.pdf").write_bytes(b"\xff\xd8\xff\xe0JFIF")
    result = invoke("parse", "-c", str(config))
    assert result.exit_code == 1
    assert "fake.pdf: the file is a JPEG image, not a PDF document" in result.output
    assert not (tmp_path / "proj" / "output" / "parsed_documents.json").exists()


def test_teacher_line_counts_faults_by_kind():
    from slm_factory.cli.common import teacher_summary

    line = teacher_summary({"backend": "openai", "model": "m", "requests": 9, "faults": {"500": 3, "429": 2}})
    assert "9 requests" in line and line.endswith("faults 500 3, 429 2")
    assert "faults" not in teacher_summary({"backend": "openai", "model": "m", "faults": {}})
