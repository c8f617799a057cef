"""A plain LoRA layer's forward as one fused multiply-add, for the trainer's training steps.

peft computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: the scaling multiplies the wide
[tokens, out_features] output, then a second pass adds it, and the backward multiplies the wide
gradient again. Here the scaling goes on the rank-r activations and the add rides in the matmul
(``addmm(base(x), lora_A(x) * scaling, lora_B.weight.T)``): the same sum, without three passes
over a wide tensor in each of SmolLM2's 210 LoRA layers (``bench/train.py`` measures it).

Only layers where the two are the same function are switched: one active adapter, no dropout, no
DoRA or other variant, no LoRA bias, not merged. Any other layer keeps peft's forward. The weights
are untouched, so what is saved is peft's adapter as always.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import MethodType
from typing import Any


def fusable(layer: Any) -> bool:
    """Whether this peft LoRA Linear computes exactly base(x) + B(A(x)) * scaling."""
    from peft.tuners.lora.layer import Linear
    from torch import nn

    if type(layer) is not Linear or layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return False
    adapter = layer.active_adapters[0]
    if adapter not in layer.lora_A or adapter in getattr(layer, "lora_variant", {}):
        return False
    down, up = layer.lora_A[adapter], layer.lora_B[adapter]
    return (isinstance(layer.lora_dropout[adapter], nn.Identity) and type(down) is nn.Linear
            and type(up) is nn.Linear and down.bias is None and up.bias is None
            and isinstance(layer.get_base_layer(), nn.Linear))


def fused_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch
    import torch.nn.functional as F

    adapter = self.active_adapters[0]
    down, up = self.lora_A[adapter].weight, self.lora_B[adapter].weight
    same_dtype = x.dtype == down.dtype == up.dtype == self.get_base_layer().weight.dtype
    if args or kwargs or not (torch.is_autocast_enabled(x.device.type) or same_dtype):
        # adapter_names and the like, or peft's own casting between dtypes: peft's path
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    low = F.linear(x, down) * self.scaling[adapter]
    width = result.shape[-1]
    # Under autocast addmm runs in its lower precision, as the linears around it do.
    return torch.addmm(result.reshape(-1, width), low.reshape(-1, low.shape[-1]), up.t()).view(result.shape)


@contextmanager
def fused_lora(model: Any) -> Iterator[int]:
    """Switches every fusable LoRA layer of `model` to `fused_forward` for the block (yields how many)
    and gives each its own forward back after."""
    switched = [m for m in model.modules() if fusable(m)]
    for layer in switched:
        layer.forward = MethodType(fused_forward, layer)
    try:
        yield len(switched)
    finally:
        for layer in switched:
            layer.__dict__.pop("forward", None)
