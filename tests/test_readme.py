"""The README's promises: its commands are the ones CI runs, and its sample command works."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, re.S)


def test_ci_runs_the_readme_install_and_test_commands():
    install, sample, test = readme_commands()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert install in ci and f"\n{test}\n" in ci
    assert sample.startswith("slm-factory parse -c examples/sample/project.yaml")


def test_sample_command_parses_every_sample_document(tmp_path: Path):
    sample = tmp_path / "sample"
    shutil.copytree(REPO / "examples" / "sample", sample, ignore=shutil.ignore_patterns("output"))
    result = subprocess.run(
        [sys.executable, "-m", "slm_factory", "parse", "-c", str(sample / "project.yaml")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    documents = json.loads((sample / "output" / "parsed_documents.json").read_text(encoding="utf-8"))
    files = sorted(p.name for p in (sample / "documents").iterdir())
    assert sorted(Path(d["path"]).name for d in documents) == files
    assert {d["format"] for d in documents} == {"pdf", "hwpx", "docx", "html", "txt", "md"}
