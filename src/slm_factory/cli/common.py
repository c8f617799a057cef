"""What every command shares: the common options, output, logging, config loading."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from slm_factory.pipeline import Progress

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path to project.yaml.", show_default=True)
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show debug detail.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Show only errors and results.")]


class Output:
    """How chatty this run is; set once per command from -v/-q."""

    quiet = False


def setup_output(verbose: bool, quiet: bool) -> None:
    Output.quiet = quiet
    if not verbose:
        quiet_libraries()
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    root = logging.getLogger("slm_factory")
    root.handlers[:] = [_log_handler(verbose)]
    root.setLevel(level)
    root.propagate = False


def quiet_libraries() -> None:
    """Keep the libraries' own chatter off the user's screen: our stages draw their own progress,
    so a "Loading weights" bar per model load, and deprecation notices about arguments that trl
    and peft pass inside transformers, are noise (`-v` shows them). Set before any of them is
    imported: huggingface_hub reads the variable once."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def _log_handler(verbose: bool) -> logging.Handler:
    if errors.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=errors, show_time=False, show_path=verbose, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        return handler
    # Piped or logged to a file: one plain line per message, never wrapped, easy to grep.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter())
    return handler


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line and return the Exit to raise (so callers write `raise fail(...)`)."""
    errors.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def locked(output_dir: Path, command: str) -> Iterator[None]:
    """One run at a time per project: a second one stops with one line naming the first."""
    from slm_factory.pipeline import is_main_process
    from slm_factory.runlock import ProjectBusy, project_lock

    if not is_main_process():
        # A rank of a distributed run (accelerate launch, torchrun): rank 0 holds the lock for the
        # whole run; taking it here would refuse the run's own other ranks.
        yield
        return
    try:
        with project_lock(output_dir, command) as left:
            if left:
                errors.print(
                    f"[yellow]note:[/yellow] process {left.get('pid')} ('{left.get('command')}') ended without "
                    "releasing the project; its lock was taken over",
                    markup=True, highlight=False, soft_wrap=True,
                )
            yield
    except ProjectBusy as error:
        raise fail(str(error)) from None


def load_project(path: Path) -> ProjectConfig:
    from slm_factory.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as error:
        for line in error.lines:
            errors.print(f"[red]error:[/red] {line}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for notice in config.notices:
        logging.getLogger("slm_factory").warning(notice)
    return config


def confirm(question: str, yes: bool) -> bool:
    """Ask before destroying anything; with no terminal to ask, refuse unless --yes."""
    if yes:
        return True
    if not sys.stdin.isatty():
        errors.print(f"{question} -- no terminal to ask; pass --yes to confirm", highlight=False)
        return False
    return typer.confirm(question, default=False)


class RichProgress(Progress):
    """A Rich progress bar with count, rate and time left; silent with --quiet."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        if Output.quiet:
            yield lambda n=1, note=None: None
            return
        from rich.progress import Progress as Bar

        with Bar(*_columns(), console=errors, transient=False) as bar:
            yield _advancer(bar, bar.add_task(description, total=total, rate=""))


class RunProgress(RichProgress):
    """One display for a whole `run`: a row saying which stage of how many is running, and under it
    the running stage's own bars, each removed when its work ends (the stage's result line stays)."""

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages
        self._bar: Any = None
        self._row: Any = None

    @contextmanager
    def display(self) -> Iterator[None]:
        if Output.quiet:
            yield
            return
        from rich.progress import Progress as Bar

        with Bar(*_columns(), console=errors, transient=False) as bar:
            self._bar, self._row = bar, bar.add_task(self._label(0), total=len(self.stages), rate="")
            try:
                yield
            finally:
                self._bar = None

    def stages_done(self, done: int) -> None:
        """`done` stages of the run have ended (run, skipped or up to date)."""
        if self._bar is not None:
            self._bar.update(self._row, completed=done, description=self._label(done))

    def _label(self, done: int) -> str:
        if done >= len(self.stages):
            return f"[bold]run[/bold] {len(self.stages)} stages done"
        return f"[bold]run[/bold] stage {done + 1}/{len(self.stages)} [cyan]{self.stages[done]}[/cyan]"

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        if self._bar is None:
            with super().task(description, total) as advance:
                yield advance
            return
        task = self._bar.add_task(f"  {description}", total=total, rate="")
        try:
            yield _advancer(self._bar, task)
        finally:
            self._bar.remove_task(task)


def _columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _advancer(bar: Any, task: Any) -> Callable[..., None]:
    def advance(n: int = 1, note: str | None = None) -> None:
        bar.advance(task, n)
        speed = next((t.speed for t in bar.tasks if t.id == task), None)
        bar.update(task, rate=note if note is not None else f"{speed:.1f}/s" if speed else "")

    return advance


def teacher_summary(stats: dict) -> str:
    """One line of teacher accounting: requests, retries, failures, tokens, rate."""
    return (
        f"teacher {stats.get('backend')}/{stats.get('model')}: {stats.get('requests', 0)} requests, "
        f"{stats.get('cache_hits', 0)} cached, {stats.get('retries', 0)} retries, {stats.get('failures', 0)} failed; "
        f"tokens {stats.get('prompt_tokens', 0)} prompt + {stats.get('completion_tokens', 0)} completion; "
        f"{stats.get('items_per_s', 0)} replies/s"
        + (f"; faults {', '.join(f'{kind} {n}' for kind, n in faults.items())}" if (faults := stats.get("faults")) else "")
    )
