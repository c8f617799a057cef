"""The stage list and the runner.

A stage is a plain function `run(ctx) -> StageResult` plus metadata. The runner decides order,
skipping and resume; the stage only reads its inputs and writes its output. Resume is by
fingerprint: `.state.json` records, per stage, a hash of the config keys it reads and of its
inputs, so `--resume` reruns the first stage whose fingerprint changed and everything after it.
Later stages are added to STAGES; the runner never needs to change for them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import time
from contextlib import contextmanager
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from slm_factory.workspace import Workspace

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig

log = logging.getLogger("slm_factory")
T = TypeVar("T")

DOCUMENTS = "documents"  # the input folder, as an input name beside artifact names


@dataclass
class StageResult:
    """What a stage reports: item counts for the summary, and lines worth showing."""

    items: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # The stage's own closing line, printed instead of the generic one, e.g. the original's
    # "Validation complete: 940 accepted, 60 rejected (out of 1000)".
    summary: str = ""


class Progress:
    """Progress reporting handed to stages; the CLI swaps in a Rich bar."""

    def track(self, items: Iterable[T], total: int, description: str) -> Iterator[T]:
        with self.task(description, total) as advance:
            for item in items:
                yield item
                advance()

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """A counter for work that finishes out of order (async requests): call advance(), or
        advance(n, note) to show `note` (say, a loss and a rate) in place of the count's rate."""
        yield lambda n=1, note=None: None

    # Hooks for whoever watches the run (live.PublishedProgress writes them to .progress.json).
    def stage_started(self, name: str) -> None:
        """A stage begins its work."""

    def stage_ended(self, run: StageRun) -> None:
        """A stage ended: ran, failed, skipped (off) or up to date."""

    def teacher_opened(self, teacher: Any) -> None:
        """The running stage asks this Teacher; its stats() may be read while it works."""

    def metrics(self, **values: Any) -> None:
        """Figures of the running work that are not a count: loss, tokens/s, step."""


@dataclass
class StageContext:
    config: ProjectConfig
    workspace: Workspace
    progress: Progress = field(default_factory=Progress)
    options: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = log
    # Replaces the configured teacher backend (a scripted one in tests, or one built by a caller).
    teacher_backend: Any = None
    current_stage: str | None = None  # set by the runner: where a Ctrl-C landed


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]
    output: str
    config_keys: tuple[str, ...]
    runner: str  # "module:function", imported only when the stage runs
    enabled: Callable[[ProjectConfig], bool] = lambda config: True
    description: str = ""
    # QA pairs flow through the curation stages: a stage that reads pairs reads the output of
    # the nearest earlier enabled stage that makes them (score off: split reads qa_validated).
    reads_pairs: bool = False
    makes_pairs: bool = False
    also_writes: tuple[str, ...] = ()
    # Inputs that depend on the config (augment reads qa_test only when a test set is made).
    more_inputs: Callable[[ProjectConfig], tuple[str, ...]] = lambda config: ()
    # "module:function" taking the StageContext: after Ctrl-C, a line saying what the stage kept
    # outside its `.partial` file and how to go on, or None (train: its checkpoints and --resume).
    on_interrupt: str = ""
    # ctx.options that change what the stage writes (update's documents_only for generate): part of
    # the fingerprint recorded after a run, so a later `run --resume` redoes the stage without them.
    shaping_options: tuple[str, ...] = ()

    def run(self, ctx: StageContext) -> StageResult:
        return _function(self.runner)(ctx)

    def interrupted(self, ctx: StageContext) -> str | None:
        return _function(self.on_interrupt)(ctx) if self.on_interrupt else None


def _function(target: str) -> Callable[[StageContext], Any]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


class StageError(Exception):
    """A problem the user can fix (a missing input, a bad --data file, a model path that does not
    exist): the runner prints its message as one line -- name the file or key and what to do --
    and the command exits 1. Never a traceback."""


# Settings that change how the work is done, never what it produces: a stage may read them
# without listing them (tests/test_fingerprints.py checks every other key a stage reads is listed).
NEUTRAL_KEYS = (
    "paths.output", "teacher.api_base", "teacher.api_key", "teacher.timeout", "teacher.max_concurrency",
    "teacher.max_retries", "teacher.keep_alive", "teacher.cache", "teacher.num_ctx",
    "scoring.max_concurrency", "augment.max_concurrency",
)
_TEACHER_KEYS = ("project.language", "teacher.backend", "teacher.model", "teacher.temperature",
                 "teacher.max_tokens")
