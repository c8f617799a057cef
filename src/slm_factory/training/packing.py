"""Packing short examples into rows that keep them apart.

Rows hold several tokenised examples end to end, up to ``max_length`` tokens, and a batch is padded
only to its longest row (never everything to ``max_length``). Each example sees only itself:

- position ids restart at 0 for every example;
- the attention mask is 4-D, ``[batch, 1, row, row]`` booleans, causal inside each example and
  False across examples. Reset position ids alone do NOT keep examples apart in transformers 5.x
  (sdpa, eager or flex attention all let the second example attend to the first; FACTS.md, and
  tests/training/test_packing.py proves it again); the 4-D mask with sdpa does;
- the first label of every example is -100, so no example is trained to predict another's start.

Only sdpa reads a boolean 4-D mask this way (eager misreads it). For any other attention
implementation ``collator_for`` returns a plain padding collator instead: one example per row,
padded to the batch's longest; the trainer then groups batches by length to keep padding small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slm_factory.training.masking import IGNORE_INDEX

Feature = dict[str, Any]


def pack_rows(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """First-fit decreasing: indices of the examples that share each row (no row over max_length)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        if lengths[i] > max_length:
            raise ValueError(f"example of {lengths[i]} tokens does not fit in max_length {max_length}")
        for r, left in enumerate(room):
            if lengths[i] <= left:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_length - lengths[i])
    return rows


def block_causal_mask(segment_lengths: Sequence[int], row_length: int) -> Any:
    """``[row_length, row_length]`` booleans: True where query i may attend key j (same example,
    j <= i). Padding after the last example attends only to itself, so no softmax row is empty."""
    import torch

    segment = torch.full((row_length,), -1, dtype=torch.long)
    start = 0
    for s, length in enumerate(segment_lengths):
        segment[start : start + length] = s
        start += length
    pad = segment < 0
    segment[pad] = -1 - torch.arange(int(pad.sum()))  # every pad position is its own segment
    same = segment[:, None] == segment[None, :]
    return torch.tril(same)


@dataclass
class PackedCollator:
    """Packs the examples of a batch into rows (a HF Trainer / trl SFTTrainer ``data_collator``).

    Each feature has ``input_ids`` and ``labels`` (same length, labels -100 where not trained).
    Returns ``input_ids``, ``labels``, ``position_ids`` and a 4-D boolean ``attention_mask``.
    """

    max_length: int
    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, features: list[Feature]) -> dict[str, Any]:
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        rows = pack_rows(lengths, self.max_length)
        width = max(sum(lengths[i] for i in row) for row in rows)
        width = min(_round_up(width, self.pad_to_multiple_of), max(width, self.max_length))
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), 1, width, width), dtype=torch.bool)
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                n = lengths[i]
                input_ids[r, start : start + n] = torch.as_tensor(features[i]["input_ids"])
                labels[r, start : start + n] = torch.as_tensor(features[i]["labels"])
                labels[r, start] = IGNORE_INDEX
                position_ids[r, start : start + n] = torch.arange(n)
                start += n
            position_ids[r, start:] = torch.arange(width - start)
            mask[r, 0] = block_causal_mask([lengths[i] for i in row], width)
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": mask}


@dataclass
class PaddedCollator:
    """One example per row, padded to the batch's longest (for attention that takes no 4-D mask)."""

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


def packs_apart(model: Any) -> bool:
    """Whether the model's attention keeps packed examples apart with our 4-D boolean mask."""
    return getattr(model.config, "_attn_implementation", None) == "sdpa"


def collator_for(model: Any, max_length: int, pad_token_id: int) -> PackedCollator | PaddedCollator:
    if packs_apart(model):
        return PackedCollator(max_length=max_length, pad_token_id=pad_token_id)
    return PaddedCollator(pad_token_id=pad_token_id)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
