"""Generation logic with a scripted teacher plugged into the real Teacher pool."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.generation import prompts
from slm_factory.parsing.base import DocumentBuilder
from slm_factory.pipeline import StageContext, run_stage, stage_named
from slm_factory.teacher import AttemptError, ChatRequest
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend


def housing_document() -> dict:
    builder = DocumentBuilder(Path("/docs/seoul-youth-housing-2024.txt"), "txt", b"seoul-housing")
    builder.title = "2024 Seoul Youth Housing Subsidy Notice"
    builder.heading("Eligibility", 1)
    builder.paragraph("Applicants must be aged 19 to 39 and live in Seoul. Household income must be below 150% of the median. Students and workers both qualify.")
    builder.heading("Application", 1)
    builder.paragraph("Applications open on 1 March 2024 and close on 30 June 2024. The subsidy is 200,000 won a month. Payments start in April.")
    builder.table([["item", "amount"], ["monthly subsidy", "200,000 won"], ["duration", "12 months"]])
    return builder.build().model_dump(mode="json")


def teacher_script(request: ChatRequest) -> str:
    prompt = request.messages[-1]["content"]
    if '{"questions"' in prompt:
        count = int(re.search(r"Write (\d+) questions", prompt).group(1))
        if "Applications open" in prompt:
            items = ["When do applications for the 2024 Seoul youth housing subsidy close?",
                     "What is the unanswerable question about parking?"]
        else:
            items = ["Who is eligible for the 2024 Seoul youth housing subsidy?", "What does this section require?"]
        return json.dumps({"questions": items[:count]})
    question = re.search(r"^Question: (.*)$", prompt, re.M).group(1)
    if "parking" in question:
        return json.dumps({"answerable": False, "question": question, "answer": ""})
    return json.dumps({"answerable": True, "question": question,
                       "answer": f"The 2024 Seoul youth housing subsidy notice answers this: {question}"})


def make_context(tmp_path: Path, backend, **raw) -> StageContext:
    raw = {"questions": {"questions_per_chunk": 2}, "chunking": {"max_tokens": 90, "overlap_tokens": 0}, **raw}
    config = parse_config({"paths": {"output": str(tmp_path / "output")}, **raw})
    workspace = Workspace(config.output_dir)
    workspace.write_json("parsed_documents", [housing_document()])
    return StageContext(config=config, workspace=workspace, teacher_backend=backend)


def test_rendered_prompts_carry_title_section_and_count():
    english = prompts.questions_messages("Bill 2125318", "Article 5", "The committee has 50 members.", 3, "en")
    text = english[0]["content"]
    assert 'the document "Bill 2125318", section "Article 5"' in text
    assert "<excerpt>\nThe committee has 50 members.\n</excerpt>" in text and "Write 3 questions" in text
    korean = prompts.answer_messages("시스템", "탄소중립기본법", "제5조", "위원은 50명이다.", "위원은 몇 명인가?", "ko")
    assert korean[0] == {"role": "system", "content": "시스템"}
    assert '문서: "탄소중립기본법", 항목 "제5조"' in korean[1]["content"] and "질문: 위원은 몇 명인가?" in korean[1]["content"]
    assert prompts.default_system_prompt("ko").startswith("당신은")


@pytest.mark.parametrize("bad", [None, "prose", {"question": []}, {"questions": "one"}, {"questions": [None, 3, ""]}])
def test_question_replies_of_the_wrong_shape_are_refused(bad):
    with pytest.raises(prompts.ReplyShapeError):
        prompts.parse_questions(bad, 3)


def test_answer_parsing_tolerates_string_booleans_and_refuses_junk():
    assert prompts.parse_answer({"answerable": "true", "question": " Q  x ", "answer": " A. "}) == (True, "Q x", "A.")
    assert prompts.parse_answer({"answerable": True, "question": "Q", "answer": ""})[0] is False
    with pytest.raises(prompts.ReplyShapeError):
        prompts.parse_answer({"answerable": True})


def test_generate_writes_grounded_self_contained_pairs_with_provenance(tmp_path: Path):
    backend = ScriptedBackend(teacher_script)
    ctx = make_context(tmp_path, backend)
    run = run_stage(stage_named("generate"), ctx)
    assert run.status == "ran", run.result.lines
    pairs = ctx.workspace.read_json("qa_alpaca")
    questions = {p["instruction"] for p in pairs}
    assert questions == {"When do applications for the 2024 Seoul youth housing subsidy close?",
                         "Who is eligible for the 2024 Seoul youth housing subsidy?"}
    assert run.result.counts["rejected"] == 2  # "not in the document" and "this section"
    pair = next(p for p in pairs if "close" in p["instruction"])
    assert pair["source_doc"] == "seoul-youth-housing-2024.txt" and "Application" in pair["section"]
    assert pair["chunk_id"].startswith(pair["doc_id"] + ":") and pair["teacher"] == "qwen3:8b"
    assert pair["input"] == "" and pair["origin"] == "generated" and len(pair["id"]) == 16
    ledger = [json.loads(line) for line in ctx.workspace.partial_path("qa_alpaca").read_text().splitlines()]
    assert {e["kind"] for e in ledger} == {"questions", "pair", "rejected"}


def test_rerun_asks_the_teacher_nothing_even_without_the_cache(tmp_path: Path):
    first = ScriptedBackend(teacher_script)
    ctx = make_context(tmp_path, first, teacher={"cache": False})
    run_stage(stage_named("generate"), ctx)
    before = ctx.workspace.read_json("qa_alpaca")
    second = ScriptedBackend(teacher_script)
    ctx.teacher_backend = second
    run = run_stage(stage_named("generate"), ctx)
    assert second.requests == [] and run.result.counts["new"] == 0
    assert ctx.workspace.read_json("qa_alpaca") == before


def test_failed_requests_are_counted_and_only_they_are_retried(tmp_path: Path):
    def flaky(request: ChatRequest):
        if "Who is eligible" in request.messages[-1]["content"]:
            return AttemptError("model crashed", "server", retryable=False)
        return teacher_script(request)

    ctx = make_context(tmp_path, ScriptedBackend(flaky), teacher={"cache": False})
    run = run_stage(stage_named("generate"), ctx)
    assert run.result.counts["failed"] == 1 and run.result.counts["pairs"] == 1
    assert any("run `slm-factory generate` again" in line for line in run.result.lines)
    retry = ScriptedBackend(teacher_script)
    ctx.teacher_backend = retry
    run = run_stage(stage_named("generate"), ctx)
    assert run.result.counts["pairs"] == 2 and len(retry.requests) == 1


def test_fixed_questions_are_answered_from_the_relevant_chunk_only(tmp_path: Path):
    backend = ScriptedBackend(teacher_script)
    ctx = make_context(tmp_path, backend, questions={
        "categories": {"dates": ["When do applications close?"], "other": ["Zebra migration patterns?"]}})
    run = run_stage(stage_named("generate"), ctx)
    pairs = ctx.workspace.read_json("qa_alpaca")
    assert [p["category"] for p in pairs] == ["dates"]  # nothing in the document matches zebras
    prompt = backend.requests[0].messages[-1]["content"]
    assert "close on 30 June 2024" in prompt and "aged 19 to 39" not in prompt
    assert run.status == "ran"


def test_unreachable_teacher_stops_with_its_url(tmp_path: Path):
    ctx = make_context(tmp_path, None, teacher={"backend": "openai", "model": "m", "api_base": "http://127.0.0.1:9",
                                                "max_retries": 0, "cache": False})
    run = run_stage(stage_named("generate"), ctx)
    assert run.status == "failed" and "127.0.0.1:9" in run.result.lines[0]


def test_ledger_sees_entries_redone_under_new_settings(tmp_path):
    from slm_factory.generation.qa import Ledger
    from slm_factory.workspace import Checkpoint

    checkpoint = Checkpoint(tmp_path / "qa_alpaca.partial.jsonl")
    Ledger(checkpoint, "k1").add("pair", {"id": "p1", "instruction": "Q?", "output": "old"})
    Ledger(checkpoint, "k2").add("pair", {"id": "p1", "instruction": "Q?", "output": "new"})
    assert Ledger(checkpoint, "k2").done["p1"]["output"] == "new"
    assert Ledger(checkpoint, "k1").done["p1"]["output"] == "old"
