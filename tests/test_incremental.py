"""`update`: what changed in the documents folder, decided by content; and, end to end with SmolLM2
behind a real llama.cpp server, that an update asks the teacher only about new and changed
documents, removes every pair of deleted and changed ones (held-out probes included), and that a
rename costs nothing."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from slm_factory import incremental
from slm_factory.incremental import Changes, detect, saved_hashes

REPO = Path(__file__).resolve().parents[1]


# -- detect ------------------------------------------------------------------------------------


def test_first_update_counts_every_document_as_added():
    changes = detect({"b.txt": "2", "a.txt": "1"}, None)
    assert changes.first and changes.added == ["a.txt", "b.txt"] and changes.any


def test_added_changed_deleted_renamed_and_unchanged():
    saved = {"same.txt": "s", "edit.txt": "e1", "gone.txt": "g", "old-name.txt": "r"}
    current = {"same.txt": "s", "edit.txt": "e2", "new.txt": "n", "new-name.txt": "r"}
    changes = detect(current, saved)
    assert changes == Changes(added=["new.txt"], changed=["edit.txt"], deleted=["gone.txt"],
                              renamed=[("old-name.txt", "new-name.txt")], unchanged=["same.txt"])
    assert changes.summary() == "1 added, 1 changed, 1 deleted, 1 renamed, 1 unchanged"


def test_nothing_changed_is_not_any():
    changes = detect({"a.txt": "1", "sub/b.md": "2"}, {"a.txt": "1", "sub/b.md": "2"})
    assert not changes.any and changes.unchanged == ["a.txt", "sub/b.md"]


def test_a_removed_duplicate_deletes_nothing():
    """Two paths with the same bytes, one removed: the content is still there, so no pair goes."""
    changes = detect({"a.txt": "x"}, {"a.txt": "x", "copy.txt": "x"})
    assert changes.deleted == [] and changes.unchanged == ["a.txt"] and not changes.added


@pytest.mark.parametrize("seed", range(200))
def test_every_path_lands_in_exactly_one_class(seed):
    """Random folders before and after (edits, deletions, renames, copies, new files): each current
    path is added, changed, renamed-to or unchanged, once; each saved path that is gone is deleted
    or renamed-from, unless its bytes are still under another path; a deleted path's bytes are
    nowhere now."""
    rng = random.Random(seed)
    contents = [f"h{i}" for i in range(12)]
    saved = {f"d{i}.txt": rng.choice(contents) for i in range(rng.randint(0, 10))}
    current: dict[str, str] = {}
    for path, digest in saved.items():
        action = rng.choice(["keep", "edit", "delete", "rename"])
        if action == "keep":
            current[path] = digest
        elif action == "edit":
            current[path] = rng.choice(contents)
        elif action == "rename":
            current[f"renamed-{path}"] = digest
    for i in range(rng.randint(0, 4)):
        current[f"new{i}.txt"] = rng.choice(contents)
    changes = detect(current, saved)

    current_classes = [*changes.added, *changes.changed, *(new for _, new in changes.renamed), *changes.unchanged]
    assert sorted(current_classes) == sorted(current)
    old_renamed = [old for old, _ in changes.renamed]
    assert len(set(old_renamed)) == len(old_renamed)
    assert not set(changes.deleted) & set(old_renamed)
    for path in (*changes.deleted, *old_renamed):
        assert path in saved and path not in current
    for path in changes.deleted:
        assert saved[path] not in current.values()
    for old, new in changes.renamed:
        assert saved[old] == current[new]
    for path in changes.changed:
        assert saved[path] != current[path]
    for path in changes.added:
        assert path not in saved
    gone = set(saved) - set(current)
    assert gone - set(changes.deleted) - set(old_renamed) <= {p for p in gone if saved[p] in current.values()}


# -- the hash file -----------------------------------------------------------------------------


def test_hash_file_round_trip_and_the_original_shape(tmp_path):
    path = tmp_path / "out" / "document_hashes.json"
    assert saved_hashes(path) is None
    incremental.save_hashes(path, {"b.pdf": "2" * 64, "한글 문서.hwpx": "1" * 64})
    assert saved_hashes(path) == {"b.pdf": "2" * 64, "한글 문서.hwpx": "1" * 64}
    assert "한글 문서.hwpx" in path.read_text(encoding="utf-8")  # readable, not \\u escapes
    assert [p.name for p in path.parent.iterdir()] == ["document_hashes.json"]  # no temp file left
    # The original slm-factory wrote {file name: sha256} too: its file is read as it is.
    path.write_text(json.dumps({"policy.hwpx": "a" * 64}), encoding="utf-8")
    assert saved_hashes(path) == {"policy.hwpx": "a" * 64}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"a.txt": 3}', "", "\udcff"])
def test_an_unreadable_hash_file_is_one_warning_and_counts_as_none(tmp_path, caplog, content):
    path = tmp_path / "document_hashes.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with caplog.at_level("WARNING", logger="slm_factory"):
        assert saved_hashes(path) is None
    assert len(caplog.records) == 1 and "document_hashes.json" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()


def test_current_hashes_are_the_files_parse_reads(tmp_path):
    from slm_factory.config import parse_config
    from slm_factory.pipeline import StageContext
    from slm_factory.workspace import Workspace

    documents = tmp_path / "documents"
    (documents / "sub").mkdir(parents=True)
    (documents / "a.txt").write_text("alpha", encoding="utf-8")
    (documents / "sub" / "b.md").write_text("beta", encoding="utf-8")
    (documents / ".hidden.txt").write_text("x", encoding="utf-8")
    (documents / "image.png").write_bytes(b"\x89PNG")
    config = parse_config({"paths": {"documents": str(documents), "output": str(tmp_path / "output")}}, root=tmp_path)
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    hashes = incremental.current_hashes(ctx)
    assert sorted(hashes) == ["a.txt", "sub/b.md"]
    assert hashes["a.txt"] == incremental.file_sha256(documents / "a.txt") and len(hashes["a.txt"]) == 64
    from slm_factory.parsing.base import file_id

    assert incremental.doc_id(hashes["a.txt"]) == file_id(b"alpha")  # pairs name documents by this id


# -- end to end: SmolLM2 behind a real llama.cpp server, every request recorded --------------------


class RecordingProxy:
    """A real HTTP server in front of the llama.cpp server: forwards every request as it is and
    keeps the bodies of the POSTs (the teacher's requests), so a test sees what the teacher was
    asked. Not a stand-in: the replies are the real server's."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.bodies = upstream, []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if body is not None:
                    proxy.bodies.append(json.loads(body))
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command,
                                                 headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                try:
                    with urllib.request.urlopen(request, timeout=600) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, payload = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def prompts(self) -> list[str]:
        return [" ".join(str(m.get("content", "")) for m in body.get("messages", [])) for body in self.bodies
                if isinstance(body, dict)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def grams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = text.split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def asked_about(prompts: list[str], document: str) -> int:
    """How many teacher requests carry a passage of `document` (8 words in a row)."""
    wanted = grams(document)
    return sum(1 for prompt in prompts if grams(prompt) & wanted)


def slices(count: int) -> list[str]:
    """`count` texts of ~1,500 characters: consecutive paragraphs of the Tolstoy sample, none shared."""
    text = (REPO / "tests/data/curation/en-tolstoy-war-and-peace-part.txt").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 80]
    out, current = [], []
    for paragraph in paragraphs:
        current.append(paragraph)
        if sum(map(len, current)) > 1400:
            out.append("\n\n".join(current))
            current = []
    assert len(out) >= count
    return out[:count]


def pairs_of(output: Path, name: str) -> list[dict]:
    path = output / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def update(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slm_factory", "update", "-c", str(config), *extra],
                          capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_update_asks_only_about_new_and_changed_documents_and_removes_the_rest(tmp_path, llama_server):
    texts = slices(6)
    root, documents = tmp_path / "proj", tmp_path / "proj" / "documents"
    documents.mkdir(parents=True)
    names = {"same": "same.txt", "edit": "edit.txt", "gone": "gone.md", "move": "move.txt"}
    for (key, name), text in zip(names.items(), texts):
        (documents / name).write_text(text, encoding="utf-8")
    proxy = RecordingProxy(llama_server)
    config = root / "project.yaml"
    config.write_text(yaml.safe_dump({
        "teacher": {"backend": "openai", "model": "smollm2", "api_base": f"{proxy.url}/v1", "max_concurrency": 1,
                    "temperature": 0.2},
        "questions": {"mode": "answer_first", "questions_per_chunk": 2},
        "chunking": {"max_tokens": 300, "overlap_tokens": 30},
        "scoring": {"enabled": True, "threshold": 1},
        "eval": {"test_split": 0.4},
    }))
    output = root / "output"
    try:
        first = update(config, "--to", "split")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "4 added, 0 changed, 0 deleted, 0 renamed, 0 unchanged" in first.stdout
        before = {name: pairs_of(output, name) for name in ("qa_alpaca", "qa_scored", "qa_train", "qa_test")}
        by_doc = {}
        for pair in before["qa_alpaca"]:
            by_doc.setdefault(pair["source_doc"], set()).add(pair["id"])
        assert set(by_doc) == set(names.values()), by_doc.keys()
        old_ids = {p["source_doc"]: p["doc_id"] for p in before["qa_alpaca"]}
        assert {p["doc_id"] for p in before["qa_test"]} & {old_ids["gone.md"], old_ids["edit.txt"]}, \
            "the test needs probes of the documents it deletes and changes"

        # One added, one changed, one deleted, one renamed, one left alone.
        (documents / "added.txt").write_text(texts[4], encoding="utf-8")
        (documents / "edit.txt").write_text(texts[5], encoding="utf-8")
        (documents / "gone.md").unlink()
        (documents / "move.txt").rename(documents / "moved.txt")
        proxy.bodies.clear()
        second = update(config, "--to", "split")
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "1 added, 1 changed, 1 deleted, 1 renamed, 1 unchanged" in second.stdout
        prompts = proxy.prompts()
        assert prompts and asked_about(prompts, texts[4]) and asked_about(prompts, texts[5])
        assert asked_about(prompts, texts[0]) == 0  # unchanged
        assert asked_about(prompts, texts[3]) == 0  # renamed

        after = {name: pairs_of(output, name) for name in ("qa_alpaca", "qa_scored", "qa_train", "qa_test")}
        removed_docs = {old_ids["gone.md"], old_ids["edit.txt"]}
        for name, pairs in after.items():
            assert not [p for p in pairs if p["doc_id"] in removed_docs], name  # probes included
        alpaca = after["qa_alpaca"]
        now = {}
        for pair in alpaca:
            now.setdefault(pair["source_doc"], set()).add(pair["id"])
        assert now["same.txt"] == by_doc["same.txt"]  # kept as they were
        assert now["moved.txt"] == by_doc["move.txt"] and "move.txt" not in now  # same pairs, new name
        assert now.get("added.txt") and now.get("edit.txt") and not now["edit.txt"] & by_doc["edit.txt"]
        assert "gone.md" not in now
        added = {p["id"] for p in alpaca} - {p["id"] for p in before["qa_alpaca"]}
        removed = {p["id"] for p in before["qa_alpaca"]} - {p["id"] for p in alpaca}
        assert added == now["added.txt"] | now["edit.txt"] and removed == by_doc["gone.md"] | by_doc["edit.txt"]
        cells = next(row for row in (re.split(r"[│┃\s]+", line.strip(" │┃")) for line in second.stdout.splitlines())
                     if row[0] == "qa_alpaca")
        assert cells[1:] == [str(len(before["qa_alpaca"])), str(len(alpaca)), str(len(added)), str(len(removed))], cells
        hashes = json.loads((output / "document_hashes.json").read_text(encoding="utf-8"))
        assert sorted(hashes) == ["added.txt", "edit.txt", "moved.txt", "same.txt"]

        # A rename alone costs nothing: no teacher request at all.
        (documents / "same.txt").rename(documents / "renamed-again.txt")
        proxy.bodies.clear()
        third = update(config, "--to", "split")
        assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
        assert "0 added, 0 changed, 0 deleted, 1 renamed, 3 unchanged" in third.stdout
        assert proxy.bodies == []
        assert {p["id"] for p in pairs_of(output, "qa_alpaca") if p["source_doc"] == "renamed-again.txt"} \
            == by_doc["same.txt"]
        full = {p["id"] for p in pairs_of(output, "qa_alpaca")}

        # merge_strategy: replace keeps only the new document's pairs for this update; a later
        # `run --resume` brings the others back from the ledger without asking the teacher.
        settings = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**settings, "incremental": {"merge_strategy": "replace"}}))
        (documents / "replacing.txt").write_text(texts[1], encoding="utf-8")
        replaced = update(config, "--to", "generate")
        assert replaced.returncode == 0, replaced.stdout[-3000:] + replaced.stderr[-3000:]
        assert {p["source_doc"] for p in pairs_of(output, "qa_alpaca")} == {"replacing.txt"}
        proxy.bodies.clear()
        again = subprocess.run([sys.executable, "-m", "slm_factory", "run", "--resume", "--to", "generate", "-c",
                                str(config)], capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert proxy.bodies == []
        restored = {p["id"] for p in pairs_of(output, "qa_alpaca")}
        assert full < restored and {p["source_doc"] for p in pairs_of(output, "qa_alpaca")} >= {"replacing.txt"}
    finally:
        proxy.close()


@pytest.mark.parametrize("settings, extra, expected", [
    ({"incremental": {"enabled": False}}, [], "incremental.enabled is false"),
    ({"paths": {"documents": "nowhere"}}, [], "paths.documents: "),
    ({}, ["--to", "trian"], "unknown stage 'trian'"),
])
def test_update_mistakes_are_one_line(tmp_path, settings, extra, expected):
    config = tmp_path / "project.yaml"
    (tmp_path / "documents").mkdir()
    config.write_text(yaml.safe_dump(settings))
    done = update(config, *extra)
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert not (tmp_path / "output" / "document_hashes.json").exists()


def test_an_update_that_fails_keeps_the_changes_for_the_next(tmp_path):
    """No document can be parsed: parse fails, and the hash file is not written, so the next
    update still sees the documents as new."""
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({}))
    done = update(config, "--to", "parse")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "1 added" in done.stdout and "stopped at parse" in done.stderr
    assert not (tmp_path / "output" / "document_hashes.json").exists()
