"""split: the held-out choice (stratified, seeded, stable) as properties over many generated pair
sets, the probes written by a scripted teacher plugged into the real Teacher pool, the guards,
documents mode, the CLI, and one run against the real embedded model."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from slm_factory.config import parse_config
from slm_factory.curation import split
from slm_factory.pipeline import StageContext, run_stage, stage_named
from slm_factory.records import QAPair
from slm_factory.teacher import ChatRequest
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend

SUBJECTS_EN = ["the 2024 Seoul youth housing subsidy", "the Local Public Officials Act", "the Counterterrorism Fund",
               "the national pension reform", "the 18F content guide", "the municipal water tariff"]
SUBJECTS_KO = ["2024년 서울시 청년 월세 지원 사업", "지방공무원법 개정안", "국민연금 개혁안", "경기도 공공도서관 운영 조례"]
ASPECTS_EN = ["application deadline", "budget", "eligibility rule", "responsible agency", "penalty", "start date",
              "reporting duty", "appeal procedure", "fee", "scope"]
ASPECTS_KO = ["신청 마감일", "예산", "지원 자격", "담당 기관", "벌칙", "시행일", "보고 의무", "이의 신청 절차", "수수료", "적용 범위"]


def make_pair(doc: str, index: int, korean: bool = False, origin: str = "generated") -> QAPair:
    if korean:
        subject, aspect = SUBJECTS_KO[index % len(SUBJECTS_KO)], ASPECTS_KO[index // len(SUBJECTS_KO) % len(ASPECTS_KO)]
        question = f"{subject}의 {aspect}({doc} 제{index}항)은 무엇인가요?"
        answer = f"{subject}의 {aspect}은 제{index}항에 따라 정해집니다."
    else:
        subject, aspect = SUBJECTS_EN[index % len(SUBJECTS_EN)], ASPECTS_EN[index // len(SUBJECTS_EN) % len(ASPECTS_EN)]
        question = f"What is the {aspect} of {subject} under clause {index} of {doc}?"
        answer = f"The {aspect} of {subject} is set by clause {index}."
    return QAPair(instruction=question, output=answer, source_doc=f"{doc}.txt", doc_id=doc,
                  chunk_id=f"{doc}:{index % 3}", category="fact", origin=origin)


def random_pairs(rng: random.Random) -> list[QAPair]:
    """Documents of very different sizes (one pair to dozens), some Korean, some paraphrases."""
    pairs = []
    for d in range(rng.randint(1, 12)):
        korean = rng.random() < 0.4
        for i in range(rng.choice([1, 1, 2, 3, 5, 8, 13, 40])):
            origin = rng.choices(["generated", "reviewed", "paraphrase"], [8, 1, 1])[0]
            pairs.append(make_pair(f"doc{d}", i, korean, origin))
    rng.shuffle(pairs)
    return pairs


def by_document(pairs: list[QAPair]) -> dict[str, list[QAPair]]:
    groups: dict[str, list[QAPair]] = {}
    for pair in pairs:
        groups.setdefault(pair.doc_id, []).append(pair)
    return groups


# -- the choice ----------------------------------------------------------------------------------


def test_the_choice_is_stratified_exact_in_total_and_seeded():
    rng = random.Random(7)
    for _ in range(300):
        pairs = random_pairs(rng)
        share, seed = rng.choice([0.05, 0.1, 0.15, 0.2, 0.25, 1 / 3, 0.5, 0.9]), rng.randint(0, 10**6)
        chosen = split.choose_parents(pairs, share, seed)
        eligible = [p for p in pairs if p.origin in ("generated", "reviewed")]
        assert len(chosen) == split.held_out_count(len(eligible), share)
        assert all(p.origin in ("generated", "reviewed") for p in chosen)
        counts = {doc: sum(1 for p in chosen if p.doc_id == doc) for doc in by_document(eligible)}
        for doc, items in by_document(eligible).items():
            exact = Fraction(share).limit_denominator(10**6) * len(items)
            assert math.floor(exact) <= counts[doc] <= math.ceil(exact), (doc, len(items), share)
        # The same input in another order, and the same call again, choose the same pairs.
        again = split.choose_parents(rng.sample(pairs, len(pairs)), share, seed)
        assert {p.id for p in again} == {p.id for p in chosen}
        assert [p.id for p in split.choose_parents(pairs, share, seed)] == [p.id for p in chosen]


def test_held_out_count_rounds_and_keeps_at_least_one_of_two():
    assert [split.held_out_count(n, 0.1) for n in (0, 1, 2, 3, 14, 15, 25, 30, 100)] == [0, 0, 1, 1, 1, 2, 3, 3, 10]
    assert split.held_out_count(10, 0.99) == 9  # never every one
    assert split.held_out_count(2, 0.5) == 1


def test_another_seed_chooses_other_pairs():
    pairs = [make_pair(f"doc{d}", i) for d in range(4) for i in range(25)]
    choices = {frozenset(p.id for p in split.choose_parents(pairs, 0.2, seed)) for seed in range(6)}
    assert len(choices) == 6


def test_one_pair_documents_are_neither_all_in_nor_all_out():
    pairs = [make_pair(f"doc{d}", 0, korean=d % 2 == 0) for d in range(40)]
    held = [{p.doc_id for p in split.choose_parents(pairs, 0.1, seed)} for seed in range(30)]
    assert all(len(docs) == 4 for docs in held)
    assert len(set().union(*held)) > 20  # which documents give a parent depends on the seed, not their order


def test_pairs_added_to_one_document_leave_the_choice_in_the_others():
    rng = random.Random(11)
    for _ in range(200):
        pairs = random_pairs(rng)
        share, seed = rng.choice([0.1, 0.2, 0.3]), rng.randint(0, 1000)
        grown = rng.choice(sorted({p.doc_id for p in pairs}))
        added = [make_pair(grown, 100 + i, korean=rng.random() < 0.5) for i in range(rng.randint(1, 30))]
        before = by_document(split.choose_parents(pairs, share, seed))
        after = by_document(split.choose_parents([*pairs, *added], share, seed))
        for doc in {p.doc_id for p in pairs} - {grown}:
            old, new = {p.id for p in before.get(doc, [])}, {p.id for p in after.get(doc, [])}
            # The quota may move by the one seat rounding gives; the pairs never reshuffle.
            assert old <= new or new <= old, doc
            assert abs(len(old) - len(new)) <= 1


def test_held_out_documents_are_a_seeded_stable_share():
    rng = random.Random(3)
    for _ in range(200):
        keys = [f"doc{i}" for i in range(rng.randint(1, 30))]
        share, seed = rng.choice([0.1, 0.2, 0.5, 0.8]), rng.randint(0, 1000)
        held = split.choose_documents(keys, share, seed)
        assert len(held) == split.held_out_count(len(keys), share)
        assert (len(held) >= 1) == (len(keys) >= 2) and len(held) < max(2, len(keys))
        # A new document may take a place; the old ones never reshuffle.
        more = split.choose_documents([*keys, "new-doc"], share, seed) - {"new-doc"}
        assert (held <= more or more <= held) and abs(len(held) - len(more)) <= 1


# -- prompts and parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "ko", "de"])
def test_the_probe_prompt_holds_question_answer_and_source(language: str):
    pair = make_pair("doc1", 2, korean=language == "ko")
    with_source = split.probe_messages(pair, "SOURCE TEXT 원문", language)[0]["content"]
    without = split.probe_messages(pair, "", language)[0]["content"]
    for text in (with_source, without):
        assert pair.instruction in text and pair.output in text and '{"question": "..."}' in text
        assert "$" not in text
    assert "SOURCE TEXT 원문" in with_source and "<excerpt>" in with_source and "<excerpt>" not in without
    assert ("질문" in without) == (language == "ko")


@pytest.mark.parametrize("language", ["en", "ko"])
@pytest.mark.parametrize("rule", ["probe_same_as_parent", "probe_near_training", "probe_not_self_contained"])
def test_every_guard_has_a_retry_note(language: str, rule: str):
    first = split.probe_messages(make_pair("d", 1), "", language)
    verdict = split.Verdict(rule, "detail", "What is the budget of the Counterterrorism Fund?")
    messages = split.retry_messages(first, "그 질문?", verdict, language)
    assert messages[:1] == first and messages[1] == {"role": "assistant", "content": '{"question": "그 질문?"}'}
    note = messages[2]["content"]
    assert "$" not in note and ((verdict.near in note) == (rule == "probe_near_training"))


@pytest.mark.parametrize("reply", [None, [], "a question?", {"q": "What?"}, {"question": 3}, {"question": "  Why? "}])
def test_an_unreadable_reply_is_refused(reply):
    with pytest.raises(ValueError):
        split.parse_probe(reply)


def test_a_readable_reply_is_one_clean_question():
    assert split.parse_probe({"question": " When does\n the 2024 subsidy  close? "}) == "When does the 2024 subsidy close?"


# -- the stage, with a scripted teacher -----------------------------------------------------------


def make_ctx(tmp_path: Path, backend=None, data: Path | None = None, **raw) -> StageContext:
    eval_section = {"test_split": 0.2, **raw.pop("eval", {})}
    raw = {"teacher": {"cache": False, "max_concurrency": 3, **raw.pop("teacher", {})}, "eval": eval_section, **raw}
    config = parse_config({"paths": {"output": str(tmp_path / "output")}, **raw})
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir), teacher_backend=backend,
                       options={"data": str(data)} if data else {})
    ctx.workspace.ensure()
    return ctx


def write_input(ctx: StageContext, pairs: list[QAPair], artifact: str = "qa_validated") -> None:
    ctx.workspace.write_json(artifact, [p.model_dump() for p in pairs])


def read(ctx: StageContext, artifact: str) -> list[dict]:
    return json.loads(ctx.workspace.path(artifact).read_text(encoding="utf-8"))


def asked_question(request: ChatRequest) -> str:
    """The parent question quoted in a probe request (English or Korean prompt)."""
    first = request.messages[0]["content"]
    for label in ("Question: ", "질문: "):
        for line in first.splitlines():
            if line.startswith(label):
                return line.removeprefix(label)
    raise AssertionError("no question in the prompt")


def rewording(request: ChatRequest) -> str:
    """A good probe: the parent's subject kept, the words changed."""
    question = asked_question(request)
    return json.dumps({"question": f"Tell me, regarding {question[8:-1]}, what applies?"}, ensure_ascii=False)


