"""The whole shared corpus through `slm-factory parse`, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FAILS = {
    "edge-empty-zero-bytes.pdf": "empty file",
    "edge-wrong-extension-jpeg-bytes.pdf": "JPEG",
    "edge-truncated-zip.docx": "zip",
    "edge-encrypted-ooxml-cfb-password-pass.docx": "password",
    "encrypted-lorem-user-password-test.pdf": "password",
}
NEEDS_OCR = {"scanned-cn-customs-admin-penalty-decision-image-only.pdf"}


@pytest.fixture(scope="module")
def parsed(corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("corpus-project")
    config = root / "project.yaml"
    config.write_text(yaml.safe_dump({"paths": {"documents": str(corpus), "output": "output"}}))
    result = subprocess.run(
        [sys.executable, "-m", "slm_factory", "parse", "-c", str(config)],
        capture_output=True, text=True, timeout=900,
    )
    documents = json.loads((root / "output" / "parsed_documents.json").read_text(encoding="utf-8"))
    return result, {Path(d["path"]).name: d for d in documents}


@pytest.mark.slow
def test_parse_finishes_with_counts_and_exit_zero(parsed):
    result, _ = parsed
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fmt in ("pdf", "hwpx", "docx", "html", "txt", "md"):
        assert fmt in result.stdout


@pytest.mark.slow
def test_every_corpus_file_is_a_document_or_one_clear_line(corpus: Path, parsed):
    result, documents = parsed
    names = sorted(p.name for p in corpus.iterdir() if p.suffix.lower() != ".tsv")
    for name in names:
        if name in FAILS:
            lines = [line for line in result.stderr.splitlines() if name in line]
            assert lines and FAILS[name].lower() in lines[0].lower(), (name, lines)
            assert name not in documents
        elif name in NEEDS_OCR:
            assert name not in documents
            assert any(name in line and "OCR" in line for line in result.stderr.splitlines())
        else:
            document = documents.get(name)
            assert document is not None, f"{name} was not parsed"
            assert len(document["text"]) > 100, name
            assert document["id"] and document["format"] and document["title"]
            assert document["sections"] and document["language"]


@pytest.mark.slow
def test_documents_carry_their_structure(parsed):
    _, documents = parsed
    bill = documents["kr-bill-2125318-carbon-neutrality-act-amendment.pdf"]
    assert bill["language"] == "ko" and bill["pages"] == 10
    assert [s["page"] for s in bill["sections"]][:1] == [1]
    table_docs = [d for d in documents.values() if d["tables"]]
    assert {"pdf", "hwpx", "docx", "html"} <= {d["format"] for d in table_docs}
    for document in table_docs:
        table = document["tables"][0]
        assert table["rows"] and table["markdown"].startswith("|")
        block_tables = [b["table"] for s in document["sections"] for b in s["blocks"] if b["kind"] == "table"]
        assert sorted(block_tables) == list(range(len(document["tables"])))


@pytest.mark.slow
def test_hangul_wraps_are_settled_in_the_stage(parsed):
    """Workers leave Hangul line wraps undecided; the stage decides them with one Kiwi."""
    _, documents = parsed
    minutes = documents["kr-national-assembly-env-labor-committee-minutes-2024-05-07.pdf"]
    assert "남은 기간에" in minutes["text"] and "우리 위원회를" in minutes["text"]
    for document in documents.values():
        blocks = [b["text"] for s in document["sections"] for b in s["blocks"]]
        strings = [document["text"], document["title"], *blocks, *(s["title"] for s in document["sections"])]
        assert not any("\x00" in text for text in strings), document["path"]
        assert document["text"] == "\n\n".join("\n\n".join(b["text"] for b in s["blocks"] if b["text"])
                                               for s in document["sections"] if s["blocks"])
