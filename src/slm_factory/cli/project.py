"""Project commands: version, init, check, status, clean."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from slm_factory import __version__
from slm_factory.cli import app
from slm_factory.cli.common import (
    ConfigOption,
    Output,
    QuietOption,
    VerboseOption,
    confirm,
    console,
    fail,
    load_project,
    locked,
    setup_output,
    teacher_summary,
)
from slm_factory.workspace import INTERMEDIATE, Workspace


@app.command()
def version(verbose: VerboseOption = False, quiet: QuietOption = False) -> None:
    """Print the version."""
    setup_output(verbose, quiet)
    console.print(f"slm-factory {__version__}", highlight=False)


@app.command()
def init(
    name: Annotated[str, typer.Option("--name", "-n", help="Project name (also its folder name).")],
    path: Annotated[Path, typer.Option("--path", "-p", help="Folder to create the project in.")] = Path("."),
    language: Annotated[str, typer.Option("--language", "-l", help="Document language: en or ko.")] = "en",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Overwrite an existing project.yaml without asking.")] = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Create NAME/documents, NAME/output and a documented NAME/project.yaml."""
    setup_output(verbose, quiet)
    from slm_factory.config import known_language
    from slm_factory.project_template import render_template

    if not name.strip() or "/" in name or "\\" in name:
        raise fail(f"--name {name!r}: give a plain folder name without slashes")
    try:
        language = known_language(language)
    except ValueError as error:
        raise fail(f"--language {language!r}: {error}") from None
    root = path / name
    config_path = root / "project.yaml"
    if config_path.exists() and not confirm(f"{config_path} exists. Overwrite it?", yes):
        raise fail(f"{config_path} left unchanged")
    for folder in (root / "documents", root / "output"):
        folder.mkdir(parents=True, exist_ok=True)
    config_path.write_text(render_template(name, language), encoding="utf-8")
    console.print(f"Created {config_path}", highlight=False)
    if not Output.quiet:
        console.print(f"Next: put documents in {root / 'documents'}, then run "
                      f"`slm-factory check -c {config_path}` and `slm-factory parse -c {config_path}`", highlight=False)


@app.command()
def check(config: ConfigOption = Path("project.yaml"), verbose: VerboseOption = False, quiet: QuietOption = False) -> None:
    """Check the config, the documents, the output folder and the teacher; exit 0 only if all pass."""
    setup_output(verbose, quiet)
    from slm_factory.checks import run_checks

    results = run_checks(load_project(config))
    for result in results:
        mark = "[green]✓[/green]" if result.ok else "[red]✗[/red]"
        advice = f" -- {result.advice}" if result.advice and not result.ok else ""
        console.print(f"{mark} {result.label}{advice}", highlight=False, soft_wrap=True)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def status(
    config: ConfigOption = Path("project.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Show each stage's artifact, item count, age, and whether it is up to date."""
    setup_output(verbose, quiet)
    from dataclasses import asdict

    from slm_factory.pipeline import resume_point, stage_status

    project = load_project(config)
    workspace = Workspace(project.output_dir)
    rows = stage_status(project, workspace)
    start = resume_point(rows)
    stats = {name: s.get("stats", {}) for name, s in workspace.load_state().get("stages", {}).items()}
    from slm_factory.curation.review_log import reviewed_summary

    reviewed = reviewed_summary(workspace)
    from slm_factory.live import is_running, read_progress

    live = read_progress(workspace.root)
    running = live if live is not None and is_running(live) else None
    if as_json:
        print(json.dumps({"stages": [asdict(r) for r in rows], "resume_from": start, "stats": stats,
                          "reviewed": reviewed, "running": running}, ensure_ascii=False, indent=2))
        return
    if running is not None:
        at = f", now at {running['current']}" if running.get("current") else ""
        console.print(f"`{running['command']}` is running (process {running['pid']}, since {running['started']}{at}); "
                      "the table shows what is on disk now; `slm-factory dashboard` follows it live",
                      highlight=False, soft_wrap=True)
    from rich.table import Table

    table = Table("stage", "artifact", "exists", "items", "modified", "state")
    for row in rows:
        state = "disabled" if not row.enabled else "up to date" if row.up_to_date else "stale"
        table.add_row(row.name, row.artifact, "yes" if row.exists else "no",
                      "" if row.items is None else str(row.items), row.modified or "", state)
    console.print(table)
    for name, stage_stats in stats.items():
        if stage_stats.get("teacher"):
            console.print(f"{name}: {teacher_summary(stage_stats['teacher'])}", highlight=False)
    if reviewed:
        console.print(f"review: {reviewed['artifact']} holds {reviewed['items']} approved or edited pairs "
                      f"({reviewed['decisions']} decisions logged), written {reviewed['modified']}", highlight=False)
    console.print(f"--resume would start at: {start}" if start else "Everything is up to date.", highlight=False)


@app.command()
def clean(
    config: ConfigOption = Path("project.yaml"),
    all_: Annotated[bool, typer.Option("--all", help="Remove everything under output/, not only intermediates.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Remove intermediate artifacts (or, with --all, everything under output/)."""
    setup_output(verbose, quiet)
    workspace = Workspace(load_project(config).output_dir)
    if not workspace.root.is_dir():
        console.print("Nothing to clean.")
        return
    with locked(workspace.root, "clean"):
        _clean(workspace, all_, yes)


def _clean(workspace: Workspace, all_: bool, yes: bool) -> None:
    from slm_factory.runlock import LOCK_FILE

    if all_:
        targets = sorted(p for p in workspace.root.iterdir() if p.name != LOCK_FILE)
    else:
        names = [workspace.path(a) for a in INTERMEDIATE] + [workspace.partial_path(a) for a in INTERMEDIATE]
        targets = [p for p in names if p.exists()]
    if not targets:
        console.print("Nothing to clean.")
        return
    for target in targets:
        console.print(f"  {target}{'/' if target.is_dir() else ''}", highlight=False)
    if not confirm(f"Delete these {len(targets)} paths?", yes):
        raise typer.Exit(1)
    for target in targets:
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    if all_:  # the lock file goes too; this run keeps its lock on the open file until it returns
        with contextlib.suppress(OSError):  # Windows does not delete an open file: it stays
            (workspace.root / LOCK_FILE).unlink(missing_ok=True)
    console.print(f"Removed {len(targets)} paths.")
