"""Asking the model under test: what a --model value names, and answers from every backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.evaluation.generate import (
    BackendAnswerer, ModelRef, TransformersAnswerer, exported_model, model_ref, open_answerer, read_questions,
)
from slm_factory.pipeline import StageContext, StageError
from slm_factory.workspace import Workspace
from tests.training.tiny import save_tiny_student

SYSTEM = "Answer briefly."


def project(tmp_path: Path, **teacher) -> StageContext:
    raw = {"paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
           "student": {"model": str(tmp_path / "student")}, "export": {"ollama": {"system_prompt": SYSTEM}}}
    if teacher:
        raw["teacher"] = teacher
    config = parse_config(raw)
    config._root = tmp_path
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    ctx.workspace.ensure()
    return ctx


# -- which model --------------------------------------------------------------------------------


def test_a_model_value_names_the_backend_that_can_run_it(tmp_path):
    ctx = project(tmp_path)
    folder = save_tiny_student(tmp_path / "student")
    gguf = tmp_path / "model-q4_k_m.gguf"
    gguf.write_bytes(b"GGUF")
    config, workspace = ctx.config, ctx.workspace
    assert model_ref(config, workspace, str(folder)) == ModelRef(str(folder), "transformers", folder.resolve())
    assert model_ref(config, workspace, "student").path == folder.resolve()
    assert model_ref(config, workspace, str(gguf)).backend == "llamacpp"
    assert model_ref(config, workspace, "model-q4_k_m.gguf").path == gguf.resolve()  # relative to project.yaml
    ollama = model_ref(config, workspace, "my-project-model")
    assert (ollama.backend, ollama.api_base) == ("ollama", "http://localhost:11434")
    assert model_ref(config, workspace, "library/qwen2.5:0.5b").backend == "ollama"  # a tag: an Ollama name
    served = model_ref(config, workspace, "qwen", backend="openai", api_base="http://10.0.0.5:8000/v1")
    assert (served.backend, served.api_base) == ("openai", "http://10.0.0.5:8000/v1")


def test_the_teachers_server_is_the_default_address_for_its_backend(tmp_path):
    ctx = project(tmp_path, backend="openai", model="teacher", api_base="http://127.0.0.1:8000/v1")
    assert model_ref(ctx.config, ctx.workspace, "student-7b", backend="openai").api_base == "http://127.0.0.1:8000/v1"
    assert model_ref(ctx.config, ctx.workspace, "llama3").api_base == "http://localhost:11434"


@pytest.mark.parametrize("model, backend, message", [
    ("./missing-folder", None, "--model ./missing-folder: no such file or folder"),
    ("missing.gguf", None, "--model missing.gguf: no such file or folder"),
    ("missing.gguf", "llamacpp", "--model missing.gguf: no such GGUF file"),
    ("qwen", "vllm", "--backend vllm: unknown; use one of transformers, llamacpp, ollama, openai"),
    ("qwen", "openai", "needs --api-base URL"),
    ("empty", None, "the folder holds no model"),
])
def test_a_wrong_model_value_is_one_line(tmp_path, model, backend, message):
    ctx = project(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageError, match=message.replace(".", r"\.").replace("(", r"\(")):
        model_ref(ctx.config, ctx.workspace, model, backend)


def test_no_model_means_the_newest_export_and_none_is_one_line(tmp_path):
    import os

    ctx = project(tmp_path)
    with pytest.raises(StageError, match="no exported model .* run `slm-factory export` first, or give --model"):
        model_ref(ctx.config, ctx.workspace, None)
    merged = save_tiny_student(ctx.workspace.path("merged_model"))
    assert exported_model(ctx.workspace) == ModelRef(str(merged), "transformers", merged)
    gguf_dir = ctx.workspace.path("gguf")
    gguf_dir.mkdir()
    newer = gguf_dir / "model-q8_0.gguf"
    newer.write_bytes(b"GGUF")
    later = (merged / "config.json").stat().st_mtime + 10
    os.utime(newer, (later, later))
    assert model_ref(ctx.config, ctx.workspace, None) == ModelRef(str(newer), "llamacpp", newer)


# -- answers ------------------------------------------------------------------------------------


def test_batched_answers_equal_answers_asked_one_at_a_time(tmp_path):
    """Left padding and the attention mask keep a batch's questions from changing each other's
    greedy answers: the same answers as one at a time, for questions of very different lengths."""
    from tests.evaluation.conftest import noisy_student

    answerer = TransformersAnswerer(noisy_student(tmp_path / "student"))
    conversations = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
                     for question in ("Who?", "When does the central library close on weekdays, and on Sundays?",
                                      "청년 주거 지원금 신청 마감일은 언제인가요?", "Late fee per book per day?")]
    together = answerer.answer(conversations, max_new_tokens=12)
    alone = [answerer.answer([conversation], max_new_tokens=12)[0] for conversation in conversations]
    assert together == alone
    assert all(len(text) >= 4 for text in together) and len(set(together)) == 4


def test_an_adapter_folder_answers_as_base_plus_adapter(tmp_path, tiny_llama_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(5)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(adapter)
    conversation = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Who runs the library?"}]]
    with_adapter = TransformersAnswerer(adapter).answer(conversation, max_new_tokens=10)
    base = TransformersAnswerer(tiny_llama_dir).answer(conversation, max_new_tokens=10)
    assert with_adapter != base


@pytest.mark.slow
def test_a_gguf_and_an_openai_server_answer_through_the_teacher_backends(tmp_path, smollm2_gguf, llama_server):
    ctx = project(tmp_path)
    question = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is the capital of France?"}]]
    in_process = open_answerer(model_ref(ctx.config, ctx.workspace, str(smollm2_gguf)), ctx.config)
    served = open_answerer(model_ref(ctx.config, ctx.workspace, "smollm2", backend="openai",
                                     api_base=f"{llama_server}/v1"), ctx.config)
    assert isinstance(in_process, BackendAnswerer) and isinstance(served, BackendAnswerer)
    local, remote = in_process.answer(question, 12)[0], served.answer(question, 12)[0]
    assert len(local.split()) >= 2
    # Greedy answers of this small model change with the thread count and the file (the embedded
    # teacher runs a Q8_0 copy): the served answer must be the server's own greedy answer.
    import urllib.request

    body = json.dumps({"model": "smollm2", "messages": question[0], "temperature": 0.0, "max_tokens": 12}).encode()
    request = urllib.request.Request(f"{llama_server}/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        direct = json.loads(response.read())["choices"][0]["message"]["content"].strip()
    assert remote and remote == direct


def test_a_server_that_is_down_is_one_line(tmp_path):
    from tests.conftest import free_port

    ctx = project(tmp_path)
    ref = model_ref(ctx.config, ctx.workspace, "llama3", api_base=f"http://127.0.0.1:{free_port()}")
    answerer = open_answerer(ref, ctx.config)
    with pytest.raises(StageError, match=r"^llama3 \(ollama\): "):
        answerer.answer([[{"role": "user", "content": "hi"}]], 8)


# -- questions ----------------------------------------------------------------------------------


def test_questions_come_from_the_held_out_probes_or_any_data_shape(tmp_path):
    ctx = project(tmp_path)
    with pytest.raises(StageError, match="qa_test.json is missing: .* run `slm-factory split`, or give --data FILE"):
        read_questions(ctx, None, 20)
    probes = [{"id": f"p{i}", "instruction": f"Question {i}?", "output": f"Answer {i}.", "origin": "probe",
               "chunk_id": "c1"} for i in range(5)]
    ctx.workspace.write_json("qa_test", probes)
    questions, label = read_questions(ctx, None, 3)
    assert label == "qa_test.json" and [q.id for q in questions] == ["p0", "p1", "p2"]
    assert questions[0].messages == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Question 0?"}]
    assert (questions[0].reference, questions[0].chunk_id) == ("Answer 0.", "c1")

    lines = tmp_path / "chat.jsonl"
    lines.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": "Q?"},
                                                        {"role": "assistant", "content": "A."}]}) for _ in range(2)))
    from_lines, _ = read_questions(ctx, str(lines), 20)
    assert [q.reference for q in from_lines] == ["A.", "A."] and from_lines[0].messages[0]["content"] == SYSTEM
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Q1?", "input": "", "output": "A1."}]))
    assert read_questions(ctx, str(alpaca), 20)[0][0].text == "Q1?"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"questions": []}))
    with pytest.raises(StageError, match=f"--data {bad}: a JSON dict"):
        read_questions(ctx, str(bad), 20)


@pytest.mark.slow
def test_an_ollama_model_name_is_asked_through_ollamas_api(tmp_path, smollm2_gguf):
    """`eval --model NAME` as the original slm-factory has it: an Ollama model. No Ollama binary can
    be installed here, so this runs against tests/teacher/servers.OllamaStandIn, a stand-in that
    speaks Ollama's documented /api/chat and answers with a real llama.cpp model."""
    import asyncio
    import threading

    from llama_cpp import Llama

    from tests.teacher.servers import OllamaStandIn

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    llama = Llama(model_path=str(smollm2_gguf), n_ctx=2048, n_threads=1, verbose=False)
    standin = OllamaStandIn(llama)
    url = asyncio.run_coroutine_threadsafe(standin.start(), loop).result(timeout=30)
    try:
        ctx = project(tmp_path)
        ref = model_ref(ctx.config, ctx.workspace, "smollm2:135m", api_base=url)
        assert ref.backend == "ollama"
        question = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is the capital of France?"}]
        answer = open_answerer(ref, ctx.config).answer([question], 12)[0]
        sent = standin.requests[-1]
        direct = llama.create_chat_completion(messages=question, temperature=0.0, max_tokens=12)
        assert answer and answer == direct["choices"][0]["message"]["content"].strip()
        assert sent["messages"] == question and sent["options"]["temperature"] == 0.0 and sent["stream"] is False
    finally:
        asyncio.run_coroutine_threadsafe(standin.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        llama.close()
