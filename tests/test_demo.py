"""The README's main job, as a user runs it: `slm-factory demo` from nothing to a fine-tuned,
exported and evaluated SmolLM2 on the bundled documents, offline, with the embedded teacher. Every
stage really runs (llama.cpp teacher, LoRA training, merge, GGUF conversion); the fine-tuned student
must beat the base on held-out questions by more than noise. It runs with an empty cache and no
package index or model hub to reach, as a first demo on a machine without network does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slm_factory.pipeline import STAGES

DEMO_STAGES = ("parse", "generate", "validate", "score", "split", "augment", "analyze", "convert", "train",
               "export", "export-gguf", "eval", "compare")


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_the_demo_trains_a_student_that_beats_its_base_on_held_out_questions(tmp_path: Path, smollm2_gguf: Path):
    folder, cache = tmp_path / "demo", tmp_path / "cache"
    offline = {"SLM_FACTORY_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PIP_CONFIG_FILE": os.devnull,
               "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}
    environment = {**{k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}, **offline}
    result = subprocess.run([sys.executable, "-m", "slm_factory", "demo", "--path", str(folder)],
                            capture_output=True, text=True, timeout=2900, check=False, env=environment)
    out = result.stdout.replace("\n", " ")
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])

    state = json.loads((folder / "output" / ".state.json").read_text())["stages"]
    published = json.loads((folder / "output" / ".progress.json").read_text())
    assert (published["command"], published["outcome"]) == ("demo", "done")
    assert set(DEMO_STAGES) <= {stage.name for stage in STAGES}
    assert [name for name in DEMO_STAGES if name not in state] == []
    assert state["score"]["counts"]["passed"] > 0 and state["augment"]["counts"]["paraphrases"] > 0

    probes = json.loads((folder / "output" / "qa_test.json").read_text())
    training = {pair["instruction"] for pair in json.loads((folder / "output" / "qa_train.json").read_text())}
    assert len(probes) >= 10 and not training & {probe["instruction"] for probe in probes}

    summary = json.loads((folder / "output" / "compare_results.json").read_text())["summary"]
    assert summary["finetuned"]["overall"] > summary["base"]["overall"], summary
    assert summary["test"]["significant"], summary["test"]
    assert "questions never trained on" in out and "fine-tuned won" in out
    assert f"Talk to the result: slm-factory chat -c {folder / 'project.yaml'}" in out
    # The English-only teacher is not given the Korean documents, and the user is told what they need.
    err = result.stderr.replace("\n", " ")
    assert "ko) was not used" in err and "multilingual teacher" in err
    korean = set(state["generate"]["stats"]["skipped_documents"])
    documents = {path.name for path in (folder / "documents").iterdir()}
    trained_on = {pair["source_doc"] for pair in json.loads((folder / "output" / "qa_train.json").read_text())}
    assert korean and korean < documents and trained_on and trained_on <= documents - korean
    assert (folder / "output" / "gguf" / "model-q4_k_m.gguf").stat().st_size > 50_000_000
    # The GGUF converter was the installed one: nothing was downloaded into the cache for it.
    assert not list(cache.glob("llama.cpp-*")), sorted(path.name for path in cache.iterdir())
