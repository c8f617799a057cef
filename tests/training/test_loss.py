"""The loss on labelled positions only equals the full-logits loss, with the same LoRA gradients."""

from __future__ import annotations

import random

import pytest

from slm_factory.training import attention
from slm_factory.training.loss import labelled_loss
from slm_factory.training.masking import tokenize_with_labels
from slm_factory.training.packing import PaddedCollator, SegmentCollator

CONVERSATIONS = [
    ("Who founded Ebbenfeld?", "Ms. Quorvath founded Ebbenfeld in 1871, after the flood."),
    ("서울 청년 주택 보조금 마감일은?", "2024년 6월 30일입니다."),
    ("How tall is Mount Ostrevi?", "Mount Ostrevi is 2,417 metres tall. " * 3),
    ("Why?", "Because."),
    ("List three rivers of Talvik.", "The Umber, the Sesk and the Lowe."),
]


def features(tokenizer, seed: int) -> list[dict]:
    rng = random.Random(seed)
    chosen = rng.sample(CONVERSATIONS, k=rng.randint(2, len(CONVERSATIONS)))
    out = []
    for question, answer in chosen:
        messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question},
                    {"role": "assistant", "content": answer}]
        input_ids, labels = tokenize_with_labels(tokenizer, messages, 512)
        out.append({"input_ids": input_ids, "labels": labels})
    return out


def lora_model(tiny_llama):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                  task_type="CAUSAL_LM", init_lora_weights=False))
    model.train()
    return model


def labelled_trainer(tmp_path, model, tokenizer, batch_features, checkpointing: bool = False):
    """Our SFTTrainer subclass over these features, one process on the CPU, no bf16 autocast."""
    from datasets import Dataset
    from trl import SFTConfig

    from slm_factory.training.loss import labelled_head_trainer_class

    args = SFTConfig(output_dir=str(tmp_path), max_length=256, report_to="none", bf16=False,
                     activation_checkpointing=checkpointing, dataset_kwargs={"skip_prepare_dataset": True},
                     remove_unused_columns=False, use_cpu=True)
    dataset = Dataset.from_dict({k: [f[k] for f in batch_features] for k in ("input_ids", "labels")})
    return labelled_head_trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                         data_collator=SegmentCollator())


def lora_grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("collator_kind", ["packed", "padded"])
def test_labelled_loss_and_lora_gradients_match_the_full_logits_loss(tiny_llama, smollm2_tokenizer, seed, collator_kind):
    import torch

    model = lora_model(tiny_llama)
    pad = smollm2_tokenizer.pad_token_id
    collator = SegmentCollator() if collator_kind == "packed" else PaddedCollator(pad)
    if collator_kind == "packed":
        attention.use_segments(model)
    batch = collator(features(smollm2_tokenizer, seed))
    # The Trainer's count over accumulated micro-batches can differ from this batch's count.
    for num_items in (None, 57):
        model.zero_grad()
        plain = model(**batch).loss if num_items is None else model(**batch, num_items_in_batch=num_items).loss
        plain.backward()
        expected = lora_grads(model)
        model.zero_grad()
        ours, count, correct = labelled_loss(model, batch, num_items)
        ours.backward()
        got = lora_grads(model)
        assert torch.allclose(ours, plain, rtol=1e-5, atol=1e-6)
        assert count == int((batch["labels"][:, 1:] != -100).sum())
        assert 0 <= int(correct) <= int(count)
        assert expected.keys() == got.keys() and expected
        for name in expected:
            assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-6), name


