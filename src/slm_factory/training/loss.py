"""The training loss computed only where it is taken: the vocabulary head runs on labelled positions.

SmolLM2's head projects onto 49,152 tokens, a large share of a CPU step. The loss covers only the
assistant's tokens (masking.py), so the head is applied to the hidden states at those positions
alone: the same loss and the same gradients as the full logits, for a fraction of the head's work
(FACTS.md: +38% tokens/s with half the positions labelled; bench/train.py measures it in place).

trl's SFTTrainer already fuses the head into a chunked log-prob function, but off Triton devices it
scores every position and adds entropy for its metrics; `LabelledHeadSFTTrainer` replaces that for
training steps on one process. Evaluation, several processes (DDP's gradient hooks need its own
forward), MoE auxiliary losses and heads that scale or cap their logits keep trl's own path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slm_factory.training.lora_forward import fused_lora
from slm_factory.training.masking import IGNORE_INDEX
from slm_factory.training.packing import real_tokens

LORA_BF16_ON_CPU = True  # lora_in_bf16 in the trainer's loss context (bench/train.py turns it off to compare)
FUSED_LORA = True  # lora_forward.fused_lora in the trainer's loss context (bench/train.py turns it off to compare)
# Heads that transform their logits after the projection; trl's path handles them.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


def causal_parts(model: Any) -> tuple[Any, Any]:
    """(decoder body, output head) of a causal LM, through a peft wrapper: LoRA layers live inside
    the body; the head is not adapted."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.base_model, base.get_output_embeddings()


def head_is_plain(model: Any) -> bool:
    """Whether logits are exactly head(hidden): no scaling or soft-capping after the projection."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config()
    return all(getattr(config, name, None) in (None, 1.0) for name in _LOGIT_TRANSFORMS)


def labelled_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> tuple[Any, Any, Any]:
    """Next-token cross-entropy over positions whose label is not -100, summed and divided by
    `num_items_in_batch` (the Trainer's count across accumulated micro-batches) or by this batch's
    count, as trl does. Returns (loss, labelled positions, correct top-1 predictions)."""
    import torch
    import torch.nn.functional as F

    body, head = causal_parts(model)
    features = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
    hidden = body(**features, use_cache=False).last_hidden_state[:, :-1]
    targets = inputs["labels"][:, 1:].to(hidden.device)
    where = targets != IGNORE_INDEX
    chosen = targets[where]
    if getattr(head, "bias", None) is None and not head.weight.requires_grad:
        total, correct = head_cross_entropy(hidden[where], head.weight, chosen)
    else:  # a trained or biased head: autograd through the whole logits
        logits = head(hidden[where]).float()
        total = F.cross_entropy(logits, chosen, reduction="sum")
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == chosen).sum()
    count = where.sum()
    divisor = count if num_items_in_batch is None else torch.as_tensor(num_items_in_batch, device=total.device)
    return total / divisor.clamp(min=1), count, correct


HEAD_CHUNK = 256  # rows of logits at a time: of 64 to 512, 256 and 512 were fastest; 256 holds 75 MB of buffers
# Rows of a chunk whose softmax runs at once in an fp32 buffer: 32 rows (6 MB for 49k tokens) instead
# of the chunk's 50 MB. As fast inside a training step (alternating steps on one batch: 3.65 against
# 3.70 s median), 44 MB less held, and the buffer stays in the CPU's cache between passes.
HEAD_BLOCK = 32


def head_cross_entropy(hidden: Any, weight: Any, targets: Any) -> tuple[Any, Any]:
    """(summed cross-entropy of ``hidden @ weight.T`` against ``targets``, correct top-1 count) for a
    frozen head, a chunk of rows at a time. Each chunk's gradient (softmax minus one-hot, times the
    head) is taken while its logits are in cache, so the [rows, vocabulary] logits are never stored
    and never read again in the backward pass: the separate log-softmax, its backward and the fp32
    copies were 12% of a CPU step on SmolLM2 (torch.profiler, 8 examples of 80-320 tokens)."""
    return _head_cross_entropy_function().apply(hidden, weight, targets)


_FUNCTION: Any = None


def _head_cross_entropy_function() -> Any:
    global _FUNCTION
    if _FUNCTION is not None:
        return _FUNCTION
    import torch

    class HeadCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any) -> Any:
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            correct = torch.zeros((), dtype=torch.long, device=hidden.device)
            grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
            # Two buffers serve every chunk: fresh 25-50 MB tensors per chunk cost page faults that
            # made the copies 60 ms each inside a training step (torch.profiler).
            width = min(HEAD_CHUNK, hidden.shape[0])
            raw = torch.empty(width, weight.shape[0], dtype=weight.dtype, device=hidden.device)
            exact = torch.empty(min(HEAD_BLOCK, width), weight.shape[0], dtype=torch.float32, device=hidden.device)
            with torch.autocast(hidden.device.type, enabled=False):
                for start in range(0, hidden.shape[0], HEAD_CHUNK):
                    rows = hidden[start:start + HEAD_CHUNK].to(weight.dtype)
                    logits = torch.mm(rows, weight.T, out=raw[:rows.shape[0]])  # as head(hidden) gives them
                    chosen = targets[start:start + HEAD_CHUNK]
                    for first in range(0, rows.shape[0], HEAD_BLOCK):
                        block_total, block_correct = _softmax_gradient_in_place(
                            logits[first:first + HEAD_BLOCK], chosen[first:first + HEAD_BLOCK], exact)
                        total += block_total
                        correct += block_correct
                    if grad is not None:
                        grad[start:start + HEAD_CHUNK] = logits @ weight
            ctx.save_for_backward(grad)
            ctx.mark_non_differentiable(correct)
            return total, correct

        @staticmethod
        def backward(ctx: Any, grad_total: Any, grad_correct: Any) -> Any:
            (grad,) = ctx.saved_tensors
            return grad * grad_total.to(grad.dtype), None, None

    _FUNCTION = HeadCrossEntropy
    return _FUNCTION


def _softmax_gradient_in_place(logits: Any, targets: Any, exact: Any) -> tuple[Any, Any]:
    """(summed cross-entropy, correct top-1 count) of these rows of logits; the rows are overwritten
    with the loss's gradient over them (softmax minus one-hot), computed in fp32 in ``exact``."""
    import torch

    n = logits.shape[0]
    top, predicted = logits.max(dim=-1)
    top = top.float()
    rows = torch.arange(n, device=logits.device)
    target_scores = logits[rows, targets].float()
    # In place in the two buffers: a mixed-dtype op with out= makes a temporary of the block's size,
    # and fresh 6 MB tensors cost page faults (torch.profiler: 4.7 ms per copy inside a step).
    exps = exact[:n].copy_(logits).sub_(top[:, None]).exp_()
    sums = exps.sum(dim=-1)
    exps[rows, targets] -= sums  # so the division leaves probability - 1 there, exact in fp32
    logits.copy_(exps.div_(sums[:, None]))
    return (sums.log() + top - target_scores).sum(), (predicted == targets).sum()


