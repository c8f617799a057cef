"""The README's promises: its commands are the ones CI runs, every `slm-factory` command it shows
parses with the real CLI, and every project.yaml key it names exists in the schema."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel

from slm_factory.cli import app
from slm_factory.config import ProjectConfig

try:  # recent typer releases carry their own copy of click, whose commands raise its exceptions
    from typer._click.exceptions import UsageError
except ImportError:
    from click import UsageError

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")

# A shell line that runs the CLI: `slm-factory X` (also after `cd p &&`) or `... -m slm_factory X`
# (accelerate launch, torchrun). A quoted message such as "run `slm-factory parse`" is not one.
_RUNS_CLI = re.compile(r"(?:^|&&|;|\|)\s*(?:\$\s+)?slm-factory(?:\s|$)|\s-m\s+slm_factory\s")
_PLACEHOLDER = re.compile(r"<[^<>\s]+>")
# `a.b` in backticks that names a file rather than a key: `project.yaml`, `report.html`, ...
_FILE_SUFFIXES = {"yaml", "yml", "json", "jsonl", "html", "png", "gguf", "md", "py", "txt", "jinja"}


def readme_commands() -> list[str]:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, re.S)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (language, body); a plain ``` block has the language ""."""
    blocks: list[tuple[str, str]] = []
    language: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(body)))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


def shell_lines(text: str) -> list[str]:
    """Every line of the ```bash and plain ``` blocks (not ```yaml and other languages)."""
    shells = ("", "bash", "sh", "console")
    return [line for language, body in code_blocks(text) if language in shells
            for line in body.splitlines()]


def cli_invocations(lines: list[str]) -> list[list[str]]:
    """The argument lists after `slm-factory` in shell lines: comments dropped, each `&&`/`;`
    segment on its own, lines with placeholders such as `<model>` skipped."""
    found = []
    for line in filter(_RUNS_CLI.search, lines):
        words = shlex.split(line.removeprefix("$ "), comments=True)
        if any(_PLACEHOLDER.search(word) for word in words):
            continue
        for segment in _segments(words):
            if segment[0] == "slm-factory":
                found.append(segment[1:])
            elif "slm_factory" in segment[1:] and segment[segment.index("slm_factory") - 1] == "-m":
                found.append(segment[segment.index("slm_factory") + 1:])
    return found


def _segments(words: list[str]) -> list[list[str]]:
    segments: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", ";", "|"):
            segments.append([])
        else:
            segments[-1].append(word)
    return [segment for segment in segments if segment]


def parse_with_cli(args: list[str]) -> None:
    """Parse `args` as the real CLI would, without running the command: an unknown command, an
    unknown option, a missing required option or a bad value raises UsageError."""
    group = typer.main.get_command(app)
    if not args:
        raise UsageError("no command after slm-factory")
    if args in (["--help"], ["--install-completion"]):
        return
    name, rest = args[0], args[1:]
    command = group.commands.get(name)
    if command is None:
        raise UsageError(f"no such command: {name}")
    command.make_context(f"slm-factory {name}", list(rest), resilient_parsing=False)


def test_ci_runs_the_readme_install_and_test_commands():
    install, demo, test = readme_commands()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert install in ci and f"\n{test}\n" in ci
    assert demo == "slm-factory demo"  # run by tests/test_demo.py, which the test command includes


def test_the_extractor_finds_commands_and_skips_comments_and_placeholders():
    lines = [
        "slm-factory train --resume   # after Ctrl-C",
        "cd p && slm-factory check",
        "ollama pull qwen3:8b",
        "slm-factory eval --model <name>",
        "accelerate launch --multi_gpu -m slm_factory train --config project.yaml",
        "error: run `slm-factory parse` first",
    ]
    assert cli_invocations(lines) == [["train", "--resume"], ["check"],
                                      ["train", "--config", "project.yaml"]]


@pytest.mark.parametrize("args", [["train", "--resum"], ["generate", "--data", "x.json"], ["trian"],
                                  ["init", "--path", "p"], ["status", "--json", "extra"]])
def test_a_wrong_command_or_option_fails_to_parse(args):
    with pytest.raises(UsageError):
        parse_with_cli(args)


def test_every_readme_command_parses_with_the_real_cli():
    invocations = cli_invocations(shell_lines(README))
    failures = []
    for args in invocations:
        try:
            parse_with_cli(args)
        except UsageError as error:
            failures.append(f"slm-factory {shlex.join(args)}: {error.format_message()}")
    assert not failures, "\n".join(failures)
    assert len(invocations) >= 20  # the extractor still finds the README's examples


def test_every_cli_command_has_an_example_in_the_readme():
    group = typer.main.get_command(app)
    shown = {args[0] for args in cli_invocations(shell_lines(README)) if args}
    missing = sorted(set(group.commands) - shown)
    assert not missing, f"README has no example of: {', '.join(missing)}"


def config_keys_in(text: str) -> set[str]:
    """Dotted names in backticks whose first part is a top-level section of project.yaml:
    `teacher.api_base`, `training.lora.*`, `questions.mode: answer_first` (the key part)."""
    sections = {name for name, field in ProjectConfig.model_fields.items()
                if _is_section(field.annotation)}
    keys = set()
    for inside in re.findall(r"`([^`\n]+)`", text):
        name = inside.split(":", 1)[0] if re.match(r"[\w.]+: ", inside) else inside.strip()
        if "." not in name or not re.fullmatch(r"[a-z_]+(?:\.[a-z_0-9]+)*(?:\.\*)?", name):
            continue
        parts = name.split(".")
        if parts[0] in sections and parts[-1] not in _FILE_SUFFIXES:
            keys.add(name)
    return keys


def schema_has(key: str, model: type[BaseModel] = ProjectConfig) -> bool:
    """Whether the dotted `key` names a key or section of the schema; `a.b.*` names a section."""
    head, _, rest = key.partition(".")
    if head == "*":
        return rest == "" and model is not ProjectConfig
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    return _is_section(field.annotation) and schema_has(rest, field.annotation)


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def test_schema_walk_rejects_keys_that_do_not_exist():
    for key in ("teacher.api_base", "training.lora.*", "export.ollama.system_prompt"):
        assert schema_has(key), key
    for key in ("teacher.api_bas", "training.batch_size.x", "training.batch_size.*", "teacher.*.x"):
        assert not schema_has(key), key
    text = "`teacher.api_base`, `project.yaml`, `questions.mode: open`, `qa_test.json`, `a.b`"
    assert config_keys_in(text) == {"teacher.api_base", "questions.mode"}


def test_every_config_key_the_readme_names_exists():
    keys = config_keys_in(README)
    unknown = sorted(key for key in keys if not schema_has(key))
    assert not unknown, f"README names keys project.yaml does not have: {', '.join(unknown)}"
    assert {"teacher.api_base", "training.batch_size"} <= keys  # the extractor still finds them


def test_every_project_yaml_fragment_in_the_readme_loads():
    """```yaml blocks whose top-level keys are project.yaml sections (teacher: ...) validate."""
    sections = set(ProjectConfig.model_fields)
    blocks = [yaml.safe_load(body) for language, body in code_blocks(README) if language == "yaml"]
    fragments = [data for data in blocks if isinstance(data, dict) and set(data) <= sections]
    for data in fragments:
        ProjectConfig.model_validate(data)
    assert len(fragments) >= 3  # Ollama, vLLM, the embedded teacher