# Chunk ids and texts are rebuilt from parsed_documents with these settings.
_CHUNK_KEYS = ("chunking", "teacher.max_context_chars")

STAGES: list[Stage] = [
    Stage(
        name="parse",
        inputs=(DOCUMENTS,),
        output="parsed_documents",
        config_keys=("paths.documents", "parsing"),
        runner="slm_factory.parsing.stage:run",
        shaping_options=("only_documents",),
        description="documents → parsed_documents.json",
    ),
    Stage(
        name="generate",
        inputs=("parsed_documents",),
        output="qa_alpaca",
        config_keys=(*_TEACHER_KEYS, *_CHUNK_KEYS, "questions"),
        runner="slm_factory.generation.stage:run",
        makes_pairs=True,
        shaping_options=("documents_only",),
        description="parsed_documents.json → qa_alpaca.json (teacher writes QA pairs)",
    ),
    Stage(
        name="generate-dialogue",
        inputs=("qa_alpaca",),
        output="dialogues",
        config_keys=(*_TEACHER_KEYS, "dialogue"),
        runner="slm_factory.generation.dialogue:run",
        enabled=lambda config: config.dialogue.enabled,
        description="qa_alpaca.json → dialogues.json (multi-turn)",
    ),
    Stage(
        name="validate",
        inputs=("parsed_documents",),
        output="qa_validated",
        config_keys=("project.language", *_CHUNK_KEYS, "validation"),
        runner="slm_factory.curation.validate:run",
        enabled=lambda config: config.validation.enabled,
        reads_pairs=True,
        makes_pairs=True,
        also_writes=("rejected_validate",),
        description="qa_alpaca.json → qa_validated.json (rules, near-duplicates, groundedness, language)",
    ),
    Stage(
        name="score",
        inputs=("parsed_documents",),
        output="qa_scored",
        config_keys=(*_TEACHER_KEYS, *_CHUNK_KEYS, "scoring", "questions.mode"),
        runner="slm_factory.curation.score:run",
        enabled=lambda config: config.scoring.enabled,
        reads_pairs=True,
        makes_pairs=True,
        also_writes=("rejected_score",),
        description="→ qa_scored.json (teacher judges each pair 1-5 against its source)",
    ),
    Stage(
        name="split",
        inputs=("parsed_documents",),
        output="qa_train",
        config_keys=(*_TEACHER_KEYS, *_CHUNK_KEYS, "questions.mode", "eval.test_split", "eval.holdout", "eval.seed",
                     "validation.near_duplicate_threshold"),
        runner="slm_factory.curation.split:run",
        enabled=lambda config: config.eval.enabled,
        reads_pairs=True,
        makes_pairs=True,
        also_writes=("qa_test", "rejected_split"),
        description="→ qa_train.json + qa_test.json (held-out probes, never trained on)",
    ),
    Stage(
        name="augment",
        inputs=(),
        output="qa_augmented",
        config_keys=(*_TEACHER_KEYS, "augment", "questions.mode", "validation.near_duplicate_threshold"),
        runner="slm_factory.curation.augment:run",
        enabled=lambda config: config.augment.enabled,
        reads_pairs=True,
        makes_pairs=True,
        also_writes=("rejected_augment",),
        # Held-out probes guard the paraphrases whenever qa_test.json exists (eval on or not).
        more_inputs=lambda config: ("qa_test",),
        description="→ qa_augmented.json (paraphrased questions)",
    ),
    Stage(
        name="analyze",
        inputs=("parsed_documents",),
        output="data_analysis",
        config_keys=("project.name", "project.language", *_CHUNK_KEYS, "analyzer", "student.model",
                     "validation.max_answer_length"),
        runner="slm_factory.curation.analyze:run",
        enabled=lambda config: config.analyzer.enabled,
        reads_pairs=True,
        also_writes=("report",),
        more_inputs=lambda config: _analysed_extras(config),
        description="→ data_analysis.json + report.html",
    ),
    Stage(
        name="convert",
        inputs=(),
        output="training_data",
        config_keys=("project.language", "student.model", "student.max_seq_length", "student.chat_template",
                     "export.ollama.system_prompt", "dialogue.enabled", "dialogue.include_single_qa"),
        runner="slm_factory.training.convert:run",
        reads_pairs=True,
        # qa_reviewed.json is read when it exists; never qa_test.json (held-out probes).
        more_inputs=lambda config: ("qa_reviewed", *(("dialogues",) if config.dialogue.enabled else ())),
        description="training pairs → training_data.jsonl (the student's chat template)",
    ),
    Stage(
        name="train",
        inputs=("training_data",),
        output="adapter",
        # With --data, the system prompt (project.language, export.ollama.system_prompt) is read too.
        config_keys=("student", "training", "project.language", "export.ollama.system_prompt",
                     "incremental.resume_adapter"),
        runner="slm_factory.training.sft:run",
        on_interrupt="slm_factory.training.sft:kept_after_interrupt",
        description="training_data.jsonl → checkpoints/adapter/ (LoRA, loss on assistant replies only)",
    ),
    Stage(
        name="export",
        inputs=("adapter",),
        output="merged_model",
        # The adapter records its base; student.model is read when that folder is gone.
        config_keys=("student.model", "student.chat_template", "export", "project.language"),
        runner="slm_factory.export.merge:run",
        description="checkpoints/adapter/ → merged_model/ + Modelfile (TEMPLATE checked against the chat template)",
    ),
    Stage(
        name="export-gguf",
        inputs=("merged_model",),
        output="gguf",
        config_keys=("gguf_export", "export.ollama", "project.language"),
        runner="slm_factory.export.gguf:run",
        enabled=lambda config: config.gguf_export.enabled,
        description="merged_model/ → gguf/model-<type>.gguf + Modelfile (llama.cpp's converter and quantizer)",
    ),
    Stage(
        name="eval",
        inputs=("merged_model", "qa_test"),
        output="eval_results",
        config_keys=("eval", "project.language", "export.ollama.system_prompt", *_TEACHER_KEYS, *_CHUNK_KEYS),
        runner="slm_factory.evaluation.evaluate:run",
        enabled=lambda config: config.eval.enabled,
        also_writes=("eval_report",),
        description="held-out questions (qa_test.json) → eval_results.json + .html",
    ),
    Stage(
        name="compare",
        inputs=("merged_model", "qa_test"),
        output="compare_results",
        config_keys=("compare", "student.model", "eval", "project.language", "export.ollama.system_prompt",
                     *_TEACHER_KEYS, *_CHUNK_KEYS),
        runner="slm_factory.evaluation.compare:run",
        enabled=lambda config: config.compare.enabled,
        also_writes=("compare_report",),
        description="base student vs fine-tuned on the held-out questions → compare_results.json + .html",
    ),
]


