"""`run`: every enabled stage in order under one display, then a summary table of what each did.

The whole path runs on a small project with a scripted teacher (a CliRunner cannot hand the
CLI a teacher, so these call `run_stages`, what `run` does once its config is loaded); the
option handling, a failing stage and the exit codes go through the CLI itself.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from slm_factory.cli import app
from slm_factory.cli.stages import run_stages, run_summary
from slm_factory.config import parse_config
from slm_factory.pipeline import STAGES, StageContext, StageRun, StageResult
from slm_factory.teacher import ChatRequest
from slm_factory.workspace import Workspace
from tests.cli.test_cli import make_project
from tests.teacher.fakes import ScriptedBackend
from tests.test_fingerprints import project, schema_backend  # noqa: F401  (fixture)
from tests.training.conftest import smollm2_tokenizer_dir, tiny_llama_dir  # noqa: F401  (fixtures)

runner = CliRunner()
NAMES = [stage.name for stage in STAGES]


def summary_rows(ctx: StageContext, runs: list[StageRun], interrupted: str | None = None) -> dict[str, dict[str, str]]:
    """The summary table as the user reads it: stage name → column → text."""
    out = Console(file=io.StringIO(), width=250, record=True)
    out.print(run_summary(ctx, NAMES, runs, interrupted))
    columns = ("stage", "status", "items", "time", "teacher tokens", "artifact")
    rows = {}
    for line in out.export_text().splitlines():
        cells = [cell.strip() for cell in line.strip().split("│")[1:-1]]
        if len(cells) == len(columns) and cells[0] in (*NAMES, "total"):
            rows[cells[0]] = dict(zip(columns, cells))
    return rows


def context(raw: dict[str, Any], root: Path, backend: ScriptedBackend) -> StageContext:
    config = parse_config(raw, root=root)
    return StageContext(config=config, workspace=Workspace(config.output_dir), teacher_backend=backend)


def test_whole_run_summary_then_resume_reruns_nothing_and_a_changed_key_reruns_from_its_stage(
        project: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project["dialogue"]["enabled"] = False
    project["paths"]["output"] = "output"  # relative: the summary names artifacts relative to the project
    backend = schema_backend()
    ctx = context(project, tmp_path, backend)
    runs = run_stages(ctx, None, None, resume=False)
    assert [run.stage for run in runs] == NAMES
    rows = summary_rows(ctx, runs)
    assert set(rows) == {*NAMES, "total"}
    for run in runs:
        row = rows[run.stage]
        if run.stage == "generate-dialogue":
            assert row["status"] == "skipped (off)" and row["artifact"] == row["time"] == ""
            continue
        assert row["status"] == "ran", (run.stage, run.result and run.result.lines)
        assert row["items"] == str(run.result.items)
        assert row["time"] == f"{run.seconds:.1f} s"
        artifact = tmp_path / row["artifact"]
        assert row["artifact"].startswith("output/") and artifact.exists(), row
        teacher = run.result.extra.get("teacher")
        assert row["teacher tokens"] == (f"{teacher['prompt_tokens'] + teacher['completion_tokens']:,}" if teacher else "")
    for name in ("generate", "score", "split", "augment"):  # the stages that ask the teacher say what it cost
        assert rows[name]["teacher tokens"] not in ("", "0"), name
    assert rows["total"]["status"] == f"{len(NAMES) - 1} ran"
    assert "run summary" in capsys.readouterr().out

    asked = len(backend.requests)
    again = run_stages(context(project, tmp_path, backend), None, None, resume=True)
    assert len(backend.requests) == asked, "a resumed run of an up-to-date project asked the teacher"
    rows = summary_rows(ctx, again)
    assert {name: rows[name]["status"] for name in NAMES} == {
        name: "skipped (off)" if name == "generate-dialogue" else "up-to-date" for name in NAMES}
    assert rows["generate"]["items"] == str(runs[NAMES.index("generate")].result.items)  # from the run record
    assert rows["total"]["status"] == "0 ran" and rows["total"]["teacher tokens"] == ""

    project["validation"]["min_answer_length"] = 6
    changed = run_stages(context(project, tmp_path, backend), None, None, resume=True)
    statuses = {run.stage: run.status for run in changed}
    first = NAMES.index("validate")
    assert all(statuses[name] == "up-to-date" for name in NAMES[:first] if name != "generate-dialogue")
    assert all(statuses[name] == "ran" for name in NAMES[first:]), statuses


class Interrupt:
    """A teacher whose user presses Ctrl-C during the `after`-th request."""

    def __init__(self, after: int) -> None:
        self.left = after
        self.schema = schema_backend()

    def __call__(self, request: ChatRequest) -> str:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return self.schema._script(request)  # type: ignore[misc]


def test_ctrl_c_names_the_stage_and_resume_goes_on_from_it(project: dict[str, Any], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("scoring", "augment", "dialogue", "compare"):
        project[key]["enabled"] = False
    ctx = context(project, tmp_path, ScriptedBackend(Interrupt(after=3)))
    with pytest.raises(typer.Exit) as stopped:
        run_stages(ctx, None, "validate", resume=False)
    assert stopped.value.exit_code == 130
    captured = capsys.readouterr()
    assert "interrupted;" in captured.err
    summary = captured.out
    assert "generate" in summary and "interrupted" in summary and "not reached" in summary

    backend = schema_backend()
    ctx = context(project, tmp_path, backend)
    runs = run_stages(ctx, None, "validate", resume=True)
    assert [(run.stage, run.status) for run in runs] == [
        ("parse", "up-to-date"), ("generate", "ran"), ("generate-dialogue", "skipped"), ("validate", "ran")]
    assert backend.requests  # generate went on with the teacher


def test_a_failed_stage_stops_the_run_and_the_summary_says_which(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    (tmp_path / "proj" / "documents" / "fake.pdf").write_bytes(b"\xff\xd8\xff\xe0JFIF")
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 1
    assert "stopped at parse:" in result.output
    assert "fake.pdf: the file is a JPEG image" in result.output
    table = result.stdout
    assert "failed" in table and table.count("not reached") >= 1
    assert "generate" in table


def test_run_through_the_cli_resumes_and_refuses_an_unknown_stage(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    (tmp_path / "proj" / "documents" / "policy.txt").write_text(
        "Youth housing subsidy.\n\n청년 주거 지원금의 신청 마감은 2024년 6월 30일입니다.", encoding="utf-8")
    first = runner.invoke(app, ["run", "-c", str(config), "--to", "parse"])
    assert first.exit_code == 0, first.output
    assert "run summary" in first.stdout and "ran" in first.stdout
    again = runner.invoke(app, ["run", "-c", str(config), "--to", "parse", "--resume"])
    assert again.exit_code == 0 and "up-to-date" in again.stdout
    wrong = runner.invoke(app, ["run", "-c", str(config), "--from", "generat"])
    assert wrong.exit_code == 2 and "did you mean generate?" in wrong.output


def test_summary_of_a_failed_run_leaves_the_rest_not_reached(tmp_path: Path) -> None:
    ctx = context({"paths": {"output": "output"}}, tmp_path, schema_backend())
    failed = StageResult(failed=True, lines=["teacher.api_base: nothing answers at http://localhost:1"])
    teacher = {"prompt_tokens": 1200, "completion_tokens": 34}
    runs = [StageRun("parse", "up-to-date"), StageRun("generate", "failed", failed, 3.25),
            StageRun("generate-dialogue", "skipped")]
    runs[1].result.extra["teacher"] = teacher
    rows = summary_rows(ctx, runs)
    assert rows["parse"]["status"] == "up-to-date" and rows["parse"]["artifact"] == "output/parsed_documents.json"
    assert rows["generate"] == {"stage": "generate", "status": "failed", "items": "", "time": "3.2 s",
                                "teacher tokens": "1,234", "artifact": ""}
    assert {name: rows[name]["status"] for name in NAMES[3:]} == {
        stage.name: "not reached" if stage.enabled(ctx.config) else "skipped (off)" for stage in STAGES[3:]}
    assert "skipped (off)" in {rows[name]["status"] for name in NAMES[3:]}  # compare is off by default
    assert rows["total"]["status"] == "0 ran" and rows["total"]["teacher tokens"] == "1,234"


@pytest.mark.slow
def test_run_to_generate_with_a_real_teacher_then_resume_asks_nothing(tmp_path: Path, corpus: Path, llama_server: str) -> None:
    import json
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    documents = tmp_path / "documents"
    documents.mkdir()
    shutil.copy(corpus / "edge-utf16-with-bom.txt", documents)
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({
        "teacher": {"backend": "openai", "model": "smollm2", "api_base": f"{llama_server}/v1", "temperature": 0.0,
                    "max_tokens": 128, "max_concurrency": 2},
        "questions": {"questions_per_chunk": 1},
    }))
    env = {**os.environ, "COLUMNS": "200"}

    def run(*options: str) -> str:
        done = subprocess.run([sys.executable, "-m", "slm_factory", "run", "-c", str(config), "--to", "generate", *options],
                              capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    first = run()
    stats = json.loads((tmp_path / "output" / ".state.json").read_text())["stages"]["generate"]["stats"]["teacher"]
    tokens = f"{stats['prompt_tokens'] + stats['completion_tokens']:,}"
    generate_row = next(line for line in first.splitlines() if line.startswith("│ generate "))
    assert " ran " in generate_row and tokens in generate_row and "output/qa_alpaca.json" in generate_row
    again = run("--resume")
    rows = [line for line in again.splitlines() if line.startswith("│ ")]
    assert [row.split("│")[2].strip() for row in rows] == ["up-to-date", "up-to-date", "0 ran"]
    assert json.loads((tmp_path / "output" / ".state.json").read_text())["stages"]["generate"]["stats"]["teacher"] == stats
