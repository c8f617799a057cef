"""lora_forward.fused_lora: the same loss and LoRA gradients as peft's own forward, on the layers it may switch."""

from __future__ import annotations

import pytest

from slm_factory.training.lora_forward import fused_lora
from slm_factory.training.packing import SegmentCollator

from .test_loss import features, labelled_trainer, lora_grads


def peft_model(base, **options):
    from peft import LoraConfig, get_peft_model

    settings = {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "task_type": "CAUSAL_LM",
                "init_lora_weights": False, **options}
    model = get_peft_model(base, LoraConfig(**settings))
    model.train()
    return model


def loss_and_grads(model, batch, fused: bool):
    from contextlib import nullcontext

    model.zero_grad()
    with fused_lora(model) if fused else nullcontext():
        loss = model(**batch).loss
        loss.backward()
    return loss.detach(), lora_grads(model)


@pytest.mark.parametrize("seed", range(3))
def test_fused_layers_give_peft_s_loss_and_gradients(tiny_llama, smollm2_tokenizer, seed):
    import torch
    from peft.tuners.lora.layer import Linear

    model = peft_model(tiny_llama, lora_alpha=5 + seed)  # a scaling other than 2 as well
    batch = SegmentCollator(share_prefix=False)(features(smollm2_tokenizer, seed))
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "labels")}
    expected_loss, expected = loss_and_grads(model, batch, fused=False)
    loss, got = loss_and_grads(model, batch, fused=True)
    assert torch.allclose(loss, expected_loss, rtol=1e-5)
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-6), name
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    with fused_lora(model) as switched:
        assert switched == len(layers) > 0
        assert all("forward" in m.__dict__ for m in layers)
    assert not any("forward" in m.__dict__ for m in layers)  # peft's forward is back


@pytest.mark.parametrize("options", [{"lora_dropout": 0.1}, {"use_dora": True}, {"lora_bias": True}])
def test_layers_that_compute_something_else_keep_peft_s_forward(tiny_llama, options):
    model = peft_model(tiny_llama, **options)
    with fused_lora(model) as switched:
        assert switched == 0


def test_a_disabled_adapter_is_not_switched(tiny_llama):
    model = peft_model(tiny_llama)
    with model.disable_adapter(), fused_lora(model) as switched:
        assert switched == 0


def test_a_bf16_base_under_autocast_stays_bf16_and_matches_peft_within_rounding(tiny_llama_dir, smollm2_tokenizer):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from slm_factory.training.loss import lora_in_bf16

    model = peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16))
    row = SegmentCollator(share_prefix=False)(features(smollm2_tokenizer, 1))
    batch = {k: v for k, v in row.items() if k in ("input_ids", "labels")}
    with lora_in_bf16(model):
        expected_loss, expected = loss_and_grads(model, batch, fused=False)
        outputs: list = []
        first = next(m for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A"))
        handle = first.register_forward_hook(lambda module, args, out: outputs.append(out.dtype))
        loss, got = loss_and_grads(model, batch, fused=True)
        handle.remove()
    assert outputs == [torch.bfloat16]
    assert torch.allclose(loss.float(), expected_loss.float(), rtol=1e-2)
    for name, grad in got.items():
        assert grad.dtype == torch.float32
        assert F.cosine_similarity(grad.flatten(), expected[name].flatten(), dim=0) > 0.99, name


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_trainer_s_loss_context_switches_the_layers_unless_activations_are_recomputed(
        tmp_path, tiny_llama, smollm2_tokenizer, checkpointing):
    """Activation checkpointing recomputes in the backward pass, outside the loss context, so it keeps
    peft's forward throughout."""
    from peft.tuners.lora.layer import Linear

    trainer = labelled_trainer(tmp_path, peft_model(tiny_llama), smollm2_tokenizer, features(smollm2_tokenizer, 0),
                               checkpointing=checkpointing)
    layers = [m for m in trainer.model.modules() if isinstance(m, Linear)]
    with trainer.compute_loss_context_manager():
        switched = ["forward" in m.__dict__ for m in layers]
    assert layers and all(switched) != checkpointing and (any(switched) == (not checkpointing))
    assert not any("forward" in m.__dict__ for m in layers)
