"""`slm-factory demo`: the whole path on the bundled sample documents, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from slm_factory.cli import app
from slm_factory.cli.common import QuietOption, VerboseOption, console, errors, setup_output
from slm_factory.cli.stages import _context, run_stages


@app.command()
def demo(
    path: Annotated[Path, typer.Option("--path", "-p", help="Folder for the demo project (made if missing; "
                                       "an existing demo there is resumed).")] = Path("slm-factory-demo"),
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Turn the bundled sample documents into a fine-tuned, exported and evaluated SmolLM2, offline
    on this machine: the embedded teacher writes the pairs, every stage runs, and base and
    fine-tuned answers to held-out questions are compared."""
    setup_output(verbose, quiet)
    from slm_factory.demo import create_project

    config = create_project(path)
    console.print(f"Demo project: {config} (documents in {path / 'documents'}); every stage runs now, "
                  "a second `slm-factory demo` resumes where this one stopped.", highlight=False, soft_wrap=True)
    ctx = _context(config)
    runs = run_stages(ctx, None, None, resume=True, command="demo")
    _language_note(ctx)
    if any(run.status == "failed" for run in runs):
        raise typer.Exit(1)
    _show_comparison(ctx, config)


def _language_note(ctx: Any) -> None:
    """Say which documents gave the model nothing because of their language, and what they need."""
    from slm_factory.demo import language_rejections

    need = ("the demo's teacher (SmolLM2-135M) writes English only. Korean documents need a multilingual "
            "teacher, such as a Qwen2.5 model through Ollama or vLLM (see the README).")
    generate = ctx.workspace.load_state().get("stages", {}).get("generate", {})
    for document, language in generate.get("stats", {}).get("skipped_documents", {}).items():
        errors.print(f"note: {document} ({language}) was not used: {need}", highlight=False, soft_wrap=True)
    path = ctx.workspace.path("rejected_validate")
    if not path.exists():
        return
    counts = language_rejections(json.loads(path.read_text(encoding="utf-8")))
    for document, count in counts.items():
        errors.print(f"note: {count} pairs of {document} were dropped by the language rule: {need}",
                     highlight=False, soft_wrap=True)


def _show_comparison(ctx: Any, config: Path) -> None:
    from rich.table import Table

    path = ctx.workspace.path("compare_results")
    if not path.exists():
        return
    results = json.loads(path.read_text(encoding="utf-8"))
    summary = results["summary"]
    table = Table("held-out questions", "base", "fine-tuned",
                  title=f"{summary['base'].get('n', 0)} questions never trained on")
    for key, label in (("key_facts", "key facts"), ("rougeL", "ROUGE-L"), ("bleu", "BLEU"), ("overall", "overall (0-1)")):
        base, tuned = summary["base"].get(key), summary["finetuned"].get(key)
        if base is not None and tuned is not None:
            table.add_row(label, f"{base:.2f}", f"{tuned:.2f}")
    console.print(table)
    test = summary["test"]
    console.print(f"fine-tuned won {test['wins']}, base won {test['losses']}, {test['ties']} ties: {test['verdict']}",
                  highlight=False, soft_wrap=True)
    console.print(f"Pages: {ctx.workspace.path('compare_report')}, {ctx.workspace.path('eval_report')}", highlight=False,
                  soft_wrap=True)
    console.print(f"Talk to the result: slm-factory chat -c {config}", highlight=False, soft_wrap=True)
