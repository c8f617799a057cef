"""Batches for training: packed examples that stay apart, or padded rows where packing cannot serve.

`SegmentCollator` puts a whole batch in one row with no padding: the prompt tokens every example
starts with once (`shared_prefix`), then each example's other tokens. attention.py's segment
attention keeps the examples apart (each attends to the prefix and to itself only) and position
ids continue from the prefix, so each example has exactly the logits it has alone.

Two earlier ways were measured and dropped: reset position ids alone do NOT keep examples apart in
transformers 5.x with a 2-D mask (FACTS.md), and a 4-D block-diagonal boolean mask with sdpa does
but is slow on CPUs: its [row, row] mask is mostly masked work and keeps sdpa off its fast kernels
(0.6x of segment attention here, bench/train.py notes).

`PaddedCollator` is the fallback for models segment attention cannot serve: one example per row,
padded to the batch's longest; the trainer then groups batches by length to keep padding small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slm_factory.training.masking import IGNORE_INDEX

Feature = dict[str, Any]


def shared_prefix(features: list[Feature]) -> int:
    """How many leading tokens every example of the batch has in common, stopping before any token
    that is trained (label) or that a trained token is predicted from. Causal attention makes these
    tokens' activations the same in every example, so they are computed once."""
    ids = [f["input_ids"] for f in features]
    labels = [f["labels"] for f in features]
    shortest = min(len(x) for x in ids)
    length = 0
    # labels[p] is predicted from position p-1: the prefix may end at p only if labels[p] is not trained.
    while (length + 1 < shortest and all(x[length] == ids[0][length] for x in ids)
           and all(y[length] == IGNORE_INDEX and y[length + 1] == IGNORE_INDEX for y in labels)):
        length += 1
    return length


@dataclass
class SegmentCollator:
    """One row per batch for attention.segment_attention: the shared prefix once, then each example's
    other tokens. Returns ``input_ids``, ``labels``, ``position_ids`` (each example's own positions)
    and ``cu_seq_lens_q``/``cu_seq_lens_k`` (the prefix length, then where each example's part ends).
    No padding at all, and no mask. ``share_prefix=False`` repeats the prefix in every example
    (bench/train.py measures what sharing it saves)."""

    share_prefix: bool = True

    def __call__(self, features: list[Feature]) -> dict[str, Any]:
        import torch

        prefix = shared_prefix(features) if self.share_prefix else 0
        ids = [torch.as_tensor(features[0]["input_ids"][:prefix], dtype=torch.long)]
        labels = [torch.full((prefix,), IGNORE_INDEX)]
        positions, bounds = [torch.arange(prefix)], [prefix]
        for feature in features:
            n = len(feature["input_ids"])
            ids.append(torch.as_tensor(feature["input_ids"][prefix:], dtype=torch.long))
            own = torch.tensor(feature["labels"][prefix:], dtype=torch.long)
            own[0] = IGNORE_INDEX  # never trained to predict one example's first token from another's last
            labels.append(own)
            positions.append(torch.arange(prefix, n))
            bounds.append(bounds[-1] + n - prefix)
        cu = torch.tensor(bounds, dtype=torch.int32)
        return {"input_ids": torch.cat(ids)[None], "labels": torch.cat(labels)[None],
                "position_ids": torch.cat(positions)[None], "cu_seq_lens_q": cu, "cu_seq_lens_k": cu}


def real_tokens(inputs: dict[str, Any]) -> int:
    """Tokens of the examples in a batch as each has them alone, padding left out: a shared prefix
    counts once per example (it is the examples' own tokens, computed once)."""
    if "cu_seq_lens_q" in inputs:
        bounds = inputs["cu_seq_lens_q"]
        return int(inputs["input_ids"].shape[-1] + int(bounds[0]) * (len(bounds) - 2))
    mask = inputs.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())


@dataclass
class PaddedCollator:
    """One example per row, padded to the batch's longest (for models segment attention cannot serve)."""

    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, features: list[Feature]) -> dict[str, Any]:
        import torch

        width = _round_up(max(len(f["input_ids"]) for f in features), self.pad_to_multiple_of)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for r, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[r, :n] = torch.as_tensor(feature["input_ids"])
            labels[r, :n] = torch.as_tensor(feature["labels"])
            attention_mask[r, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
