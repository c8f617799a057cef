"""analyze: the figures of data_analysis.json on pair sets built here (English and Korean
documents chunked by the real chunker), each warning fired and not fired at its edge, the
student tokenizer path, bad input, and the CLI command."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slm_factory.cli import app
from slm_factory.config import parse_config
from slm_factory.curation.analyze import analyse, answer_looks_cut, histogram, student_token_counter
from slm_factory.curation.common import Sources
from slm_factory.pipeline import StageContext, pairs_input, run_stage, stage_named
from slm_factory.records import Block, Chunk, Document, QAPair, Rejection, Section
from slm_factory.workspace import Workspace

ENGLISH = [
    f"Article {i}. The 2024 youth housing subsidy pays monthly rent support of up to 200,000 won to "
    f"applicants aged 19 to 34 whose household income is under the median; rule {i} covers the "
    "documents an applicant must submit and the deadline of the 30th of each month."
    for i in range(8)
]
KOREAN = [
    f"제{i}조(지원 대상) 청년 월세 지원금은 만 19세 이상 34세 이하의 무주택 청년에게 월 최대 20만원을 "
    f"지원하며, 신청은 매월 말일에 마감됩니다. 가구 소득이 중위소득 이하여야 하고 제{i}항의 서류를 제출해야 합니다."
    for i in range(6)
]


def document(name: str, paragraphs: list[str], language: str) -> Document:
    return Document(
        id=hashlib.sha256(name.encode()).hexdigest()[:16], path=f"documents/{name}", format="txt", title=name,
        language=language, sections=[Section(title=name, level=1, blocks=[Block(kind="paragraph", text=p) for p in paragraphs])],
    )


def build_project(tmp_path: Path, documents: list[Document], **sections: dict) -> StageContext:
    """A project whose output/ holds parsed_documents.json, as `parse` leaves it."""
    raw = {"project": {"name": "analyze-test"},
           "paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
           "chunking": {"max_tokens": 80, "overlap_tokens": 0}, **sections}
    config = parse_config(raw)
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    ctx.workspace.ensure()
    ctx.workspace.write_json("parsed_documents", [d.model_dump() for d in documents])
    return ctx


def pair_for(chunk: Chunk, question: str, answer: str | None = None, **fields) -> QAPair:
    return QAPair(instruction=question, output=answer if answer is not None else chunk.text[:150].rstrip() + ".",
                  doc_id=chunk.doc_id, chunk_id=chunk.id, source_doc=chunk.source_doc, **fields)


def chunks_by_document(ctx: StageContext) -> dict[str, list[Chunk]]:
    grouped: dict[str, list[Chunk]] = {}
    for chunk in Sources(ctx).chunks.values():
        grouped.setdefault(chunk.source_doc, []).append(chunk)
    return grouped


def korean_project(tmp_path: Path) -> tuple[StageContext, list[QAPair]]:
    """Three documents (one Korean, one never asked about) and pairs on some of their chunks."""
    docs = [document("housing.txt", ENGLISH, "en"), document("청년월세지원.txt", KOREAN, "ko"),
            document("unused-notice.md", ENGLISH[:3], "en")]
    ctx = build_project(tmp_path, docs, project={"name": "분석 <테스트>", "language": "ko"})
    chunks = chunks_by_document(ctx)
    pairs = []
    for index, chunk in enumerate(chunks["housing.txt"][::2]):  # every other chunk: half covered
        pairs += [pair_for(chunk, f"What does rule {index} of the 2024 youth housing subsidy require? ({k})",
                           category="facts" if k else "dates", score=3 + k) for k in range(3)]
    for index, chunk in enumerate(chunks["청년월세지원.txt"]):
        pairs += [pair_for(chunk, f"청년 월세 지원금 제{index}조의 지원 대상은 누구입니까? ({k})", category="facts",
                           score=5) for k in range(2)]
    return ctx, pairs


def write_pairs(ctx: StageContext, pairs: list[QAPair]) -> str:
    """Write the pairs where analyze looks for them (the newest pairs artifact for this config)."""
    artifact = pairs_input(stage_named("analyze"), ctx.config)
    ctx.workspace.write_json(artifact, [p.model_dump() for p in pairs])
    return artifact


# -- the stage on a built project ----------------------------------------------------------------


def test_counts_coverage_and_origins_on_korean_and_english_documents(tmp_path: Path) -> None:
    ctx, pairs = korean_project(tmp_path)
    chunks = chunks_by_document(ctx)
    paraphrase = pairs[0].model_copy(update={"id": "para1", "instruction": "Paraphrased question about rule zero?",
                                             "origin": "paraphrase", "parent_id": pairs[0].id})
    pairs.append(paraphrase)
    artifact = write_pairs(ctx, pairs)
    probes = [pairs[i].model_copy(update={"id": f"probe{i}", "origin": "probe"}) for i in (0, 1, -2)]
    ctx.workspace.write_json("qa_test", [p.model_dump() for p in probes])
    ctx.workspace.write_json("rejected_validate", [
        Rejection(id=f"v{i}", stage="validate", rule=rule).model_dump()
        for i, rule in enumerate(["too_short"] * 4 + ["near_duplicate"] * 2 + ["wrong_language"])])
    ctx.workspace.write_json("rejected_split", [Rejection(id="s", stage="split", rule="probe_near_training").model_dump()])

    run = run_stage(stage_named("analyze"), ctx)
    assert run.status == "ran", run.result.lines
    analysis = json.loads(ctx.workspace.path("data_analysis").read_text(encoding="utf-8"))

    assert analysis["totals"]["pairs"] == len(pairs) and analysis["totals"]["probes"] == 3
    assert analysis["by_category"] == dict(Counter(p.category for p in pairs))
    assert analysis["by_origin"] == {"generated": len(pairs) - 1, "paraphrase": 1, "probe": 3}
    rows = {row["name"]: row for row in analysis["by_document"]}
    assert set(rows) == {"housing.txt", "청년월세지원.txt", "unused-notice.md"}
    english, korean, unused = rows["housing.txt"], rows["청년월세지원.txt"], rows["unused-notice.md"]
    assert english["chunks"] == len(chunks["housing.txt"]) >= 4
    assert english["covered_chunks"] == len(chunks["housing.txt"][::2])
    assert english["coverage"] == pytest.approx(len(chunks["housing.txt"][::2]) / len(chunks["housing.txt"]), abs=1e-4)
    assert korean["coverage"] == 1.0 and korean["language"] == "ko" and korean["probes"] == 1
    assert korean["pairs"] == 2 * len(chunks["청년월세지원.txt"])
    assert unused["pairs"] == 0 and unused["coverage"] == 0.0
    all_chunks = sum(len(c) for c in chunks.values())
    assert analysis["totals"]["coverage"] == pytest.approx((english["covered_chunks"] + korean["covered_chunks"]) / all_chunks, abs=1e-4)
    assert analysis["rejections"] == {"validate": {"too_short": 4, "near_duplicate": 2, "wrong_language": 1},
                                      "split": {"probe_near_training": 1}}
    assert analysis["totals"]["rejected"] == 8
    assert analysis["lengths"]["question_chars"]["count"] == len(pairs)
    assert analysis["lengths"]["question_chars"]["max"] == max(len(p.instruction) for p in pairs)
    assert sum(analysis["lengths"]["answer_chars"]["histogram"]["counts"]) == len(pairs)
    assert analysis["scores"]["kept"] == [0, 0, *(Counter(p.score for p in pairs)[s] for s in (3, 4, 5))]
    assert analysis["meta"]["source"] == f"{artifact}.json" and analysis["meta"]["project"] == "분석 <테스트>"
    codes = {w["code"] for w in analysis["warnings"]}
    assert codes == {"few_pairs", "documents_without_pairs"}, analysis["warnings"]
    report = ctx.workspace.path("report").read_text(encoding="utf-8")
    assert "청년월세지원.txt" in report and "분석 &lt;테스트&gt;" in report and "분석 <테스트>" not in report
    assert run.result.extra["analysis"]["warnings"] == [w["message"] for w in analysis["warnings"]]


def test_scores_of_dropped_pairs_appear_beside_kept_ones(tmp_path: Path) -> None:
    ctx, pairs = korean_project(tmp_path)
    write_pairs(ctx, pairs)
    dropped = [Rejection(id=f"r{i}", stage="score", rule="low_score", pair={**pairs[0].model_dump(), "score": s})
               for i, s in enumerate([1, 2, 2, 2.5])]
    ctx.workspace.write_json("rejected_score", [r.model_dump() for r in dropped])
    assert run_stage(stage_named("analyze"), ctx).status == "ran"
    scores = json.loads(ctx.workspace.path("data_analysis").read_text(encoding="utf-8"))["scores"]
    assert scores["labels"] == [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5]
    assert scores["rejected"] == [1, 0, 2, 1, 0, 0, 0, 0, 0]
    assert sum(scores["kept"]) == len(pairs)


def test_no_scores_and_no_rejections_say_so(tmp_path: Path) -> None:
    ctx, pairs = korean_project(tmp_path)
    write_pairs(ctx, [p.model_copy(update={"score": None}) for p in pairs])
    assert run_stage(stage_named("analyze"), ctx).status == "ran"
    analysis = json.loads(ctx.workspace.path("data_analysis").read_text(encoding="utf-8"))
    assert analysis["scores"] is None and analysis["rejections"] == {}
    report = ctx.workspace.path("report").read_text(encoding="utf-8")
    assert "No pair has a score" in report and "No rejection records" in report


# -- warnings at their edges ---------------------------------------------------------------------


def _chunks(docs: dict[str, int]) -> dict[str, Chunk]:
    return {f"{name}:{i}": Chunk(id=f"{name}:{i}", doc_id=name, source_doc=name, index=i, text="x")
            for name, n in docs.items() for i in range(n)}


def _pairs(counts: dict[str, int], category: str = "auto") -> list[QAPair]:
    return [QAPair(instruction=f"Question {k} about {name}?", output=f"The answer number {k} about {name} is this.",
                   doc_id=name, chunk_id=f"{name}:0", source_doc=name, category=category)
            for name, n in counts.items() for k in range(n)]


def _codes(analysis: dict) -> set[str]:
    return {w["code"] for w in analysis["warnings"]}


def test_fewer_than_100_pairs_warns_and_100_does_not() -> None:
    chunks = _chunks({"a": 1, "b": 1, "c": 1})
    assert "few_pairs" in _codes(analyse(_pairs({"a": 33, "b": 33, "c": 33}), chunks=chunks))
    assert "few_pairs" not in _codes(analyse(_pairs({"a": 34, "b": 33, "c": 33}), chunks=chunks))


@pytest.mark.parametrize(("pairs", "chunks", "warns"), [
    ({"a": 61, "b": 20, "c": 19}, {"a": 2, "b": 2, "c": 2}, True),  # 61% of pairs, a third of the text
    ({"a": 50, "b": 25, "c": 25}, {"a": 2, "b": 2, "c": 2}, False),  # half is not more than half
    ({"a": 80, "b": 10, "c": 10}, {"a": 16, "b": 2, "c": 2}, False),  # 80% of pairs, 80% of the text
    ({"a": 80, "b": 10, "c": 10}, {"a": 5, "b": 3, "c": 2}, True),  # 80% of pairs, 50% of the text
    ({"a": 90, "b": 10}, {"a": 1, "b": 1}, False),  # two documents: not judged
    ({"문서가": 70, "b": 20, "c": 10}, {"문서가": 1, "b": 1, "c": 1}, True),
])
def test_one_document_dominating(pairs: dict[str, int], chunks: dict[str, int], warns: bool) -> None:
    analysis = analyse(_pairs(pairs), chunks=_chunks(chunks))
    assert ("dominant_document" in _codes(analysis)) is warns
    if warns:
        message = next(w["message"] for w in analysis["warnings"] if w["code"] == "dominant_document")
        top = max(pairs, key=pairs.get)
        assert message.startswith(f"{top} has {pairs[top] / sum(pairs.values()):.0%} of the pairs")


def test_categories_with_almost_nothing() -> None:
    chunks = _chunks({"a": 1})
    base = _pairs({"a": 300}, "facts")
    thin = analyse([*base, *_pairs({"a": 4}, "절차")], chunks=chunks)  # 4 pairs: under 5
    assert "thin_categories" in _codes(thin) and "절차 (4)" in thin["warnings"][0]["message"]
    five = analyse([*base, *_pairs({"a": 7}, "dates")], chunks=chunks)  # 7 of 307 = 2.3%: enough
    assert "thin_categories" not in _codes(five)
    share = analyse([*_pairs({"a": 500}, "facts"), *_pairs({"a": 9}, "dates")], chunks=chunks)  # 9 of 509 < 2%
    assert "thin_categories" in _codes(share)
    assert "thin_categories" not in _codes(analyse(_pairs({"a": 3}, "auto"), chunks=chunks))  # one category


@pytest.mark.parametrize(("answer", "cut"), [
    ("Paris", False),
    ("Applicants aged 19 to 34 may apply for the subsidy each month.", False),
    ("Applicants aged 19 to 34 may apply for the subsidy each month and must submit", True),
    ("Applicants aged 19 to 34 may apply for the subsidy each month, and the office", True),
    ("Documents to submit:\n- an ID card\n- a lease contract\n- proof of income", False),
    ("| item | amount |\n|---|---|\n| rent | 200,000 won |", False),
    ("청년 월세 지원금은 만 19세 이상 34세 이하의 무주택 청년에게 월 최대 20만원을 지원합니다.", False),
    ("신청 기간은 매월 1일부터 말일까지이며 관할 주민센터에 서류를 제출함", False),  # terse notice style
    ("청년 월세 지원금은 만 19세 이상 34세 이하의 무주택 청년에게 월 최대 20만원을 지원하며 신청은", True),
    ("지원 대상은 다음과 같다:\n1. 무주택 청년\n2. 중위소득 이하 가구", False),
    ("x" * 1899, False),
    ("x" * 1900, True),  # within 5% of max_answer_length 2000
])
def test_answers_cut_at_a_length_limit_or_mid_sentence(answer: str, cut: bool) -> None:
    assert (answer_looks_cut(answer, 2000) is not None) is cut


def test_cut_answers_warn_and_are_listed() -> None:
    chunks = _chunks({"a": 1})
    pairs = _pairs({"a": 120})
    clean = analyse(pairs, chunks=chunks)
    assert "cut_answers" not in _codes(clean) and clean["cut_answers"] == []
    pairs[5] = pairs[5].model_copy(update={"output": "The subsidy is paid monthly to applicants who live alone and who"})
    flagged = analyse(pairs, chunks=chunks, max_answer_length=500)
    assert "cut_answers" in _codes(flagged)
    assert [row["id"] for row in flagged["cut_answers"]] == [pairs[5].id]


def test_documents_without_pairs_and_pairs_from_elsewhere() -> None:
    chunks = _chunks({"a": 2, "b": 1, "c": 3})
    analysis = analyse(_pairs({"a": 50, "b": 60}), chunks=chunks)
    message = next(w["message"] for w in analysis["warnings"] if w["code"] == "documents_without_pairs")
    assert message.endswith(": c")
    covered = analyse(_pairs({"a": 50, "b": 60, "c": 1}), chunks=chunks)
    assert "documents_without_pairs" not in _codes(covered)
    # plain Alpaca records (no chunk ids) named by file: counted for their document, not for coverage
    alpaca = [QAPair(instruction=f"Q{k}?", output="An answer.", source_doc="b") for k in range(5)]
    mixed = analyse([*_pairs({"a": 50, "c": 50}), *alpaca], chunks=chunks)
    assert {row["name"]: row["pairs"] for row in mixed["by_document"]}["b"] == 5
    assert "pairs_without_source" in _codes(mixed) and "documents_without_pairs" not in _codes(mixed)
    stale = analyse([*_pairs({"a": 50, "b": 50, "c": 50}), _pairs({"a": 1})[0].model_copy(update={"chunk_id": "a:99", "id": "z"})], chunks=chunks)
    assert "unmatched_chunks" in _codes(stale)


def test_counts_hold_over_random_pair_sets() -> None:
    """Properties over many generated sets: every pair counted once per category, document and
    origin; coverage is the share of distinct chunks named by a pair."""
    rng = random.Random(8)
    for _ in range(60):
        sizes = {f"doc{d}": rng.randint(1, 6) for d in range(rng.randint(1, 5))}
        chunks = _chunks(sizes)
        pairs = [QAPair(instruction=f"q{i} {'가' * rng.randint(0, 30)}?", output="a" * rng.randint(1, 400),
                        doc_id=(chunk := rng.choice(list(chunks.values()))).doc_id, chunk_id=chunk.id,
                        source_doc=chunk.source_doc, category=rng.choice(["x", "y", "z"]),
                        origin=rng.choice(["generated", "paraphrase", "reviewed"]))
                 for i in range(rng.randint(0, 150))]
        analysis = analyse(pairs, chunks=chunks)
        assert sum(analysis["by_category"].values()) == len(pairs)
        assert sum(analysis["by_origin"].values()) == len(pairs)
        assert sum(row["pairs"] for row in analysis["by_document"]) == len(pairs)
        named = {p.chunk_id for p in pairs}
        assert analysis["totals"]["covered_chunks"] == len(named)
        for row in analysis["by_document"]:
            own = [c for c in chunks if c.startswith(row["doc_id"] + ":")]
            assert row["covered_chunks"] == len(named.intersection(own))
        for key in ("question_chars", "answer_chars"):
            figures = analysis["lengths"][key]
            assert sum(figures["histogram"]["counts"]) == len(pairs)
            assert ("few_pairs" in _codes(analysis)) is (len(pairs) < 100)


def test_histogram_bins_are_round_and_hold_every_value() -> None:
    rng = random.Random(3)
    for _ in range(200):
        values = [rng.randint(0, rng.choice([5, 90, 1234, 40000])) for _ in range(rng.randint(1, 300))]
        hist = histogram(values)
        edges, counts = hist["edges"], hist["counts"]
        assert len(edges) == len(counts) + 1 and sum(counts) == len(values) and len(counts) <= 21
        width = edges[1] - edges[0]
        assert width >= 1 and str(int(width)).rstrip("0") in {"1", "2", "5"}
        assert edges[-1] > max(values)
        for value in values:  # each value falls in the bin its edges say
            index = min(len(counts) - 1, int(value // width))
            assert edges[index] <= value < edges[index + 1]


# -- student tokens ------------------------------------------------------------------------------


def _word_tokenizer(folder: Path) -> Path:
    """A real (tiny) Hugging Face tokenizer saved to a folder: one token per word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {"[UNK]": 0}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(folder)
    return folder


