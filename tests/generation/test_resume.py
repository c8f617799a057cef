"""Kill -9 `slm-factory generate` at several points, resume, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SAMPLES = ["kr-bill-1809890-local-public-officials-act-amendment.txt", "us-18f-content-guide-urls-and-filenames.md"]


@pytest.fixture
def echo_teacher(tmp_path: Path):
    port, log = free_port(), tmp_path / "teacher.log"
    process = subprocess.Popen([sys.executable, str(HERE / "echo_teacher.py"), str(port), str(log), "0.15"])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/v1/models", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("echo teacher did not start")
            time.sleep(0.1)
    yield base, log
    process.terminate()
    process.wait(timeout=10)


def sample_project(root: Path, teacher: dict, questions: dict) -> Path:
    """The two SAMPLES documents in `root`/documents, parsed, with this teacher and questions section."""
    documents = root / "documents"
    documents.mkdir(parents=True)
    for name in SAMPLES:
        shutil.copy(REPO / "src" / "slm_factory" / "demo" / "documents" / name, documents / name)
    config = root / "project.yaml"
    config.write_text(yaml.safe_dump({"teacher": teacher, "questions": questions,
                                      "chunking": {"max_tokens": 300, "overlap_tokens": 30}}))
    subprocess.run([sys.executable, "-m", "slm_factory", "parse", "-q", "-c", str(config)], check=True)
    return config


def make_project(root: Path, base: str) -> Path:
    return sample_project(root, {"backend": "openai", "model": "echo", "api_base": f"{base}/v1", "max_concurrency": 4,
                                 "cache": False},  # the ledger alone must make resume exact
                          {"questions_per_chunk": 3})


def generate(config: Path, command: str = "generate") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slm_factory", command, "-q", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ledger(config: Path) -> list[dict]:
    path = config.parent / "output" / "qa_alpaca.partial.jsonl"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # the line being written when the process died
    return entries


def finished_items(config: Path) -> set[str]:
    return {e["instruction"] for e in ledger(config) if e["kind"] in ("pair", "rejected")}


def served(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


@pytest.mark.slow
def test_kill_nine_at_several_points_then_resume_matches_an_uninterrupted_run(tmp_path: Path, echo_teacher):
    base, log = echo_teacher
    reference_config = make_project(tmp_path / "reference", base)
    assert generate(reference_config).wait(timeout=300) == 0
    reference = json.loads((reference_config.parent / "output" / "qa_alpaca.json").read_text())
    reference_ids = [pair["id"] for pair in reference]
    assert len(reference_ids) > 40 and len(set(reference_ids)) == len(reference_ids)

    config = make_project(tmp_path / "crashy", base)
    log.write_text("")
    finished: set[str] = set()
    for kill_at in (3, 15, 35, None):  # three kills, then a run to the end
        position = len(served(log))
        process = generate(config)
        if kill_at is None:
            assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
        else:
            deadline = time.monotonic() + 120
            while len(finished_items(config)) < kill_at and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            assert process.wait() == -signal.SIGKILL  # the kill landed mid-run, not after it
        asked = {r["key"] for r in served(log)[position:] if r["kind"] == "answer"}
        assert not finished & asked, "a finished item was asked for again after a resume"
        finished = finished_items(config)
        assert kill_at is None or len(finished) >= kill_at

    pairs = json.loads((config.parent / "output" / "qa_alpaca.json").read_text())
    ids = [pair["id"] for pair in pairs]
    assert len(ids) == len(set(ids))  # no duplicates
    assert ids == reference_ids  # the same pairs in the same order as the uninterrupted run
    answers = [r["key"] for r in served(log) if r["kind"] == "answer"]
    # Across three kills, only requests in flight at a kill may be repeated.
    assert len(answers) - len(set(answers)) <= 3 * 4 * 3


@pytest.mark.slow
@pytest.mark.parametrize("command", ["generate", "run"])
def test_ctrl_c_keeps_finished_work_and_says_how_to_resume(tmp_path: Path, echo_teacher, command: str):
    base, _ = echo_teacher
    config = make_project(tmp_path / "interrupted", base)
    process = generate(config, command)
    deadline = time.monotonic() + 120
    while len(finished_items(config)) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    message = process.stderr.read().decode()
    assert "interrupted" in message and "qa_alpaca.partial.jsonl" in message and "Traceback" not in message
    kept = finished_items(config)
    assert len(kept) >= 5
    assert generate(config).wait(timeout=300) == 0
    pairs = json.loads((config.parent / "output" / "qa_alpaca.json").read_text())
    assert kept <= {p["instruction"] for p in pairs}
