"""torchrun (the launcher under `accelerate launch --multi_gpu`) runs the train command as two DDP
ranks on CPU (gloo): the
ranks train on different examples, the project lock does not refuse the second rank, and the
adapter is written once, by the main process, with the weights every rank holds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

HELPER = Path(__file__).with_name("ddp_train.py")
N_EXAMPLES = 24


def write_project(tmp_path: Path, student: Path) -> Path:
    lines = [json.dumps({"id": f"ex{i}", "messages": [
        {"role": "user", "content": f"What is item number {i}?"},
        {"role": "assistant", "content": f"Item number {i} is a {['red', 'blue', 'green'][i % 3]} box."}]})
        for i in range(N_EXAMPLES)]
    (tmp_path / "chat.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")},
        "student": {"model": str(student), "max_seq_length": 128},
        "training": {"num_epochs": 2, "batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1e-2,
                     "warmup_ratio": 0.0, "train_split": 0.85, "early_stopping": {"enabled": False},
                     "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
    }
    (tmp_path / "documents").mkdir()
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def item_numbers(texts: list[str]) -> list[int]:
    return [int(n) for text in texts for n in re.findall(r"What is item number (\d+)\?", text)]


@pytest.mark.slow
def test_two_cpu_ranks_split_the_data_and_save_one_adapter_equal_to_rank0(tmp_path, tiny_llama_dir):
    from safetensors.torch import load_file

    # `accelerate launch --cpu` starts one process (several only through MPI); torchrun starts the
    # ranks as `accelerate launch --multi_gpu` does on GPUs.
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    project = write_project(tmp_path, tiny_llama_dir)
    record = tmp_path / "record"
    record.mkdir()
    env = {**os.environ, "SLM_DDP_RECORD": str(record), "SLM_DDP_TOKENIZER": str(tiny_llama_dir),
           # Without it transformers trains each rank alone on a machine without CUDA (accelerate
           # makes a gloo group only for CPU runs marked so; `accelerate launch --cpu` sets it).
           "ACCELERATE_USE_CPU": "true",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                                  os.environ.get("PYTHONPATH", "")])}
    command = [torchrun, "--standalone", "--nproc_per_node", "2", str(HELPER), "train", "--config", str(project), "--data", str(tmp_path / "chat.jsonl")]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ranks = [json.loads((record / f"rank{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [item_numbers(r["seen"].get("train", []) + r["seen"].get("eval", [])) for r in ranks]
    # (The two phases are told apart only roughly: the loader prepares the next batch early.)
    # Each rank gets its own share: the shares differ, and together they hold every example exactly
    # twice (2 epochs of training examples, 2 evaluations of the held-out ones). Ranks that each
    # read all the data would hold every example four times.
    assert seen[0] and seen[1] and sorted(seen[0]) != sorted(seen[1])
    together = Counter(seen[0] + seen[1])
    assert together == Counter({n: 2 for n in range(N_EXAMPLES)}), together

    adapter = tmp_path / "output" / "checkpoints" / "adapter"
    saved = load_file(adapter / "adapter_model.safetensors")
    held = [load_file(record / f"rank{r}_lora.safetensors") for r in (0, 1)]
    assert saved.keys() == held[0].keys() and saved
    assert all((saved[k] == held[0][k]).all() for k in saved)
    assert all((held[1][k] == held[0][k]).all() for k in saved)  # DDP keeps the ranks in step
    final = [s for s in ranks[0]["saves"] if Path(s).name.startswith("adapter")]
    assert len(final) == 1, ranks[0]["saves"]
    assert ranks[1]["saves"] == []  # checkpoints and the adapter come from the main process alone
    assert len(ranks[0]["state_writes"]) == 1 and ranks[1]["state_writes"] == []  # one run record, by rank 0
    assert (adapter.parent / "loss_curve.png").is_file()


def test_only_rank_zero_takes_the_project_lock(tmp_path, monkeypatch):
    """The other ranks of a distributed run must not be refused by the lock their rank 0 holds;
    a second ordinary run still is."""
    import typer

    from slm_factory.cli.common import locked

    monkeypatch.delenv("RANK", raising=False)
    with locked(tmp_path, "train"):
        monkeypatch.setenv("RANK", "1")
        with locked(tmp_path, "train"):
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(typer.Exit):
            with locked(tmp_path, "train"):
                pass
