"""`wizard`: the guided run. It asks (questionary: arrow keys, typed filters, y/n) and prints;
slm_factory/wizard.py decides (sentences, stage choices, resume point, costs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slm_factory.cli import app
from slm_factory.cli.common import ConfigOption, VerboseOption, console, errors, setup_output

if TYPE_CHECKING:
    from slm_factory.pipeline import Stage, StageContext
    from slm_factory.wizard import Memory, Messages


@app.command("wizard")
def wizard(
    config: ConfigOption = Path("project.yaml"),
    resume: Annotated[bool, typer.Option("--resume", help="Start at the first stage that is not up to date.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Guided run: find or create project.yaml, choose the documents, then each stage after a
    question, with the teacher's cost shown before it runs."""
    setup_output(verbose, False)
    from slm_factory.wizard import Messages, language_of

    session = _Session(config, Messages(language_of(config)))
    if not sys.stdin.isatty():
        _say_error(session.say("no_terminal", config=config))
        raise typer.Exit(2)
    try:
        import questionary  # noqa: F401  (the `tui` extra)
    except ImportError:
        _say_error('error: the wizard needs questionary: pip install "slm-factory[tui]"')
        raise typer.Exit(2) from None
    try:
        code = session.run(resume)
    except KeyboardInterrupt:
        _say_error(session.say("interrupted", config=config))
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _say_error(text: str) -> None:
    errors.print(text, markup=False, highlight=False, soft_wrap=True)