# The key that turns each optional stage on (the others always run). split and eval share
# eval.enabled: eval asks the questions split holds out.
ENABLE_KEYS = {
    "generate-dialogue": "dialogue.enabled", "validate": "validation.enabled", "score": "scoring.enabled",
    "split": "eval.enabled", "augment": "augment.enabled", "analyze": "analyzer.enabled",
    "export-gguf": "gguf_export.enabled", "eval": "eval.enabled", "compare": "compare.enabled",
}


def _analysed_extras(config: ProjectConfig) -> tuple[str, ...]:
    """Besides the pairs, analyze reads every enabled stage's rejections and the test set."""
    names = [name for stage in STAGES if stage.enabled(config) for name in stage.also_writes
             if name.startswith("rejected_")]
    return (*names, "qa_test")  # read when it exists, as augment does


def stage_named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


# -- fingerprints ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    from pydantic import BaseModel, SecretStr

    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, SecretStr):
        return "set" if value.get_secret_value() else ""  # a key's value never reaches state
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def pairs_input(stage: Stage, config: ProjectConfig) -> str:
    """The artifact of QA pairs `stage` reads: the output of the nearest earlier enabled stage
    that makes pairs (qa_alpaca when every curation stage before it is off)."""
    index = STAGES.index(stage)
    for earlier in reversed(STAGES[:index]):
        if earlier.makes_pairs and earlier.enabled(config):
            return earlier.output
    return "qa_alpaca"


