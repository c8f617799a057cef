"""Attention over packed examples that keeps them apart without a mask: one call per example.

A batch becomes one row: the prompt tokens every example of the batch starts with (in practice the
system turn and the user turn's header) once, then each example's remaining tokens
(``packing.SegmentCollator``). ``cu_seq_lens_q`` marks where each example's part starts; its first
entry is the shared prefix's length. Here the prefix attends causally to itself, and each example's
part attends to the prefix and causally to its own tokens, never to another example's. Position
ids continue from the prefix, so every example's logits are those it has alone (tests prove it).

Why not a 4-D block-diagonal boolean mask (the earlier way): its ``[row, row]`` mask is mostly
masked work and keeps sdpa off its fast kernels: segment attention trained 1.7x faster on 2 CPU
cores (146 vs 87 real tokens/s, SmolLM2 fp32, batches of 8 examples of 120-400 tokens). And the shared prefix is computed once per batch instead of once per
example: the same activations, so the same loss and gradients, for less work.

On a CPU with a bf16 model, each example's attention is two batched bf16 matmuls (four in the
backward pass) around a softmax computed in fp32 (`matmul_segments`): the precision of transformers'
eager attention in bf16, at the rate of the bf16 matmul units. PyTorch's fp32 flash kernel for CPUs
reaches ~40 GFLOP/s on these shapes and was 17% of a training step; alternating steps on one batch
of SmolLM2 took 3.65 s against 3.98 s (median of 9 each). Longer examples keep the flash kernel
(their probabilities would take too much memory to keep for the backward pass).

transformers finds the function by name through ``AttentionInterface``; the mask factory of the
same name returns None, so no mask is ever built.
"""

from __future__ import annotations

import contextlib
from typing import Any

NAME = "slm_segments"
FP32_ON_CPU = True  # attention in fp32 when the model runs bf16 on a CPU (bench/train.py turns it off to compare)
MATMUL_ON_CPU = True  # matmul_segments for a bf16 model on a CPU (bench/train.py turns it off to compare)
# Keys (prefix + example) up to which matmul_segments serves: it keeps each example's [heads, tokens,
# keys] bf16 probabilities for the backward pass, which at 1,024 keys weigh about what the rest of a
# layer keeps for those tokens.
MATMUL_MAX_KEYS = 1024
_registered = False


def segment_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                      scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """``query`` is ``[1, heads, tokens, dim]``; returns ``[1, tokens, heads, dim]`` as transformers expects.
    Without ``cu_seq_lens_q`` the inputs are one unpadded example per row (or a decoding step): plain sdpa."""
    import torch
    import torch.nn.functional as F

    if "cu_seq_lens_q" not in kwargs:  # one unpadded example per row, or a decoding step
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    bounds = kwargs["cu_seq_lens_q"].tolist()
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    dtype = query.dtype
    if MATMUL_ON_CPU and _matmul_serves(query, bounds, dropout):
        return matmul_segments(query, key, value, bounds, scaling), None
    fp32 = FP32_ON_CPU and query.device.type == "cpu" and (dtype != torch.float32 or torch.is_autocast_enabled("cpu"))
    if fp32:
        # PyTorch's CPU attention kernels run fp32 faster than bf16 here: a layer's forward and
        # backward over 8 examples took 26 ms in fp32 against 35-41 ms in bf16 (2 cores, AVX512-BF16);
        # with the whole step otherwise bf16 (loss.lora_in_bf16), 420 against 388 real tokens/s.
        query, key, value = query.float(), key.float(), value.float()

    def attend(queries: Any, keys: Any, values: Any, seen_prefix: int) -> Any:
        mask = _prefix_mask(queries.shape[2], seen_prefix, query.dtype, query.device) if seen_prefix else None
        with torch.autocast("cpu", enabled=False) if fp32 else contextlib.nullcontext():
            return F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, is_causal=mask is None,
                                                  dropout_p=dropout, scale=scaling, enable_gqa=gqa)

    return _over_segments(query, key, value, bounds, attend).to(dtype).transpose(1, 2).contiguous(), None


