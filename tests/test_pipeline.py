"""The runner's mechanics, with two small stages defined here and appended to the real stage list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_factory import pipeline
from slm_factory.config import parse_config
from slm_factory.pipeline import Stage, StageContext, StageResult, resume_point, run_pipeline, stage_status
from slm_factory.workspace import Workspace

CALLS: list[str] = []


def count_stage(ctx: StageContext) -> StageResult:
    """Reads parsed_documents.json and writes qa_alpaca.json (a stand-in for generation)."""
    CALLS.append("count")
    documents = ctx.workspace.read_json("parsed_documents")
    ctx.workspace.write_json("qa_alpaca", [{"id": d["id"], "n": ctx.config.teacher.temperature} for d in documents])
    return StageResult(items=len(documents))


def score_stage(ctx: StageContext) -> StageResult:
    CALLS.append("score")
    ctx.workspace.write_json("qa_scored", ctx.workspace.read_json("qa_alpaca"))
    return StageResult(items=1)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "a.txt").write_text("Alpha policy.\n\nThe subsidy deadline is 30 June 2024.", encoding="utf-8")
    (docs / "b.md").write_text("# Beta\n\nBeta text about housing.", encoding="utf-8")
    stages = [pipeline.stage_named("parse"),
        Stage("count", ("parsed_documents",), "qa_alpaca", ("teacher.temperature",), f"{__name__}:count_stage"),
        Stage("score", ("qa_alpaca",), "qa_scored", ("scoring",), f"{__name__}:score_stage",
              enabled=lambda config: config.scoring.enabled),
    ]
    monkeypatch.setattr(pipeline, "STAGES", stages)
    CALLS.clear()

    def make(**raw):
        raw.setdefault("scoring", {"enabled": True})  # off by default, as in the original
        config = parse_config({"paths": {"documents": str(docs), "output": str(tmp_path / "output")}, **raw})
        return StageContext(config=config, workspace=Workspace(config.output_dir))

    return make


def test_full_run_then_resume_runs_nothing(project):
    ctx = project()
    runs = run_pipeline(ctx)
    assert [(r.stage, r.status) for r in runs] == [("parse", "ran"), ("count", "ran"), ("score", "ran")]
    assert len(ctx.workspace.read_json("parsed_documents")) == 2
    assert resume_point(stage_status(ctx.config, ctx.workspace)) is None
    CALLS.clear()
    assert [r.status for r in run_pipeline(project(), resume=True)] == ["up-to-date"] * 3
    assert CALLS == []


def test_changed_config_key_reruns_that_stage_and_later_only(project):
    run_pipeline(project())
    CALLS.clear()
    ctx = project(teacher={"temperature": 0.9})
    assert resume_point(stage_status(ctx.config, ctx.workspace)) == "count"
    runs = run_pipeline(ctx, resume=True)
    assert [r.status for r in runs] == ["up-to-date", "ran", "ran"]
    assert ctx.workspace.read_json("qa_alpaca")[0]["n"] == 0.9


def test_changed_document_reruns_from_parse(project, tmp_path: Path):
    run_pipeline(project())
    (tmp_path / "documents" / "c.txt").write_text("Gamma document text.", encoding="utf-8")
    ctx = project()
    assert resume_point(stage_status(ctx.config, ctx.workspace)) == "parse"
    assert [r.status for r in run_pipeline(ctx, resume=True)] == ["ran", "ran", "ran"]
    assert len(ctx.workspace.read_json("parsed_documents")) == 3


def test_edited_artifact_makes_its_stage_stale(project):
    ctx = project()
    run_pipeline(ctx)
    path = ctx.workspace.path("qa_alpaca")
    path.write_text(json.dumps([]), encoding="utf-8")
    assert resume_point(stage_status(ctx.config, ctx.workspace)) == "count"


def test_disabled_stage_is_skipped_and_range_is_respected(project):
    ctx = project(scoring={"enabled": False})
    runs = run_pipeline(ctx, start="count", end="score") if ctx.workspace.path("parsed_documents").exists() else None
    assert runs is None  # nothing parsed yet in this fresh project
    runs = run_pipeline(ctx)
    assert [(r.stage, r.status) for r in runs] == [("parse", "ran"), ("count", "ran"), ("score", "skipped")]
    CALLS.clear()
    runs = run_pipeline(ctx, start="count", end="count")
    assert [r.stage for r in runs] == ["count"] and CALLS == ["count"]


def test_state_holds_no_secret(project, monkeypatch):
    monkeypatch.setenv("SLM_KEY", "sk-very-secret")
    ctx = project(teacher={"api_key": "${SLM_KEY}"})
    run_pipeline(ctx)
    assert "sk-very-secret" not in ctx.workspace.state_path.read_text()


def test_artifact_items_counts_records_lines_and_analysed_pairs(tmp_path: Path):
    from slm_factory.pipeline import artifact_items

    (tmp_path / "pairs.json").write_text(json.dumps([{"a": 1}, {"a": 2}]), encoding="utf-8")
    (tmp_path / "data.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n', encoding="utf-8")
    (tmp_path / "data_analysis.json").write_text(json.dumps({"format": 1, "totals": {"pairs": 41}}), encoding="utf-8")
    assert [artifact_items(tmp_path / n) for n in ("pairs.json", "data.jsonl", "data_analysis.json")] == [2, 3, 41]
    assert artifact_items(tmp_path / "missing.json") is None
