"""Packed examples stay apart: the same logits packed beside others as alone (tiny random Llama, sdpa)."""

from __future__ import annotations

import math
import random

import pytest

from slm_factory.training.masking import IGNORE_INDEX, tokenize_with_labels
from slm_factory.training.packing import PackedCollator, PaddedCollator, block_causal_mask, collator_for, pack_rows

DIALOGUES = [
    [{"role": "user", "content": "Who founded Ebbenfeld?"}, {"role": "assistant", "content": "Ms. Quorvath, in 1871."}],
    [{"role": "system", "content": "답변은 짧게."}, {"role": "user", "content": "서울 청년 주택 보조금 마감일은?"},
     {"role": "assistant", "content": "2024년 3월 31일입니다."}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
    [{"role": "user", "content": "List three colours."}, {"role": "assistant", "content": "Red, green, blue."},
     {"role": "user", "content": "And one more?"}, {"role": "assistant", "content": "Violet."}],
]


@pytest.fixture
def features(smollm2_tokenizer):
    out = []
    for messages in DIALOGUES:
        input_ids, labels = tokenize_with_labels(smollm2_tokenizer, messages, 512)
        out.append({"input_ids": input_ids, "labels": labels})
    return out


def test_rows_hold_every_example_once_and_never_overflow():
    rng = random.Random(0)
    for _ in range(300):
        max_length = rng.choice([16, 64, 256, 2048])
        lengths = [rng.randint(1, max_length) for _ in range(rng.randint(1, 60))]
        rows = pack_rows(lengths, max_length)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in row) <= max_length for row in rows)
        # first-fit decreasing uses at most 11/9 of the optimum + 1 rows; the optimum is at least this
        assert len(rows) <= math.ceil(sum(lengths) / max_length) * 11 / 9 + 1
    with pytest.raises(ValueError):
        pack_rows([5, 17], 16)


def test_block_causal_mask_is_causal_inside_examples_and_closed_across():
    mask = block_causal_mask([2, 3], 7)
    expected = [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],  # padding attends to itself only
        [0, 0, 0, 0, 0, 0, 1],
    ]
    assert mask.int().tolist() == expected


def test_collated_rows_are_padded_to_the_longest_row_not_max_length(features):
    collate = PackedCollator(max_length=512, pad_token_id=0)
    batch = collate(features)
    lengths = [len(f["input_ids"]) for f in features]
    assert batch["input_ids"].shape == (1, sum(lengths))
    assert batch["attention_mask"].shape == (1, 1, sum(lengths), sum(lengths))
    assert (batch["position_ids"][0] == 0).sum() == len(features)
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert all(batch["labels"][0, s] == IGNORE_INDEX for s in starts)
    trained = int((batch["labels"] != IGNORE_INDEX).sum())
    assert trained == sum(sum(1 for label in f["labels"][1:] if label != IGNORE_INDEX) for f in features)

    small = PackedCollator(max_length=max(lengths), pad_token_id=0)(features)
    assert small["input_ids"].shape[1] == max(lengths) and small["input_ids"].shape[0] >= 2


def alone_logits(model, feature):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([feature["input_ids"]])).logits[0]


def packed_logits(model, batch, with_mask=True):
    import torch

    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    if with_mask:
        inputs["attention_mask"] = batch["attention_mask"]
    with torch.no_grad():
        return model(**inputs).logits


def test_an_example_has_the_same_logits_packed_as_alone(tiny_llama, features):
    import torch

    assert tiny_llama.config._attn_implementation == "sdpa"
    collate = collator_for(tiny_llama, max_length=512, pad_token_id=0)
    assert isinstance(collate, PackedCollator)
    # Packed into a row wider than the examples, so padding trails the row too.
    batch = PackedCollator(max_length=512, pad_token_id=0, pad_to_multiple_of=64)(features)
    assert batch["input_ids"].shape[1] % 64 == 0
    logits = packed_logits(tiny_llama, batch)
    position_only = packed_logits(tiny_llama, batch, with_mask=False)
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    order = pack_rows([len(f["input_ids"]) for f in features], 512)[0]
    worst_without_mask = 0.0
    for slot, i in enumerate(order):
        n = len(features[i]["input_ids"])
        start = starts[slot]
        alone = alone_logits(tiny_llama, features[i])
        torch.testing.assert_close(logits[0, start : start + n], alone, atol=1e-5, rtol=1e-5)
        if slot > 0:
            worst_without_mask = max(worst_without_mask, float((position_only[0, start : start + n] - alone).abs().max()))
    # Reset position ids alone let later examples attend to earlier ones: the logits move.
    assert worst_without_mask > 1e-2


def test_packed_loss_is_the_mean_over_every_examples_trained_tokens(tiny_llama, features):
    import torch

    batch = PackedCollator(max_length=512, pad_token_id=0)(features)
    with torch.no_grad():
        packed = tiny_llama(**batch).loss
    total, count = 0.0, 0
    for feature in features:
        ids, labels = torch.tensor([feature["input_ids"]]), torch.tensor([feature["labels"]])
        with torch.no_grad():
            logits = tiny_llama(input_ids=ids).logits[0, :-1]
        total += float(torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=IGNORE_INDEX, reduction="sum"))
        count += int((labels[0, 1:] != IGNORE_INDEX).sum())
    assert math.isclose(float(packed), total / count, rel_tol=1e-5)


def test_attention_without_a_4d_mask_falls_back_to_padded_rows(tiny_llama_dir, features):
    import torch
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype="float32", attn_implementation="eager")
    collate = collator_for(eager, max_length=512, pad_token_id=0)
    assert isinstance(collate, PaddedCollator)
    batch = collate(features)
    assert batch["input_ids"].shape == (len(features), max(len(f["input_ids"]) for f in features))
    with torch.no_grad():
        logits = eager(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for r, feature in enumerate(features):
        n = len(feature["input_ids"])
        torch.testing.assert_close(logits[r, :n], alone_logits(eager, feature), atol=1e-5, rtol=1e-5)
