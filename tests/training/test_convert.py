"""convert: training pairs (QA records, Alpaca JSON, messages JSONL, dialogues) → training_data.jsonl
rendered with the student's own chat template; over-long examples dropped and reported;
qa_test.json never read."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from slm_factory.config import parse_config
from slm_factory.pipeline import StageContext, StageError, pairs_input, stage_named
from slm_factory.records import QAPair
from slm_factory.training import convert
from slm_factory.training.formats import system_prompt
from slm_factory.workspace import Workspace
from tests.training.tiny import save_tiny_student

WORDS = ["subsidy", "deadline", "library", "June", "2024", "청년", "주거", "지원금", "신청", "마감일", "won", "portal",
         "Article 5", "  spaced  ", "line\nbreak", "\"quoted\"", "{braces}", "<|im_start|>", "émigré", "30.6%"]


def sentence(rng: random.Random, low: int = 3, high: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).strip() or "word"


def make_pairs(count: int, seed: int = 0, **fields: Any) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pairs = []
    for index in range(count):
        pair = {"instruction": sentence(rng) + "?", "input": sentence(rng) if rng.random() < 0.3 else "",
                "output": sentence(rng, 1, 30) + ".", "doc_id": f"doc{index % 3}", "source_doc": f"d{index % 3}.txt"}
        pairs.append(QAPair.model_validate({**pair, **fields}).model_dump())
    return pairs


def make_ctx(tmp_path: Path, model: Path, data: Path | None = None, **raw: Any) -> StageContext:
    settings = {"paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
                "student": {"model": str(model)}}
    settings.update(raw)
    config = parse_config(settings, root=tmp_path)
    workspace = Workspace(config.output_dir)
    workspace.ensure()
    return StageContext(config=config, workspace=workspace, options={"data": str(data)} if data else {})


def write_pairs(ctx: StageContext, pairs: list[dict[str, Any]], artifact: str | None = None) -> Path:
    name = artifact or pairs_input(stage_named("convert"), ctx.config)
    return ctx.workspace.write_json(name, pairs)


def records(ctx: StageContext) -> list[dict[str, Any]]:
    lines = ctx.workspace.path("training_data").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def assert_rendered_by_the_template(record: dict[str, Any], tokenizer: Any) -> None:
    expected = tokenizer.apply_chat_template(record["messages"], tokenize=False)
    assert record["text"] == expected
    assert record["tokens"] == len(tokenizer.apply_chat_template(record["messages"], tokenize=True, return_dict=False))


def test_qa_records_become_system_user_assistant_in_the_students_template(tmp_path: Path, tiny_llama_dir: Path, tokenizer) -> None:
    ctx = make_ctx(tmp_path, tiny_llama_dir)
    pairs = make_pairs(60)
    write_pairs(ctx, pairs)
    result = convert.run(ctx)
    got = records(ctx)
    assert result.items == len(got) == len(pairs) and not result.failed
    system = system_prompt(ctx.config)
    for pair, record in zip(pairs, got):
        question = pair["instruction"].strip() + (f"\n\n{pair['input'].strip()}" if pair["input"].strip() else "")
        assert record["id"] == pair["id"] and record["kind"] == "pair"
        assert record["messages"] == [{"role": "system", "content": system}, {"role": "user", "content": question},
                                      {"role": "assistant", "content": pair["output"].strip()}]
        assert_rendered_by_the_template(record, tokenizer)
        assert record["text"].startswith(f"<|im_start|>system\n{system}<|im_end|>")  # not SmolLM2's default one
    assert result.summary == f"Convert complete: {len(pairs)} examples (0 dropped as longer than student.max_seq_length 4096) → training_data.jsonl"


def test_the_system_prompt_is_the_modelfiles_one(tmp_path: Path, tiny_llama_dir: Path) -> None:
    builtin = make_ctx(tmp_path / "a", tiny_llama_dir, project={"language": "ko"})
    write_pairs(builtin, make_pairs(3))
    convert.run(builtin)
    assert records(builtin)[0]["messages"][0]["content"].startswith("당신은")
    configured = make_ctx(tmp_path / "b", tiny_llama_dir, export={"ollama": {"system_prompt": "You answer about ACME."}})
    write_pairs(configured, make_pairs(3))
    convert.run(configured)
    assert {r["messages"][0]["content"] for r in records(configured)} == {"You answer about ACME."}


def test_paraphrases_share_their_parents_group(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ctx = make_ctx(tmp_path, tiny_llama_dir)
    parents = make_pairs(4)
    children = [QAPair.model_validate({**p, "id": "", "instruction": "In other words: " + p["instruction"],
                                       "origin": "paraphrase", "parent_id": p["id"]}).model_dump() for p in parents]
    write_pairs(ctx, parents + children)
    convert.run(ctx)
    groups = {r["id"]: r["group"] for r in records(ctx)}
    assert all(groups[c["id"]] == groups[c["parent_id"]] == c["parent_id"] for c in children)


def test_alpaca_json_from_another_tool(tmp_path: Path, tiny_llama_dir: Path, tokenizer) -> None:
    alpaca = [{"instruction": f"Question {i} about 주거 지원금?", "input": "" if i % 2 else "Context line.",
               "output": f"Answer {i}."} for i in range(12)]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(alpaca, ensure_ascii=False), encoding="utf-8")
    ctx = make_ctx(tmp_path, tiny_llama_dir, data=data)
    first = convert.run(ctx)
    got = records(ctx)
    assert first.items == 12 and [r["messages"][2]["content"] for r in got] == [a["output"] for a in alpaca]
    assert got[0]["messages"][1]["content"] == "Question 0 about 주거 지원금?\n\nContext line."
    for record in got:
        assert_rendered_by_the_template(record, tokenizer)
    convert.run(ctx)
    assert [r["id"] for r in records(ctx)] == [r["id"] for r in got]  # ids are stable hashes


def test_messages_jsonl_the_originals_example_3(tmp_path: Path, tiny_llama_dir: Path, tokenizer, caplog) -> None:
    lines = [
        {"messages": [{"role": "system", "content": "Old prompt."}, {"role": "user", "content": "Who?"},
                      {"role": "assistant", "content": "Kim."}]},
        {"messages": [{"role": "user", "content": "청년 주거 지원금 마감일은?"}, {"role": "assistant", "content": "6월 30일."},
                      {"role": "user", "content": "금액은?"}, {"role": "assistant", "content": "월 20만 원."}], "id": "k1"},
    ]
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n", encoding="utf-8")
    ctx = make_ctx(tmp_path, tiny_llama_dir, data=data)
    result = convert.run(ctx)
    got = records(ctx)
    system = system_prompt(ctx.config)
    assert [r["kind"] for r in got] == ["messages", "messages"] and got[1]["id"] == "k1"
    assert got[0]["messages"] == [{"role": "system", "content": system}, *lines[0]["messages"][1:]]
    assert got[1]["messages"] == [{"role": "system", "content": system}, *lines[1]["messages"]]
    assert any("1 examples in --data" in line and "system prompt" in line for line in result.lines)
    for record in got:
        assert_rendered_by_the_template(record, tokenizer)


@pytest.mark.parametrize("content, words", [
    ("id,question,answer\n1,a,b\n", ["line 1 is not JSON"]),
    ('{"questions": []}', ["a JSON dict"]),
    ('[{"question": "Q?", "answer": "A."}]', ["record 1 has no instruction and output"]),
    ('{"messages": [{"role": "user", "content": "Q?"}]}\n', ["line 1", "must end with an assistant message"]),
    ('{"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}\n'
     '{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "A."}]}\n', ["line 2", "message 1"]),
    ('{"messages": [{"role": "user", "content": "Q?"}, {"role": "system", "content": "S"}, '
     '{"role": "assistant", "content": "A."}]}\n', ["system message may only come first"]),
    ("", ["empty"]),
])
def test_anything_else_is_one_clear_line(tmp_path: Path, tiny_llama_dir: Path, content: str, words: list[str]) -> None:
    data = tmp_path / "input.data"
    data.write_text(content, encoding="utf-8")
    with pytest.raises(StageError) as error:
        convert.run(make_ctx(tmp_path, tiny_llama_dir, data=data))
    message = str(error.value)
    assert message.startswith(f"--data {data}") and "\n" not in message
    assert all(word in message for word in words), message
    assert not make_ctx(tmp_path, tiny_llama_dir).workspace.path("training_data").exists()


def dialogue(pair_ids: list[str], turns: int, identifier: str) -> dict[str, Any]:
    return {"id": identifier, "turns": [{"user": f"Turn {i} question?", "assistant": f"Turn {i} answer."} for i in range(turns)],
            "source_doc": "d0.txt", "doc_id": "doc0", "pair_ids": pair_ids}


@pytest.mark.parametrize("single", [True, False])
def test_dialogues_as_several_turns_with_or_without_single_pairs(tmp_path: Path, tiny_llama_dir: Path, tokenizer, single: bool) -> None:
    ctx = make_ctx(tmp_path, tiny_llama_dir, dialogue={"enabled": True, "include_single_qa": single})
    pairs = make_pairs(6)
    write_pairs(ctx, pairs)
    dialogues = [dialogue([pairs[0]["id"], pairs[1]["id"]], 2, "dlg-kept"),
                 dialogue([pairs[2]["id"], pairs[3]["id"], pairs[4]["id"]], 3, "dlg-kept-2"),
                 dialogue([pairs[5]["id"], "held-out-pair"], 2, "dlg-held-out")]
    ctx.workspace.write_json("dialogues", dialogues)
    result = convert.run(ctx)
    got = {r["id"]: r for r in records(ctx)}
    assert "dlg-held-out" not in got and any("1 dialogues left out" in line for line in result.lines)
    assert [m["role"] for m in got["dlg-kept-2"]["messages"]] == ["system", *["user", "assistant"] * 3]
    assert got["dlg-kept-2"]["messages"][5]["content"] == "Turn 2 question?"
    singles = {r["id"] for r in got.values() if r["kind"] == "pair"}
    # Without single pairs, a pair no dialogue holds (pairs[5]: its dialogue was left out) stays.
    assert singles == ({p["id"] for p in pairs} if single else {pairs[5]["id"]})
    for record in got.values():
        assert_rendered_by_the_template(record, tokenizer)


def test_dialogues_enabled_but_missing_names_the_command(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ctx = make_ctx(tmp_path, tiny_llama_dir, dialogue={"enabled": True})
    write_pairs(ctx, make_pairs(3))
    with pytest.raises(StageError, match=r"dialogues.json is missing; run `slm-factory generate-dialogue` first"):
        convert.run(ctx)


def test_over_length_examples_are_dropped_and_reported_never_cut(tmp_path: Path, tiny_llama_dir: Path, tokenizer, caplog) -> None:
    rng = random.Random(7)
    pairs = make_pairs(40, seed=3)
    for pair in pairs[::4]:
        pair["output"] = " ".join(sentence(rng, 40, 60) for _ in range(3))  # well over the limit below
    probe = make_ctx(tmp_path / "probe", tiny_llama_dir)
    write_pairs(probe, pairs)
    convert.run(probe)
    lengths = {r["id"]: r["tokens"] for r in records(probe)}
    limit = sorted(lengths.values())[-len(pairs[::4]) - 1]  # the longest of the short ones fits exactly
    long_ids = [p["id"] for p in pairs if lengths[p["id"]] > limit]
    assert len(long_ids) == len(pairs[::4])
    ctx = make_ctx(tmp_path / "cut", tiny_llama_dir, student={"model": str(tiny_llama_dir), "max_seq_length": limit})
    write_pairs(ctx, pairs)
    with caplog.at_level(logging.WARNING, logger="slm_factory"):
        result = convert.run(ctx)
    kept = records(ctx)
    assert {r["id"] for r in kept} == set(lengths) - set(long_ids)
    assert max(r["tokens"] for r in kept) == limit
    for record in kept:
        assert_rendered_by_the_template(record, tokenizer)  # whole, not cut
    report = f"{len(long_ids)} of {len(pairs)} examples are longer than student.max_seq_length {limit} tokens"
    assert any(report in message and long_ids[0] in message for message in caplog.messages)
    assert result.counts["dropped_too_long"] == len(long_ids)
    assert result.summary.startswith(f"Convert complete: {len(kept)} examples ({len(long_ids)} dropped as longer than "
                                     f"student.max_seq_length {limit})")
    tiny = make_ctx(tmp_path / "none", tiny_llama_dir, student={"model": str(tiny_llama_dir), "max_seq_length": 8})
    write_pairs(tiny, pairs)
    with pytest.raises(StageError, match=r"no training examples left \(40 read, 40 longer than student.max_seq_length 8\)"):
        convert.run(tiny)


def test_held_out_probes_are_never_read(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """qa_test.json holds a sentinel and is not even valid JSON: reading it would fail or leak.
    A review made before the split still holds the held-out pair: it is left out too."""
    ctx = make_ctx(tmp_path, tiny_llama_dir, eval={"enabled": True})
    assert pairs_input(stage_named("convert"), ctx.config) == "qa_train"
    train = make_pairs(8)
    sentinel = make_pairs(1, seed=99, instruction="SENTINEL held-out question?", output="SENTINEL answer.")
    ctx.workspace.path("qa_test").write_text(json.dumps(sentinel)[:-3] + "<garbage", encoding="utf-8")
    write_pairs(ctx, train, "qa_train")
    convert.run(ctx)
    assert "SENTINEL" not in ctx.workspace.path("training_data").read_text(encoding="utf-8")
    edited = {**train[0], "output": "Edited by a reviewer."}
    ctx.workspace.write_json("qa_reviewed", [edited, *train[2:5], sentinel[0]])
    result = convert.run(ctx)
    text = ctx.workspace.path("training_data").read_text(encoding="utf-8")
    assert "SENTINEL" not in text and "Edited by a reviewer." in text and len(records(ctx)) == 4
    assert any("1 reviewed pairs are no longer among the training pairs" in line for line in result.lines)


def test_probes_in_a_data_file_are_left_out(tmp_path: Path, tiny_llama_dir: Path) -> None:
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(make_pairs(5) + make_pairs(2, seed=5, origin="probe", instruction="PROBE?")), encoding="utf-8")
    ctx = make_ctx(tmp_path, tiny_llama_dir, data=data)
    result = convert.run(ctx)
    assert len(records(ctx)) == 5 and "PROBE?" not in ctx.workspace.path("training_data").read_text()
    assert any("2 held-out probes" in line for line in result.lines)


def test_missing_pairs_name_the_stage_to_run(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ctx = make_ctx(tmp_path, tiny_llama_dir, eval={"enabled": True}, augment={"enabled": False})
    with pytest.raises(StageError, match=r"^qa_train.json is missing; run `slm-factory split` first"):
        convert.run(ctx)


def test_a_template_that_refuses_a_system_turn_gets_it_in_the_first_user_turn(tmp_path: Path) -> None:
    # Gemma 2's template, in short: it raises on a system role.
    gemma = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
             "{{ raise_exception('System role not supported') }}{% endif %}"
             "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' "
             "+ message['content'] + '<end_of_turn>\n' }}{% endfor %}")
    student = save_tiny_student(tmp_path / "gemma-like", chat_template=gemma, with_model=False)
    ctx = make_ctx(tmp_path, student, export={"ollama": {"system_prompt": "Be brief."}})
    write_pairs(ctx, [{"instruction": "Q?", "output": "A."}])
    convert.run(ctx)
    assert records(ctx)[0]["text"] == ("<|im_start|><start_of_turn>user\nBe brief.\n\nQ?<end_of_turn>\n"
                                       "<start_of_turn>model\nA.<end_of_turn>\n")


def test_rewrites_the_file_whole(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ctx = make_ctx(tmp_path, tiny_llama_dir)
    ctx.workspace.path("training_data").write_text("old line that must go\n" * 1000)
    write_pairs(ctx, make_pairs(3))
    convert.run(ctx)
    assert "old line" not in ctx.workspace.path("training_data").read_text() and len(records(ctx)) == 3
    assert sorted(p.name for p in ctx.workspace.root.iterdir()) == ["qa_alpaca.json", "training_data.jsonl"] \
        or all(not p.name.endswith(".tmp") for p in ctx.workspace.root.iterdir())


def test_cli_convert_with_data(tmp_path: Path) -> None:
    student = save_tiny_student(tmp_path / "student", with_model=False)
    (tmp_path / "project.yaml").write_text(yaml.safe_dump({"student": {"model": str(student), "max_seq_length": 400}}))
    data = tmp_path / "chat.jsonl"
    short = {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}
    long = {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "long " * 100}], "id": "too-long"}
    data.write_text(f"{json.dumps(short)}\n{json.dumps(long)}\n")
    run = subprocess.run([sys.executable, "-m", "slm_factory", "convert", "--data", str(data), "-c", str(tmp_path / "project.yaml")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Convert complete: 1 examples (1 dropped as longer than student.max_seq_length 400) → training_data.jsonl" \
        in " ".join(run.stdout.split())  # Rich wraps at the terminal's width
    assert "too-long" in run.stderr and run.stderr.count("longer than") == 1
    assert len((tmp_path / "output" / "training_data.jsonl").read_text().splitlines()) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n")
    failed = subprocess.run([sys.executable, "-m", "slm_factory", "convert", "--data", str(bad), "-c", str(tmp_path / "project.yaml")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert [line for line in failed.stderr.splitlines() if line.startswith("error:")] == \
        [f"error: --data {bad}: line 1 is not JSON; expected QA records or Alpaca JSON (a list of {{instruction, input, "
         'output}) or chat messages (one {"messages": [...]} per line)']