def _over_segments(query: Any, key: Any, value: Any, bounds: list[int], attend: Any) -> Any:
    """The segments' attention over a ``[1, heads, tokens, dim]`` row, ``[1, heads, tokens, dim]``
    back: the prefix causally over itself, then each example over the prefix and causally over its
    own tokens. ``attend(queries, keys, values, seen_prefix)`` does one part; ``seen_prefix`` is how
    many of its keys are the prefix (0: plain causal)."""
    import torch

    prefix = bounds[0]
    # split, not slicing: a slice's backward fills a zero tensor of the whole row for every slice
    # (8 examples x q, k, v x 30 layers a step), split's backward is one concatenation.
    sizes = [end - start for start, end in zip(bounds[:-1], bounds[1:])]
    if prefix:
        sizes.insert(0, prefix)
    queries, keys, values = (t.split(sizes, dim=2) for t in (query, key, value))
    if not prefix:
        parts = [attend(q, k, v, 0) for q, k, v in zip(queries, keys, values)]
    else:
        parts = [attend(queries[0], keys[0], values[0], 0)]
        for q, k, v in zip(queries[1:], keys[1:], values[1:]):
            parts.append(attend(q, torch.cat([keys[0], k], dim=2), torch.cat([values[0], v], dim=2), prefix))
    return torch.cat(parts, dim=2)


def _matmul_serves(query: Any, bounds: list[int], dropout: float) -> bool:
    import torch

    longest = max(end - start for start, end in zip(bounds[:-1], bounds[1:]))
    return (query.device.type == "cpu" and query.dtype == torch.bfloat16 and not dropout
            and bounds[0] + longest <= MATMUL_MAX_KEYS)


def matmul_segments(query: Any, key: Any, value: Any, bounds: list[int], scaling: float | None) -> Any:
    """segment_attention's result as batched matmuls (`_matmul_attention_function`): the prefix
    causally over itself, then each example over the prefix and causally over its own tokens.
    Returns ``[1, tokens, heads, dim]``."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    function = _matmul_attention_function()
    groups = query.shape[1] // key.shape[1]  # query heads per key/value head

    def attend(queries: Any, keys: Any, values: Any, seen_prefix: int) -> Any:
        mask = _prefix_mask(queries.shape[2], seen_prefix, query.dtype, query.device, groups)
        return function.apply(queries[0], keys[0], values[0], mask, scale)[None]

    return _over_segments(query, key, value, bounds, attend).transpose(1, 2).contiguous()


_MATMUL_ATTENTION: Any = None


def _matmul_attention_function() -> Any:
    """The autograd function of one example's attention: ``query`` ``[heads, tokens, dim]``, ``key``
    and ``value`` ``[kv_heads, keys, dim]``, and the additive ``mask`` of `_prefix_mask` for as many
    query heads as share a key/value head, all in one dtype. The heads that share a key/value head
    are stacked into one matmul instead of repeating the keys. In bf16 the scores and probabilities
    are transformers' eager attention's: the scores rounded to bf16 once (the matmul adds the mask
    to its fp32 sums), the softmax computed in fp32 and rounded to bf16 for the value matmul."""
    global _MATMUL_ATTENTION
    if _MATMUL_ATTENTION is not None:
        return _MATMUL_ATTENTION
    import torch

    class MatmulAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, query: Any, key: Any, value: Any, mask: Any, scale: float) -> Any:
            heads, tokens, dim = query.shape
            groups = key.shape[0]
            stacked = query.reshape(groups, heads // groups * tokens, dim)
            # The CPU softmax of a bf16 tensor computes in fp32 and rounds once: the same probabilities
            # as an fp32 copy's softmax rounded to bf16, without the fp32 tensors (1.5 of 2 ms of
            # an example's forward went to them).
            probabilities = torch.softmax(torch.baddbmm(mask, stacked, key.transpose(1, 2), alpha=scale), dim=-1)
            ctx.save_for_backward(stacked, key, value, probabilities)
            ctx.scale = scale
            return torch.bmm(probabilities, value).view(heads, tokens, dim)

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            stacked, key, value, probabilities = ctx.saved_tensors
            heads, tokens, dim = grad_output.shape
            grad = grad_output.reshape(key.shape[0], -1, dim).to(value.dtype)
            grad_value = torch.bmm(probabilities.transpose(1, 2), grad)
            grad_probabilities = torch.bmm(grad, value.transpose(1, 2))
            grad_scores = torch._softmax_backward_data(grad_probabilities, probabilities, -1, probabilities.dtype)
            grad_query = torch.bmm(grad_scores, key).mul_(ctx.scale).view(heads, tokens, dim)
            grad_key = torch.bmm(grad_scores.transpose(1, 2), stacked).mul_(ctx.scale)
            return grad_query, grad_key, grad_value, None, None

    _MATMUL_ATTENTION = MatmulAttention
    return _MATMUL_ATTENTION


_MASKS: dict[tuple[int, int, Any, Any, int], Any] = {}
# A batch needs a mask per example, reused by every layer: 64 MB holds a few batches of QA-length
# examples (a 300-token example over a 60-token prefix, three heads stacked: 0.6 MB in bf16) and one
# batch of 1,000-token ones.
MASK_CACHE_BYTES = 64 * 2**20


def _prefix_mask(length: int, prefix: int, dtype: Any, device: Any, stacked: int = 1) -> Any:
    """The additive mask of an example's ``length`` tokens over the prefix and themselves: token i
    sees the whole prefix and its own tokens 0..i; ``stacked`` times over for as many heads stacked
    row-wise (`matmul_segments`). Made once per shape and reused by every layer (a boolean mask
    would be made and converted to this by sdpa at every call)."""
    import torch

    key = (length, prefix, dtype, device, stacked)
    mask = _MASKS.get(key)
    if mask is None:
        seen = torch.ones(length, prefix + length, dtype=torch.bool, device=device).tril(prefix)
        mask = torch.zeros(seen.shape, dtype=dtype, device=device).masked_fill_(~seen, float("-inf"))
        mask = mask.repeat(stacked, 1) if stacked > 1 else mask
        # Lengths vary from batch to batch, so the oldest masks go once the cache passes its size.
        while _MASKS and sum(m.nbytes for m in _MASKS.values()) + mask.nbytes > MASK_CACHE_BYTES:
            _MASKS.pop(next(iter(_MASKS)))
        _MASKS[key] = mask
    return mask


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None


def register() -> str:
    """Makes ``NAME`` known to transformers (once per process) and returns it."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(NAME, segment_attention)
        AttentionMaskInterface.register(NAME, _no_mask)
        _registered = True
    return NAME