class _Session:
    def __init__(self, path: Path, say: Messages) -> None:
        self.path = path
        self.say = say

    def run(self, resume: bool) -> int:
        """The exit code: 0 done or stopped by the user, 1 a stage failed."""
        from slm_factory.cli.common import RichProgress, load_project, locked
        from slm_factory.pipeline import StageContext
        from slm_factory.workspace import Workspace
        from slm_factory.wizard import Messages, document_files

        if not self.path.exists() and not self._create():
            return 0
        config = load_project(self.path)
        self.say = Messages(config.project.language)
        files = document_files(config)
        if not files:
            _say(self.say("no_documents", formats=", ".join(config.parsing.formats), documents=config.documents_dir,
                          config=self.path))
            return 0
        ctx = StageContext(config=config, workspace=Workspace(config.output_dir), progress=RichProgress())
        with locked(ctx.workspace.root, "wizard"):
            return self._stages(ctx, files, resume)

    # -- the project -----------------------------------------------------------------------------

    def _create(self) -> bool:
        import questionary

        from slm_factory.wizard import Messages, create_project, name_problem

        english = Messages("en")
        language = questionary.select(
            english("language_question"), choices=[questionary.Choice("English (en)", "en"),
                                                   questionary.Choice("한국어 (ko)", "ko")],
            use_search_filter=True, use_jk_keys=False, instruction=english("language_instruction"),
        ).unsafe_ask()
        self.say = say = Messages(language)
        if not questionary.confirm(say("create_confirm", config=self.path), default=True).unsafe_ask():
            _say(say("not_created", config=self.path))
            return False
        name = questionary.text(say("name_question"), default=self.path.resolve().parent.name,
                                validate=lambda text: not name_problem(text) or say("name_invalid")).unsafe_ask()
        config = create_project(self.path, name, language)
        _say(say("created", config=self.path, documents=config.documents_dir, output=config.output_dir))
        return True

    def _documents(self, folder: Path, files: list[str]) -> list[str] | None:
        """All (None) or the documents marked in a checkbox list."""
        import questionary

        say = self.say
        choice = questionary.select(
            say("documents_question", count=len(files), documents=folder),
            choices=[questionary.Choice(say("documents_all", count=len(files)), "all"),
                     questionary.Choice(say("documents_some"), "some")],
            use_search_filter=True, use_jk_keys=False, instruction=say("select_instruction"),
        ).unsafe_ask()
        picked = files
        if choice == "some":
            picked = questionary.checkbox(
                say("documents_pick"), choices=files, validate=lambda marked: bool(marked) or say("documents_pick_none"),
                use_search_filter=True, use_jk_keys=False, instruction=say("checkbox_instruction"),
            ).unsafe_ask()
        _say(say("documents_chosen", count=len(picked), total=len(files)))
        return None if len(picked) == len(files) else list(picked)

    # -- the stages ------------------------------------------------------------------------------

    def _stages(self, ctx: StageContext, files: list[str], resume: bool) -> int:
        from slm_factory.live import publishing
        from slm_factory.wizard import Memory, enabled_before, resume_start, skip, stages_from, training_resume

        memory = Memory.load(ctx.workspace) if resume else Memory()
        turned_off: dict[str, str] = {}  # stage -> the skipped stage that turned it off (itself included)
        for name in memory.skipped:
            turned_off.update({other: name for other in [name, *skip(ctx.config, name)]})
        start: str | None = "parse"
        if resume:
            start = resume_start(ctx.config, ctx.workspace, memory.options())
            if start is None:
                _say(self.say("up_to_date"))
                return 0
            done = enabled_before(ctx.config, start)
            _say(self.say("resume_from", done=", ".join(done), stage=start) if done else self.say("resume_at", stage=start))
            if memory.skipped:
                _say(self.say("skipped_earlier", stages=", ".join(memory.skipped)))
        if start == "parse":
            memory.documents = self._documents(ctx.config.documents_dir, files)
        memory.save(ctx.workspace)
        ctx.options = {**memory.options(), **(training_resume(ctx) if resume else {})}
        stages = stages_from(start)
        outcome = "go"
        with publishing(ctx, "wizard", [stage.name for stage in stages]):
            for number, stage in enumerate(stages, 1):
                outcome = self._step(ctx, stage, (number, len(stages)), memory, turned_off)
                if outcome != "go":
                    break
        if outcome == "go":
            _say(self.say("finished", config=self.path))
        return 1 if outcome == "failed" else 0

    def _step(self, ctx: StageContext, stage: Stage, step: tuple[int, int], memory: Memory,
              turned_off: dict[str, str]) -> str:
        """Ask, then run or skip one stage: "go" on, "stopped" (no at a required stage), "failed"."""
        from rich.text import Text

        from slm_factory.cli.stages import _print_run
        from slm_factory.pipeline import run_stage
        from slm_factory.wizard import enable_key, is_required, skip

        say, name = self.say, stage.name
        if name in turned_off:
            skipper = turned_off[name]
            _say(say("skipped", stage=name, config=self.path) if skipper == name else
                 say("stage_off_with", stage=name, key=enable_key(skipper), skipped=skipper))
            return "go"
        if not stage.enabled(ctx.config):
            _say(say("stage_off", stage=name, key=enable_key(name), config=self.path))
            return "go"
        number, total = step
        console.print(Text("\n" + say("stage_title", number=number, total=total, stage=name,
                                      description=say.stage(name)), style="bold"), soft_wrap=True)
        self._show_cost(ctx, name)
        if not self._confirm(say("run_required" if is_required(stage) else "run_optional", stage=name)):
            if is_required(stage):
                _say(say("stopped", stage=name, config=self.path))
                return "stopped"
            turned_off.update({other: name for other in [name, *skip(ctx.config, name)]})
            memory.skipped.append(name)
            memory.save(ctx.workspace)
            _say(say("skipped", stage=name, config=self.path))
            return "go"
        run = run_stage(stage, ctx)
        _print_run(run)
        if run.status == "failed":
            _say_error(say("failed", stage=name, config=self.path))
            return "failed"
        return "go"

    @staticmethod
    def _confirm(question: str) -> bool:
        """y or n typed (Enter takes yes); Ctrl-C reaches the caller as KeyboardInterrupt."""
        import questionary

        return bool(questionary.confirm(question, default=True).unsafe_ask())

    def _show_cost(self, ctx: StageContext, name: str) -> None:
        from slm_factory.pipeline import StageError
        from slm_factory.workspace import ArtifactError
        from slm_factory.wizard import cost_line, estimate

        try:
            cost = estimate(name, ctx)
        except (StageError, ArtifactError, OSError, ValueError):
            return  # the stage itself will say what is missing, in one line
        if cost is not None:
            _say(cost_line(self.say, cost))
