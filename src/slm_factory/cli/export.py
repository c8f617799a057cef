"""Export and evaluation commands: export, export-gguf, chat, eval, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slm_factory.cli import app
from slm_factory.cli.common import ConfigOption, QuietOption, VerboseOption, console, errors, fail, load_project, setup_output
from slm_factory.cli.stages import _run_one

ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model to ask: a model folder, a .gguf file, `student` (the base student), an Ollama "
    "model name, or a name on an OpenAI-compatible server with --backend openai. Default: the project's own export.")]
BackendOption = Annotated[str | None, typer.Option(
    "--backend", help="transformers, llamacpp, ollama or openai (default: told from --model).")]
ApiBaseOption = Annotated[str | None, typer.Option(
    "--api-base", help="Server address for --backend ollama/openai (default: the teacher's, or Ollama's local one).")]


@app.command()
def export(
    config: ConfigOption = Path("project.yaml"),
    adapter: Annotated[Path | None, typer.Option("--adapter", help="Adapter folder to merge (default output/checkpoints/adapter).")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Merge the adapter into the student: output/merged_model/ with a checked Ollama Modelfile."""
    setup_output(verbose, quiet)
    _run_one("export", config, standalone=adapter is not None, adapter=str(adapter) if adapter else None)


@app.command("export-gguf")
def export_gguf(
    config: ConfigOption = Path("project.yaml"),
    model_dir: Annotated[Path | None, typer.Option("--model-dir", help="Merged model folder to convert (default output/merged_model).")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Convert the merged model to GGUF (gguf_export.quantization_type) in output/gguf/ with a Modelfile."""
    setup_output(verbose, quiet)
    _run_one("export-gguf", config, standalone=model_dir is not None, even_if_off=True,
             model_dir=str(model_dir) if model_dir else None)


@app.command("eval")
def eval_command(
    config: ConfigOption = Path("project.yaml"),
    model: ModelOption = None,
    backend: BackendOption = None,
    api_base: ApiBaseOption = None,
    data: Annotated[Path | None, typer.Option("--data", help="Questions with reference answers (QA records, Alpaca JSON "
                                              "or messages JSONL) instead of the held-out output/qa_test.json.")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Ask the model held-out questions and score the answers into output/eval_results.json and .html."""
    setup_output(verbose, quiet)
    _run_one("eval", config, standalone=bool(model or data), even_if_off=True, model=model, backend=backend,
             api_base=api_base, data=str(data) if data else None)


@app.command()
def compare(
    config: ConfigOption = Path("project.yaml"),
    base_model: Annotated[str | None, typer.Option("--base-model", help="Default compare.base_model, else the student.")] = None,
    finetuned_model: Annotated[str | None, typer.Option("--finetuned-model", help="Default compare.finetuned_model, else the project's export.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Questions with reference answers instead of output/qa_test.json.")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Ask two models (base and fine-tuned) the same held-out questions: output/compare_results.json and .html."""
    setup_output(verbose, quiet)
    _run_one("compare", config, standalone=bool(base_model or finetuned_model or data), even_if_off=True,
             base_model=base_model, finetuned_model=finetuned_model, data=str(data) if data else None)


@app.command()
def chat(
    config: ConfigOption = Path("project.yaml"),
    model: ModelOption = None,
    backend: BackendOption = None,
    api_base: ApiBaseOption = None,
    once: Annotated[str | None, typer.Option("--once", help="Ask one question, print the answer, and exit.")] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Talk to the model in the terminal, with the training system prompt and chat template."""
    setup_output(verbose, quiet)
    from slm_factory.evaluation.chat import Conversation
    from slm_factory.evaluation.generate import model_ref, open_answerer
    from slm_factory.pipeline import StageError
    from slm_factory.training.formats import system_prompt
    from slm_factory.workspace import Workspace

    project = load_project(config)
    try:
        ref = model_ref(project, Workspace(project.output_dir), model, backend, api_base)
        if not once and not quiet:
            console.print(f"Loading {ref.name} ({ref.backend}) ...", highlight=False)
        conversation = Conversation(open_answerer(ref, project), ref, system_prompt(project))
        if once is not None:
            console.print(conversation.reply(once), highlight=False, markup=False)
            return
        _talk(conversation)
    except StageError as error:
        raise fail(str(error), 1) from None


def _talk(conversation) -> None:
    console.print(f"Talking to {conversation.ref.name}. Empty line, 'exit' or Ctrl-D to stop.", highlight=False)
    while True:
        try:
            text = console.input("[bold]you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not text or text.lower() in ("exit", "quit", "/bye"):
            return
        try:
            answer = conversation.reply(text)
        except KeyboardInterrupt:
            errors.print("(answer stopped)")
            continue
        from rich.text import Text

        console.print(Text.assemble(("model> ", "bold"), answer))
