"""Training the student: its model and tokenizer (models.py), examples as chat messages
(formats.py), the `convert` stage (convert.py) and the `train` stage.

Heavy libraries (torch, transformers) are imported inside the functions that use them.
"""

from slm_factory.training.formats import (
    dialogue_messages, encode, pair_messages, render, system_prompt, token_counts,
)
from slm_factory.training.models import load_student, load_tokenizer, resolve_student

__all__ = ["dialogue_messages", "encode", "load_student", "load_tokenizer", "pair_messages", "render",
           "resolve_student", "system_prompt", "token_counts"]
