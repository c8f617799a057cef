from __future__ import annotations

from pathlib import Path

import pytest

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.pdf", b"", "empty.pdf: empty file (0 bytes)"),
        ("photo.pdf", b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\0" * 64, "photo.pdf: the file is a JPEG image, not a PDF document"),
        ("old.hwp", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64, "old.hwp: binary HWP is not supported; open it in Hangul and save as HWPX"),
        ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64, "locked.docx: password-protected"),
        ("text.docx", b"just some text", "text.docx: not a zip container"),
        ("notpdf.pdf", b"hello world", "notpdf.pdf: no PDF header"),
    ],
)
def test_bytes_that_contradict_the_extension_are_one_clear_line(tmp_path: Path, name: str, data: bytes, reason: str):
    path = tmp_path / name
    path.write_bytes(data)
    outcome = parse_file(path, ParseOptions())
    assert outcome.document is None and outcome.status == "failed"
    assert outcome.error.startswith(reason)
    assert "\n" not in outcome.error


def test_unreadable_file_is_reported_not_raised(tmp_path: Path):
    outcome = parse_file(tmp_path / "gone.txt", ParseOptions())
    assert outcome.status == "failed" and "gone.txt: cannot read the file" in outcome.error


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("edge-empty-zero-bytes.pdf", "empty file"),
        ("edge-wrong-extension-jpeg-bytes.pdf", "JPEG image"),
        ("edge-truncated-zip.docx", "edge-truncated-zip.docx: "),
        ("edge-encrypted-ooxml-cfb-password-pass.docx", "password-protected"),
    ],
)
def test_corpus_bad_inputs(corpus: Path, name: str, reason: str):
    outcome = parse_file(corpus / name, ParseOptions())
    assert outcome.status == "failed" and reason in outcome.error