def test_probes_go_to_qa_test_and_every_pair_stays_in_training(tmp_path: Path):
    pairs = [make_pair(f"doc{d}", i, korean=d == 1) for d in range(3) for i in range(10)]
    backend = ScriptedBackend(rewording)
    ctx = make_ctx(tmp_path, backend)
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    assert run.status == "ran", run.result.lines
    train, test = read(ctx, "qa_train"), read(ctx, "qa_test")
    assert train == [p.model_dump() for p in pairs]
    parents = {p.id: p for p in pairs}
    assert len(test) == 6 and len(backend.requests) == 6
    assert {parents[t["parent_id"]].doc_id for t in test} == {"doc0", "doc1", "doc2"}
    for probe in test:
        parent = parents[probe["parent_id"]]
        assert probe["origin"] == "probe" and probe["instruction"] != parent.instruction
        assert probe["output"] == parent.output
        for key in ("source_doc", "doc_id", "chunk_id", "category", "pages", "section"):
            assert probe[key] == getattr(parent, key)
        assert probe["id"] not in parents
    assert len({t["id"] for t in test}) == 6
    assert run.result.summary == "Split complete: 30 training pairs, 6 held-out probes"
    assert read(ctx, "rejected_split") == []


# -- answer_first mode: a new question for the parent's answer ------------------------------------


