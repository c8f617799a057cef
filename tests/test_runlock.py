"""One run at a time per project, with real processes: a second run is refused with one line naming
the first; a lock left by a run killed with SIGKILL is taken over."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slm_factory.runlock import ProjectBusy, project_lock

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "slm_factory" / "demo" / "documents"

HOLD = """
import sys, time
from pathlib import Path
from slm_factory.runlock import project_lock
with project_lock(Path(sys.argv[1]), "generate"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    documents = tmp_path / "documents"
    documents.mkdir()
    shutil.copy(SAMPLE / "us-18f-content-guide-urls-and-filenames.md", documents)
    config = tmp_path / "project.yaml"
    config.write_text("project:\n  name: lock\npaths:\n  documents: documents\n  output: output\n")
    return config


def _holder(output: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slm_factory", *args], capture_output=True, text=True, timeout=120)


def test_a_second_run_is_refused_and_a_killed_runs_lock_is_taken_over(project: Path) -> None:
    output = project.parent / "output"
    holder = _holder(output)
    try:
        refused = _cli("parse", "-c", str(project))
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"process {holder.pid} ('generate'" in lines[0]
        assert not (output / "parsed_documents.json").exists()  # it wrote nothing
        assert _cli("clean", "--all", "--yes", "-c", str(project)).returncode == 1
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    taken = _cli("parse", "-c", str(project))
    assert taken.returncode == 0, taken.stderr
    assert "ended without releasing" in taken.stderr and str(holder.pid) in taken.stderr
    assert (output / "parsed_documents.json").exists()
    again = _cli("parse", "-c", str(project))  # a run that finished leaves nothing stale behind
    assert again.returncode == 0 and "ended without releasing" not in again.stderr


def test_the_lock_is_held_only_inside_the_block(tmp_path: Path) -> None:
    with project_lock(tmp_path, "run") as left:
        assert left is None
        with pytest.raises(ProjectBusy, match=r"process \d+ \('run'"):
            with project_lock(tmp_path, "generate"):
                pass
    with project_lock(tmp_path, "generate") as left:  # released, and nothing stale left
        assert left is None
