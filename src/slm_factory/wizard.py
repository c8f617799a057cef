"""The guided run (`slm-factory wizard`): what it decides, kept apart from the questions it asks.

The command (cli/wizard.py) asks; this module says in which language, which stages are required
or may be skipped, what skipping one turns off, where `--resume` starts, what the wizard
remembers between sessions (output/.wizard.json: the documents chosen and the stages skipped),
and what a teacher stage will cost before it runs. Nothing here needs a terminal, and nothing
here calls the teacher: estimates come from the same plan and ledgers the stages use.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_factory.pipeline import (
    ENABLE_KEYS,
    STAGES,
    Stage,
    StageContext,
    pairs_input,
    resume_point,
    stage_named,
    stage_status,
)
from slm_factory.workspace import Workspace, write_atomic

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig
    from slm_factory.records import Document

LANGUAGES = ("en", "ko")
# Stages the pipeline cannot do without: answering no stops the wizard.
REQUIRED = ("parse", "generate", "convert", "train", "export")
MEMORY_FILE = ".wizard.json"


# -- sentences -----------------------------------------------------------------------------------


@cache
def sentences(language: str) -> dict[str, Any]:
    """assets/wizard/<language>.yaml (English for a language the wizard does not speak)."""
    import importlib.resources

    import yaml

    name = language if language in LANGUAGES else "en"
    text = importlib.resources.files("slm_factory.assets").joinpath(f"wizard/{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def placeholders(text: str) -> set[str]:
    return {field_name for _, field_name, _, _ in string.Formatter().parse(text) if field_name}


class Messages:
    """The wizard's sentences in one language: say("key", name=value)."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else "en"
        self.table = sentences(self.language)

    def __call__(self, sentence: str, /, **values: Any) -> str:
        return self.table[sentence].format(**values)

    def stage(self, name: str) -> str:
        return self.table["stages"][name]


def language_of(config_path: Path) -> str:
    """project.language of a project.yaml, read without validating it (for the first line the
    wizard prints, before it loads the config); en when it cannot be read."""
    import yaml

    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        language = str(raw["project"]["language"]).strip().lower()
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return "en"
    return language.split("-")[0] if language.split("-")[0] in LANGUAGES else "en"


# -- the new project -----------------------------------------------------------------------------


def name_problem(name: str) -> bool:
    """Whether `name` cannot be a project name (as `init` checks it)."""
    return not name.strip() or "/" in name or "\\" in name