def shown_answer(request: ChatRequest) -> str:
    """The answer quoted in an answer-first request ("Sentence: ..." / "문장: ...")."""
    for line in request.messages[-1]["content"].splitlines():
        for label in ("Sentence: ", "문장: ", "Row: ", "행: "):
            if line.startswith(label):
                return line.removeprefix(label)
    raise AssertionError(f"no answer in the prompt: {request.messages[-1]['content']!r}")


def question_for(answer: str) -> str:
    """A good new question for one of make_pair's English answers."""
    aspect_of_subject = answer.removeprefix("The ").split(" is set by")[0]
    return f"Which clause sets the {aspect_of_subject}?"


def test_answer_first_probes_are_new_questions_for_the_answer_and_never_show_the_question(tmp_path: Path):
    pairs = [make_pair(f"doc{d}", i) for d in range(3) for i in range(10)]
    backend = ScriptedBackend(lambda request: question_for(shown_answer(request)))
    ctx = make_ctx(tmp_path, backend, questions={"mode": "answer_first"}, teacher={"temperature": 0.2})
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    assert run.status == "ran", run.result.lines
    test, parents = read(ctx, "qa_test"), {p.id: p for p in pairs}
    assert len(test) == 6 and len(backend.requests) == 6
    for request in backend.requests:
        prompt = request.messages[-1]["content"]
        assert not any(pair.instruction in prompt for pair in pairs)  # the question is never shown
        assert request.schema is None and request.max_tokens == 64
        assert request.temperature == pytest.approx(0.5) and isinstance(request.options["seed"], int)
    assert len({r.options["seed"] for r in backend.requests}) == 6
    for probe in test:
        parent = parents[probe["parent_id"]]
        assert probe["instruction"] == question_for(parent.output) and probe["output"] == parent.output
    assert read(ctx, "qa_train") == [p.model_dump() for p in pairs]


