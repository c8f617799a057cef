"""Fixtures of the export tests: the SmolLM2 tokenizer of the training tests, and Go's own
text/template as a reference renderer where a Go toolchain is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA
from tests.training.conftest import smollm2_tokenizer, smollm2_tokenizer_dir  # noqa: F401


@pytest.fixture(scope="session")
def go_render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[dict[str, Any]]], list[dict[str, str]]]:
    """Runs cases through tests/data/templates/ollama_render.go (Go's text/template with Ollama's
    Execute semantics): {"template", "messages"} or {"template", "data"} -> {"out", "err"}.
    Skips where `go` is not installed (Debian: apt-get install golang-go)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain to cross-check the template interpreter with")
    folder = tmp_path_factory.mktemp("go_render")
    binary = folder / "ollama_render"
    environment = {"GOCACHE": str(folder / "cache"), "GOPATH": str(folder / "gopath"), "GOFLAGS": "-mod=mod",
                   "PATH": str(Path(go).parent), "HOME": str(folder)}
    subprocess.run([go, "build", "-o", str(binary), str(DATA / "templates" / "ollama_render.go")], check=True,
                   env=environment, capture_output=True, timeout=300)

    def render(cases: list[dict[str, Any]]) -> list[dict[str, str]]:
        done = subprocess.run([str(binary)], input=json.dumps(cases), capture_output=True, text=True, check=True,
                              timeout=120)
        return json.loads(done.stdout)

    return render
