from __future__ import annotations

import json
import re
from pathlib import Path

from slm_factory.config import parse_config
from slm_factory.generation.dialogue import group_pairs
from slm_factory.pipeline import StageContext, run_stage, stage_named
from slm_factory.teacher import ChatRequest
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend


def pairs_for(doc: str, count: int) -> list[dict]:
    return [{"id": f"{doc}-{i}", "doc_id": doc, "source_doc": f"{doc}.pdf", "instruction": f"Question {i} about {doc}?",
             "output": f"Answer {i} about {doc}."} for i in range(count)]


def test_groups_stay_within_one_document_and_the_turn_range():
    pairs = pairs_for("a", 7) + pairs_for("b", 1) + pairs_for("c", 4)
    groups = group_pairs(pairs, min_turns=2, max_turns=3)
    assert all(2 <= len(g) <= 3 for g in groups)
    assert all(len({p["doc_id"] for p in g}) == 1 for g in groups)
    used = [p["id"] for g in groups for p in g]
    assert len(used) == len(set(used))
    assert not any(p.startswith("b-") for p in used)  # a lone pair makes no dialogue
    assert sum(1 for p in used if p.startswith("a-")) == 7  # 3 + 2 + 2: nothing lost to a short tail


def dialogue_script(request: ChatRequest) -> str:
    prompt = request.messages[-1]["content"]
    found = re.findall(r"Q: (.*)\n\s+A: (.*)", prompt)
    return json.dumps({"turns": [{"user": q, "assistant": a} for q, a in found]})


def test_dialogue_stage_builds_and_resumes(tmp_path: Path):
    config = parse_config({"paths": {"output": str(tmp_path / "out")},
                           "dialogue": {"enabled": True, "min_turns": 2, "max_turns": 3}})
    workspace = Workspace(config.output_dir)
    workspace.write_json("qa_alpaca", pairs_for("a", 6) + pairs_for("b", 2))
    backend = ScriptedBackend(dialogue_script)
    ctx = StageContext(config=config, workspace=workspace, teacher_backend=backend)
    run = run_stage(stage_named("generate-dialogue"), ctx)
    assert run.status == "ran" and run.result.items == 3
    dialogues = workspace.read_json("dialogues")
    assert dialogues[0]["turns"][0] == {"user": "Question 0 about a?", "assistant": "Answer 0 about a."}
    assert dialogues[0]["pair_ids"] == ["a-0", "a-1", "a-2"] and dialogues[2]["source_doc"] == "b.pdf"
    assert dialogues[1]["pair_ids"] == ["a-3", "a-4", "a-5"]
    again = ScriptedBackend(dialogue_script)
    ctx.teacher_backend = again
    assert run_stage(stage_named("generate-dialogue"), ctx).result.items == 3 and again.requests == []


def test_dialogue_stage_is_disabled_by_default():
    assert stage_named("generate-dialogue").enabled(parse_config({})) is False
