"""`update`: the pipeline again for what changed in the documents folder (slm_factory.incremental)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slm_factory.cli import app
from slm_factory.cli.common import ConfigOption, QuietOption, VerboseOption, console, errors, fail, setup_output
from slm_factory.cli.stages import _context, _known_stage, run_stages

if TYPE_CHECKING:
    from slm_factory.incremental import Changes, UpdateResult


@app.command("update")
def update_command(
    config: ConfigOption = Path("project.yaml"),
    end: Annotated[str | None, typer.Option("--to", help="Last stage to run (default: the whole pipeline).")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Redo only what new, changed, deleted or renamed documents need (incremental.*)."""
    from slm_factory import incremental

    setup_output(verbose, quiet)
    if end:
        _known_stage(end)
    ctx = _context(config)
    if not ctx.config.incremental.enabled:
        raise fail(f"incremental.enabled is false in {config}; run `slm-factory run --resume` instead")
    folder = ctx.config.documents_dir
    if not folder.is_dir():
        raise fail(f"paths.documents: {folder} does not exist; create it and add documents")
    found = incremental.scan(ctx)
    print_changes(found.changes)
    outcome: list[UpdateResult] = []

    def execute(report):  # type: ignore[no-untyped-def]
        outcome.append(incremental.run_update(ctx, found, None, end, report))
        return outcome[0].runs

    runs = run_stages(ctx, None, end, resume=True, execute=execute, command="update")
    if outcome:
        print_outcome(outcome[0])
    if any(run.status == "failed" for run in runs):
        raise typer.Exit(1)


def print_changes(changes: Changes) -> None:
    where = "first update: every document is new" if changes.first else "since the last update"
    console.print(f"documents: {changes.summary()} ({where})", highlight=False)
    if changes.first:
        return
    for label, paths in (("added", changes.added), ("changed", changes.changed), ("deleted", changes.deleted)):
        for path in paths:
            console.print(f"  {label:8} {path}", highlight=False)
    for old, new in changes.renamed:
        console.print(f"  renamed  {old} → {new}", highlight=False)


def print_outcome(result: UpdateResult) -> None:
    from rich.table import Table

    table = Table("pairs", "before", "after", "added", "removed", title="update")
    for row in result.pairs:
        table.add_row(row.artifact, str(row.before), str(row.after), str(row.added), str(row.removed))
    console.print(table)
    calls = sum(result.teacher_calls.values())
    detail = ", ".join(f"{stage} {n}" for stage, n in result.teacher_calls.items() if n)
    console.print(f"teacher requests: {calls}" + (f" ({detail})" if detail else ""), highlight=False)
    for line in result.lines:
        errors.print(f"[yellow]note:[/yellow] {line}", markup=True, highlight=False, soft_wrap=True)
