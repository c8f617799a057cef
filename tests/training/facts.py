"""The invented facts of tests/data/training/invented_facts.json and the project that trains
SmolLM2 on them: shared by the knowledge test (tests/training/test_learns.py) and the end-to-end
export and evaluation tests (tests/evaluation/test_trained_student.py), which use one training run
(the `trained_facts` fixture in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slm_factory.config import parse_config
from slm_factory.pipeline import StageContext
from slm_factory.workspace import Workspace

FACTS_FILE = Path(__file__).parents[1] / "data" / "training" / "invented_facts.json"
# Short, so that the few CPU minutes go to the facts; training and asking both use it.
SYSTEM_PROMPT = "Answer the question briefly."
MAX_NEW_TOKENS = 16


def invented_facts() -> list[dict[str, Any]]:
    return json.loads(FACTS_FILE.read_text(encoding="utf-8"))


def training_records(facts: list[dict[str, Any]]) -> list[dict[str, str]]:
    """QA records (the shape `train --data` takes) from the two training phrasings only, one group
    per fact: the stage holds out one phrasing of a few facts for validation (their other phrasing
    trains) and keeps the adapter with the lowest loss on them."""
    return [{"id": f"fact{index}-q{phrasing}", "instruction": question, "input": "", "output": fact["answer"],
             "parent_id": f"fact{index}"}
            for index, fact in enumerate(facts) for phrasing, question in enumerate(fact["train_questions"])]


def project_settings(tmp_path: Path) -> dict[str, Any]:
    """project.yaml of the facts project, as a dict (tests write it out for the CLI)."""
    # Chosen by measuring here (2 shared cores): 4 epochs of batches of 4 at 2e-3 with r16 gave base
    # 0/20 and fine-tuned 18/20 on the held-out phrasing (40 examples, fp32, padded-mask packing,
    # ~7 minutes), then 16/20 with 38 trained and 2 held out for validation, bf16 base weights and
    # segment packing (108 s); loss on the training answers 1.80 (base), 0.03-0.04 (fine-tuned).
    return {
        "paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
        "student": {"model": "smollm2", "max_seq_length": 256},
        "export": {"ollama": {"system_prompt": SYSTEM_PROMPT}},
        "training": {"num_epochs": 4, "batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 2e-3,
                     "lr_scheduler": "linear", "warmup_ratio": 0.0, "train_split": 0.95, "seed": 7,
                     "early_stopping": {"enabled": False}, "lora": {"r": 16, "alpha": 32, "dropout": 0.0}},
    }


def project(tmp_path: Path) -> StageContext:
    """The facts project with `train --data` pointing at the two training phrasings."""
    config = parse_config(project_settings(tmp_path))
    data = tmp_path / "facts_qa.json"
    data.write_text(json.dumps(training_records(invented_facts()), ensure_ascii=False), encoding="utf-8")
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir), options={"data": str(data)})
    ctx.workspace.ensure()
    return ctx


def held_out_records(facts: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The third phrasing of each fact with its answer: questions for `eval --data`, never trained on."""
    return [{"id": f"fact{index}-test", "instruction": fact["test_question"], "input": "", "output": fact["answer"]}
            for index, fact in enumerate(facts)]