def test_answer_first_asks_again_with_another_seed_and_drops_a_probe_that_stays_too_close(tmp_path: Path):
    pairs = [make_pair("alpha", i) for i in range(10)]  # no digit in the document name: the questions pass generate's checks
    training_question = {p.output: p.instruction for p in pairs}
    draws: dict[str, list[int]] = {}

    def copy_then_new(request: ChatRequest) -> str:
        answer = shown_answer(request)
        draws.setdefault(answer, []).append(request.options["seed"])
        # the first parent's answer always comes back as its training question; the other's only at first
        if answer == pairs[0].output or len(draws[answer]) == 1:
            return training_question[answer]
        return question_for(answer)

    ctx = make_ctx(tmp_path, ScriptedBackend(copy_then_new), questions={"mode": "answer_first"})
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    parents = {p.id for p in split.choose_parents(pairs, 0.2, 42)}
    test, rejected = read(ctx, "qa_test"), read(ctx, "rejected_split")
    assert len(parents) == 2 and all(len(set(seeds)) == 2 for seeds in draws.values())
    kept = [t["parent_id"] for t in test]
    assert (pairs[0].id in parents) == (pairs[0].id not in kept)
    assert run.result.counts["asked_again"] == 2 and run.result.counts["dropped"] == len(parents) - len(kept)
    assert {r["rule"] for r in rejected} == {"probe_same_as_parent"}


def test_answer_first_reasks_a_reply_that_is_no_question_hotter(tmp_path: Path):
    pairs = [make_pair("doc0", i) for i in range(5)]
    replies = iter(["What does this sentence mean?", "Sure! Here you go."] * 10)

    def bad_then_good(request: ChatRequest) -> str:
        if request.temperature < 0.9:
            return next(replies)
        return question_for(shown_answer(request))

    backend = ScriptedBackend(bad_then_good)
    ctx = make_ctx(tmp_path, backend, questions={"mode": "answer_first"}, teacher={"temperature": 0.3})
    write_input(ctx, pairs)
    run_stage(stage_named("split"), ctx)
    (probe,) = read(ctx, "qa_test")
    assert [r.temperature for r in backend.requests] == pytest.approx([0.6, 1.0])
    assert backend.requests[0].options["seed"] + 1 == backend.requests[1].options["seed"]
    assert probe["instruction"].startswith("Which clause sets")


def test_answer_first_draws_up_to_three_times_for_a_usable_question(tmp_path: Path):
    pairs = [make_pair("alpha", i) for i in range(10)]
    parents = split.choose_parents(pairs, 0.2, 42)
    seeds: dict[str, list[int]] = {}

    def no_question_at_first(request: ChatRequest) -> str:
        answer = shown_answer(request)
        seeds.setdefault(answer, []).append(request.options["seed"])
        # the first parent gets a question on its third draw; the second never does
        if answer == parents[1].output or len(seeds[answer]) < 3:
            return "Sure! Here is a question for you."
        return question_for(answer)

    ctx = make_ctx(tmp_path, ScriptedBackend(no_question_at_first), questions={"mode": "answer_first"})
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    assert all(len(drawn) == 3 and len(set(drawn)) == 3 for drawn in seeds.values())
    assert [t["parent_id"] for t in read(ctx, "qa_test")] == [parents[0].id]
    assert run.result.counts["failed"] == 1 and run.result.counts["asked_again"] == 0
    assert "1 parents got no usable question in three draws and have no probe" in run.result.lines


