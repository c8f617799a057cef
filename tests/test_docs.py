"""The CLI reference in docs/cli.md is generated from --help; it must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "cli_reference.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
