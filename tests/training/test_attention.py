"""attention.matmul_segments: segment attention as batched matmuls, checked against sdpa over the
whole row with the block mask the segments mean (a path that shares no code with it)."""

from __future__ import annotations

import random

import pytest

from slm_factory.training import attention


def row(heads: int, kv_heads: int, bounds: list[int], dtype, seed: int):
    """(query, key, value) of one packed row as transformers hands them over: ``[1, heads, tokens, dim]``
    views of ``[1, tokens, heads, dim]`` tensors."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    tokens, dim = bounds[-1], 16

    def tensor(n: int, scale: float):
        values = torch.randn(1, tokens, n, dim, generator=generator) * scale
        return values.to(dtype).transpose(1, 2).requires_grad_()

    return tensor(heads, 2.0), tensor(kv_heads, 2.0), tensor(kv_heads, 1.0)


def block_mask(bounds: list[int]):
    """Token i sees token j when j <= i and j is in the prefix or in i's own example."""
    import torch

    segment = torch.zeros(bounds[-1], dtype=torch.long)
    for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
        segment[start:end] = index
    i, j = torch.arange(bounds[-1])[:, None], torch.arange(bounds[-1])[None, :]
    return (j <= i) & ((segment[None, :] == 0) | (segment[None, :] == segment[:, None]))


def reference(query, key, value, bounds):
    """fp32 sdpa over the whole row with the block mask, in transformers' ``[1, tokens, heads, dim]``."""
    import torch.nn.functional as F

    out = F.scaled_dot_product_attention(query.float(), key.float(), value.float(), attn_mask=block_mask(bounds),
                                         enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2)


def outputs_and_grads(fn, tensors, seed: int, kept: list | None = None):
    """fn's output and the inputs' gradients for a random upstream gradient; `kept` collects the
    dtypes of the tensors fn's forward saves for backward."""
    import contextlib

    import torch

    for t in tensors:
        t.grad = None
    saving = (torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.dtype) or t, lambda t: t)
              if kept is not None else contextlib.nullcontext())
    with saving:
        out = fn(*tensors)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    out.float().mul(upstream).sum().backward()
    return [out.detach().float()] + [t.grad.float() for t in tensors]


def random_bounds(rng: random.Random) -> list[int]:
    prefix = rng.choice([0, 1, 6])
    bounds = [prefix]
    for _ in range(rng.randint(1, 5)):
        bounds.append(bounds[-1] + rng.randint(1, 13))
    return bounds


SHAPES = [(4, 4), (6, 2), (9, 3), (2, 1)]  # (heads, key/value heads): none, some and full sharing


@pytest.mark.parametrize("case", range(12))
def test_matmul_segments_in_fp32_equal_sdpa_over_the_block_mask(case):
    """Output and the gradients of query, key and value, for random prefixes (none, one token,
    several), example counts and lengths (down to one token) and head sharing."""
    import torch

    rng = random.Random(case)
    heads, kv_heads = SHAPES[case % len(SHAPES)]
    bounds = random_bounds(rng)
    tensors = row(heads, kv_heads, bounds, torch.float32, case)
    scale = 16 ** -0.5
    got = outputs_and_grads(lambda q, k, v: attention.matmul_segments(q, k, v, bounds, scale), tensors, case)
    want = outputs_and_grads(lambda q, k, v: reference(q, k, v, bounds), tensors, case)
    for name, g, w in zip(("output", "query", "key", "value"), got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("case", range(6))
def test_matmul_segments_in_bf16_stay_within_bf16_rounding_of_fp32(case):
    """In bf16 the scores and probabilities are rounded as transformers' eager attention rounds them:
    within 2% (relative norm) of fp32 attention over the same bf16 inputs, and no fp32 tensor of the
    scores' size is kept for the backward pass."""
    import torch

    rng = random.Random(100 + case)
    heads, kv_heads = SHAPES[case % len(SHAPES)]
    bounds = random_bounds(rng)
    tensors = row(heads, kv_heads, bounds, torch.bfloat16, case)
    kept: list = []
    got = outputs_and_grads(lambda q, k, v: attention.matmul_segments(q, k, v, bounds, 0.25), tensors, case, kept)
    assert kept and set(kept) == {torch.bfloat16}
    want = outputs_and_grads(lambda q, k, v: reference(q, k, v, bounds), tensors, case)
    for name, g, w in zip(("output", "query", "key", "value"), got, want):
        assert float((g - w).norm() / w.norm()) < 2e-2, name


def test_segment_attention_takes_the_matmuls_for_bf16_on_cpu_and_the_flash_kernel_otherwise(monkeypatch):
    """bf16 rows on a CPU go through matmul_segments; fp32 rows, attention dropout and examples whose
    keys pass MATMUL_MAX_KEYS go to sdpa."""
    import torch

    calls: list[str] = []
    segments = attention.matmul_segments
    monkeypatch.setattr(attention, "matmul_segments", lambda *a, **k: calls.append("matmul") or segments(*a, **k))

    class Module:
        num_key_value_groups = 2

    bounds = [3, 10, 14]
    cu = torch.tensor(bounds)

    def route(dtype, dropout=0.0):
        calls.clear()
        query, key, value = row(4, 2, bounds, dtype, 0)
        out, _ = attention.segment_attention(Module(), query, key, value, None, dropout=dropout, scaling=0.25,
                                             cu_seq_lens_q=cu, cu_seq_lens_k=cu)
        assert out.shape == (1, bounds[-1], 4, 16) and out.dtype == dtype
        return calls[:]

    assert route(torch.bfloat16) == ["matmul"]
    assert route(torch.float32) == []
    assert route(torch.bfloat16, dropout=0.1) == []
    monkeypatch.setattr(attention, "MATMUL_MAX_KEYS", 3 + 7 - 1)  # prefix 3 + the longest example (7)
    assert route(torch.bfloat16) == []
    monkeypatch.setattr(attention, "MATMUL_MAX_KEYS", 3 + 7)
    assert route(torch.bfloat16) == ["matmul"]
