"""The `train` stage: training_data.jsonl (or --data) → a LoRA adapter in checkpoints/adapter/.

Reads top to bottom: examples → labels on assistant replies only (masking.py) → a validation slice
by group → the student with LoRA (QLoRA only with CUDA) → trl's SFTTrainer with an SFTConfig built
from project.yaml (max_length = student.max_seq_length, never trl's 1024) and our collator (packing
that keeps examples apart, packing.py) → the best adapter, saved atomically, and its loss curves.
"""

from __future__ import annotations

import functools
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_factory.pipeline import StageContext, StageError, StageResult
from slm_factory.training.masking import TemplateMaskError, TooLongError, tokenize_with_labels

SHOWN_IDS = 5
# num_epochs: auto = enough passes for about this many examples seen (early stopping guards it).
AUTO_EXAMPLES_SEEN = 2000
AUTO_EPOCHS = (3, 10)


@dataclass
class Feature:
    id: str
    group: str
    input_ids: list[int]
    labels: list[int]


def run(ctx: StageContext) -> StageResult:
    import torch

    from slm_factory.training.models import load_tokenizer

    config = ctx.config
    examples = training_examples(ctx)
    tokenizer = load_tokenizer(config)
    features, notes = tokenized(tokenizer, examples, config.student.max_seq_length)
    validation = validation_split(features, 1 - config.training.train_split, config.training.seed)
    train, held = validation.train, validation.held
    model, precision = load_model(ctx)
    notes += [precision, validation.line]
    attn_implementation = model.config._attn_implementation
    trainer = build_trainer(ctx, model, tokenizer, train, held, choose_best=validation.chooses_adapter)
    checkpoint = resume_checkpoint(ctx)
    previous = previous_adapter(ctx)
    if checkpoint:
        notes.append(f"resumed from {checkpoint}")
    elif previous is not None:
        notes.append(f"continued the adapter in {previous} (incremental.resume_adapter)")
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError as error:
        raise StageError(out_of_memory_line(config, str(error))) from None
    finally:
        model.set_attn_implementation(attn_implementation)  # segment attention serves packed training batches only
    adapter = save_adapter(ctx, trainer, tokenizer)
    curve = adapter.parent / "loss_curve.png"
    if trainer.args.should_save:  # several processes (accelerate launch): the main one writes
        save_loss_curve(trainer.state.log_history, curve)
    history = losses(trainer.state.log_history)
    return StageResult(
        items=len(train),
        counts={"train": len(train), "validation": len(held), "dropped_too_long": len(examples) - len(features)},
        lines=[*notes, f"loss curves: {curve}"],
        extra={"losses": history, "best_eval_loss": trainer.state.best_metric, "epochs": trainer.state.epoch,
               "best_checkpoint": trainer.state.best_model_checkpoint},
        summary=f"Training complete! Adapter saved to: {adapter}",
    )


def out_of_memory_line(config: Any, message: str) -> str:
    """One line for a GPU that ran out of memory: what it said, and the settings that lower it."""
    first = message.strip().splitlines()[0] if message.strip() else "CUDA out of memory"
    training = config.training
    return (f"the GPU ran out of memory ({first[:160]}); lower training.batch_size (now {training.batch_size}) and "
            f"raise training.gradient_accumulation_steps (now {training.gradient_accumulation_steps}) to keep the "
            f"effective batch, or lower student.max_seq_length (now {config.student.max_seq_length}); then run "
            "`slm-factory train --resume` to continue from the last checkpoint")


# -- examples ----------------------------------------------------------------------------------


def training_examples(ctx: StageContext) -> list[dict[str, Any]]:
    """Records with id, group and messages: from --data (any shape convert takes) or training_data.jsonl."""
    import json

    if ctx.options.get("data"):
        from slm_factory.training.convert import gather_examples
        from slm_factory.training.formats import system_prompt

        found, _notes = gather_examples(ctx, system_prompt(ctx.config))
        return [{"id": e.id, "group": e.group, "messages": e.messages} for e in found]
    path = ctx.workspace.path("training_data")
    if not path.is_file():
        raise StageError(f"{path} not found: run `slm-factory convert` first (or train --data FILE)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records.append({"id": str(record["id"]), "group": str(record.get("group") or record["id"]),
                            "messages": record["messages"]})
        except (json.JSONDecodeError, KeyError, TypeError):
            raise StageError(f"{path} line {number}: not a training record (id, messages); "
                             "run `slm-factory convert` again") from None
    if not records:
        raise StageError(f"{path} holds no examples: run `slm-factory convert` again")
    return records


