"""Stage commands: parse, generate, the curation stages, and run (a range of stages with resume)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slm_factory.cli import app
from slm_factory.cli.common import fail, teacher_summary, ConfigOption, Output, QuietOption, RichProgress, RunProgress, VerboseOption, console, errors, load_project, locked, setup_output
from slm_factory.pipeline import StageContext, StageRun
from slm_factory.workspace import Workspace

if TYPE_CHECKING:
    from rich.table import Table


def _context(config_path: Path, **options: object) -> StageContext:
    config = load_project(config_path)
    return StageContext(config=config, workspace=Workspace(config.output_dir), progress=RichProgress(), options=options)


def _print_run(run: StageRun) -> None:
    result = run.result
    if run.status != "ran" or result is None:
        if result is not None:
            for line in result.lines:
                errors.print(f"[red]error:[/red] {line}", markup=True, highlight=False, soft_wrap=True)
        if run.status != "failed":
            console.print(f"{run.stage}: {run.status}", highlight=False)
        return
    formats = result.extra.get("formats")
    if formats:
        from rich.table import Table

        table = Table("format", "parsed", "warned", "failed", title=f"{run.stage} ({run.seconds:.1f} s)")
        for fmt, row in formats.items():
            table.add_row(fmt, str(row["parsed"]), str(row["warned"]), str(row["failed"]))
        console.print(table)
    if result.extra.get("analysis"):
        _print_analysis(run, result.extra["analysis"])
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    if result.summary:
        console.print(f"{result.summary} in {run.seconds:.1f} s", highlight=False)
    else:
        console.print(f"{run.stage}: {result.items} items ({counts}) in {run.seconds:.1f} s", highlight=False)
    if result.extra.get("teacher"):
        console.print(teacher_summary(result.extra["teacher"]), highlight=False)
    for line in result.lines:
        errors.print(f"[yellow]note:[/yellow] {line}", markup=True, highlight=False, soft_wrap=True)


def _print_analysis(run: StageRun, analysis: dict) -> None:
    """analyze: its main figures as a table, then its warnings."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table("figure", "value", title=f"{run.stage} ({run.seconds:.1f} s)")
    for label, value in analysis["rows"]:
        table.add_row(Text(label), Text(value))
    console.print(table)
    for warning in analysis["warnings"]:
        errors.print(f"[yellow]warning:[/yellow] {escape(warning)}", markup=True, highlight=False, soft_wrap=True)