def stage_inputs(stage: Stage, config: ProjectConfig) -> tuple[str, ...]:
    pairs = (pairs_input(stage, config),) if stage.reads_pairs else ()
    return (*stage.inputs, *pairs, *stage.more_inputs(config))


def config_fingerprint(stage: Stage, config: ProjectConfig) -> str:
    keys = {key: _plain(config.section(key)) for key in stage.config_keys}
    return _digest(json.dumps(keys, sort_keys=True, ensure_ascii=False).encode())


def input_fingerprint(stage: Stage, config: ProjectConfig, workspace: Workspace, data: str | None = None,
                      shaping: dict[str, Any] | None = None) -> str:
    """Every input's signature; `data` is a file given with --data in place of the pairs input,
    `shaping` the stage's shaping_options that were set."""
    parts = []
    for name in stage_inputs(stage, config):
        path = config.documents_dir if name == DOCUMENTS else workspace.path(name)
        parts.append(f"{name}={_path_signature(path)}")
    if data:
        parts.append(f"--data {Path(data).resolve()}={_path_signature(Path(data))}")
    for key, value in sorted((shaping or {}).items()):
        parts.append(f"{key}={json.dumps(value, sort_keys=True, default=str)}")
    return _digest("\n".join(parts).encode())


def output_signature(stage: Stage, workspace: Workspace) -> str:
    names = (stage.output, *stage.also_writes)
    return _digest("\n".join(_path_signature(workspace.path(name)) for name in names).encode())


def _path_signature(path: Path) -> str:
    """Names, sizes and modification times: cheap, and changes whenever a file does."""
    if path.is_file():
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    if path.is_dir():
        entries = []
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = child.stat()
            entries.append(f"{child.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}")
        return _digest("\n".join(entries).encode())
    return "missing"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# -- status ------------------------------------------------------------------------------------


@dataclass
class StageStatus:
    name: str
    artifact: str
    enabled: bool
    exists: bool
    items: int | None
    modified: str | None
    up_to_date: bool


def artifact_items(path: Path) -> int | None:
    """How many items an artifact holds: records in a JSON list, lines in JSONL, files in a folder."""
    if not path.exists():
        return None
    if path.is_dir():
        return sum(1 for p in path.rglob("*") if p.is_file())
    if path.suffix == ".jsonl":
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if isinstance(data, dict) and isinstance(data.get("documents"), list):
            return len(data["documents"])
        if isinstance(data, dict) and isinstance(data.get("totals"), dict):  # data_analysis.json
            return data["totals"].get("pairs")
        return len(data) if isinstance(data, (list, dict)) else None
    return None


def stage_status(config: ProjectConfig, workspace: Workspace,
                 options: dict[str, Any] | None = None) -> list[StageStatus]:
    """Every stage's artifact and whether it is up to date. `options`: the StageContext options a
    run was given (the wizard's chosen documents), whose shaping options count as it recorded them."""
    state = workspace.load_state().get("stages", {})
    options = options or {}
    rows = []
    stale_before = False
    for stage in STAGES:
        path = workspace.path(stage.output)
        exists = path.exists()
        recorded = state.get(stage.name, {})
        current = exists and not stale_before and recorded.get("config") == config_fingerprint(
            stage, config
        ) and recorded.get("inputs") == input_fingerprint(
            stage, config, workspace, shaping={key: options[key] for key in stage.shaping_options if options.get(key)}
        ) and recorded.get(
            "output"
        ) == output_signature(stage, workspace)
        enabled = stage.enabled(config)
        if enabled and not current:
            stale_before = True
        modified = (
            datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
            if exists
            else None
        )
        rows.append(
            StageStatus(stage.name, str(path.relative_to(workspace.root)), enabled, exists,
                        artifact_items(path), modified, bool(current))
        )
    return rows


def resume_point(rows: list[StageStatus]) -> str | None:
    """The first enabled stage that is not up to date: where `--resume` starts."""
    for row in rows:
        if row.enabled and not row.up_to_date:
            return row.name
    return None


# -- running -----------------------------------------------------------------------------------


@dataclass
class StageRun:
    stage: str
    status: str  # ran, skipped (disabled), up-to-date, failed
    result: StageResult | None = None
    seconds: float = 0.0