def tokenized(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> tuple[list[Feature], list[str]]:
    features, too_long = [], []
    for example in examples:
        try:
            input_ids, labels = _labelled(tokenizer, example["messages"], max_length)
        except TooLongError:
            too_long.append(example["id"])
            continue
        except TemplateMaskError as error:
            raise StageError(f"student.chat_template: cannot tell the assistant's tokens apart ({error}); "
                             "set a template that renders earlier turns the same way") from None
        if any(label != -100 for label in labels):
            features.append(Feature(example["id"], example["group"], input_ids, labels))
    notes = []
    if too_long:
        notes.append(f"{len(too_long)} of {len(examples)} examples are longer than student.max_seq_length "
                     f"{max_length} tokens and were left out, not cut (first: {', '.join(too_long[:SHOWN_IDS])})")
    if not features:
        raise StageError(f"no example fits student.max_seq_length {max_length} with an assistant reply to train on")
    return features, notes


def _labelled(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> tuple[list[int], list[int]]:
    from jinja2 import TemplateError

    from slm_factory.training.formats import fold_system

    try:
        return tokenize_with_labels(tokenizer, messages, max_length)
    except TemplateError:
        # Templates that refuse a system turn (Gemma 2) get it folded into the first user turn, as convert does.
        return tokenize_with_labels(tokenizer, fold_system(messages), max_length)


@dataclass
class Validation:
    """The examples held out of training, and whether their loss may choose the adapter."""

    train: list[Feature]
    held: list[Feature]
    chooses_adapter: bool
    line: str


def validation_split(features: list[Feature], share: float, seed: int) -> Validation:
    """About `share` of the examples held out, seeded.

    Where groups have several members (a pair and its paraphrases: convert's `group` is the parent
    pair), one member of each chosen group is held out and the others train: the validation loss
    then asks "does the student know this fact when asked another way", the product's own
    question, and early stopping may keep the best adapter by it. Where every group is a single
    example, whole groups are held out (facts never trained on): that loss is reported each epoch
    but cannot choose the adapter, since it rises exactly as the student learns its own facts
    (tests/training/test_learns.py saw the epoch-1 adapter kept that way).
    """
    rng = random.Random(seed)
    members: dict[str, list[Feature]] = {}
    for feature in features:
        members.setdefault(feature.group, []).append(feature)
    target = max(1, round(len(features) * share))
    rephrased = sorted(g for g, found in members.items() if len(found) > 1)
    rng.shuffle(rephrased)
    if rephrased:
        held_ids = {rng.choice(members[g]).id for g in rephrased[:target]}
        held = [f for f in features if f.id in held_ids]
        return Validation([f for f in features if f.id not in held_ids], held, True,
                          f"validation: {len(held)} held-out rephrasings of trained facts; "
                          "the adapter with the lowest validation loss is kept")
    groups = sorted(members)
    if len(groups) < 2:
        return Validation(features, [], False, "validation: none (a single group of examples)")
    rng.shuffle(groups)
    held_groups = set(groups[: max(1, round(len(groups) * share))])
    held = [f for f in features if f.group in held_groups]
    return Validation([f for f in features if f.group not in held_groups], held, False,
                      f"validation: {len(held)} questions on facts not trained on (no rephrasings to hold out); "
                      "reported each epoch, the last adapter is kept")


# -- model -------------------------------------------------------------------------------------


def load_model(ctx: StageContext) -> tuple[Any, str]:
    """The student in the best precision the machine has, and one line saying which."""
    import torch

    from slm_factory.training.models import load_student, resolve_student

    training = ctx.config.training
    cuda = torch.cuda.is_available()
    bf16 = training.bf16 and (torch.cuda.is_bf16_supported() if cuda else cpu_bf16_is_faster())
    dtype = torch.bfloat16 if bf16 else torch.float32
    if training.quantization.enabled and cuda and _has_bitsandbytes():
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        from peft import prepare_model_for_kbit_training

        bits = training.quantization.bits
        quantization = BitsAndBytesConfig(load_in_4bit=bits == 4, load_in_8bit=bits == 8, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
        model = AutoModelForCausalLM.from_pretrained(resolve_student(ctx.config), dtype=dtype,
                                                     quantization_config=quantization)
        return prepare_model_for_kbit_training(model), f"QLoRA: {bits}-bit base, {dtype} compute on CUDA"
    model = load_student(ctx.config, dtype=dtype)
    where = "CUDA" if cuda else "CPU"
    line = f"training in {str(dtype).removeprefix('torch.')} on {where}"
    if bf16 and not cuda:
        line += " (frozen base weights in bfloat16, LoRA weights in float32 with bfloat16 matmuls)"
    if training.quantization.enabled:
        reason = "no CUDA" if not cuda else "bitsandbytes is not installed"
        line += f"; QLoRA skipped ({reason}): LoRA on the unquantised base"
    return model, line


@functools.lru_cache(maxsize=1)
def cpu_bf16_is_faster() -> bool:
    """Whether this CPU multiplies bfloat16 matrices clearly faster than float32 (AVX512-BF16 or AMX:
    2.6x on the 2 cores here). The frozen base weights are then stored in bf16; the LoRA weights, their
    gradients and optimizer state stay fp32 (peft keeps adapters in fp32). bf16 *autocast* over fp32
    weights measured slower (FACTS.md): it converts every weight on every call."""
    import torch

    def seconds(dtype: Any) -> float:
        a, b = torch.randn(256, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        return time.perf_counter() - start

    return seconds(torch.bfloat16) * 1.3 < seconds(torch.float32)


def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def lora_config(ctx: StageContext) -> Any:
    from peft import LoraConfig

    lora = ctx.config.training.lora
    # peft's "all-linear": every linear projection of the architecture except the output head.
    targets = "all-linear" if lora.target_modules == "auto" else lora.target_modules
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_rslora=lora.use_rslora,
                      target_modules=targets, task_type="CAUSAL_LM")


# -- trainer -----------------------------------------------------------------------------------


def trainer_dir(ctx: StageContext) -> Path:
    return ctx.workspace.path("adapter").parent / "trainer"


def epochs(setting: int | str, n_train: int) -> int:
    if setting != "auto":
        return int(setting)
    low, high = AUTO_EPOCHS
    return max(low, min(high, math.ceil(AUTO_EXAMPLES_SEEN / max(1, n_train))))


def sft_config(ctx: StageContext, model: Any, n_train: int, has_eval: bool, choose_best: bool = True) -> Any:
    import torch
    from trl import SFTConfig

    training = ctx.config.training
    n_epochs = epochs(training.num_epochs, n_train)
    steps_per_epoch = max(1, math.ceil(n_train / (training.batch_size * training.gradient_accumulation_steps)))
    choose_best = has_eval and choose_best
    save = training.save_strategy if not choose_best else "epoch"  # the best adapter needs a save per evaluation
    return SFTConfig(
        output_dir=str(trainer_dir(ctx)),
        max_length=ctx.config.student.max_seq_length,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=training.warmup_ratio,  # below 1 transformers reads it as a share of the steps
        num_train_epochs=n_epochs,
        optim=training.optimizer,
        bf16=model.dtype == torch.bfloat16 and torch.cuda.is_available(),  # CPUs: bf16 weights, no autocast
        activation_checkpointing=torch.cuda.is_available(),  # memory on GPUs; only slower on CPUs
        dataloader_pin_memory=torch.cuda.is_available(),
        eval_strategy="epoch" if has_eval else "no",
        save_strategy=save,
        save_total_limit=2,
        load_best_model_at_end=choose_best,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy="steps",
        logging_steps=max(1, (steps_per_epoch * n_epochs) // 100),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        seed=training.seed,
        dataset_kwargs={"skip_prepare_dataset": True},  # already tokenised with assistant-only labels
        remove_unused_columns=False,
        train_sampling_strategy="random",
    )


def build_trainer(ctx: StageContext, model: Any, tokenizer: Any, train: list[Feature], held: list[Feature],
                  choose_best: bool = True) -> Any:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback

    from slm_factory.training.loss import labelled_head_trainer_class
    from slm_factory.training.packing import PaddedCollator

    args = sft_config(ctx, model, len(train), bool(held), choose_best)
    collator = choose_collator(ctx, model, tokenizer, max(len(f.input_ids) for f in [*train, *held]))
    if isinstance(collator, PaddedCollator):
        args.train_sampling_strategy = "group_by_length"
    callbacks: list[Any] = [progress_callback(ctx, sum(len(f.input_ids) for f in train))]
    early = ctx.config.training.early_stopping
    if args.load_best_model_at_end and early.enabled:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=early.patience,
                                               early_stopping_threshold=early.threshold))
    previous = previous_adapter(ctx)
    if previous is not None:
        model = continued_adapter(model, previous)
    # The vocabulary head runs on labelled positions only (loss.py): same loss, less work per step.
    trainer = labelled_head_trainer_class()(
        model=model, args=args, train_dataset=_dataset(Dataset, train),
        eval_dataset=_dataset(Dataset, held) if held else None, processing_class=tokenizer,
        data_collator=collator, peft_config=None if previous is not None else lora_config(ctx), callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our progress bar and log lines replace its printed dicts
    return trainer


def previous_adapter(ctx: StageContext) -> Path | None:
    """incremental.resume_adapter as a folder holding a LoRA adapter, or None when it is not set."""
    setting = ctx.config.incremental.resume_adapter.strip()
    if not setting:
        return None
    folder = Path(setting).expanduser()
    if not folder.is_absolute():
        folder = ctx.config.root / folder
    if not (folder / "adapter_config.json").is_file():
        raise StageError(f"incremental.resume_adapter: {folder} holds no LoRA adapter (no adapter_config.json); "
                         "point it at a folder `train` wrote, such as output/checkpoints/adapter, or leave it empty")
    return folder


def continued_adapter(model: Any, folder: Path) -> Any:
    """The student with the adapter in `folder` loaded to train further (its own r, alpha and
    target modules; the training.lora settings apply to new adapters only)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StageError(f"incremental.resume_adapter: the adapter in {folder} does not fit student.model "
                         f"({first[:200]})") from None


def choose_collator(ctx: StageContext, model: Any, tokenizer: Any, longest: int) -> Any:
    """Packed rows with segment attention (attention.py) where this model passes the check that packed
    examples keep the hidden states they have alone; else one example per row, grouped by length."""
    import torch

    from slm_factory.training import attention
    from slm_factory.training.packing import PaddedCollator, SegmentCollator

    reason = attention.unsupported_reason(model, longest)
    tolerance = 2e-2 if model.dtype == torch.bfloat16 else 1e-4
    if reason is None and not attention.keeps_apart(model, tolerance):
        reason = "packed examples did not match the same examples alone on this model"
    if reason is None:
        attention.use_segments(model)
        ctx.log.info("examples packed one row per batch, kept apart by segment attention; "
                     "the prompt they share is computed once")
        return SegmentCollator()
    ctx.log.info(f"one example per row, batches grouped by length: no packing because {reason}")
    return PaddedCollator(pad_token_id=tokenizer.pad_token_id)


def _dataset(dataset_class: Any, features: list[Feature]) -> Any:
    return dataset_class.from_dict({
        "input_ids": [f.input_ids for f in features],
        "labels": [f.labels for f in features],
        "length": [len(f.input_ids) for f in features],
    })


def _make_progress_callback() -> type:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Advances the stage's progress bar per optimizer step with the latest loss and tokens/s;
        logs loss and tokens/s per epoch."""

        def __init__(self, ctx: StageContext, tokens_per_epoch: int) -> None:
            self.ctx = ctx
            self.tokens_per_epoch = tokens_per_epoch
            self.advance: Any = None
            self.bar: Any = None
            self.epoch_start = time.monotonic()
            self.start: tuple[float, float] = (time.monotonic(), 0.0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = self.ctx.progress.task("train", state.max_steps)
            self.advance = self.bar.__enter__()
            self.advance(state.global_step)
            self.start = (time.monotonic(), state.epoch or 0.0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            loss, rate = step_figures(state, self.start, self.tokens_per_epoch)
            self.advance(1, step_note(loss, rate))
            self.ctx.progress.metrics(step=state.global_step, steps=state.max_steps, epoch=round(state.epoch or 0.0, 3),
                                      loss=loss, tokens_per_s=round(rate, 1))

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.epoch_start = time.monotonic()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seconds = max(time.monotonic() - self.epoch_start, 1e-9)
            train = [e["loss"] for e in state.log_history if "loss" in e]
            loss = f"{train[-1]:.4f}" if train else "-"
            self.ctx.log.info(f"epoch {state.epoch:.0f}: train loss {loss}, "
                              f"{self.tokens_per_epoch / seconds:.0f} tokens/s")

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            if metrics and "eval_loss" in metrics:
                self.ctx.log.info(f"epoch {state.epoch:.0f}: validation loss {metrics['eval_loss']:.4f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.__exit__(None, None, None)

    return Progress


def step_figures(state: Any, start: tuple[float, float], tokens_per_epoch: int) -> tuple[float | None, float]:
    """The last logged training loss (None before the first log) and the real tokens per second
    since training (or this resumed run) began, from the share of epochs done."""
    began, first_epoch = start
    seconds = time.monotonic() - began
    rate = ((state.epoch or 0.0) - first_epoch) * tokens_per_epoch / seconds if seconds > 0 else 0.0
    loss = next((e["loss"] for e in reversed(state.log_history) if "loss" in e), None)
    return loss, rate


def step_note(loss: float | None, rate: float) -> str:
    """"loss 1.234 · 310 tok/s", for the progress bar."""
    return " · ".join([*([f"loss {loss:.3f}"] if loss is not None else []), f"{rate:.0f} tok/s"])


def progress_callback(ctx: StageContext, tokens_per_epoch: int) -> Any:
    """A TrainerCallback (its class is made on first use: transformers is imported lazily)."""
    return _make_progress_callback()(ctx, tokens_per_epoch)


def _checkpoints(folder: Path) -> list[Path]:
    """The `checkpoint-N` folders in `folder`, oldest first."""
    found = [p for p in folder.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")))


def _saved_whole(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last, so a checkpoint cut short (Ctrl-C while saving)
    has none, and a damaged one does not read as JSON: resuming from either would fail."""
    try:
        return isinstance(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` in `folder` that was saved whole (transformers' get_last_checkpoint
    would pick one cut short, and resuming would fail)."""
    whole = [p for p in _checkpoints(folder) if _saved_whole(p)]
    return str(whole[-1]) if whole else None


def resume_checkpoint(ctx: StageContext) -> str | None:
    """The last complete checkpoint with --resume; a fresh run clears the previous run's checkpoints."""
    folder = trainer_dir(ctx)
    last = last_complete_checkpoint(folder)
    if ctx.options.get("resume"):
        newest = _checkpoints(folder)[-1:]
        if newest and str(newest[0]) != last:
            ctx.log.warning(f"--resume: {newest[0]} was not saved whole (its trainer_state.json is missing or "
                            f"not JSON); {'continuing from ' + Path(last).name if last else 'no earlier one'}")
        if last is None:
            ctx.log.warning(f"--resume: no checkpoint in {folder}; training from the start")
        return last
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)  # every rank of a distributed run clears it
    return None


def kept_after_interrupt(ctx: StageContext) -> str | None:
    """After Ctrl-C: the checkpoint `train --resume` would continue from (a plain rerun starts over
    and clears them), or None when no epoch was saved yet."""
    folder = trainer_dir(ctx)
    last = last_complete_checkpoint(folder)
    if last is None:
        return None
    return (f"training checkpoints are kept in {folder}; `slm-factory train --resume` continues from "
            f"{Path(last).name} (without --resume, train starts over and clears them)")


# -- outputs -----------------------------------------------------------------------------------


def save_adapter(ctx: StageContext, trainer: Any, tokenizer: Any) -> Path:
    """The (best) adapter and the tokenizer, written beside and swapped in whole. Every process
    of a distributed run comes here (FSDP gathers the weights from all); the main one writes."""
    target = ctx.workspace.path("adapter")
    staging = target.with_name(target.name + ".partial")
    if staging.exists() and trainer.args.should_save:
        shutil.rmtree(staging)
    trainer.save_model(str(staging))
    if not trainer.args.should_save:
        trainer.accelerator.wait_for_everyone()
        return target
    tokenizer.save_pretrained(staging)
    (staging / "training_args.bin").unlink(missing_ok=True)  # save_model's pickle: no part of an adapter
    old = target.with_name(target.name + ".old")
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)
    trainer.accelerator.wait_for_everyone()
    return target


def losses(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    train = [(float(e["epoch"]), float(e["loss"])) for e in log_history if "loss" in e and "epoch" in e]
    held = [(float(e["epoch"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e and "epoch" in e]
    return {"train": train, "validation": held}


def save_loss_curve(log_history: list[dict[str, Any]], path: Path) -> Path:
    from slm_factory.training.curve import draw_curves

    draw_curves(losses(log_history), path)
    return path
