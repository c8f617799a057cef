"""The parse cache: a rerun parses only what changed, and what it reuses is exactly what a fresh
parse gives. Real parsers on the bundled sample documents plus PDFs built here (one with
Hangul line wraps, which the stage settles with Kiwi after parsing)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import pymupdf
import pytest

from slm_factory.config import parse_config
from slm_factory.parsing import stage
from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.cache import (
    _NOT_SHAPING,
    LIBRARIES_MEMO,
    _libraries,
    _library_versions,
    _sources,
    cache_key,
    parser_version,
)
from slm_factory.pipeline import StageContext, StageResult
from slm_factory.workspace import Workspace

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "slm_factory" / "demo" / "documents"
UNTITLED = "This note has no title line of its own, so its title is the name of its file. " * 3


def hangul_pdf(path: Path, words: list[list[str]]) -> Path:
    """Hangul words placed one by one (as Hancom exports them), lines wrapping inside and between words."""
    pdf = pymupdf.open()
    page = pdf.new_page(width=595, height=842)
    for row, line in enumerate(words):
        x = 72.0
        for word in line:
            page.insert_text((x, 100 + 20 * row), word, fontname="korea", fontsize=12)
            x += 12 * len(word) + 7
    pdf.save(path)
    return path


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    folder = tmp_path / "documents"
    shutil.copytree(SAMPLE, folder)
    hangul_pdf(folder / "bill.pdf", [["현행법은", "기후위기", "대응을", "위해", "국가", "탄소중"],
                                     ["립", "기본계획을", "수립하도록", "하고", "남은"], ["기간에", "의견을", "듣는다."]])
    (folder / "notes-2024.txt").write_text(UNTITLED, encoding="utf-8")
    return folder


def context(tmp_path: Path, documents: Path, output: str = "output", **parsing: object) -> StageContext:
    raw = {"paths": {"documents": str(documents), "output": str(tmp_path / output)}, "parsing": parsing}
    config = parse_config(raw, root=tmp_path)
    return StageContext(config=config, workspace=Workspace(config.output_dir))


def run(ctx: StageContext) -> StageResult:
    result = stage.run(ctx)
    assert not result.failed, result.lines
    return result


def parsed_json(ctx: StageContext) -> bytes:
    return ctx.workspace.path("parsed_documents").read_bytes()


def entries(ctx: StageContext) -> dict[str, int]:
    """Cache entry names and their inodes: a rewritten entry gets a new inode (temp file + rename)."""
    return {path.name: path.stat().st_ino for path in ctx.workspace.parse_cache_dir.glob("*.json")}


def test_a_rerun_parses_nothing_and_writes_the_same_documents(tmp_path, documents, caplog):
    ctx = context(tmp_path, documents)
    count = len(list(documents.iterdir()))
    first = run(ctx)
    failed = first.counts["failed"]  # never cached: parsed again on every run
    assert first.extra["cache"] == {"reused": 0, "parsed": count} and failed < count // 2
    written, stored = parsed_json(ctx), entries(ctx)
    assert len(stored) == count - failed
    assert written == json.dumps(json.loads(written), ensure_ascii=False, indent=2).encode()  # the usual layout
    with caplog.at_level(logging.INFO, logger="slm_factory"):
        again = run(ctx)
    assert again.extra["cache"] == {"reused": count - failed, "parsed": failed}
    assert entries(ctx) == stored  # no entry was written again, so no file was parsed again
    assert parsed_json(ctx) == written
    assert f"{count - failed} of {count} documents unchanged" in caplog.text


def test_an_added_document_is_the_only_one_parsed_and_all_read_as_in_a_fresh_run(tmp_path, documents):
    ctx = context(tmp_path, documents)
    failed = run(ctx).counts["failed"]
    stored = entries(ctx)
    (documents / "sub").mkdir()
    hangul_pdf(documents / "sub" / "minutes.pdf", [["회의에서", "의견을", "최대"], ["한", "듣고", "탄소중립을"], ["논의했다."]])
    result = run(ctx)
    assert result.extra["cache"] == {"reused": len(stored), "parsed": 1 + failed}
    assert {name: inode for name, inode in entries(ctx).items() if name in stored} == stored
    fresh = context(tmp_path, documents, output="fresh")
    run(fresh)
    assert parsed_json(ctx) == parsed_json(fresh)
    settled = json.loads(parsed_json(ctx))
    assert any("탄소중립 기본계획을" in doc["text"] for doc in settled)  # wraps were settled, cached or not


def test_a_changed_option_parses_everything_again(tmp_path, documents):
    for path in documents.iterdir():
        if path.suffix not in (".pdf", ".hwpx"):
            path.unlink()
    ctx = context(tmp_path, documents)
    run(ctx)
    for index, parsing in enumerate(({"pdf": {"extract_tables": False}}, {"hwpx": {"apply_spacing": False}}, {})):
        changed = context(tmp_path, documents, **parsing)
        result = run(changed)
        assert result.extra["cache"] == {"reused": 0, "parsed": 3}, parsing
        assert len(entries(changed)) == 3 - result.counts["failed"]  # entries for other options are pruned
        fresh = context(tmp_path, documents, output=f"fresh{index}", **parsing)
        run(fresh)
        assert parsed_json(changed) == parsed_json(fresh)


def test_every_option_that_shapes_a_document_is_in_the_key():
    base = ParseOptions()
    key = cache_key("0" * 64, "pdf", base, "v1")
    for field in dataclasses.fields(ParseOptions):
        value = getattr(base, field.name)
        other = (not value) if isinstance(value, bool) else "a password"
        changed = cache_key("0" * 64, "pdf", dataclasses.replace(base, **{field.name: other}), "v1")
        assert (changed != key) == (field.name not in _NOT_SHAPING), field.name
    others = [cache_key("0" * 64, "txt", base, "v1"), cache_key("1" * 64, "pdf", base, "v1"),
              cache_key("0" * 64, "pdf", base, "v2")]
    assert key not in others and len(set(others)) == 3


def test_damaged_entries_are_parsed_again_without_a_word(tmp_path, documents, caplog):
    ctx = context(tmp_path, documents)
    failed = run(ctx).counts["failed"]
    written = parsed_json(ctx)
    paths = sorted(ctx.workspace.parse_cache_dir.glob("*.json"))
    other = paths[1].read_bytes()  # given to paths[0], the last one spoiled
    damage = [
        lambda data: data[: len(data) // 2],
        lambda data: b"",
        lambda data: b"not json at all",
        lambda data: b"\xff\xfe\x00garbage",
        lambda data: b"[1, 2, 3]",
        lambda data: b'{"stem": null}',
        lambda data: json.dumps({"stem": None, "document": {"id": 5, "path": []}}).encode(),
        lambda data: other,  # another file's entry: its id is not this file's content hash
    ]
    for path, spoil in zip(paths[1:] + paths[:1], damage):
        path.write_bytes(spoil(path.read_bytes()))
    spoiled = min(len(paths), len(damage))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="slm_factory"):
        result = run(ctx)
    assert result.extra["cache"] == {"reused": len(paths) - spoiled, "parsed": spoiled + failed}
    assert result.counts["failed"] == failed and len(caplog.records) == failed  # only the files that fail anyway
    assert parsed_json(ctx) == written
    assert run(ctx).extra["cache"]["parsed"] == failed  # the damaged entries were replaced


def test_a_renamed_or_moved_file_is_read_from_the_cache_under_its_new_path(tmp_path, documents):
    ctx = context(tmp_path, documents)
    failed = run(ctx).counts["failed"]
    titles = {doc["path"]: doc["title"] for doc in json.loads(parsed_json(ctx))}
    assert titles[str(documents / "notes-2024.txt")] == "notes-2024"  # a title taken from the file name
    (documents / "moved").mkdir()
    for path in sorted(p for p in documents.iterdir() if p.is_file()):
        path.rename(documents / "moved" / f"renamed-{path.name}")
    result = run(ctx)
    # only documents titled by their file name are read again: their title changes with the name
    named = {Path(path).stem for path, title in titles.items() if title == Path(path).stem}
    assert result.extra["cache"] == {"reused": len(titles) - len(named), "parsed": len(named) + failed}
    moved = json.loads(parsed_json(ctx))
    assert {doc["path"] for doc in moved} == {str(p) for p in (documents / "moved").iterdir()}
    assert {doc["title"] for doc in moved} == (set(titles.values()) - named) | {f"renamed-{n}" for n in named}
    fresh = context(tmp_path, documents, output="fresh")
    run(fresh)
    assert parsed_json(ctx) == parsed_json(fresh)
    (documents / "moved" / "renamed-notes-2024.txt").rename(documents / "notes-2024.txt")
    # the entry bound to its first name went with the last run's pruning; the new one stays
    assert run(ctx).extra["cache"]["parsed"] == 1 + failed and run(ctx).extra["cache"]["parsed"] == failed


def test_entries_of_removed_files_and_stale_temp_files_are_pruned(tmp_path, documents):
    ctx = context(tmp_path, documents)
    run(ctx)
    folder = ctx.workspace.parse_cache_dir
    before = entries(ctx)
    stale, live = folder / ".abc.json.x1.tmp", folder / ".abc.json.x2.tmp"
    stale.write_bytes(b"{")
    live.write_bytes(b"{")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    (documents / "notes-2024.txt").unlink()
    run(ctx)
    after = entries(ctx)
    assert len(after) == len(before) - 1 and set(after) < set(before)
    assert not stale.exists() and live.exists()


def test_failures_and_encrypted_pdfs_are_never_cached(tmp_path):
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "empty.pdf").write_bytes(b"")
    (documents / "note.txt").write_text("A note.\n\nIt parses.", encoding="utf-8")
    locked = pymupdf.open()
    locked.new_page().insert_text((72, 72), "Text behind a password.", fontsize=11)
    locked.save(documents / "locked.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="s3cret", owner_pw="own3r")
    ctx = context(tmp_path, documents, pdf={"password": "s3cret"})
    first = run(ctx)
    assert first.counts == {"parsed": 2, "warned": 0, "failed": 1}
    assert len(entries(ctx)) == 1  # the note only
    again = run(ctx)
    assert again.extra["cache"] == {"reused": 1, "parsed": 2} and again.counts == first.counts
    for entry in ctx.workspace.parse_cache_dir.iterdir():
        assert b"s3cret" not in entry.read_bytes() and b"behind a password" not in entry.read_bytes()
    without = context(tmp_path, documents)
    result = run(without)
    assert result.counts == {"parsed": 1, "warned": 0, "failed": 2}


def test_the_parser_version_follows_the_parsing_libraries_and_their_dependencies(tmp_path):
    versions = _library_versions({"pymupdf", "kiwipiepy", "lxml", "os", "re"})
    assert {"pymupdf", "kiwipiepy", "lxml"} <= set(versions)
    assert "kiwipiepy-model" in versions  # Kiwi's model data: a dependency, not an import
    _, imported = _sources()
    assert {"pymupdf", "lxml", "kiwipiepy"} <= imported and not imported & {"re", "os", "slm_factory"}
    memo_path = tmp_path / LIBRARIES_MEMO
    libraries = _libraries(imported, memo_path)
    memo = json.loads(memo_path.read_text())
    assert memo["libraries"] == libraries and "pymupdf" in memo["versions"]
    # a memo written for other installed packages is not trusted; a damaged one is replaced
    memo_path.write_text(json.dumps({**memo, "installed": "other", "libraries": "forged"}))
    assert _libraries(imported, memo_path) == libraries
    memo_path.write_bytes(b"\x00{")
    assert _libraries(imported, memo_path) == libraries and json.loads(memo_path.read_text()) == memo
    assert len(parser_version(tmp_path)) == 16


def test_the_parser_version_changes_with_any_source_of_the_parsing_package(tmp_path):
    """No constant to bump: editing, adding or renaming a parsing module, or editing records.py,
    gives another version; a file outside them does not."""
    package = tmp_path / "slm_factory"
    shutil.copytree(Path(stage.__file__).parent, package / "parsing", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(Path(stage.__file__).parents[1] / "records.py", package / "records.py")
    seen = {_sources(package)[0]}
    changes = [
        lambda: (package / "parsing" / "text.py").write_text((package / "parsing" / "text.py").read_text() + "\n# x\n"),
        lambda: (package / "parsing" / "new_format.py").write_text("import lxml\n"),
        lambda: (package / "parsing" / "new_format.py").rename(package / "parsing" / "newer_format.py"),
        lambda: (package / "records.py").write_text((package / "records.py").read_text().replace("str", "str ", 1)),
    ]
    for change in changes:
        change()
        seen.add(_sources(package)[0])
    assert len(seen) == len(changes) + 1
    (package / "pipeline.py").write_text("# not a parser\n")
    (package / "parsing" / "notes.txt").write_text("not source")
    assert _sources(package)[0] in seen


def test_chosen_documents_alone_are_parsed_and_run_resume_parses_all_again(tmp_path, documents):
    """The wizard's "some documents": ctx.options["only_documents"], paths under the folder. The
    option is part of parse's fingerprint, so the next `run --resume` parses the whole folder."""
    from slm_factory.pipeline import run_pipeline, stage_named, stage_status

    hangul_pdf(documents / "bill.pdf", [["현행법은", "기후위기"]])
    (documents / "sub").mkdir()
    (documents / "sub" / "note.txt").write_text(UNTITLED, encoding="utf-8")
    chosen = ["notes-2024.txt", "sub/note.txt"]
    ctx = context(tmp_path, documents)
    ctx.options["only_documents"] = chosen
    runs = run_pipeline(ctx, "parse", "parse")
    assert runs[0].status == "ran"
    def relative(parsed: bytes) -> set[str]:
        return {Path(doc["path"]).relative_to(documents).as_posix() for doc in json.loads(parsed)}

    assert relative(parsed_json(ctx)) == set(chosen)
    plain = context(tmp_path, documents)
    assert not next(row for row in stage_status(plain.config, plain.workspace) if row.name == "parse").up_to_date
    run_pipeline(plain, "parse", "parse", resume=True)
    everything = relative(parsed_json(plain))
    assert len(everything) > len(chosen) and set(chosen) <= everything
    assert stage_named("parse").shaping_options == ("only_documents",)
    ctx.options["only_documents"] = ["gone.txt"]
    result = stage.run(ctx)
    assert result.failed and result.lines == [f"none of the chosen documents is in {documents} any more"]