@app.command()
def parse(
    config: ConfigOption = Path("project.yaml"),
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero if any document fails.")] = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Parse every document into output/parsed_documents.json."""
    setup_output(verbose, quiet)
    run = _run_one("parse", config)
    if strict and run.result and run.result.counts.get("failed"):
        raise typer.Exit(1)


def _run_one(name: str, config: Path, *, standalone: bool = False, even_if_off: bool = False,
             **options: object) -> StageRun:
    """Run a stage after the earlier ones it needs whose output is missing or stale (none when
    its input is given with --data, or when `standalone`: the options name what it works on).
    `even_if_off`: the command runs the stage although its `enabled` key (which decides whether
    `run` includes it) is off."""
    from slm_factory.live import publishing
    from slm_factory.pipeline import run_stage, run_with_prerequisites, stage_named, stages_needed_for

    ctx = _context(config, **options)
    stage = stage_named(name)
    if not even_if_off and not stage.enabled(ctx.config):
        from slm_factory.pipeline import ENABLE_KEYS

        key = ENABLE_KEYS.get(name, f"{name}.enabled")
        console.print(f"{name}: off in {config} (set {key}: true to run it)", highlight=False, soft_wrap=True)
        raise typer.Exit(0)
    alone = bool(options.get("data") or standalone)
    try:
        with locked(ctx.workspace.root, name):
            needed = [] if alone else stages_needed_for(stage, ctx.config, ctx.workspace)
            with publishing(ctx, name, [*(s.name for s in needed), name]):
                if alone:
                    runs = [run_stage(stage, ctx)]
                    _print_run(runs[0])
                else:
                    runs = run_with_prerequisites(stage, ctx, report=_print_run, needed=needed)
    except KeyboardInterrupt:
        raise _interrupted(ctx) from None
    if runs[-1].status == "failed":
        raise typer.Exit(1)
    return runs[-1]




def _interrupted(ctx: StageContext) -> typer.Exit:
    """Ctrl-C: say what was kept of the stage that was running and how to go on."""
    from slm_factory.pipeline import stage_named

    name = ctx.current_stage
    stage = stage_named(name) if name else None
    partial = ctx.workspace.partial_path(stage.output) if stage else None
    kept = (stage.interrupted(ctx) if stage else None) or (
        f"finished work of {name} is kept in {partial}; run the command again to resume"
        if partial is not None and partial.exists() else "nothing of the running stage was written; run the command again")
    errors.print(f"interrupted; {kept}", highlight=False, soft_wrap=True)
    return typer.Exit(130)


@app.command()
def generate(
    config: ConfigOption = Path("project.yaml"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run (a plain rerun does the same).")] = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Let the teacher write QA pairs for every document into output/qa_alpaca.json."""
    setup_output(verbose, quiet)
    _run_one("generate", config)


@app.command("generate-dialogue")
def generate_dialogue(
    config: ConfigOption = Path("project.yaml"),
    data: Annotated[Path | None, typer.Option("--data", help="QA pairs to build dialogues from (default output/qa_alpaca.json).")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Build multi-turn dialogues from QA pairs of the same document into output/dialogues.json."""
    setup_output(verbose, quiet)
    _run_one("generate-dialogue", config, data=str(data) if data else None)


@app.command("run")
def run_command(
    config: ConfigOption = Path("project.yaml"),
    start: Annotated[str | None, typer.Option("--from", help="First stage to run.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last stage to run.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip stages whose inputs and settings are unchanged.")] = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run the pipeline (all stages, or --from/--to a range)."""
    setup_output(verbose, quiet)
    for name in filter(None, (start, end)):
        _known_stage(name)
    runs = run_stages(_context(config), start, end, resume)
    if any(run.status == "failed" for run in runs):
        raise typer.Exit(1)


def _known_stage(name: str) -> None:
    from slm_factory.pipeline import STAGES, stage_named

    try:
        stage_named(name)
    except KeyError as error:
        from difflib import get_close_matches

        near = get_close_matches(name, [s.name for s in STAGES], n=1, cutoff=0.5)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise fail(f"{error.args[0]}{hint}", 2) from None


def run_stages(ctx: StageContext, start: str | None, end: str | None, resume: bool,
               execute: Callable[[Callable[[StageRun], None]], list[StageRun]] | None = None,
               command: str = "run") -> list[StageRun]:
    """What `run` does once its config is loaded: the stages under one progress display, each
    stage's own lines as it ends, then the summary table (also after a failure or Ctrl-C).
    `execute(report)` runs them (default: run_pipeline; `update` wraps it)."""
    from rich.markup import escape

    from slm_factory.live import publishing
    from slm_factory.pipeline import run_pipeline, select_stages

    names = [stage.name for stage in select_stages(start, end)]
    progress = RunProgress(names)
    ctx.progress = progress
    runs: list[StageRun] = []

    def report(run: StageRun) -> None:
        runs.append(run)
        _print_run(run)
        if run.status != "failed":  # the display keeps naming the stage that failed
            progress.stages_done(len(runs))

    try:
        if ctx.config.dashboard.enabled and not Output.quiet:
            console.print(f"live view: slm-factory dashboard -c {ctx.config.source} (in another terminal)",
                          highlight=False, soft_wrap=True)
        with locked(ctx.workspace.root, command), progress.display(), publishing(ctx, command, names):
            if execute is None:
                run_pipeline(ctx, start, end, resume, report=report)
            else:
                execute(report)
    except KeyboardInterrupt:
        console.print(run_summary(ctx, names, runs, interrupted=ctx.current_stage))
        raise _interrupted(ctx) from None
    console.print(run_summary(ctx, names, runs))
    failed = next((run for run in runs if run.status == "failed"), None)
    if failed is not None:
        why = failed.result.lines[0] if failed.result and failed.result.lines else "see the error above"
        errors.print(f"[red]stopped at {failed.stage}:[/red] {escape(why)}", markup=True, highlight=False, soft_wrap=True)
    return runs


_STATUS_STYLE = {"ran": "green", "up-to-date": "cyan", "failed": "bold red", "interrupted": "bold yellow"}


def run_summary(ctx: StageContext, names: list[str], runs: list[StageRun], interrupted: str | None = None) -> Table:
    """One row per stage of the run: status, items, time, teacher tokens, and where its artifact is
    (relative to the project). Stages after a failure or Ctrl-C are "not reached" (or off)."""
    from rich.table import Column, Table
    from rich.text import Text

    table = Table(Column("stage", no_wrap=True), Column("status", no_wrap=True),
                  Column("items", justify="right", no_wrap=True), Column("time", justify="right", no_wrap=True),
                  Column("teacher\ntokens", justify="right", no_wrap=True), Column("artifact", overflow="fold"),
                  title="run summary")
    recorded = ctx.workspace.load_state().get("stages", {})
    by_name = {run.stage: run for run in runs}
    seconds = tokens = 0.0
    for name in names:
        run = by_name.get(name)
        status = run.status if run else "interrupted" if name == interrupted else _not_reached(ctx, name)
        if status == "skipped":
            status = "skipped (off)"
        teacher = (run.result.extra.get("teacher") if run and run.result else None) or {}
        used = teacher.get("prompt_tokens", 0) + teacher.get("completion_tokens", 0)
        seconds += run.seconds if run else 0
        tokens += used
        table.add_row(
            name,
            f"[{_STATUS_STYLE.get(status, 'dim')}]{status}[/]",
            _items(name, run, recorded),
            f"{run.seconds:.1f} s" if run and run.status in ("ran", "failed") else "",
            f"{used:,}" if teacher else "",
            Text(_artifact(ctx, name) if status in ("ran", "up-to-date") else ""),
        )
    table.add_section()
    table.add_row("total", f"{sum(run.status == 'ran' for run in runs)} ran", "", f"{seconds:.1f} s",
                  f"{int(tokens):,}" if tokens else "", "")
    return table


def _not_reached(ctx: StageContext, name: str) -> str:
    from slm_factory.pipeline import stage_named

    return "not reached" if stage_named(name).enabled(ctx.config) else "skipped"


def _items(name: str, run: StageRun | None, recorded: dict) -> str:
    if run is None or run.status in ("skipped", "failed"):
        return ""
    if run.status == "up-to-date":
        items = recorded.get(name, {}).get("items")
        return "" if items is None else str(items)
    return str(run.result.items) if run.result else ""


def _artifact(ctx: StageContext, name: str) -> str:
    from slm_factory.pipeline import stage_named

    path = ctx.workspace.path(stage_named(name).output)
    try:
        return str(path.resolve().relative_to(ctx.config.root.resolve()))
    except ValueError:  # paths.output outside the project folder
        return str(path)


DataOption = Annotated[Path | None, typer.Option("--data", help="Pairs to work on instead of the previous stage's output (qa_alpaca-style JSON list).")]


def _curation_command(name: str, doc: str) -> None:
    def command(
        config: ConfigOption = Path("project.yaml"),
        data: DataOption = None,
        verbose: VerboseOption = False,
        quiet: QuietOption = False,
    ) -> None:
        setup_output(verbose, quiet)
        _run_one(name, config, data=str(data) if data else None)

    command.__doc__ = doc
    app.command(name)(command)


_curation_command("validate", "Filter QA pairs (rules, near-duplicates, contradictions, groundedness, language) into output/qa_validated.json.")
_curation_command("score", "Let the teacher judge each pair 1-5 against its source; keep those above scoring.threshold in output/qa_scored.json.")
_curation_command("split", "Hold out test probes (output/qa_test.json, never trained on); training pairs go to output/qa_train.json.")
_curation_command("augment", "Add paraphrased questions to the training pairs in output/qa_augmented.json.")
_curation_command("analyze", "Write output/data_analysis.json and output/report.html about the dataset.")


@app.command()
def convert(
    config: ConfigOption = Path("project.yaml"),
    data: Annotated[Path | None, typer.Option("--data", help="Examples to convert instead of the training pairs: QA records, "
                                              "Alpaca JSON, or chat messages JSONL (one {\"messages\": [...]} per line).")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Render the training pairs (and dialogues) with the student's chat template into output/training_data.jsonl."""
    setup_output(verbose, quiet)
    _run_one("convert", config, data=str(data) if data else None)


@app.command()
def train(
    config: ConfigOption = Path("project.yaml"),
    data: Annotated[Path | None, typer.Option("--data", help="Examples to train on instead of output/training_data.jsonl: "
                                              "QA records, Alpaca JSON, or chat messages JSONL.")] = None,
    resume: Annotated[bool, typer.Option("--resume", "-r", help="Continue from the last checkpoint in output/checkpoints/trainer/.")] = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a LoRA adapter on the student (loss on assistant replies only) into output/checkpoints/adapter/."""
    setup_output(verbose, quiet)
    _run_one("train", config, data=str(data) if data else None, resume=resume)
