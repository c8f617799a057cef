"""The review command: a person approves, rejects or edits QA pairs beside their source chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from slm_factory.cli import app
from slm_factory.cli.common import ConfigOption, QuietOption, VerboseOption, console, fail, locked, setup_output

DataOption = Annotated[Path | None, typer.Option(
    "--data", help="Pairs to review instead of the newest pairs artifact (qa_alpaca-style JSON list).")]


def _has_terminal() -> bool:
    import sys

    return sys.stdin.isatty() and sys.stdout.isatty()


@app.command()
def review(
    config: ConfigOption = Path("project.yaml"),
    data: DataOption = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Review QA pairs one at a time beside their source chunk: approve, reject with a reason or
    edit; approved and edited pairs go to output/qa_reviewed.json as you decide."""
    setup_output(verbose, quiet)
    try:
        import textual  # noqa: F401  (the `tui` extra)
    except ImportError:
        raise fail(escape('the review screen needs Textual: pip install "slm-factory[tui]"')) from None
    from slm_factory.cli.stages import _context
    from slm_factory.curation.common import Sources
    from slm_factory.curation.review_log import open_review
    from slm_factory.pipeline import StageError
    from slm_factory.tui.review import ReviewApp

    ctx = _context(config, data=str(data) if data else None)
    if not ctx.config.review.enabled:
        console.print(f"review: off in {config} (set review.enabled: true to review pairs)", highlight=False)
        raise typer.Exit(0)
    with locked(ctx.workspace.root, "review"):
        try:
            label, session = open_review(ctx)
        except StageError as error:
            raise fail(escape(str(error))) from None
        if not _has_terminal():  # after the input checks, so a bad file is reported first
            raise fail("review reads keys from a terminal; run it in one (not through a pipe or a script)")
        sources = Sources(ctx)
        ReviewApp(session, sources.chunk_text, label, warm=lambda: sources.chunks).run()
    counts = session.counts()
    kept = counts["approved"] + counts["edited"]
    console.print(f"Review: {counts['approved']} approved, {counts['rejected']} rejected, {counts['edited']} edited, "
                  f"{counts['undecided']} undecided (of {len(session.pairs)}); "
                  f"{ctx.workspace.path('qa_reviewed').name} holds {kept} pairs" if session.decided() else
                  f"Review: no decisions yet on {len(session.pairs)} pairs", highlight=False, soft_wrap=True)
    if session.vanished:
        console.print(f"note: {session.vanished} earlier decisions are for pairs no longer in {label}; ignored",
                      highlight=False, soft_wrap=True)