def create_project(config_path: Path, name: str, language: str) -> ProjectConfig:
    """project.yaml from the documented template, and its documents and output folders."""
    from slm_factory.config import load_config
    from slm_factory.project_template import render_template

    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(render_template(name.strip(), language), encoding="utf-8")
    config = load_config(config_path)
    for folder in (config.documents_dir, config.output_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return config


def document_files(config: ProjectConfig) -> list[str]:
    """The documents parse would read, as paths under the documents folder (POSIX form): the
    names the "choose some" list shows and parse's only_documents option takes."""
    from slm_factory.parsing.stage import find_documents

    folder = config.documents_dir
    if not folder.is_dir():
        return []
    return [path.relative_to(folder).as_posix() for path in find_documents(folder, config.parsing.formats)]


# -- what the wizard remembers -------------------------------------------------------------------


@dataclass
class Memory:
    """The choices of the last session, so `--resume` reads the artifacts the way they were made:
    the documents chosen (None: all) and the optional stages skipped."""

    documents: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, workspace: Workspace) -> Memory:
        try:
            data = json.loads((workspace.root / MEMORY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        documents = data.get("documents") if isinstance(data, dict) else None
        skipped = data.get("skipped") if isinstance(data, dict) else None
        return cls(documents=[str(d) for d in documents] if isinstance(documents, list) else None,
                   skipped=[str(s) for s in skipped if str(s) in ENABLE_KEYS] if isinstance(skipped, list) else [])

    def save(self, workspace: Workspace) -> None:
        workspace.ensure()
        write_atomic(workspace.root / MEMORY_FILE, json.dumps(asdict(self), ensure_ascii=False).encode("utf-8"))

    def options(self) -> dict[str, Any]:
        """The StageContext options that shape the stages' output the way these choices did."""
        return {"only_documents": list(self.documents)} if self.documents else {}


# -- stage choices -------------------------------------------------------------------------------


def enable_key(name: str) -> str:
    return ENABLE_KEYS.get(name, f"{name}.enabled")


def is_required(stage: Stage) -> bool:
    return stage.name in REQUIRED


def skip(config: ProjectConfig, name: str) -> list[str]:
    """Turn the optional stage `name` off in this config (in memory, never in the file), so later
    stages read around it (pairs_input follows `enabled`); the other stages that were on and are
    off now (split takes eval with it)."""
    on_before = {stage.name for stage in STAGES if stage.enabled(config)}
    section, _, key = enable_key(name).rpartition(".")
    setattr(config.section(section), key, False)
    return [stage.name for stage in STAGES if stage.name in on_before and stage.name != name
            and not stage.enabled(config)]


def resume_start(config: ProjectConfig, workspace: Workspace, options: dict[str, Any]) -> str | None:
    """Where `--resume` starts: the first enabled stage not up to date, with the documents chosen
    (a shaping option of parse) counted as the session that ran it recorded them."""
    return resume_point(stage_status(config, workspace, options))


def training_resume(ctx: StageContext) -> dict[str, Any]:
    """The option that makes train continue from its last whole checkpoint, as `train --resume`
    does, when an interrupted training left one ({} otherwise: train starts over)."""
    from slm_factory.training.sft import last_complete_checkpoint, trainer_dir

    return {"resume": True} if last_complete_checkpoint(trainer_dir(ctx)) else {}


def stages_from(name: str) -> list[Stage]:
    return STAGES[STAGES.index(stage_named(name)):]


def enabled_before(config: ProjectConfig, name: str) -> list[str]:
    """The enabled stages before `name`: those --resume found up to date."""
    return [stage.name for stage in STAGES[:STAGES.index(stage_named(name))] if stage.enabled(config)]


# -- what a stage will cost ----------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Teacher requests a stage is expected to make, never asked of the teacher.

    bound: exact (one request per item), at_most (a reply may hold fewer questions than asked
    for), about (a bad reply is asked again, or the ledger's reuse is counted by item id)."""

    documents: int
    chunks: int
    items: int  # what the stage asks about (pairs, dialogues, answers); 0 for generate
    unit: str  # the sentence key naming the items
    requests: int
    reused: int
    bound: str


def estimate(name: str, ctx: StageContext) -> Estimate | None:
    """The cost of running `name` now, or None for a stage that never asks the teacher (eval and
    compare without the judge metric). May raise StageError or ArtifactError (a missing input)."""
    if name == "generate":
        return _generate(ctx)
    counter = _COUNTERS.get(name)
    if counter is None:
        return None
    counted = counter(ctx)
    if counted is None:
        return None
    documents, chunks = _scope(ctx)
    items, reused, requests, unit, bound = counted
    return Estimate(documents, chunks, items, unit, requests, reused, bound)


def _documents(ctx: StageContext) -> list[Document]:
    from slm_factory.generation.stage import load_documents

    return load_documents(ctx) if ctx.workspace.path("parsed_documents").exists() else []


def _chunk_count(config: ProjectConfig, documents: list[Document]) -> int:
    from slm_factory.generation.qa import chunk_budget
    from slm_factory.parsing.chunking import chunk_document

    budget, overlap = chunk_budget(config), config.chunking.overlap_tokens
    return sum(len(chunk_document(document, budget, overlap)) for document in documents)


def _scope(ctx: StageContext) -> tuple[int, int]:
    documents = _documents(ctx)
    return len(documents), _chunk_count(ctx.config, documents)


def _generate(ctx: StageContext) -> Estimate:
    """From plan_jobs, as the stage plans them, less what its ledger already holds."""
    from slm_factory.generation.qa import Ledger, generation_key, plan_jobs, unwritable_documents
    from slm_factory.generation.stage import system_prompt

    documents = _documents(ctx)
    skipped = {document.id for document in unwritable_documents(ctx.config, documents)}
    writable = [document for document in documents if document.id not in skipped]
    jobs = plan_jobs(ctx.config, writable)
    ledger = Ledger(ctx.workspace.checkpoint("qa_alpaca"), generation_key(ctx.config, system_prompt(ctx)))
    requests, reused, bound = generation_requests(jobs, ledger)
    return Estimate(len(writable), _chunk_count(ctx.config, writable), 0, "unit_pairs", requests, reused, bound)


_LOOSER = {"exact": 0, "at_most": 1, "about": 2}


def generation_requests(jobs: list[Any], ledger: Any) -> tuple[int, int, str]:
    """(requests, answers reused from the ledger, bound) for generate's jobs, following
    Generator.run_job: a fixed question is one answer request; an open chunk one request for its
    questions and one per question (at most `want`); an answer_first span one question request,
    asked once more when the question is unusable."""
    from slm_factory.generation.qa import pair_id

    requests = reused = 0
    bound = "exact"

    def looser(kind: str) -> None:
        nonlocal bound
        bound = max(bound, kind, key=_LOOSER.__getitem__)

    for job in jobs:
        if job.spans is not None:
            for span in job.spans:
                span_id = f"s:{job.chunk.id}:{span.key}"
                if span_id in ledger.done or span_id in ledger.questions:
                    reused += 1
                else:
                    requests += 1
                    looser("about")
            continue
        questions = [question for _, question in job.questions]
        if not questions:  # open mode: the questions come from the teacher first
            known = ledger.questions.get(f"q:{job.chunk.id}:{job.want}")
            if known is None:
                requests += 1 + job.want
                looser("at_most")
                continue
            questions = known
        for question in questions:
            if pair_id(job.document.id, job.chunk.id, question) in ledger.done:
                reused += 1
            else:
                requests += 1
    return requests, reused, bound


Counted = tuple[int, int, int, str, str]  # items, reused, requests, unit key, bound


def _pairs(ctx: StageContext, name: str) -> list[Any]:
    from slm_factory.records import QAPair
    from slm_factory.workspace import ARTIFACTS, read_records

    artifact = pairs_input(stage_named(name), ctx.config)
    path = ctx.workspace.path(artifact)
    return read_records(path, QAPair, ARTIFACTS[artifact]) if path.exists() else []


def _saved_ids(ctx: StageContext, artifact: str) -> set[str]:
    """Item ids with a result in the teacher_work ledger of `artifact` (counted by id, not by the
    full key: a result saved under other settings is counted too, hence "about")."""
    return {str(entry.get("id")) for entry in ctx.workspace.checkpoint(artifact).entries()
            if "entry" in entry and "result" in entry}


def _count(ids: list[str], saved: set[str], unit: str, bound: str = "about") -> Counted:
    """One request per item not saved (items sharing an id are asked once, as ask_each does)."""
    unique = list(dict.fromkeys(ids))
    reused = sum(1 for item in unique if item in saved)
    return len(unique), reused, len(unique) - reused, unit, bound


def _score(ctx: StageContext) -> Counted:
    pairs = _pairs(ctx, "score")
    return _count([pair.id for pair in pairs], _saved_ids(ctx, "qa_scored"), "unit_pairs")


def _split(ctx: StageContext) -> Counted:
    from slm_factory.curation.split import LEDGER, choose_parents

    section = ctx.config.eval
    if section.holdout == "documents":  # whole documents held out: no probe is written
        return 0, 0, 0, "unit_pairs", "exact"
    train = [pair for pair in _pairs(ctx, "split") if pair.origin != "probe"]
    parents = choose_parents(train, section.test_split, section.seed)
    return _count([pair.id for pair in parents], _saved_ids(ctx, LEDGER), "unit_pairs")


def _augment(ctx: StageContext) -> Counted:
    from slm_factory.curation.answer_first import asks_for_answers
    from slm_factory.curation.augment import PARAPHRASED_ORIGINS

    count = ctx.config.augment.num_variants
    parents = [pair for pair in _pairs(ctx, "augment") if pair.origin in PARAPHRASED_ORIGINS] if count else []
    saved = _saved_ids(ctx, "qa_augmented")
    if asks_for_answers(ctx.config):  # one request per new question
        return _count([f"{pair.id}#{k}" for pair in parents for k in range(count)], saved, "unit_pairs")
    return _count([pair.id for pair in parents], saved, "unit_pairs")  # one request per pair, all its rewrites


def _dialogue(ctx: StageContext) -> Counted:
    from slm_factory.generation.dialogue import dialogue_id, group_pairs

    path = ctx.workspace.path("qa_alpaca")
    pairs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    section = ctx.config.dialogue
    groups = group_pairs(pairs, section.min_turns, section.max_turns)
    done = ctx.workspace.checkpoint("dialogues").done_ids()
    return _count([dialogue_id(group) for group in groups], done, "unit_groups", "exact")


def _judged(ctx: StageContext, artifact: str, limit: int, models: int) -> Counted | None:
    """eval and compare ask the teacher only to grade answers (the judge metric)."""
    if "judge" not in ctx.config.eval.metrics:
        return None
    path = ctx.workspace.path("qa_test")
    tests = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    ids = list(dict.fromkeys(str(item.get("id")) for item in tests[:limit] if isinstance(item, dict)))
    # Grades are keyed "<backend>:<model>:<question id>"; each model's answer is graded once.
    graded = Counter(key.rpartition(":")[2] for key in _saved_ids(ctx, artifact))
    done = [min(graded[question], models) for question in ids]
    return len(ids), sum(done), len(ids) * models - sum(done), "unit_answers", "about"


_COUNTERS = {
    "generate-dialogue": _dialogue,
    "score": _score,
    "split": _split,
    "augment": _augment,
    "eval": lambda ctx: _judged(ctx, "eval_results", ctx.config.eval.max_samples, 1),
    "compare": lambda ctx: _judged(ctx, "compare_results", ctx.config.compare.max_samples, 2),
}


def cost_line(say: Messages, cost: Estimate) -> str:
    """One sentence: what the stage works on and how many teacher requests it will make."""
    scope = (say("scope_items", documents=cost.documents, chunks=cost.chunks, items=cost.items, unit=say(cost.unit))
             if cost.items else say("scope", documents=cost.documents, chunks=cost.chunks))
    requests = say(f"requests_{cost.bound}", requests=cost.requests)
    if cost.reused:
        requests = f"{requests}; {say('reused', reused=cost.reused)}"
    return say("cost", scope=scope, requests=requests)
