"""A stage command runs the earlier stages it needs whose output is missing or stale (the
original slm-factory's `generate` = parse + generate), with the real parse and generate stages
and a scripted teacher."""

from __future__ import annotations

import shutil
from pathlib import Path

from slm_factory.config import parse_config
from slm_factory.pipeline import StageContext, run_with_prerequisites, stage_named, stages_needed_for
from slm_factory.workspace import Workspace
from tests.generation.test_qa import teacher_script
from tests.teacher.fakes import ScriptedBackend

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "slm_factory" / "demo" / "documents"


def _context(tmp_path: Path) -> StageContext:
    documents = tmp_path / "documents"
    documents.mkdir(exist_ok=True)
    shutil.copy(SAMPLE / "us-18f-content-guide-urls-and-filenames.md", documents)
    config = parse_config({
        "paths": {"documents": str(documents), "output": str(tmp_path / "output")},
        "questions": {"questions_per_chunk": 1},
        "chunking": {"max_tokens": 400, "overlap_tokens": 0},
    })
    return StageContext(config=config, workspace=Workspace(config.output_dir),
                        teacher_backend=ScriptedBackend(teacher_script))


def _ran(runs) -> list[tuple[str, str]]:
    return [(run.stage, run.status) for run in runs]


def test_generate_in_a_fresh_project_parses_first_and_only_when_needed(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    generate = stage_named("generate")
    assert [s.name for s in stages_needed_for(generate, ctx.config, ctx.workspace)] == ["parse"]
    assert _ran(run_with_prerequisites(generate, ctx)) == [("parse", "ran"), ("generate", "ran")]
    assert ctx.workspace.path("qa_alpaca").exists()
    # parse is up to date now: generate alone runs
    assert _ran(run_with_prerequisites(generate, ctx)) == [("generate", "ran")]
    # a new document makes parse stale again
    shutil.copy(SAMPLE / "kr-bill-1809890-local-public-officials-act-amendment.txt", tmp_path / "documents")
    assert _ran(run_with_prerequisites(generate, ctx)) == [("parse", "ran"), ("generate", "ran")]


def test_dialogue_needs_generate_and_parse_and_a_failure_stops_the_chain(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    dialogue = stage_named("generate-dialogue")
    assert [s.name for s in stages_needed_for(dialogue, ctx.config, ctx.workspace)] == ["parse", "generate"]
    shutil.rmtree(tmp_path / "documents")  # parse fails: nothing after it runs
    assert _ran(run_with_prerequisites(dialogue, ctx)) == [("parse", "failed")]


def test_analyze_runs_the_enabled_curation_chain_and_never_a_stage_that_is_off(tmp_path: Path) -> None:
    from tests.test_fingerprints import schema_backend

    ctx = _context(tmp_path)
    ctx.teacher_backend = schema_backend()  # answers score, probe and paraphrase requests too
    analyze = stage_named("analyze")
    # score and augment are off by default, eval (split) and validation on
    assert [s.name for s in stages_needed_for(analyze, ctx.config, ctx.workspace)] == ["parse", "generate", "validate", "split"]
    runs = run_with_prerequisites(analyze, ctx)
    assert _ran(runs) == [("parse", "ran"), ("generate", "ran"), ("validate", "ran"), ("split", "ran"), ("analyze", "ran")], \
        [run.result.lines for run in runs if run.result]
    assert ctx.workspace.path("report").exists() and not ctx.workspace.path("qa_scored").exists()
    # everything is up to date: analyze alone reruns
    assert _ran(run_with_prerequisites(analyze, ctx)) == [("analyze", "ran")]
    # turning scoring on puts score into the chain, and what reads its output after it
    on = ctx.config.model_copy(update={"scoring": ctx.config.scoring.model_copy(update={"enabled": True, "threshold": 1})})
    assert [s.name for s in stages_needed_for(analyze, on, ctx.workspace)] == ["score", "split"]
