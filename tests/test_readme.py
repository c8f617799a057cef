"""The README's promises: its commands are the ones CI runs, and its sample command works."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, re.S)


def test_ci_runs_the_readme_install_and_test_commands():
    install, demo, test = readme_commands()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert install in ci and f"\n{test}\n" in ci
    assert demo == "slm-factory demo"  # run by tests/test_demo.py, which the test command includes