def bf16_on_cpu(model: Any) -> bool:
    """Whether the frozen base weights are bf16 on a CPU (sft.load_model chose them because this CPU
    multiplies bf16 faster); the LoRA weights beside them are fp32."""
    import torch

    parameter = next(model.parameters(), None)
    return parameter is not None and parameter.device.type == "cpu" and model.dtype == torch.bfloat16


@contextmanager
def lora_in_bf16(model: Any) -> Iterator[None]:
    """The LoRA matmuls of a bf16 base on a CPU run in bf16 too, their fp32 weights cast once per
    step by autocast, and the activations stay bf16. peft would otherwise copy every LoRA layer's
    input to fp32 and its output back (4,156 dtype copies a step on SmolLM2): measured in one run,
    407 against 336 real tokens/s, the same losses to the second decimal. The weights, their
    gradients and the optimizer state stay fp32; attention.py keeps its fp32 attention."""
    import torch
    from peft.helpers import disable_input_dtype_casting

    with torch.autocast("cpu", dtype=torch.bfloat16), disable_input_dtype_casting(model):
        yield


def _make_trainer_class() -> type:
    from trl import SFTTrainer

    class LabelledHeadSFTTrainer(SFTTrainer):
        """trl's SFTTrainer whose training loss runs the vocabulary head on labelled positions only."""

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            plain = (return_outputs or not model.training or self.accelerator.num_processes > 1
                     or self.aux_loss_enabled or self.compute_loss_func is not None
                     or self.label_smoother is not None or self.args.loss_type != "nll"
                     or not head_is_plain(model))
            if plain:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            loss, count, correct = labelled_loss(self.accelerator.unwrap_model(model), inputs, num_items_in_batch)
            metrics = self._metrics["train"]
            metrics["mean_token_accuracy"].append((correct / count.clamp(min=1)).item())
            # trl counts the packed row's width; the examples' own tokens count a shared prompt once per example.
            self._total_train_tokens += real_tokens(inputs)
            metrics["num_tokens"] = [self._total_train_tokens]
            return loss

        def compute_loss_context_manager(self) -> Any:
            stack = super().compute_loss_context_manager()
            if LORA_BF16_ON_CPU and bf16_on_cpu(self.model):
                stack.enter_context(lora_in_bf16(self.model))
            # Not with activation checkpointing: its recomputation runs in the backward pass, outside
            # this context, and should compute what the forward did.
            checkpointing = getattr(self.args, "activation_checkpointing", None)  # transformers 5's name
            if checkpointing is None:
                checkpointing = self.args.gradient_checkpointing
            if FUSED_LORA and not checkpointing:
                stack.enter_context(fused_lora(self.model))
            return stack

    return LabelledHeadSFTTrainer


_TRAINER_CLASS: type | None = None


def labelled_head_trainer_class() -> type:
    """The SFTTrainer subclass (made on first use: trl is imported lazily)."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        _TRAINER_CLASS = _make_trainer_class()
    return _TRAINER_CLASS
