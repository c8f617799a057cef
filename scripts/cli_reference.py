"""Write docs/cli.md from the CLI's own --help, so the reference cannot drift from the code.

    python scripts/cli_reference.py          # rewrite docs/cli.md
    python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is out of date (the tests do this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import typer

from slm_factory.cli import app

TARGET = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def render() -> str:
    group = typer.main.get_command(app)
    parts = ["# slm-factory command reference", "",
             "Generated from `--help` by `python scripts/cli_reference.py`; do not edit by hand.", ""]
    root = click.Context(group, info_name="slm-factory", terminal_width=100, max_content_width=100)
    parts += ["```", group.get_help(root).rstrip(), "```", ""]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        ctx = click.Context(command, info_name=f"slm-factory {name}", parent=None, terminal_width=100,
                            max_content_width=100)
        parts += [f"## {name}", "", "```", command.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(parts)


def main() -> int:
    from generated_doc import write_or_check

    return write_or_check(TARGET, render(), "python scripts/cli_reference.py")


if __name__ == "__main__":
    sys.exit(main())