def test_a_rerun_with_unchanged_input_asks_nothing_and_keeps_the_probes(tmp_path: Path):
    pairs = [make_pair(f"doc{d}", i) for d in range(4) for i in range(7)]
    backend = ScriptedBackend(rewording)
    ctx = make_ctx(tmp_path, backend)  # the reply cache is off: the ledger alone must do it
    write_input(ctx, pairs)
    run_stage(stage_named("split"), ctx)
    first = read(ctx, "qa_test")
    calls = len(backend.requests)
    silent = ScriptedBackend(lambda request: pytest.fail("a rerun asked the teacher"))
    rerun = run_stage(stage_named("split"), make_ctx(tmp_path, silent))
    assert rerun.status == "ran" and silent.requests == [] and calls == len(first) > 0
    assert [p["id"] for p in read(ctx, "qa_test")] == [p["id"] for p in first]
    assert rerun.result.counts["reused"] == len(first)


def test_a_probe_that_repeats_its_parent_is_dropped_and_asked_again_once(tmp_path: Path):
    pairs = [make_pair("doc0", i) for i in range(10)]
    seen: dict[str, int] = {}

    def parrot_then_reword(request: ChatRequest) -> str:
        question = asked_question(request)
        seen[question] = seen.get(question, 0) + 1
        if seen[question] == 1:
            return json.dumps({"question": question})
        assert request.messages[-1]["role"] == "user" and "repeats the original question" in request.messages[-1]["content"]
        assert request.messages[-2]["content"] == json.dumps({"question": question})
        return rewording(request)

    ctx = make_ctx(tmp_path, ScriptedBackend(parrot_then_reword))
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    test, rejected = read(ctx, "qa_test"), read(ctx, "rejected_split")
    assert len(test) == 2 and all(count == 2 for count in seen.values()) and len(seen) == 2
    assert [r["rule"] for r in rejected] == ["probe_same_as_parent"] * 2
    assert all(r["stage"] == "split" and r["pair"]["origin"] == "probe" for r in rejected)
    assert run.result.counts["asked_again"] == 2 and run.result.counts["dropped"] == 0


def test_a_probe_copying_another_training_question_is_dropped(tmp_path: Path):
    pairs = [make_pair("doc0", i, korean=True) for i in range(10)]
    by_question = {p.instruction: p for p in pairs}

    def copy_a_neighbour(request: ChatRequest) -> str:
        parent = by_question[asked_question(request)]
        other = pairs[(pairs.index(parent) + 1) % len(pairs)]
        # The neighbour's question with its spacing and ending changed: the same question.
        return json.dumps({"question": other.instruction.replace("무엇인가요?", "무엇입니까").replace(" ", "  ")},
                          ensure_ascii=False)

    ctx = make_ctx(tmp_path, ScriptedBackend(copy_a_neighbour), project={"language": "ko"})
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    assert read(ctx, "qa_test") == []
    rejected = read(ctx, "rejected_split")
    assert len(rejected) == 4 and {r["rule"] for r in rejected} == {"probe_near_training"}
    assert all("(dropped after asking twice)" in r["detail"] for r in rejected[2:])
    assert run.result.counts["dropped"] == 2
    assert run.result.summary == "Split complete: 10 training pairs, 0 held-out probes (2 dropped as too close to training questions)"
    texts = [m["content"] for r in ctx.teacher_backend.requests for m in r.messages]
    assert any("학습에 이미 쓰이는 질문" in t for t in texts)  # the Korean note, for a Korean project


@pytest.mark.parametrize("reply", ["What does this document say about it?", "What is the answer to this question?",
                                   "위 표에 나온 지원 금액은 얼마인가요?", "이 질문에 대한 답은 무엇인가요?"])
def test_a_probe_that_does_not_stand_on_its_own_is_dropped(tmp_path: Path, reply: str):
    pairs = [make_pair("doc0", i) for i in range(5)]
    ctx = make_ctx(tmp_path, ScriptedBackend(lambda r: json.dumps({"question": reply}, ensure_ascii=False)),
                   eval={"test_split": 0.4})
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    assert read(ctx, "qa_test") == [] and run.result.counts["dropped"] == 2
    assert {r["rule"] for r in read(ctx, "rejected_split")} == {"probe_not_self_contained"}
    assert "2 dropped as not standing on their own" in run.result.summary


