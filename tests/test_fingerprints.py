"""Each stage's fingerprint covers what it really reads.

Every stage runs here on a small project with its config wrapped in a spy that records each key
read. A key a stage reads but does not list in `config_keys` (nor in NEUTRAL_KEYS: settings that
change how the work is done, not what it produces) would leave the stage "up to date" after the
user changed it -- the test names the stage and the key. Then every listed key, changed alone,
must make its stage stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from slm_factory import pipeline
from slm_factory.config import parse_config
from slm_factory.pipeline import NEUTRAL_KEYS, STAGES, StageContext, config_fingerprint, stage_status
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend
from tests.training.conftest import smollm2_tokenizer_dir, tiny_llama_dir  # noqa: F401  (fixtures)

# Properties of ProjectConfig computed from keys.
_DERIVED = {"documents_dir": "paths.documents", "output_dir": "paths.output", "questions_file": "questions.file"}
_UNTRACKED = {"root", "notices"}  # where project.yaml lives; messages for the user


class ConfigSpy:
    """Stands in for a config section and records the dotted path of every key read through it."""

    def __init__(self, target: BaseModel, path: str, seen: set[str]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_seen", seen)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        dotted = f"{self._path}.{name}" if self._path else name
        if not self._path and name in _DERIVED:
            self._seen.add(_DERIVED[name])
        elif not self._path and name in _UNTRACKED:
            pass
        elif isinstance(value, BaseModel):
            return ConfigSpy(value, dotted, self._seen)
        elif callable(value):  # model_dump(), section(): the whole section is read
            if name == "section":
                return lambda key: self._section(key)
            self._seen.add(self._path or "<everything>")
        else:
            self._seen.add(dotted)
        return value

    def _section(self, dotted: str) -> Any:
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


_SENTENCE = re.compile(r"[^.!?\n]{12,}[.!?]")


def _sentences(request) -> list[str]:
    text = "\n".join(m.get("content", "") for m in request.messages if m.get("role") == "user")
    found = [s.strip() for s in _SENTENCE.findall(text)]
    return found or ["The subsidy deadline is 30 June 2024."]


def _fill(schema: dict[str, Any], name: str, sentences: list[str], index: int = 0) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {key: _fill(sub, key, sentences, i) for i, (key, sub) in enumerate(schema.get("properties", {}).items())}
    if kind == "array":
        count = max(schema.get("minItems", 1), min(2, schema.get("maxItems", 2)))
        return [_fill(schema.get("items", {}), name, sentences, index + i) for i in range(count)]
    if kind == "integer" or kind == "number":
        return schema.get("maximum", 5)
    if kind == "boolean":
        return True
    sentence = sentences[index % len(sentences)]
    if "question" in name or name in ("user",):
        return f"What does the housing rule say about {sentence.rstrip('.!?').lower()[:80]}?"
    return sentence


def schema_backend() -> ScriptedBackend:
    """A teacher that answers any request with JSON matching its schema, built from the
    sentences of the prompt: enough for every stage to run its whole path."""

    def reply(request) -> str:
        if request.schema is None:
            return _sentences(request)[0]
        return json.dumps(_fill(request.schema, "", _sentences(request)), ensure_ascii=False)

    return ScriptedBackend(reply)


@pytest.fixture
def project(tmp_path: Path, tiny_llama_dir: Path):
    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "a.txt").write_text(
        "Youth housing subsidy.\n\nThe application deadline of the 2024 youth housing subsidy is 30 June 2024. "
        "Applicants must be between 19 and 34 years old. The subsidy pays up to 200,000 won a month for 12 months.\n\n"
        "Applications are made online at the city portal. Documents proving income must be attached.",
        encoding="utf-8",
    )
    (docs / "b.md").write_text(
        "# Library rules\n\nThe central library opens at 9 am and closes at 8 pm on weekdays. "
        "Members may borrow up to ten books for three weeks. Late returns cost 100 won per book per day.",
        encoding="utf-8",
    )
    raw = {
        "paths": {"documents": str(docs), "output": str(tmp_path / "output")},
        "questions": {"questions_per_chunk": 2},
        "validation": {"min_answer_length": 5},
        "scoring": {"enabled": True, "threshold": 1},
        "augment": {"enabled": True, "num_variants": 1},
        "dialogue": {"enabled": True},
        "eval": {"test_split": 0.5, "metrics": ["bleu", "rouge", "key_facts", "judge"], "max_new_tokens": 4},
        "compare": {"enabled": True},
        "gguf_export": {"quantization_type": "f16"},
        # A tiny random Llama with SmolLM2's tokenizer: trains and answers in seconds, and llama.cpp's
        # converter knows its tokenizer (export-gguf runs too).
        "student": {"model": str(tiny_llama_dir)},
    }
    return raw


def test_every_key_a_stage_reads_is_in_its_fingerprint(project: dict[str, Any]) -> None:
    config = parse_config(project)
    workspace = Workspace(config.output_dir)
    workspace.ensure()
    backend = schema_backend()
    missing: dict[str, set[str]] = {}
    for stage in STAGES:
        assert stage.enabled(config), f"enable {stage.name} in the fixture so its reads are checked"
        seen: set[str] = set()
        ctx = StageContext(config=ConfigSpy(config, "", seen), workspace=workspace, teacher_backend=backend)  # type: ignore[arg-type]
        result = stage.run(ctx)
        assert not result.failed, (stage.name, result.lines)
        # Keys that choose the stage's inputs (which earlier stages are on) are in the input
        # fingerprint through the inputs' names.
        choosing: set[str] = set()
        pipeline.stage_inputs(stage, ConfigSpy(config, "", choosing))  # type: ignore[arg-type]
        covered = (*stage.config_keys, *NEUTRAL_KEYS, *choosing)
        undeclared = {key for key in seen if not any(key == c or key.startswith(c + ".") for c in covered)}
        if undeclared:
            missing[stage.name] = undeclared
    assert not missing, f"keys read but not fingerprinted (add to config_keys or NEUTRAL_KEYS): {missing}"


def _leaf_keys(model: BaseModel, prefix: str) -> list[str]:
    keys = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        dotted = f"{prefix}.{name}" if prefix else name
        keys.extend(_leaf_keys(value, dotted) if isinstance(value, BaseModel) else [dotted])
    return keys


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value > 0 else 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {**value, "x": ["x"]}
    return "x"


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_changing_any_listed_key_makes_the_stage_stale(stage: str) -> None:
    config = parse_config({})
    target = pipeline.stage_named(stage)
    before = config_fingerprint(target, config)
    leaves = [leaf for key in target.config_keys
              for leaf in (_leaf_keys(config.section(key), key) if isinstance(config.section(key), BaseModel) else [key])]
    assert leaves
    for leaf in leaves:
        section, _, name = leaf.rpartition(".")
        owner = config.section(section) if section else config
        copy = owner.model_copy(update={name: _changed(getattr(owner, name))})
        changed = config.model_copy(deep=True)
        if section:
            parent_path, _, last = section.rpartition(".")
            parent = changed.section(parent_path) if parent_path else changed
            object.__setattr__(parent, last, copy)
        else:
            changed = copy
        assert config_fingerprint(target, changed) != before, f"{stage}: changing {leaf} left the fingerprint unchanged"


def test_data_file_is_part_of_the_input_fingerprint(project: dict[str, Any], tmp_path: Path) -> None:
    config = parse_config(project)
    workspace = Workspace(config.output_dir)
    stage = pipeline.stage_named("validate")
    data = tmp_path / "pairs.json"
    data.write_text("[]", encoding="utf-8")
    first = pipeline.input_fingerprint(stage, config, workspace, str(data))
    data.write_text('[{"instruction": "Q?", "output": "A."}]', encoding="utf-8")
    assert pipeline.input_fingerprint(stage, config, workspace, str(data)) != first
    assert pipeline.input_fingerprint(stage, config, workspace) != first


def test_status_after_a_full_run_is_up_to_date_and_a_key_change_stales_from_its_stage(project: dict[str, Any]) -> None:
    config = parse_config(project)
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir), teacher_backend=schema_backend())
    runs = pipeline.run_pipeline(ctx)
    assert all(run.status == "ran" for run in runs), [(r.stage, r.status, r.result and r.result.lines) for r in runs]
    assert all(row.up_to_date for row in stage_status(config, ctx.workspace))
    project["scoring"]["threshold"] = 2
    changed = parse_config(project)
    stale = [row.name for row in stage_status(changed, ctx.workspace) if not row.up_to_date]
    names = [stage.name for stage in STAGES]
    assert stale == names[names.index("score"):]