def test_token_lengths_with_a_local_student_tokenizer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = _word_tokenizer(tmp_path / "student")
    ctx, pairs = korean_project(tmp_path)
    ctx.config.student.model = str(folder)
    write_pairs(ctx, pairs)
    run = run_stage(stage_named("analyze"), ctx)
    assert run.status == "ran" and not run.result.lines
    analysis = json.loads(ctx.workspace.path("data_analysis").read_text(encoding="utf-8"))
    words = sorted(len(p.instruction.split()) for p in pairs)
    assert analysis["lengths"]["question_tokens"]["max"] == words[-1]
    assert analysis["lengths"]["question_tokens"]["min"] == words[0]
    assert analysis["lengths"]["answer_tokens"]["count"] == len(pairs)
    assert "student tokens" in ctx.workspace.path("report").read_text(encoding="utf-8")


def test_a_student_not_on_this_machine_skips_tokens_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # an empty cache, whatever this machine holds
    for model in ("nobody/no-such-student-model", str(tmp_path / "missing-folder")):
        counter, note = student_token_counter(model)
        assert counter is None and "token lengths skipped" in note and model in note
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer_config.json").write_text("{ not json", encoding="utf-8")
    counter, note = student_token_counter(str(broken))
    assert counter is None and ("could not be loaded" in note or "not installed" in note)


# -- bad input and the CLI -----------------------------------------------------------------------


def test_a_damaged_rejection_file_is_one_line_naming_it(tmp_path: Path) -> None:
    ctx, pairs = korean_project(tmp_path)
    write_pairs(ctx, pairs)
    ctx.workspace.path("rejected_validate").parent.mkdir(parents=True, exist_ok=True)
    ctx.workspace.path("rejected_validate").write_text('[{"id": "x", "stage": "validate"', encoding="utf-8")
    run = run_stage(stage_named("analyze"), ctx)
    assert run.status == "failed" and len(run.result.lines) == 1
    assert "rejected/validate.json" in run.result.lines[0] and not ctx.workspace.path("report").exists()


def test_missing_pairs_name_the_command_to_run(tmp_path: Path) -> None:
    ctx, _ = korean_project(tmp_path)
    run = run_stage(stage_named("analyze"), ctx)
    assert run.status == "failed" and "slm-factory" in run.result.lines[0]


def test_cli_analyze_with_data_writes_both_files(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--name", "proj", "--path", str(tmp_path)]).exit_code == 0
    config = tmp_path / "proj" / "project.yaml"
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["chunking"] = {"max_tokens": 80, "overlap_tokens": 0}  # as korean_project cuts its chunks
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    ctx, pairs = korean_project(tmp_path)
    (tmp_path / "proj" / "output" / "parsed_documents.json").write_bytes(ctx.workspace.path("parsed_documents").read_bytes())
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps([p.model_dump() for p in pairs], ensure_ascii=False), encoding="utf-8")

    result = runner.invoke(app, ["analyze", "--config", str(config), "--data", str(data)])
    assert result.exit_code == 0, result.output
    output = tmp_path / "proj" / "output"
    analysis = json.loads((output / "data_analysis.json").read_text(encoding="utf-8"))
    assert analysis["totals"]["pairs"] == len(pairs) and analysis["meta"]["source"] == str(data)
    assert (output / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "Analysis complete" in result.output and "training pairs" in result.output
    assert "warning:" in result.output and "fewer than 100" in result.output
    assert analysis["totals"]["unmatched_chunk"] == 0 and analysis["totals"]["coverage"] > 0

    data.write_text('{"not": "a list"}', encoding="utf-8")
    bad = runner.invoke(app, ["analyze", "--config", str(config), "--data", str(data)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "pairs.json" in bad.output


def test_analyze_after_parse_and_generate_on_sample_documents(tmp_path: Path) -> None:
    """The stage command chain on real parse and generate output (a scripted teacher): analyze
    runs what it needs first, and every chunk generate asked about counts as covered."""
    import shutil

    from slm_factory.pipeline import run_with_prerequisites
    from tests.generation.test_qa import teacher_script
    from tests.teacher.fakes import ScriptedBackend

    sample = Path(__file__).resolve().parents[2] / "src" / "slm_factory" / "demo" / "documents"
    documents = tmp_path / "documents"
    documents.mkdir()
    shutil.copy(sample / "us-18f-content-guide-urls-and-filenames.md", documents)
    config = parse_config({
        "paths": {"documents": str(documents), "output": str(tmp_path / "output")},
        "questions": {"questions_per_chunk": 1}, "chunking": {"max_tokens": 400, "overlap_tokens": 0},
        "validation": {"enabled": False}, "eval": {"enabled": False},
    })
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir), teacher_backend=ScriptedBackend(teacher_script))
    runs = run_with_prerequisites(stage_named("analyze"), ctx)
    assert [(r.stage, r.status) for r in runs] == [("parse", "ran"), ("generate", "ran"), ("analyze", "ran")]
    analysis = json.loads(ctx.workspace.path("data_analysis").read_text(encoding="utf-8"))
    generated = json.loads(ctx.workspace.path("qa_alpaca").read_text(encoding="utf-8"))
    assert analysis["totals"]["pairs"] == len(generated) > 0
    assert analysis["totals"]["covered_chunks"] == len({p["chunk_id"] for p in generated})
    assert analysis["totals"]["unmatched_chunk"] == 0 and analysis["by_category"] == {"auto": len(generated)}
    assert ctx.workspace.path("report").is_file()


def test_the_smollm2_alias_counts_tokens_with_its_converted_tokenizer(tmp_path):
    """The demo's student is the alias `smollm2`: analyze finds its tokenizer in the folder the
    GGUF is converted to (as train does) instead of looking for a model named "smollm2"."""
    pytest.importorskip("gguf")
    from slm_factory.config import parse_config
    from slm_factory.curation.analyze import _student_source, student_token_counter
    from slm_factory.pipeline import StageContext
    from slm_factory.workspace import Workspace
    from tests.conftest import smollm2_gguf_path

    smollm2_gguf_path()
    config = parse_config({"paths": {"output": str(tmp_path / "output")}, "student": {"model": "smollm2"}})
    counter, note = student_token_counter(_student_source(StageContext(config=config, workspace=Workspace(config.output_dir))))
    assert counter is not None, note
    assert counter(["Hello world", ""]) == [2, 0]
