"""The export stage: adapter + student → merged_model/ that computes what base + adapter did, with
a checked Modelfile; and the mistakes a user makes with it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.export import merge
from slm_factory.pipeline import StageContext, StageError
from slm_factory.workspace import Workspace
from tests.training.tiny import save_tiny_student

SYSTEM = "Answer from the city's housing rules."


def make_adapter(student: Path, folder: Path, seed: int = 1) -> Path:
    """A LoRA adapter on the tiny student whose A and B are both random, so merging changes the
    weights (peft's default B = 0 would make any merge look right)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(student).save_pretrained(folder)
    return folder


def context(tmp_path: Path, student: Path, **settings) -> StageContext:
    raw = {"paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
           "student": {"model": str(student)}, "export": {"ollama": {"system_prompt": SYSTEM}}}
    for key, value in settings.items():
        section, _, name = key.partition("__")
        raw.setdefault(section, {})[name] = value
    config = parse_config(raw)
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    ctx.workspace.ensure()
    return ctx


@pytest.fixture
def student(tmp_path: Path) -> Path:
    return save_tiny_student(tmp_path / "student")


def logits(model, text_ids) -> "object":
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([text_ids])).logits[0]


def test_merged_model_computes_what_base_plus_adapter_computed(tmp_path, student, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("PATH", "")  # no ollama here: the stage prints the command instead
    ctx = context(tmp_path, student)
    make_adapter(student, ctx.workspace.path("adapter"))
    result = merge.run(ctx)

    folder = ctx.workspace.path("merged_model")
    assert result.summary.startswith("Export complete! Merged model saved to:")
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not (folder / "adapter_config.json").exists()  # weights merged, not an adapter beside them
    ids = AutoTokenizer.from_pretrained(folder)("Applicants must be 19 to 34 years old.")["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32),
                                             ctx.workspace.path("adapter"))
    base = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    assert torch.allclose(logits(merged, ids), logits(with_adapter, ids), atol=1e-5)
    assert not torch.allclose(logits(merged, ids), logits(base, ids), atol=1e-3)  # the adapter did change it

    tokenizer = AutoTokenizer.from_pretrained(folder)
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = merged.generation_config.eos_token_id
    assert stop in (eos if isinstance(eos, list) else [eos])  # transformers' generate ends where Ollama's stop does

    modelfile = (folder / "Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith("FROM .") or "\nFROM ." in modelfile
    assert SYSTEM in modelfile and "TEMPLATE" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert any("renders" in line and "exactly" in line for line in result.lines), result.lines
    assert any(line.startswith("Ollama is not installed here") and "ollama create my-project-model -f" in line
               for line in result.lines), result.lines


def test_export_replaces_an_old_export_whole_and_leaves_no_staging(tmp_path, student, monkeypatch):
    monkeypatch.setenv("PATH", "")
    ctx = context(tmp_path, student)
    make_adapter(student, ctx.workspace.path("adapter"))
    merged = ctx.workspace.path("merged_model")
    merged.mkdir(parents=True)
    (merged / "stale.bin").write_bytes(b"old")
    merge.run(ctx)
    assert not (merged / "stale.bin").exists()
    assert sorted(p.name for p in merged.parent.iterdir() if p.name.startswith("merged_model")) == ["merged_model"]


def test_any_adapter_folder_can_be_exported_and_its_recorded_base_is_used(tmp_path, student, monkeypatch):
    monkeypatch.setenv("PATH", "")
    elsewhere = make_adapter(student, tmp_path / "other_adapter", seed=3)
    # student.model names something else: the adapter's own record of its base wins.
    ctx = context(tmp_path, save_tiny_student(tmp_path / "unrelated"), )
    ctx.options["adapter"] = str(elsewhere)
    result = merge.run(ctx)
    assert f"base model: {student.resolve()}" in result.lines or f"base model: {student}" in result.lines


@pytest.mark.parametrize("setup, message", [
    ("missing", "no adapter folder; run `slm-factory train` first, or give --adapter DIR"),
    ("not_adapter", "not a LoRA adapter (no adapter_config.json)"),
])
def test_a_missing_or_wrong_adapter_is_one_line(tmp_path, student, setup, message):
    ctx = context(tmp_path, student)
    if setup == "not_adapter":
        ctx.workspace.path("adapter").mkdir(parents=True)
        (ctx.workspace.path("adapter") / "notes.txt").write_text("hello")
    with pytest.raises(StageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("`", "`")):
        merge.run(ctx)


def test_an_adapter_for_another_model_is_one_line(tmp_path, student, monkeypatch):
    """An adapter whose recorded base is gone falls back to student.model; if that has other
    shapes the merge fails with one line naming both."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("PATH", "")
    adapter = make_adapter(student, tmp_path / "adapter_for_tiny")
    settings = json.loads((adapter / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = str(tmp_path / "gone")
    (adapter / "adapter_config.json").write_text(json.dumps(settings))
    other = save_tiny_student(tmp_path / "wider", with_model=False)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=262, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(other)
    ctx = context(tmp_path, other)
    ctx.options["adapter"] = str(adapter)
    with pytest.raises(StageError, match="the adapter does not fit the base"):
        merge.run(ctx)
    assert not ctx.workspace.path("merged_model").exists()


def _fake_ollama(folder: Path, exit_code: int) -> Path:
    """A stand-in `ollama` executable (no Ollama binary can be installed here): it records its
    arguments and working folder, and exits with `exit_code`."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "ollama"
    record = folder / "calls.txt"
    script.write_text(f"#!/bin/sh\necho \"$PWD $@\" >> {record}\necho 'Error: model architecture not supported' >&2\n"
                      f"exit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return record


@pytest.mark.parametrize("exit_code", [0, 1])
def test_ollama_create_runs_where_ollama_is_installed(tmp_path, student, monkeypatch, exit_code):
    record = _fake_ollama(tmp_path / "bin", exit_code)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    ctx = context(tmp_path, student, export__ollama={"model_name": "housing-bot", "system_prompt": SYSTEM})
    make_adapter(student, ctx.workspace.path("adapter"))
    result = merge.run(ctx)
    modelfile = ctx.workspace.path("modelfile")
    assert record.read_text().split() == [str(modelfile.parent), "create", "housing-bot", "-f", str(modelfile)]
    if exit_code == 0:
        assert "Ollama model created: housing-bot (try: ollama run housing-bot)" in result.lines
    else:
        failed = [line for line in result.lines if line.startswith("ollama create failed")]
        assert failed and "model architecture not supported" in failed[0] and "ollama create housing-bot -f" in failed[0]
        assert (ctx.workspace.path("merged_model") / "model.safetensors").is_file()  # the export itself stands


def test_without_merging_the_modelfile_names_base_and_adapter(tmp_path, student, monkeypatch):
    monkeypatch.setenv("PATH", "")
    ctx = context(tmp_path, student, export__merge_lora=False)
    adapter = make_adapter(student, ctx.workspace.path("adapter"))
    result = merge.run(ctx)
    text = ctx.workspace.path("modelfile").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert f"FROM {student.resolve()}" in lines or f"FROM {student}" in lines
    assert f"ADAPTER {adapter.resolve()}" in lines
    assert not (ctx.workspace.path("merged_model") / "model.safetensors").exists()
    assert any("export.merge_lora is off" in line for line in result.lines)
