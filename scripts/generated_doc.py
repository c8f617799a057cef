"""What the scripts that generate a doc from the code share: write it, or check it is current.

    write_or_check(TARGET, render(), "python scripts/cli_reference.py")  # --check in sys.argv: compare only
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(target: Path, text: str, command: str) -> int:
    """With --check: exit status 1 and one line naming `command` when `target` differs from
    `text`. Without: write `text` to `target`."""
    if "--check" in sys.argv:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target} is out of date; run: {command}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0
