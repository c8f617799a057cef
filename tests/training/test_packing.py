"""Packed examples stay apart: the same logits and gradients packed beside others as alone (tiny random Llama)."""

from __future__ import annotations

import random

import pytest

from slm_factory.training import attention
from slm_factory.training.masking import IGNORE_INDEX, tokenize_with_labels
from slm_factory.training.packing import PaddedCollator, SegmentCollator, real_tokens, shared_prefix

DIALOGUES = [
    [{"role": "user", "content": "Who founded Ebbenfeld?"}, {"role": "assistant", "content": "Ms. Quorvath, in 1871."}],
    [{"role": "system", "content": "답변은 짧게."}, {"role": "user", "content": "서울 청년 주택 보조금 마감일은?"},
     {"role": "assistant", "content": "2024년 3월 31일입니다."}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
    [{"role": "user", "content": "List three colours."}, {"role": "assistant", "content": "Red, green, blue."},
     {"role": "user", "content": "And one more?"}, {"role": "assistant", "content": "Violet."}],
]
SYSTEM = {"role": "system", "content": "You answer questions about the Talvik river survey of 1911."}


def featurize(tokenizer, dialogues):
    out = []
    for messages in dialogues:
        input_ids, labels = tokenize_with_labels(tokenizer, messages, 512)
        out.append({"input_ids": input_ids, "labels": labels})
    return out


@pytest.fixture
def features(smollm2_tokenizer):
    """Mixed dialogues: one has its own system turn, so they share only its header."""
    return featurize(smollm2_tokenizer, DIALOGUES)


@pytest.fixture
def same_system(smollm2_tokenizer):
    """QA-like examples with one system prompt, as convert writes them: a long shared prefix."""
    return featurize(smollm2_tokenizer, [[SYSTEM, *d] if d[0]["role"] != "system" else [SYSTEM, *d[1:]]
                                         for d in DIALOGUES])


def random_features(rng: random.Random) -> list[dict]:
    """Examples that share a random number of leading tokens, with random trained spans."""
    common = [rng.randint(3, 50) for _ in range(rng.randint(0, 12))]
    out = []
    for _ in range(rng.randint(1, 6)):
        ids = common[: rng.randint(0, len(common))] + [rng.randint(3, 50) for _ in range(rng.randint(2, 20))]
        start = rng.randint(1, len(ids) - 1)
        labels = [IGNORE_INDEX] * start + ids[start:]
        for i in range(start, len(ids)):  # some trained spans have holes (several assistant turns)
            if rng.random() < 0.2:
                labels[i] = IGNORE_INDEX
        out.append({"input_ids": ids, "labels": labels})
    return out


def test_the_shared_prefix_is_the_longest_common_untrained_start():
    rng = random.Random(0)
    for _ in range(2000):
        batch = random_features(rng)
        prefix = shared_prefix(batch)
        ids = [f["input_ids"] for f in batch]
        labels = [f["labels"] for f in batch]
        assert all(x[:prefix] == ids[0][:prefix] for x in ids)
        assert all(all(y == IGNORE_INDEX for y in label[: prefix + 1]) for label in labels)
        assert all(len(x) > prefix for x in ids)  # every example keeps at least one token of its own
        longer = prefix + 1
        assert (any(len(x) <= longer for x in ids) or any(x[prefix] != ids[0][prefix] for x in ids)
                or any(label[longer] != IGNORE_INDEX or label[prefix] != IGNORE_INDEX for label in labels))


def test_a_packed_row_holds_every_example_and_every_trained_token():
    rng = random.Random(1)
    for _ in range(500):
        batch = random_features(rng)
        row = SegmentCollator()(batch)
        prefix = int(row["cu_seq_lens_q"][0])
        bounds = row["cu_seq_lens_q"].tolist()
        assert row["input_ids"].shape == (1, bounds[-1]) and len(bounds) == len(batch) + 1
        assert real_tokens(row) == sum(len(f["input_ids"]) for f in batch)
        ids, positions, labels = row["input_ids"][0].tolist(), row["position_ids"][0].tolist(), row["labels"][0].tolist()
        for f, start, end in zip(batch, bounds[:-1], bounds[1:]):
            assert ids[:prefix] + ids[start:end] == f["input_ids"]  # each example, whole, in order
            assert positions[:prefix] + positions[start:end] == list(range(len(f["input_ids"])))
            assert labels[start:end] == f["labels"][prefix:]  # labels at the joins were untrained already
        assert labels[:prefix] == [IGNORE_INDEX] * prefix


def segment_hidden(model, row):
    import torch

    with torch.no_grad():
        return model(**{k: v for k, v in row.items() if k != "labels"}).logits[0]


def alone_logits(model, feature):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([feature["input_ids"]])).logits[0]