def select_stages(start: str | None, end: str | None) -> list[Stage]:
    names = [stage.name for stage in STAGES]
    first = names.index(stage_named(start).name) if start else 0
    last = names.index(stage_named(end).name) if end else len(names) - 1
    return STAGES[first : last + 1]


def run_pipeline(
    ctx: StageContext, start: str | None = None, end: str | None = None, resume: bool = False,
    report: Callable[[StageRun], None] = lambda run: None,
) -> list[StageRun]:
    """Run stages from `start` to `end`; with `resume`, skip those whose fingerprint holds.
    `report` hears of each stage as it ends."""
    runs: list[StageRun] = []
    up_to_date = {row.name for row in stage_status(ctx.config, ctx.workspace) if row.up_to_date}
    for stage in select_stages(start, end):
        if not stage.enabled(ctx.config):
            run = StageRun(stage.name, "skipped")
        elif resume and stage.name in up_to_date:
            run = StageRun(stage.name, "up-to-date")
        else:
            run = run_stage(stage, ctx)
        if run.status in ("skipped", "up-to-date"):
            ctx.progress.stage_ended(run)
        report(run)
        runs.append(run)
        if run.status == "failed":
            break
    return runs


def stages_needed_for(target: Stage, config: ProjectConfig, workspace: Workspace) -> list[Stage]:
    """The earlier stages that make what `target` reads (directly or through each other) and
    whose output is missing or stale, in pipeline order: `generate` in a fresh project needs
    `parse`, as in the original slm-factory."""
    producers = {name: stage for stage in STAGES for name in (stage.output, *stage.also_writes)}
    needed: set[str] = set()
    pending = [target]
    while pending:
        for artifact in stage_inputs(pending.pop(), config):
            producer = producers.get(artifact)
            if producer is not None and producer.name not in needed and producer is not target \
                    and producer.enabled(config):
                needed.add(producer.name)
                pending.append(producer)
    current = {row.name for row in stage_status(config, workspace) if row.up_to_date}
    return [stage for stage in STAGES if stage.name in needed and stage.name not in current]


def run_with_prerequisites(
    target: Stage, ctx: StageContext, report: Callable[[StageRun], None] = lambda run: None,
    needed: list[Stage] | None = None,
) -> list[StageRun]:
    """Run what `target` needs that is missing or stale (`needed`, when the caller has already
    asked stages_needed_for), then `target`; stop at a failure. `report` hears of each stage as it ends."""
    if needed is None:
        needed = stages_needed_for(target, ctx.config, ctx.workspace)
    runs: list[StageRun] = []
    for stage in [*needed, target]:
        run = run_stage(stage, ctx)
        report(run)
        runs.append(run)
        if run.status == "failed":
            break
    return runs


def run_stage(stage: Stage, ctx: StageContext) -> StageRun:
    from slm_factory.workspace import ArtifactError

    ctx.workspace.ensure()
    ctx.current_stage = stage.name
    ctx.progress.stage_started(stage.name)
    started = time.perf_counter()
    try:
        result = stage.run(ctx)
    except (StageError, ArtifactError) as error:
        result = StageResult(failed=True, lines=[str(error)])
    seconds = time.perf_counter() - started
    if result.failed:
        run = StageRun(stage.name, "failed", result, seconds)
    else:
        if is_main_process():  # the other ranks of a distributed run (torchrun, accelerate) leave the record to rank 0
            _record(stage, ctx, result, seconds)
        run = StageRun(stage.name, "ran", result, seconds)
    ctx.progress.stage_ended(run)
    return run


def is_main_process() -> bool:
    """False in the ranks other than 0 of a distributed run (torchrun and accelerate set RANK)."""
    return os.environ.get("RANK", "0") == "0"


def _record(stage: Stage, ctx: StageContext, result: StageResult, seconds: float) -> None:
    state = ctx.workspace.load_state()
    stages = state.setdefault("stages", {})
    stages[stage.name] = {
        "config": config_fingerprint(stage, ctx.config),
        "inputs": input_fingerprint(stage, ctx.config, ctx.workspace, ctx.options.get("data"),
                                    {key: ctx.options[key] for key in stage.shaping_options if ctx.options.get(key)}),
        "output": output_signature(stage, ctx.workspace),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "items": result.items,
        "counts": result.counts,
        **({"stats": result.extra} if result.extra else {}),
    }
    ctx.workspace.save_state(state)