def test_an_unreadable_reply_never_becomes_a_probe_and_is_asked_for_on_the_next_run(tmp_path: Path):
    pairs = [make_pair("doc0", i) for i in range(10)]
    ctx = make_ctx(tmp_path, ScriptedBackend(lambda r: '{"question": "?"}'))
    write_input(ctx, pairs)
    run = run_stage(stage_named("split"), ctx)
    assert run.status == "ran" and read(ctx, "qa_test") == [] and run.result.counts["failed"] == 2
    assert any("run `slm-factory split` again" in line for line in run.result.lines)
    fixed = ScriptedBackend(rewording)
    again = run_stage(stage_named("split"), make_ctx(tmp_path, fixed))
    assert len(read(ctx, "qa_test")) == 2 and len(fixed.requests) == 2 and again.result.counts["failed"] == 0


def test_the_prompt_carries_the_source_chunk_and_the_document_language(tmp_path: Path):
    from slm_factory.parsing.chunking import chunk_document
    from slm_factory.generation.qa import chunk_budget
    from slm_factory.records import Block, Document, Section

    text = "2024년 서울시 청년 월세 지원 사업의 신청 마감일은 3월 31일이다. 지원 금액은 월 20만 원이다."
    document = Document(id="kodoc", path="/x/지원.txt", format="txt", title="지원", language="ko",
                        sections=[Section(blocks=[Block(kind="paragraph", text=text)])], text=text)
    ctx = make_ctx(tmp_path, ScriptedBackend(lambda r: json.dumps({"question": "청년 월세 지원은 언제까지 신청할 수 있나요?"},
                                                                    ensure_ascii=False)), eval={"test_split": 0.5})
    chunk = chunk_document(document, chunk_budget(ctx.config), ctx.config.chunking.overlap_tokens)[0]
    ctx.workspace.write_json("parsed_documents", [document.model_dump()])
    pairs = [QAPair(instruction=q, output=a, doc_id="kodoc", chunk_id=chunk.id, source_doc="지원.txt") for q, a in [
        ("2024년 서울시 청년 월세 지원 사업의 신청 마감일은 언제인가요?", "3월 31일입니다."),
        ("2024년 서울시 청년 월세 지원 사업의 지원 금액은 얼마인가요?", "월 20만 원입니다.")]]
    write_input(ctx, pairs)
    assert run_stage(stage_named("split"), ctx).status == "ran"
    (request,) = ctx.teacher_backend.requests
    assert text in request.messages[0]["content"] and "답변의 근거가 된 발췌문" in request.messages[0]["content"]


def test_a_pair_repeated_in_the_input_gets_one_probe(tmp_path: Path):
    pairs = [make_pair("doc0", i, korean=True) for i in range(4)]
    backend = ScriptedBackend(rewording)
    ctx = make_ctx(tmp_path, backend, eval={"test_split": 0.5})
    write_input(ctx, pairs * 3)  # the same records three times: same ids, same hash ranks
    run_stage(stage_named("split"), ctx)
    test = read(ctx, "qa_test")
    assert len(read(ctx, "qa_train")) == 12 and len(backend.requests) == len(test)
    assert len({p["parent_id"] for p in test}) == len(test) == len({p["id"] for p in test}) >= 2


def test_probes_in_the_input_never_reach_training(tmp_path: Path):
    pairs = [make_pair("doc0", i) for i in range(6)]
    stray = QAPair(instruction="How would one phrase the doc0 rule?", output="x", origin="probe", parent_id=pairs[0].id)
    ctx = make_ctx(tmp_path, ScriptedBackend(rewording))
    write_input(ctx, [*pairs, stray])
    run_stage(stage_named("split"), ctx)
    assert stray.id not in {p["id"] for p in read(ctx, "qa_train")}
    assert {p["origin"] for p in read(ctx, "qa_train")} == {"generated"}
    assert [r["rule"] for r in read(ctx, "rejected_split")] == ["probe_in_input"]


