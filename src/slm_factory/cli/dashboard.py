"""The dashboard command: a live view of a project's stages and of the command running on it."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from slm_factory.cli import app
from slm_factory.cli.common import ConfigOption, fail, load_project, setup_output

IntervalOption = Annotated[float | None, typer.Option(
    "--interval", help="Seconds between refreshes (default: dashboard.refresh_interval in project.yaml).")]


def _has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@app.command("dashboard")
def dashboard(config: ConfigOption = Path("project.yaml"), interval: IntervalOption = None) -> None:
    """Watch a project: each stage's artifact (items, age, up to date or stale) and, while `run`,
    `update` or a stage command works on it, the stage, its progress, the teacher's throughput and
    the training loss. Only reads output/: it never slows down or blocks the run it watches."""
    setup_output(verbose=False, quiet=False)
    if interval is not None and not (math.isfinite(interval) and interval > 0):
        raise fail(f"--interval must be a number of seconds above 0, not {interval:g}", 2)
    project = load_project(config)
    try:
        import textual  # noqa: F401  (the `tui` extra)
    except ImportError:
        raise fail(escape('the dashboard needs Textual: pip install "slm-factory[tui]"')) from None
    if not _has_terminal():
        raise fail(f"the dashboard needs a terminal to draw on; `slm-factory status -c {escape(str(config))}` "
                   "prints the stage table", 2)
    from slm_factory.tui.dashboard import DashboardApp, ProjectWatcher

    DashboardApp(ProjectWatcher(project), interval or project.dashboard.refresh_interval,
                 theme=project.dashboard.theme, label=str(config)).run()
