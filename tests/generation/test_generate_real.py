"""Generation against a real model: SmolLM2-135M through llama.cpp's OpenAI-compatible server and
in-process. A 135M model writes weak questions; these tests check what must hold whatever the
model says: valid JSON, right provenance, every pair traceable to its chunk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slm_factory.parsing.chunking import chunk_document
from slm_factory.records import Document

REPO = Path(__file__).resolve().parents[2]


def project(tmp_path: Path, corpus: Path, names: list[str], teacher: dict) -> Path:
    documents = tmp_path / "documents"
    documents.mkdir()
    for name in names:
        shutil.copy(corpus / name, documents / name)
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({
        "teacher": {"temperature": 0.0, "max_tokens": 256, "max_concurrency": 2, **teacher},
        "questions": {"questions_per_chunk": 2},
        "chunking": {"max_tokens": 400, "overlap_tokens": 40},
    }))
    subprocess.run([sys.executable, "-m", "slm_factory", "parse", "-q", "-c", str(config)], check=True)
    return config


def check_pairs(config: Path) -> list[dict]:
    output = config.parent / "output"
    documents = [Document.model_validate(d) for d in json.loads((output / "parsed_documents.json").read_text())]
    chunks = {c.id: c for d in documents for c in chunk_document(d, 400, 40)}
    pairs = json.loads((output / "qa_alpaca.json").read_text())
    assert pairs, "the model produced no usable pair"
    for pair in pairs:
        assert pair["instruction"].strip() and pair["output"].strip() and pair["input"] == ""
        chunk = chunks[pair["chunk_id"]]
        assert pair["source_doc"] == chunk.source_doc and pair["doc_id"] == chunk.doc_id
        assert pair["pages"] == chunk.pages and pair["section"] == chunk.heading
    assert len({p["id"] for p in pairs}) == len(pairs)
    return pairs


@pytest.mark.slow
def test_generate_with_llama_cpp_server(tmp_path: Path, corpus: Path, llama_server: str):
    config = project(tmp_path, corpus, ["edge-utf16-with-bom.txt", "edge-cp1252-encoded-multilingual.html"],
                     {"backend": "openai", "model": "smollm2", "api_base": f"{llama_server}/v1"})
    result = subprocess.run([sys.executable, "-m", "slm_factory", "generate", "-c", str(config)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "teacher openai/smollm2" in result.stdout
    pairs = check_pairs(config)
    assert {p["teacher"] for p in pairs} == {"smollm2"}
    state = json.loads((config.parent / "output" / ".state.json").read_text())
    stats = state["stages"]["generate"]["stats"]["teacher"]
    assert stats["requests"] > 0 and stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0


@pytest.mark.slow
def test_generate_with_embedded_llamacpp(tmp_path: Path, corpus: Path, smollm2_gguf: Path):
    # The embedded teacher works answer_first (questions.mode auto): the stub text gives no answer
    # worth asking about, the Word sample a sentence and a table row.
    config = project(tmp_path, corpus, ["edge-utf16-with-bom.txt", "word-sample-headings-lists-table-image.docx"],
                     {"backend": "llamacpp", "model": "smollm2"})
    result = subprocess.run([sys.executable, "-m", "slm_factory", "generate", "-c", str(config)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "questions.mode auto: answer_first" in result.stderr
    pairs = check_pairs(config)
    assert all(p["source_doc"] == "word-sample-headings-lists-table-image.docx" for p in pairs)