def test_one_pair_is_trained_on_and_the_test_set_is_empty(tmp_path: Path):
    ctx = make_ctx(tmp_path, ScriptedBackend(lambda r: pytest.fail("nothing to ask")))
    write_input(ctx, [make_pair("doc0", 0)])
    run = run_stage(stage_named("split"), ctx)
    assert run.status == "ran" and len(read(ctx, "qa_train")) == 1 and read(ctx, "qa_test") == []
    assert run.result.summary == "Split complete: 1 training pair, 0 held-out probes"
    assert any("at least 2 pairs" in line for line in run.result.lines)


def test_no_pairs_is_one_line_naming_the_file(tmp_path: Path):
    ctx = make_ctx(tmp_path)
    write_input(ctx, [])
    run = run_stage(stage_named("split"), ctx)
    assert run.status == "failed" and run.result.lines == [
        "qa_validated.json holds no pairs; there is nothing to split (run the earlier stages again)"]
    assert not ctx.workspace.path("qa_train").exists()


def test_an_unusable_teacher_stops_the_stage_and_writes_nothing(tmp_path: Path):
    ctx = make_ctx(tmp_path, teacher={"backend": "openai", "api_base": "http://127.0.0.1:9/v1", "max_retries": 0})
    write_input(ctx, [make_pair("doc0", i) for i in range(10)])
    run = run_stage(stage_named("split"), ctx)
    assert run.status == "failed" and "127.0.0.1:9" in run.result.lines[0]
    assert not ctx.workspace.path("qa_train").exists() and not ctx.workspace.path("qa_test").exists()


# -- documents mode --------------------------------------------------------------------------------


def test_documents_mode_never_trains_on_a_held_out_document(tmp_path: Path):
    rng = random.Random(5)
    for trial in range(25):
        pairs = random_pairs(rng)
        ctx = make_ctx(tmp_path / str(trial), ScriptedBackend(lambda r: pytest.fail("documents mode asks no teacher")),
                       eval={"holdout": "documents", "test_split": rng.choice([0.1, 0.3, 0.5]), "seed": trial})
        write_input(ctx, pairs)
        run = run_stage(stage_named("split"), ctx)
        train, test = read(ctx, "qa_train"), read(ctx, "qa_test")
        held = {p["doc_id"] for p in test}
        documents = {p.doc_id for p in pairs}
        assert not held & {p["doc_id"] for p in train}
        assert sorted(map(json.dumps, train + test)) == sorted(json.dumps(p.model_dump()) for p in pairs)
        assert (len(held) >= 1) == (len(documents) >= 2)
        assert run.result.extra["holdout"] == "documents"
        assert sorted(run.result.extra["held_out_documents"]) == sorted(f"{d}.txt" for d in held)


def test_documents_mode_holds_out_a_repeated_pair_once(tmp_path: Path):
    pairs = [make_pair(f"doc{d}", i) for d in range(2) for i in range(3)]
    ctx = make_ctx(tmp_path, eval={"holdout": "documents", "test_split": 0.5})
    write_input(ctx, pairs * 2)
    run_stage(stage_named("split"), ctx)
    test = read(ctx, "qa_test")
    assert len(test) == 3 == len({p["id"] for p in test}) and len(read(ctx, "qa_train")) == 6


# -- the command -----------------------------------------------------------------------------------


def cli_project(tmp_path: Path, **eval_section) -> Path:
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({"project": {"name": "p"}, "eval": eval_section}))
    (tmp_path / "documents").mkdir()
    return config