def test_the_trainer_subclass_gives_trls_loss(tmp_path, tiny_llama, smollm2_tokenizer):
    """Our compute_loss against trl's own (fused head, every position) on the same batch and model."""
    import torch
    from trl import SFTTrainer

    model = lora_model(tiny_llama)
    attention.use_segments(model)
    batch_features = features(smollm2_tokenizer, 3)
    trainer = labelled_trainer(tmp_path, model, smollm2_tokenizer, batch_features)
    batch = SegmentCollator()(batch_features)
    trainer.model.train()
    ours = trainer.compute_loss(trainer.model, dict(batch))
    theirs = SFTTrainer.compute_loss(trainer, trainer.model, dict(batch))
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("matmul_attention", [True, False])
def test_a_bf16_base_on_cpu_trains_its_lora_in_bf16_with_fp32_weights(tmp_path, tiny_llama_dir, smollm2_tokenizer,
                                                                      monkeypatch, matmul_attention):
    """Inside the trainer's loss context (loss.lora_in_bf16) the LoRA layers get the bf16 activations
    as they are (no fp32 copy), segment attention runs as bf16 matmuls (or, switched off, the fp32
    flash kernel), the LoRA weights and gradients stay fp32, and the loss and gradients are the
    fp32-adapter path's within bf16 rounding. Outside it, peft's own casting is back."""
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from slm_factory.training import loss as loss_module
    from slm_factory.training.loss import bf16_on_cpu

    monkeypatch.setattr(loss_module, "FUSED_LORA", False)  # lora_A is called by peft's forward (fused: test_lora_forward)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM",
                                            init_lora_weights=False))
    model.train()
    attention.use_segments(model)
    assert bf16_on_cpu(model)
    lora_inputs: list = []
    first_lora_a = next(m for n, m in model.named_modules() if n.endswith("lora_A.default"))
    first_lora_a.register_forward_hook(lambda module, args, out: lora_inputs.append(args[0].dtype))
    monkeypatch.setattr(attention, "MATMUL_ON_CPU", matmul_attention)
    attention_inputs: list = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda q, *a, **k: attention_inputs.append(("sdpa", q.dtype)) or sdpa(q, *a, **k))
    segments = attention.matmul_segments
    monkeypatch.setattr(attention, "matmul_segments",
                        lambda q, *a, **k: attention_inputs.append(("matmul", q.dtype)) or segments(q, *a, **k))

    batch_features = features(smollm2_tokenizer, 1)
    trainer = labelled_trainer(tmp_path, model, smollm2_tokenizer, batch_features)
    batch = SegmentCollator()(batch_features)

    def loss_and_grads(in_context: bool):
        model.zero_grad()
        lora_inputs.clear(), attention_inputs.clear()
        if in_context:
            with trainer.compute_loss_context_manager():
                loss = trainer.compute_loss(model, dict(batch))
        else:
            loss, _, _ = labelled_loss(model, dict(batch))
        loss.backward()
        return loss.detach(), lora_grads(model), list(lora_inputs), list(attention_inputs)

    fp32_loss, fp32_grads, fp32_lora_in, _ = loss_and_grads(in_context=False)
    loss, grads, lora_in, attention_in = loss_and_grads(in_context=True)
    assert fp32_lora_in == [torch.float32] and lora_in == [torch.bfloat16]
    assert attention_in and set(attention_in) == ({("matmul", torch.bfloat16)} if matmul_attention
                                                  else {("sdpa", torch.float32)})
    assert torch.allclose(loss.float(), fp32_loss.float(), rtol=2e-2)
    assert grads.keys() == fp32_grads.keys() and grads
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, name
        cosine = F.cosine_similarity(grad.flatten(), fp32_grads[name].flatten(), dim=0)
        assert cosine > 0.98, (name, float(cosine))
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    _, _, after, _ = loss_and_grads(in_context=False)
    assert after == [torch.float32]  # peft's casting is restored when the context ends


@pytest.mark.parametrize("rows", [0, 1, 3, 7, 16])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("block", [1, 2, 32])
def test_the_chunked_head_loss_equals_cross_entropy_over_the_whole_logits(monkeypatch, rows, dtype, block):
    """Loss, top-1 count and the hidden states' gradient as F.cross_entropy over the full logits
    gives them, for row counts below, at and across the chunk size (3 here) and the softmax's blocks
    within a chunk (1, 2 or the whole chunk), and for a scaled upstream gradient (the trainer divides
    the sum by the token count)."""
    import torch
    import torch.nn.functional as F

    from slm_factory.training import loss as loss_module

    monkeypatch.setattr(loss_module, "HEAD_CHUNK", 3)
    monkeypatch.setattr(loss_module, "HEAD_BLOCK", block)
    generator = torch.Generator().manual_seed(rows)
    kind = getattr(torch, dtype)
    weight = torch.randn(50, 8, generator=generator).to(kind)
    hidden = torch.randn(rows, 8, generator=generator).to(kind)
    targets = torch.randint(0, 50, (rows,), generator=generator)
    if rows:
        targets[0] = int(F.linear(hidden[:1], weight).argmax())  # at least one right guess to count

    ours_in = hidden.clone().requires_grad_()
    total, correct = loss_module.head_cross_entropy(ours_in, weight, targets)
    (total / 4).backward()
    reference_in = hidden.clone().requires_grad_()
    logits = F.linear(reference_in, weight).float()
    expected = F.cross_entropy(logits, targets, reduction="sum")
    (expected / 4).backward()

    loose = dtype == "bfloat16"
    assert total.dtype == torch.float32
    assert torch.allclose(total, expected.detach(), rtol=1e-3 if loose else 1e-5, atol=1e-4)
    assert int(correct) == int((logits.argmax(dim=-1) == targets).sum()) and (int(correct) >= 1 or not rows)
    assert ours_in.grad.dtype == kind and ours_in.grad.shape == hidden.shape
    assert torch.allclose(ours_in.grad.float(), reference_in.grad.float(), rtol=2e-2 if loose else 1e-5,
                          atol=2e-3 if loose else 1e-6)


def test_the_chunked_head_loss_never_keeps_the_logits_for_the_backward_pass():
    """What autograd saves for the backward pass is the size of the hidden states, not of the logits."""
    import torch

    from slm_factory.training.loss import head_cross_entropy

    saved: list = []
    weight = torch.randn(1000, 16)
    hidden = torch.randn(40, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        total, _ = head_cross_entropy(hidden, weight, torch.randint(0, 1000, (40,)))
    total.backward()
    assert saved and all(shape.numel() <= hidden.numel() for shape in saved), saved


def test_a_trained_head_keeps_autograd_through_the_whole_logits(tiny_llama, smollm2_tokenizer):
    """A head that trains (modules_to_save, or an untied head made trainable) gets its gradient: the
    chunked loss serves only a frozen head without bias."""
    model = lora_model(tiny_llama)
    head = model.get_base_model().get_output_embeddings()
    head.weight.requires_grad_(True)
    batch = PaddedCollator(smollm2_tokenizer.pad_token_id)(features(smollm2_tokenizer, 0))
    loss, _, _ = labelled_loss(model, batch)
    loss.backward()
    assert head.weight.grad is not None and float(head.weight.grad.abs().sum()) > 0
