"""Fixtures for teacher tests only (shared ones -- the GGUF path and llama_server -- live in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def standin_llama(smollm2_gguf: Path) -> Iterator[Any]:
    """The llama.cpp model behind the Ollama stand-in, loaded once (0.3 s, ~100 MB)."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(smollm2_gguf), n_ctx=8192, n_threads=1, verbose=False)
    yield llama
    llama.close()