def test_split_command_with_data_in_documents_mode(tmp_path: Path):
    from typer.testing import CliRunner

    from slm_factory.cli import app

    config = cli_project(tmp_path, holdout="documents", test_split=0.25)
    data = tmp_path / "pairs.json"
    pairs = [make_pair(f"doc{d}", i, korean=d % 2 == 1) for d in range(4) for i in range(3)]
    data.write_text(json.dumps([p.model_dump() for p in pairs], ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["split", "-c", str(config), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "Split complete: 9 training pairs, 3 held-out pairs from 1 of 4 documents" in result.output
    output = tmp_path / "output"
    assert len(json.loads((output / "qa_train.json").read_text())) == 9
    assert len(json.loads((output / "qa_test.json").read_text())) == 3


def test_split_command_with_a_bad_data_file_is_one_line(tmp_path: Path):
    config = cli_project(tmp_path)
    data = tmp_path / "pairs.json"
    data.write_text('{"not": "a list"}')
    result = subprocess.run([sys.executable, "-m", "slm_factory", "split", "-c", str(config), "--data", str(data)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert str(data) in result.stderr


# -- the real embedded model -----------------------------------------------------------------------


GARDEN = ("The Riverside Community Garden opens on 1 April 2025 and closes on 31 October 2025. "
          "Plots cost 40 dollars a season and are assigned by lottery in March. "
          "Each gardener must volunteer four hours a month. Water is provided free of charge from the north tap.")
GARDEN_PAIRS = [("When does the Riverside Community Garden open in 2025?", "It opens on 1 April 2025."),
                ("How much does a plot in the Riverside Community Garden cost?", "A plot costs 40 dollars a season."),
                ("How are plots in the Riverside Community Garden assigned?", "Plots are assigned by lottery in March."),
                ("How many volunteer hours must a Riverside Community Garden gardener give?", "Four hours a month."),
                ("Where does the Riverside Community Garden get its water?", "From the north tap, free of charge.")]


@pytest.mark.slow
def test_probes_from_the_embedded_model(tmp_path: Path, smollm2_gguf: Path):
    """The embedded teacher (questions.mode auto → answer_first) writes each probe as a new
    question for its parent's answer, never seeing the parent's question. What must hold whatever
    it says: every parent ends as a probe, a recorded rejection or a counted failure; each probe
    passes the guards and keeps its parent's answer and source; a rerun asks nothing and gives the
    same probes."""
    config = cli_project(tmp_path, test_split=0.5)
    raw = yaml.safe_load(config.read_text())
    raw["teacher"] = {"backend": "llamacpp", "model": "smollm2", "temperature": 0.0, "max_tokens": 64,
                      "max_concurrency": 1}
    config.write_text(yaml.safe_dump(raw))
    (tmp_path / "documents" / "garden.txt").write_text(GARDEN, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "slm_factory", "parse", "-q", "-c", str(config)], check=True)
    output = tmp_path / "output"
    (document,) = json.loads((output / "parsed_documents.json").read_text())
    pairs = [QAPair(instruction=q, output=a, doc_id=document["id"], chunk_id=f"{document['id']}:0",
                    source_doc="garden.txt") for q, a in GARDEN_PAIRS]
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps([p.model_dump() for p in pairs]))
    command = [sys.executable, "-m", "slm_factory", "split", "-c", str(config), "--data", str(data)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Split complete: 5 training pairs" in result.stdout and "teacher llamacpp/" in result.stdout
    state = json.loads((output / ".state.json").read_text())["stages"]["split"]
    counts = state["counts"]
    # How many survive depends on the model file; told to reword, the Q8_0 copy copied all three.
    assert counts["parents"] == 3, counts
    assert counts["probes"] + counts["dropped"] + counts["failed"] == counts["parents"]
    test = json.loads((output / "qa_test.json").read_text())
    assert json.loads((output / "qa_train.json").read_text()) == [p.model_dump() for p in pairs]
    parents = {p.id: p for p in pairs}
    training = split.TrainingQuestions(pairs, 0.8)
    for probe in test:
        parent = parents[probe["parent_id"]]
        assert probe["output"] == parent.output and probe["chunk_id"] == parent.chunk_id
        assert split.probe_problem(probe["instruction"], parent, training) is None
    rejected = json.loads((output / "rejected" / "split.json").read_text())
    assert len(rejected) == counts["asked_again"] + counts["dropped"]
    assert state["stats"]["teacher"]["requests"] > 0
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0 and json.loads((output / "qa_test.json").read_text()) == test
    if counts["failed"] == 0:
        assert "teacher llamacpp/" not in rerun.stdout  # nothing asked: the teacher was not even opened
    else:  # only the failed parents are asked again: three draws each, the first from the reply cache
        import re

        asked = re.search(r"teacher llamacpp/\S+: (\d+) requests, (\d+) cached", rerun.stdout.replace("\n", " "))
        assert asked and asked.groups() == (str(3 * counts["failed"]), str(counts["failed"])), rerun.stdout