@pytest.mark.parametrize("which", ["features", "same_system"])
def test_an_example_has_the_same_logits_packed_as_alone(tiny_llama, request, which):
    import torch

    batch = request.getfixturevalue(which)
    row = SegmentCollator()(batch)
    prefix = int(row["cu_seq_lens_q"][0])
    assert prefix >= (20 if which == "same_system" else 3)  # the system turn, or its header, is shared
    bounds = row["cu_seq_lens_q"].tolist()
    unpacked = segment_hidden(tiny_llama, row)  # plain sdpa: transformers reads the positions as separate sequences
    expected = [alone_logits(tiny_llama, f) for f in batch]
    attention.use_segments(tiny_llama)
    packed = segment_hidden(tiny_llama, row)
    worst_plain = 0.0
    for f, alone, start, end in zip(batch, expected, bounds[:-1], bounds[1:]):
        torch.testing.assert_close(torch.cat([packed[:prefix], packed[start:end]]), alone, atol=1e-5, rtol=1e-5)
        worst_plain = max(worst_plain, float((unpacked[start:end] - alone[prefix:]).abs().max()))
    # The same row without segment attention gives other logits: the attention is what keeps them right.
    assert worst_plain > 1e-2


def test_packed_loss_and_lora_gradients_equal_the_examples_trained_alone(tiny_llama, same_system):
    """The shared prefix is computed once, yet every example's loss reaches its LoRA weights as when alone."""
    import torch
    from peft import LoraConfig, get_peft_model

    from slm_factory.training.loss import labelled_loss

    model = get_peft_model(tiny_llama, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                  task_type="CAUSAL_LM", init_lora_weights=False))
    model.train()
    row = SegmentCollator()(same_system)
    count = sum(sum(1 for y in f["labels"][1:] if y != IGNORE_INDEX) for f in same_system)
    for f in same_system:  # alone, each example's summed loss over the batch's trained tokens
        ids, labels = torch.tensor([f["input_ids"]]), torch.tensor([f["labels"]])
        logits = model(input_ids=ids).logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=IGNORE_INDEX, reduction="sum")
        (loss / count).backward()
    alone = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    attention.use_segments(model)
    loss, trained, _ = labelled_loss(model, row)
    loss.backward()
    assert int(trained) == count
    for name, grad in alone.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-6, rtol=1e-4)


def test_the_check_on_the_real_model_passes_and_catches_attention_that_mixes_examples(tiny_llama, monkeypatch):
    assert attention.unsupported_reason(tiny_llama, 100) is None
    assert attention.keeps_apart(tiny_llama, 1e-4)
    assert tiny_llama.config._attn_implementation == "sdpa"  # the check leaves the model as it was
    # A model that would ignore the segments (here: plain sdpa kept in place) fails the check.
    monkeypatch.setattr(attention, "use_segments", lambda model: model.set_attn_implementation("sdpa"))
    assert not attention.keeps_apart(tiny_llama, 1e-4)


def test_the_check_passes_in_bf16_within_its_tolerance(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype="bfloat16")
    assert attention.keeps_apart(model, 2e-2)


def test_models_segment_attention_cannot_serve_are_named(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype="float32", attn_implementation="eager")
    assert "eager" in attention.unsupported_reason(eager, 100)
    windowed = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype="float32")
    windowed.config.sliding_window = 64
    assert attention.unsupported_reason(windowed, 64) is None
    assert "sliding window (64 tokens)" in attention.unsupported_reason(windowed, 65)


def test_padded_rows_give_each_example_its_own_logits(tiny_llama_dir, features):
    import torch
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype="float32", attn_implementation="eager")
    batch = PaddedCollator(pad_token_id=0)(features)
    assert batch["input_ids"].shape == (len(features), max(len(f["input_ids"]) for f in features))
    assert real_tokens(batch) == sum(len(f["input_ids"]) for f in features)
    with torch.no_grad():
        logits = eager(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for r, feature in enumerate(features):
        n = len(feature["input_ids"])
        torch.testing.assert_close(logits[r, :n], alone_logits(eager, feature), atol=1e-5, rtol=1e-5)


def test_an_examples_mask_sees_the_prefix_and_its_own_past_and_the_cache_stays_within_its_size():
    import torch

    from slm_factory.training import attention

    mask = attention._prefix_mask(3, 2, torch.float32, torch.device("cpu"))
    seen = mask == 0
    assert seen.tolist() == [[True, True, True, False, False],
                             [True, True, True, True, False],
                             [True, True, True, True, True]]
    assert bool(torch.isneginf(mask[~seen]).all())
    assert attention._prefix_mask(3, 2, torch.float32, torch.device("cpu")) is mask  # made once, shared by layers
    stacked = attention._prefix_mask(3, 2, torch.bfloat16, torch.device("cpu"), 3)
    assert stacked.shape == (9, 5) and torch.equal(stacked.float(), mask.repeat(3, 1))
    for length in range(1, 900, 7):
        last = attention._prefix_mask(length, 60, torch.bfloat16, torch.device("cpu"), 3)
        assert sum(m.nbytes for m in attention._MASKS.values()) <= attention.MASK_CACHE_BYTES
    assert attention._prefix_mask(length, 60, torch.bfloat16, torch.device("cpu"), 3) is last  # the newest stays