def unsupported_reason(model: Any, longest: int) -> str | None:
    """Why segment attention cannot serve this model (None when it can): it must take its attention
    function by name, use sdpa-compatible attention (no logit soft-capping), and have no sliding window
    shorter than the longest example (the segments ignore windows)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if not getattr(model, "_can_set_attn_implementation", lambda: False)():
        return "its attention is not chosen through transformers' AttentionInterface"
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return f"it runs {getattr(config, '_attn_implementation', None)} attention, not sdpa"
    if getattr(config, "attn_logit_softcapping", None):
        return "it soft-caps attention logits"
    window = getattr(config, "sliding_window", None)
    if window and longest > window:
        return f"its sliding window ({window} tokens) is shorter than the longest example ({longest})"
    return None


def use_segments(model: Any) -> None:
    model.set_attn_implementation(register())


def keeps_apart(model: Any, tolerance: float) -> bool:
    """Whether this model, switched to segment attention, gives two examples packed by
    `packing.SegmentCollator` (sharing a prefix) the hidden states each has alone, within `tolerance`
    of the largest value: a check on the real model before any training step (examples that see
    each other differ by far more)."""
    import torch

    from slm_factory.training.loss import causal_parts
    from slm_factory.training.masking import IGNORE_INDEX
    from slm_factory.training.packing import SegmentCollator

    body, _ = causal_parts(model)
    vocab = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    prefix, first, second = (torch.randint(3, vocab, (n,), generator=generator).tolist() for n in (5, 7, 4))
    alone = [prefix + first, prefix + second]
    # Only the last token is trained, so the collator shares the 5 common tokens.
    row = SegmentCollator()([{"input_ids": ids, "labels": [IGNORE_INDEX] * (len(ids) - 1) + ids[-1:]}
                             for ids in alone])
    row = {k: v.to(model.device) for k, v in row.items() if k != "labels"}
    was_training = model.training
    model.eval()
    current = model.config._attn_implementation
    try:
        with torch.no_grad():
            model.set_attn_implementation("sdpa")
            expected = [body(input_ids=torch.tensor([ids], device=model.device), use_cache=False).last_hidden_state[0]
                        for ids in alone]
            use_segments(model)
            packed = body(**row, use_cache=False).last_hidden_state[0]
    finally:
        model.set_attn_implementation(current)
        model.train(was_training)
    shared, *ends = row["cu_seq_lens_q"].tolist()
    starts = [shared, *ends[:-1]]
    got = [torch.cat([packed[:shared], packed[start:end]]) for start, end in zip(starts, ends)]
    return all(float((g - e).abs().max()) <= tolerance * float(e.abs().max()) for g, e in zip(got, expected))
