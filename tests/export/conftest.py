"""The SmolLM2 tokenizer fixtures of the training tests, shared with the export tests."""

from tests.training.conftest import smollm2_tokenizer, smollm2_tokenizer_dir  # noqa: F401
