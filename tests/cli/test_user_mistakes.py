"""User mistakes end in one line naming the file or key and what to do, never a traceback.

Each case runs the real command in a subprocess, as a user would, and reads its stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "slm_factory" / "demo" / "documents" / "us-18f-content-guide-urls-and-filenames.md"


def slm(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slm_factory", *args, "-c", str(project / "project.yaml")],
                          capture_output=True, text=True, timeout=300, cwd=project)


def make_project(root: Path, **raw: object) -> Path:
    (root / "documents").mkdir(parents=True)
    (root / "documents" / SAMPLE.name).write_bytes(SAMPLE.read_bytes())
    (root / "project.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return root


def one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) >= 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_missing_questions_file_names_the_key(tmp_path: Path) -> None:
    project = make_project(tmp_path, questions={"file": "questions.txt"})
    result = slm(project, "generate")
    assert result.returncode == 1
    one_error_line(result, "questions.file", "questions.txt", "does not exist")


def test_questions_file_that_is_a_folder(tmp_path: Path) -> None:
    project = make_project(tmp_path, questions={"file": "documents"})
    result = slm(project, "generate")
    assert result.returncode == 1
    one_error_line(result, "questions.file", "documents")


def test_teacher_model_file_that_does_not_exist(tmp_path: Path) -> None:
    project = make_project(tmp_path, teacher={"backend": "llamacpp", "model": str(tmp_path / "none.gguf")})
    result = slm(project, "generate")
    assert result.returncode == 1
    one_error_line(result, "none.gguf", "teacher.model")


@pytest.mark.parametrize("content, words", [
    ("{not json", ["pairs.json", "not valid JSON"]),
    ('{"pairs": []}', ["pairs.json", "list"]),
    ('[{"id": 7, "instruction": "Q?", "output": "A."}]', ["pairs.json", "record 1"]),
    ('[{"question": "Q?"}]', ["pairs.json", "record 1", "instruction"]),
    ("\udcff", ["pairs.json"]),
])
@pytest.mark.parametrize("command", ["generate-dialogue", "validate", "split", "analyze"])
def test_bad_data_file(tmp_path: Path, command: str, content: str, words: list[str]) -> None:
    project = make_project(tmp_path, dialogue={"enabled": True})
    data = tmp_path / "pairs.json"
    data.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = slm(project, command, "--data", str(data))
    assert result.returncode == 1, result.stdout + result.stderr
    one_error_line(result, *words)


@pytest.mark.parametrize("command", ["validate", "score", "augment"])
def test_missing_data_file(tmp_path: Path, command: str) -> None:
    project = make_project(tmp_path, scoring={"enabled": True}, augment={"enabled": True})
    result = slm(project, command, "--data", "nowhere.json")
    assert result.returncode == 1
    one_error_line(result, "--data", "nowhere.json")


@pytest.mark.parametrize("command, key", [("score", "scoring.enabled"), ("augment", "augment.enabled")])
def test_stage_that_is_off_says_which_key_turns_it_on(tmp_path: Path, command: str, key: str) -> None:
    project = make_project(tmp_path)
    result = slm(project, command)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert f"set {key}: true" in result.stdout
    assert not (project / "output" / "parsed_documents.json").exists()  # nothing ran


def test_unknown_stage_in_run(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    result = slm(project, "run", "--from", "scoring")
    assert result.returncode == 2
    one_error_line(result, "scoring", "score")
