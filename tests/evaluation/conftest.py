"""The training fixtures (SmolLM2 tokenizer, tiny random Llama) serve the evaluation tests too."""

from tests.training.conftest import smollm2_tokenizer, smollm2_tokenizer_dir, tiny_llama_dir  # noqa: F401


def noisy_student(folder, seed: int = 3):
    """The tiny byte-level student (tests/training/tiny.py) with weights shaken hard enough that
    greedy answers are long and differ between questions (its fresh random init answers nothing)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.training.tiny import save_tiny_student

    save_tiny_student(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(folder)
    return folder
