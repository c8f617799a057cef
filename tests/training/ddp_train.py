"""`slm-factory <args>` as one rank of a distributed run, writing down what this rank did.

Launched by test_ddp.py through torchrun. Each rank writes $SLM_DDP_RECORD/rank<R>.json (the texts
of the examples its collator got, for training and for evaluation, every adapter folder it saved
and every write of .state.json) and rank<R>_lora.safetensors (the LoRA weights it holds when the
stage saves the adapter). Nothing of the stage itself is replaced.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def record_collated(seen: dict[str, list[str]]) -> None:
    """Every collator the stage chooses also notes the texts it is given, by phase."""
    from slm_factory.training import sft

    choose = sft.choose_collator

    def recording_choose_collator(ctx: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        collator = choose(ctx, model, *args, **kwargs)
        base = type(collator)

        class Recording(base):  # type: ignore[misc,valid-type]
            def __call__(self, examples: list[dict[str, Any]]) -> Any:
                from transformers import AutoTokenizer

                tokenizer = seen.setdefault("_tokenizer", AutoTokenizer.from_pretrained(os.environ["SLM_DDP_TOKENIZER"]))
                phase = "train" if model.training else "eval"
                seen.setdefault(phase, []).extend(tokenizer.decode(e["input_ids"]) for e in examples)
                return super().__call__(examples)

        collator.__class__ = Recording
        return collator

    sft.choose_collator = recording_choose_collator


def record_saves(saves: list[str], folder: Path, rank: int) -> None:
    """Note every adapter folder this rank writes, and the LoRA weights it holds at the end."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import save_file

    from slm_factory.training import sft

    save_pretrained = PeftModel.save_pretrained

    def noting_save_pretrained(self: Any, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        saves.append(str(save_directory))
        return save_pretrained(self, save_directory, *args, **kwargs)

    PeftModel.save_pretrained = noting_save_pretrained
    save_adapter = sft.save_adapter

    def save_and_dump(ctx: Any, trainer: Any, tokenizer: Any) -> Path:
        target = save_adapter(ctx, trainer, tokenizer)
        held = get_peft_model_state_dict(trainer.accelerator.unwrap_model(trainer.model))
        save_file({k: v.detach().contiguous() for k, v in held.items()}, str(folder / f"rank{rank}_lora.safetensors"))
        return target

    sft.save_adapter = save_and_dump


def record_state_writes(writes: list[str]) -> None:
    """Note every write of the project's run record (.state.json) this rank makes."""
    from slm_factory.workspace import Workspace

    save_state = Workspace.save_state

    def noting_save_state(self: Any, state: dict[str, Any]) -> None:
        writes.append(str(self.state_path))
        save_state(self, state)

    Workspace.save_state = noting_save_state


def main() -> None:
    folder = Path(os.environ["SLM_DDP_RECORD"])
    rank = int(os.environ.get("RANK", "0"))
    seen: dict[str, Any] = {}
    saves: list[str] = []
    state_writes: list[str] = []
    record_collated(seen)
    record_state_writes(state_writes)
    record_saves(saves, folder, rank)
    from slm_factory.cli import main as cli

    sys.argv = ["slm-factory", *sys.argv[1:]]
    try:
        cli()
    finally:
        seen.pop("_tokenizer", None)
        record = {"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "seen": seen, "saves": saves,
                  "state_writes": state_writes}
        (folder / f"rank{rank}.json").write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
