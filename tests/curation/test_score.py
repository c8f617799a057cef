"""The score stage with a scripted teacher in the real pool: prompt, rubric, threshold, unreadable
replies, resume; and the command on a project where scoring is off."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slm_factory.config import parse_config
from slm_factory.curation.common import Sources
from slm_factory.curation.score import SCORE_SCHEMA, parse_verdict, score_messages
from slm_factory.parsing.base import DocumentBuilder
from slm_factory.pipeline import StageContext, run_stage, stage_named
from slm_factory.records import QAPair
from slm_factory.teacher import AttemptError, ChatRequest
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend


def english_document() -> dict:
    builder = DocumentBuilder(Path("/docs/seoul-youth-housing-2024.txt"), "txt", b"seoul-housing")
    builder.title = "2024 Seoul Youth Housing Subsidy Notice"
    builder.heading("Application", 1)
    builder.paragraph("Applications open on 1 March 2024 and close on 30 June 2024. The subsidy is 200,000 won a month.")
    return builder.build().model_dump(mode="json")


def korean_document() -> dict:
    builder = DocumentBuilder(Path("/docs/청년월세지원.txt"), "txt", b"korean-rent")
    builder.title = "2024년 서울시 청년 월세 지원 공고"
    builder.language = "ko"
    builder.heading("신청 기간", 1)
    builder.paragraph("신청은 2024년 3월 1일부터 6월 30일까지이며, 지원금은 월 20만 원이다.")
    return builder.build().model_dump(mode="json")


def make_ctx(tmp_path: Path, backend, count: int = 12, **raw) -> StageContext:
    """A project with one English and one Korean document and `count` pairs spread over them.
    Question i carries "[score=s]" so the scripted judge knows what to say."""
    raw = {"validation": {"enabled": False}, "scoring": {"enabled": True, "threshold": 3},
           "teacher": {"cache": False}, **raw}
    config = parse_config({"paths": {"output": str(tmp_path / "output")}, **raw})
    workspace = Workspace(config.output_dir)
    workspace.write_json("parsed_documents", [english_document(), korean_document()])
    ctx = StageContext(config=config, workspace=workspace, teacher_backend=backend)
    chunks = list(Sources(ctx).chunks.values())
    pairs = []
    for i in range(count):
        chunk = chunks[i % len(chunks)]
        korean = chunk.source_doc.startswith("청년")
        question = (f"2024년 서울시 청년 월세 신청 마감일은 언제인가요? #{i} [score={i % 5 + 1}]" if korean
                    else f"When do 2024 Seoul youth housing subsidy applications close? #{i} [score={i % 5 + 1}]")
        pairs.append(QAPair(instruction=question, output="30 June 2024 / 2024년 6월 30일", source_doc=chunk.source_doc,
                            doc_id=chunk.doc_id, chunk_id=chunk.id).model_dump())
    workspace.write_json("qa_alpaca", pairs)
    return ctx


def judge(request: ChatRequest) -> str:
    prompt = request.messages[0]["content"]
    score = int(re.search(r"\[score=(\d)\]", prompt).group(1))
    if "reason" not in request.schema["properties"]:  # answer_first's short prompt asks for the score alone
        return json.dumps({"score": score})
    return json.dumps({"score": score, "reason": f"scripted verdict {score}"})


def score(ctx: StageContext):
    run = run_stage(stage_named("score"), ctx)
    assert run.status == "ran", run.result.lines
    return run.result


def test_the_judge_sees_the_source_chunk_in_the_documents_language(tmp_path: Path):
    backend = ScriptedBackend(judge)
    ctx = make_ctx(tmp_path, backend, count=2)
    score(ctx)
    english, korean = sorted((r.messages[0]["content"] for r in backend.requests), key=lambda t: "질문" in t)
    assert "close on 30 June 2024" in english and 'the document "2024 Seoul Youth Housing Subsidy Notice"' in english
    assert "correct" in english and "self-contained" in english and "Answer: 30 June 2024" in english
    assert "6월 30일까지이며" in korean and "정확성" in korean and "질문: 2024년 서울시" in korean
    assert "2024년 서울시 청년 월세 지원 공고" in korean
    assert all(r.schema == SCORE_SCHEMA for r in backend.requests)


def test_answer_first_judges_a_verbatim_answer_with_the_short_prompt_and_the_score_alone(tmp_path: Path):
    from slm_factory.curation.score import SHORT_REASON, SHORT_SCORE_SCHEMA

    backend = ScriptedBackend(judge)
    ctx = make_ctx(tmp_path, backend, count=2, questions={"mode": "answer_first"})
    pairs = ctx.workspace.read_json("qa_alpaca")
    english = next(pair for pair in pairs if not pair["source_doc"].startswith("청년"))
    english["output"] = "The subsidy is 200,000 won a month."  # a sentence of its chunk, word for word
    ctx.workspace.write_json("qa_alpaca", pairs)
    result = score(ctx)
    short, full = sorted(backend.requests, key=lambda r: "<source>" in r.messages[0]["content"])
    assert "<source>" not in short.messages[0]["content"] and "close on 30 June" not in short.messages[0]["content"]
    assert "Answer: The subsidy is 200,000 won a month." in short.messages[0]["content"]
    assert "Score the question from 1 to 5" in short.messages[0]["content"]
    assert short.schema == SHORT_SCORE_SCHEMA and short.max_tokens == 16
    # an answer that is not a passage of its chunk (another teacher's pair) keeps the full rubric and source
    assert "6월 30일까지이며" in full.messages[0]["content"] and full.schema == SCORE_SCHEMA
    judged = ctx.workspace.read_json("qa_scored") + [r["pair"] for r in ctx.workspace.read_json("rejected_score")]
    reasons = {pair["instruction"]: pair["score_reason"] for pair in judged}
    assert reasons[english["instruction"]] == SHORT_REASON
    assert result.counts["passed"] + result.counts["filtered"] == 2 and result.extra["teacher"]["requests"] == 2


@pytest.mark.parametrize("reply", [{"score": 0}, {"score": "4"}, {"score": True}, [], {"grade": 3}])
def test_a_short_verdict_is_a_score_from_one_to_five(reply):
    from slm_factory.curation.score import parse_short_verdict

    pair = QAPair(instruction="q", output="a")
    assert parse_short_verdict(pair, {"score": 4})["score"] == 4
    with pytest.raises(ValueError):
        parse_short_verdict(pair, reply)


def test_pairs_under_the_threshold_are_dropped_with_their_reason(tmp_path: Path):
    ctx = make_ctx(tmp_path, ScriptedBackend(judge), count=25, scoring={"enabled": True, "threshold": 3.5})
    result = score(ctx)
    pairs = {p["id"]: p for p in ctx.workspace.read_json("qa_alpaca")}
    kept = ctx.workspace.read_json("qa_scored")
    rejected = ctx.workspace.read_json("rejected_score")
    expected = {i: int(re.search(r"score=(\d)", p["instruction"]).group(1)) for i, p in pairs.items()}
    assert {p["id"] for p in kept} == {i for i, s in expected.items() if s >= 3.5}
    assert {r["id"] for r in rejected} == {i for i, s in expected.items() if s < 3.5}
    assert all(p["score"] == expected[p["id"]] and p["score_reason"] == f"scripted verdict {expected[p['id']]}"
               for p in kept)
    assert all(r["rule"] == "low_score" and r["stage"] == "score" for r in rejected)
    assert all(r["detail"] == f"score {expected[r['id']]}: scripted verdict {expected[r['id']]}" for r in rejected)
    assert [p["id"] for p in kept] == [i for i in pairs if expected[i] >= 3.5]  # input order kept
    assert result.summary == f"Score complete: {len(kept)} passed, {len(rejected)} filtered (out of 25 validated)"
    assert result.extra["scores"] == {str(s): 5 for s in range(1, 6)}


def test_a_new_threshold_costs_no_teacher_call(tmp_path: Path):
    ctx = make_ctx(tmp_path, ScriptedBackend(judge))
    score(ctx)
    silent = ScriptedBackend([])
    ctx = make_ctx(tmp_path, silent, scoring={"enabled": True, "threshold": 5})
    result = score(ctx)
    assert silent.requests == [] and result.counts["reused"] == 12
    assert {p["score"] for p in ctx.workspace.read_json("qa_scored")} == {5.0}


@pytest.mark.parametrize("bad", [
    "The pair looks fine to me.",  # no JSON at all
    '{"score": 7, "reason": "great"}',  # outside the scale
    '{"score": "4", "reason": "good"}',  # a string, not an integer
    '{"score": 4.5, "reason": "good"}',
    '{"score": 4, "reason": "   "}',  # no reason
    '{"reason": "no score given"}',
])
def test_an_unreadable_verdict_is_asked_again_never_a_pass(tmp_path: Path, bad: str):
    def first_bad(request: ChatRequest) -> str:
        return judge(request) if len(request.messages) > 1 else bad

    backend = ScriptedBackend(first_bad)
    ctx = make_ctx(tmp_path, backend, count=3)
    result = score(ctx)
    assert result.counts["failed"] == 0 and len(backend.requests) == 6  # each asked twice
    assert bad[:40] in backend.requests[1].messages[1]["content"]  # the bad reply shown back
    assert {r.messages[-1]["content"].startswith("That reply cannot be used") for r in backend.requests[1::2]} == {True}

    always_bad = ScriptedBackend(lambda request: bad)
    ctx = make_ctx(tmp_path / "again", always_bad, count=3, teacher={"cache": False, "max_retries": 1})
    run = run_stage(stage_named("score"), ctx)
    assert run.status == "failed" and not ctx.workspace.path("qa_scored").exists()


def test_a_pair_that_stays_unreadable_is_left_out_and_retried_alone(tmp_path: Path):
    def one_stubborn(request: ChatRequest) -> str:
        return "no idea" if "#4 " in request.messages[0]["content"] else judge(request)

    ctx = make_ctx(tmp_path, ScriptedBackend(one_stubborn), teacher={"cache": False, "max_retries": 1})
    result = score(ctx)
    ids = [p["id"] for p in ctx.workspace.read_json("qa_alpaca")]
    scored = {p["id"] for p in ctx.workspace.read_json("qa_scored")} | {r["id"] for r in ctx.workspace.read_json("rejected_score")}
    assert result.counts["failed"] == 1 and scored == set(ids) - {ids[4]}
    assert any("run `slm-factory score` again" in line for line in result.lines)
    retry = ScriptedBackend(judge)
    result = score(make_ctx(tmp_path, retry))
    assert len(retry.requests) == 1 and "#4 " in retry.requests[0].messages[0]["content"]
    assert result.counts["failed"] == 0 and result.counts["reused"] == 11


def test_pairs_without_a_findable_chunk_are_judged_without_it_and_counted(tmp_path: Path, caplog):
    backend = ScriptedBackend(judge)
    ctx = make_ctx(tmp_path, backend, count=4)
    pairs = ctx.workspace.read_json("qa_alpaca")
    pairs[0]["chunk_id"] = "gone:7"
    ctx.workspace.write_json("qa_alpaca", pairs)
    with caplog.at_level("WARNING", logger="slm_factory"):
        result = score(ctx)
    assert result.counts["without_source"] == 1 and "1 of 4 pairs have no findable source chunk" in caplog.text
    sourceless = [r.messages[0]["content"] for r in backend.requests if "#0 " in r.messages[0]["content"]]
    assert "not available" in sourceless[0] and "<source>" not in sourceless[0]


def test_an_unreachable_teacher_stops_and_says_how_many_are_saved(tmp_path: Path):
    calls = {"n": 0}

    def dies(request: ChatRequest) -> str | AttemptError:
        calls["n"] += 1
        return judge(request) if calls["n"] <= 5 else AttemptError("nothing at http://127.0.0.1:9", "unreachable",
                                                                   retryable=False)

    ctx = make_ctx(tmp_path, ScriptedBackend(dies), teacher={"cache": False, "max_concurrency": 1})
    run = run_stage(stage_named("score"), ctx)
    assert run.status == "failed" and "127.0.0.1:9" in run.result.lines[0]
    assert "5 of 12 verdicts are saved" in run.result.lines[1] and not ctx.workspace.path("qa_scored").exists()


def test_verdict_parsing_refuses_what_is_not_a_verdict():
    pair = QAPair(instruction="q", output="a")
    assert parse_verdict(pair, {"score": 2, "reason": " too\nvague "}) == {"score": 2, "reason": "too vague"}
    for bad in (None, [], {"score": True, "reason": "x"}, {"score": 0, "reason": "x"}, {"score": 3},
                {"score": 3, "reason": "..."}):
        with pytest.raises(ValueError):
            parse_verdict(pair, bad)
    instructions = score_messages(pair, "T", "source", "en")[0]["content"]
    with pytest.raises(ValueError, match="repeats the instructions"):  # copied from the prompt, not given
        parse_verdict(pair, {"score": 5, "reason": "Say in one sentence of your own"}, instructions)
    assert parse_verdict(pair, {"score": 5, "reason": "Correct and complete."}, instructions)["score"] == 5


def test_prompts_fill_every_placeholder():
    pair = QAPair(instruction="위원은 몇 명인가?", output="50명이다.")
    for language in ("en", "ko", "ja"):
        for source in ("The committee has 50 members.", ""):
            text = score_messages(pair, "탄소중립기본법", source, language)[0]["content"]
            assert "$" not in text and "위원은 몇 명인가?" in text and "50명이다." in text


@pytest.mark.parametrize("command, key", [("score", "scoring.enabled"), ("augment", "augment.enabled")])
def test_the_command_on_a_project_where_it_is_off_says_which_key_in_one_line(tmp_path: Path, command: str, key: str):
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({"paths": {"output": "output"}}))
    result = CliRunner().invoke(__import__("slm_factory.cli", fromlist=["app"]).app, [command, "-c", str(config)])
    assert result.exit_code == 0
    assert result.stdout.strip().count("\n") == 0 and f"set {key}: true" in result.stdout
    assert not (tmp_path / "output" / "parsed_documents.json").exists()


# -- against a real model ------------------------------------------------------------------------


def real_project(tmp_path: Path, pairs: list[tuple[str, str]], **raw) -> tuple[Path, Path]:
    """A project whose parsed_documents.json is written directly (no generate: SmolLM2 writes poor
    questions slowly) and a --data file of pairs that point at its real chunks."""
    config_path = tmp_path / "project.yaml"
    settings = {"paths": {"output": "output"}, "validation": {"enabled": False},
                "teacher": {"backend": "llamacpp", "model": "smollm2", "temperature": 0.0, "max_tokens": 200},
                **raw}
    config_path.write_text(yaml.safe_dump(settings, allow_unicode=True))
    config = parse_config({**settings, "paths": {"output": str(tmp_path / "output")}})
    workspace = Workspace(config.output_dir)
    workspace.write_json("parsed_documents", [english_document()])
    chunk = next(iter(Sources(StageContext(config=config, workspace=workspace)).chunks.values()))
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps([QAPair(instruction=q, output=a, source_doc=chunk.source_doc, doc_id=chunk.doc_id,
                                       chunk_id=chunk.id).model_dump() for q, a in pairs]))
    return config_path, data


@pytest.mark.slow
def test_score_end_to_end_with_the_embedded_model(tmp_path: Path, smollm2_gguf: Path):
    import subprocess
    import sys

    pairs = [("When do applications for the 2024 Seoul youth housing subsidy close?", "They close on 30 June 2024."),
             ("How much is the 2024 Seoul youth housing subsidy each month?", "It is 200,000 won a month."),
             ("What colour is the sky on Mars?", "The sky on Mars is green.")]
    config, data = real_project(tmp_path, pairs, scoring={"enabled": True, "threshold": 3})
    result = subprocess.run([sys.executable, "-m", "slm_factory", "score", "-c", str(config), "--data", str(data)],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    line = re.search(r"Score complete: (\d+) passed, (\d+) filtered \(out of 3 validated\)", result.stdout)
    assert line, result.stdout
    output = tmp_path / "output"
    kept = json.loads((output / "qa_scored.json").read_text())
    rejected = json.loads((output / "rejected" / "score.json").read_text())
    assert (len(kept), len(rejected)) == (int(line.group(1)), int(line.group(2)))
    state = json.loads((output / ".state.json").read_text())["stages"]["score"]
    assert len(kept) + len(rejected) + state["counts"]["failed"] == 3 and len(kept) + len(rejected) >= 1
    for pair in kept:
        assert pair["score"] in (3, 4, 5) and pair["score_reason"].strip()
    for rejection in rejected:
        assert rejection["rule"] == "low_score" and re.match(r"score [12]: \S", rejection["detail"])
    assert state["stats"]["teacher"]["completion_tokens"] > 0
