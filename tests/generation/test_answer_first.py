"""questions.mode answer_first: answers picked from the chunk, one question asked per answer. The
prompt and parsing logic with a scripted teacher in the real Teacher pool; then once against the
real embedded SmolLM2 (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.generation import prompts
from slm_factory.generation.qa import QUESTION_MAX_TOKENS, question_mode, question_problem
from slm_factory.generation.spans import Span
from slm_factory.parsing.chunking import chunk_document
from slm_factory.pipeline import run_stage, stage_named
from slm_factory.records import Document
from slm_factory.teacher import ChatRequest
from tests.generation.test_qa import make_context
from tests.teacher.fakes import ScriptedBackend

EMBEDDED = {"backend": "llamacpp", "model": "smollm2"}


def the_answer(request: ChatRequest) -> str:
    prompt = request.messages[-1]["content"]
    return re.search(r"^(?:Sentence|Row|문장|행): (.*)\n(?:Question|질문):$", prompt, re.M | re.S).group(1)


def good_question(request: ChatRequest) -> str:
    answer = the_answer(request)
    words = " ".join(re.findall(r"[A-Za-z]{3,}", answer)[:4])
    return f"Question: What does the Seoul youth housing notice say about {words}?\nAnswer: {answer}"


def test_mode_auto_is_answer_first_for_the_embedded_teacher_only():
    def mode(**raw):
        return question_mode(parse_config(raw))

    assert mode(teacher=EMBEDDED) == "answer_first"
    assert mode(teacher={"backend": "llamacpp", "model": "/models/qwen2.5-7b.gguf"}) == "open"
    assert mode() == "open"  # ollama
    assert mode(teacher=EMBEDDED, questions={"mode": "open"}) == "open"
    assert mode(questions={"mode": "answer_first"}) == "answer_first"


def test_the_prompt_holds_the_answer_and_no_example_question():
    english = prompts.question_for_answer_messages("The subsidy is 200,000 won a month.", "sentence", "en")
    assert english == [{"role": "user", "content":
                        "Turn this sentence into a question.\nSentence: The subsidy is 200,000 won a month.\nQuestion:"}]
    row = prompts.question_for_answer_messages("| a | b |\n| x | 1 |", "row", "en")[0]["content"]
    assert "table row" in row and "Row: | a | b |\n| x | 1 |" in row
    korean = prompts.question_for_answer_messages("월 지원금은 20만 원이다.", "sentence", "ko")[0]["content"]
    assert "문장: 월 지원금은 20만 원이다." in korean and korean.endswith("질문:")
    for text in (english[0]["content"], row, korean):
        assert text.count("?") == 0  # nothing to copy


@pytest.mark.parametrize(("reply", "question"), [
    ("What is the monthly subsidy?", "What is the monthly subsidy?"),
    ("Question: What is the monthly subsidy?\nAnswer: 200,000 won", "What is the monthly subsidy?"),
    ('**Question:** "How long is it paid?" It is paid for 12 months.', "How long is it paid?"),
    ("\n\nWhen  do applications\tclose? And when do they open?", "When do applications close?"),
    ("질문: 월 지원금은 얼마인가?", "월 지원금은 얼마인가?"),
    ("The subsidy is paid monthly.", ""),
    ("", ""),
])
def test_a_question_is_the_first_line_up_to_its_question_mark(reply: str, question: str):
    assert prompts.parse_question(reply) == question


SPAN = Span("Applications for the 2024 Seoul youth housing subsidy close on 30 June 2024.", 0, 78, "sentence", 3.0)
PROMPT = prompts.question_for_answer_messages(SPAN.text, "sentence", "en")[0]["content"]


@pytest.mark.parametrize(("question", "problem"), [
    ("When do applications for the 2024 Seoul youth housing subsidy close?", None),
    ("When do applications for the Seoul housing subsidy close?", None),
    ("", "no question in the reply"),
    ("Close when?", "question too short"),
    ("When do applications close according to the document?", "question depends on its document"),
    ("What does this sentence mean?", "question is about the prompt"),
    ("What does it mean to turn this sentence into a question?", "question is about the prompt"),
    ("Turn this sentence into a question.", "question is about the prompt"),
    ("What is the capital of France?", "question shares no content word with its answer"),
    ("When did the 2023 Seoul youth housing subsidy close?", "question states a number its answer does not"),
])
def test_question_checks(question: str, problem: str | None):
    assert question_problem(question, SPAN.text, PROMPT) == problem


def test_pairs_answer_with_their_span_and_carry_provenance(tmp_path: Path):
    backend = ScriptedBackend(good_question)
    ctx = make_context(tmp_path, backend, teacher={**EMBEDDED, "cache": False})
    run = run_stage(stage_named("generate"), ctx)
    assert run.status == "ran", run.result.lines
    pairs = ctx.workspace.read_json("qa_alpaca")
    documents = [Document.model_validate(d) for d in ctx.workspace.read_json("parsed_documents")]
    chunks = {c.id: c for d in documents for c in chunk_document(d, 90, 0)}
    assert pairs and len(pairs) == len(backend.requests) == run.result.counts["new"]
    for pair in pairs:
        chunk = chunks[pair["chunk_id"]]
        assert all(line in chunk.text for line in pair["output"].split("\n"))  # the span, as written
        assert pair["instruction"].startswith("What does the Seoul youth housing notice say about ")
        assert pair["source_doc"] == chunk.source_doc and pair["section"] == chunk.heading
        assert pair["doc_id"] == chunk.doc_id and pair["teacher"] == "smollm2" and pair["origin"] == "generated"
    assert all(r.max_tokens == QUESTION_MAX_TOKENS and r.schema is None for r in backend.requests)
    assert any(p["output"].startswith("| item | amount |\n") for p in pairs)  # a table row with its header
    validate = run_stage(stage_named("validate"), ctx)
    assert validate.result.counts["accepted"] == len(pairs), validate.result.lines


def test_a_bad_question_is_asked_again_hotter_then_rejected(tmp_path: Path):
    def script(request: ChatRequest) -> str:
        if "200,000" in the_answer(request) and request.temperature < 0.5:
            return "What does this sentence mean?"
        if "Household income" in the_answer(request):
            return "The answer is April."
        return good_question(request)

    backend = ScriptedBackend(script)
    ctx = make_context(tmp_path, backend, teacher={**EMBEDDED, "cache": False, "temperature": 0.2})
    run = run_stage(stage_named("generate"), ctx)
    pairs = ctx.workspace.read_json("qa_alpaca")
    assert any("200,000" in p["output"] for p in pairs)  # the second, hotter ask was good
    assert not any("Household income" in p["output"] for p in pairs)
    assert run.result.extra["rejections"] == {"no question in the reply": 1}
    asked = [r for r in backend.requests if "Household income" in the_answer(r)]
    assert [r.temperature for r in asked] == [0.2, 0.7]
    ledger = [json.loads(line) for line in ctx.workspace.partial_path("qa_alpaca").read_text().splitlines()]
    rejected = [e for e in ledger if e["kind"] == "rejected"]
    assert len(rejected) == 1 and rejected[0]["reason"] == "no question in the reply"


def test_resume_asks_nothing_again_and_writes_pairs_whose_question_was_saved(tmp_path: Path):
    ctx = make_context(tmp_path, ScriptedBackend(good_question), teacher={**EMBEDDED, "cache": False})
    run_stage(stage_named("generate"), ctx)
    before = ctx.workspace.read_json("qa_alpaca")
    ledger = ctx.workspace.partial_path("qa_alpaca")
    lines = ledger.read_text().splitlines()
    # A crash between a question and its pair: the question is in the ledger, the pair is not.
    ledger.write_text("\n".join(line for line in lines if json.loads(line)["kind"] != "pair") + "\n")
    again = ScriptedBackend(good_question)
    ctx.teacher_backend = again
    run = run_stage(stage_named("generate"), ctx)
    assert again.requests == [] and ctx.workspace.read_json("qa_alpaca") == before
    assert run.result.counts["new"] == len(before)
    third = ScriptedBackend(good_question)
    ctx.teacher_backend = third
    run = run_stage(stage_named("generate"), ctx)
    assert third.requests == [] and run.result.counts["new"] == 0 and run.result.counts["reused"] == len(before)


def test_two_spans_given_one_question_keep_the_first_pair_only(tmp_path: Path):
    same = "What does the notice say about applicants, household income, applications and the monthly amount?"
    backend = ScriptedBackend(lambda request: same)
    ctx = make_context(tmp_path, backend, teacher={**EMBEDDED, "cache": False},
                       chunking={"max_tokens": 400, "overlap_tokens": 0})
    run = run_stage(stage_named("generate"), ctx)
    assert run.status == "ran", run.result.lines
    pairs = ctx.workspace.read_json("qa_alpaca")
    assert len({p["id"] for p in pairs}) == len(pairs) == 1
    assert run.result.extra["rejections"].get("question repeats another span's", 0) >= 1


@pytest.mark.slow
def test_answer_first_with_the_embedded_model(tmp_path: Path, smollm2_gguf: Path):
    from slm_factory.parsing.base import DocumentBuilder

    builder = DocumentBuilder(Path("/docs/harbor-bridge-2024.txt"), "txt", b"harbor-bridge")
    builder.title = "Harbor Bridge Renovation Notice 2024"
    builder.heading("Schedule", 1)
    builder.paragraph("The Harbor Bridge will close to cars from 3 June 2024 to 28 February 2025 for renovation. "
                      "Buses and bicycles may still cross the bridge during the renovation. "
                      "The renovation costs 48 million dollars and is paid by the state of Oregon.")
    builder.heading("Ferries", 1)
    builder.paragraph("A free ferry runs every 20 minutes between Pier 4 and the Eastside terminal while the "
                      "bridge is closed. The ferry carries up to 300 passengers and 40 bicycles on each trip.")
    ctx = make_context(tmp_path, None, teacher={**EMBEDDED, "temperature": 0.2},
                       chunking={"max_tokens": 400, "overlap_tokens": 0}, questions={"questions_per_chunk": 4})
    ctx.workspace.write_json("parsed_documents", [builder.build().model_dump(mode="json")])
    run = run_stage(stage_named("generate"), ctx)
    assert run.status == "ran", run.result.lines
    pairs = ctx.workspace.read_json("qa_alpaca")
    text = " ".join(b.text for b in builder.build().blocks if b.text)
    assert all(p["output"] in text for p in pairs)
    assert len(pairs) >= 3 and all(p["instruction"].endswith("?") for p in pairs)
    stats = run.result.extra["teacher"]
    assert stats["completion_tokens"] <= stats["requests"] * QUESTION_MAX_TOKENS
    validate = run_stage(stage_named("validate"), ctx)
    assert validate.result.counts["accepted"] * 2 > len(pairs), validate.result.lines


def korean_document() -> dict:
    from slm_factory.parsing.base import DocumentBuilder

    builder = DocumentBuilder(Path("/docs/청년월세지원.txt"), "txt", b"korean-rent")
    builder.title = "2024년 서울시 청년 월세 지원 공고"
    builder.language = "ko"
    builder.paragraph("신청은 2024년 3월 1일부터 6월 30일까지이며, 지원금은 월 20만 원이다. 지원 기간은 최대 12개월이다.")
    return builder.build().model_dump(mode="json")


def korean_asked(backend: ScriptedBackend) -> bool:
    return any(re.search("[\uac00-\ud7a3]", r.messages[-1]["content"]) for r in backend.requests)


def test_the_embedded_teacher_is_not_asked_about_documents_it_cannot_write_and_says_so(tmp_path: Path):
    backend = ScriptedBackend(lambda request: "Question: 신청 마감일은 언제인가요?" if korean_asked(backend)
                              else good_question(request))
    ctx = make_context(tmp_path, backend, teacher={**EMBEDDED, "cache": False})
    ctx.workspace.write_json("parsed_documents", [*ctx.workspace.read_json("parsed_documents"), korean_document()])
    run = run_stage(stage_named("generate"), ctx)
    assert run.status == "ran" and backend.requests and not korean_asked(backend)
    assert {pair["source_doc"] for pair in ctx.workspace.read_json("qa_alpaca")} == {"seoul-youth-housing-2024.txt"}
    line = next(line for line in run.result.lines if "skipped" in line)
    assert line.startswith("1 document in ko skipped (청년월세지원.txt): the embedded teacher (SmolLM2-135M) "
                           "writes English only") and "multilingual teacher" in line
    assert ctx.workspace.load_state()["stages"]["generate"]["stats"]["skipped_documents"] == {"청년월세지원.txt": "ko"}


def test_any_other_teacher_is_asked_about_every_language(tmp_path: Path):
    backend = ScriptedBackend(lambda request: "Question: 청년 월세 지원금은 한 달에 얼마인가요?"
                              if re.search("[\uac00-\ud7a3]", request.messages[-1]["content"]) else good_question(request))
    ctx = make_context(tmp_path, backend, questions={"mode": "answer_first", "questions_per_chunk": 2},
                       teacher={"cache": False})
    ctx.workspace.write_json("parsed_documents", [*ctx.workspace.read_json("parsed_documents"), korean_document()])
    run = run_stage(stage_named("generate"), ctx)
    assert run.status == "ran" and korean_asked(backend)
    assert not any("skipped" in line for line in run.result.lines)
    assert "청년월세지원.txt" in {pair["source_doc"] for pair in ctx.workspace.read_json("qa_alpaca")}
