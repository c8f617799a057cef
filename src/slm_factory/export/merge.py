"""The `export` stage: the adapter merged into the student → merged_model/ (safetensors, tokenizer,
generation config) and merged_model/Modelfile, then `ollama create` where Ollama is installed.

The Modelfile's TEMPLATE is derived from the tokenizer's chat template and checked against it
(export/ollama.py): a model served with a template other than the one it was trained on is the
commonest reason an exported model answers gibberish or never stops.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_factory.pipeline import StageContext, StageError, StageResult

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig
    from slm_factory.export.ollama import ModelfilePlan

log = logging.getLogger("slm_factory")

OLLAMA_CREATE_TIMEOUT = 900  # seconds: ollama create copies and converts the weights


def run(ctx: StageContext) -> StageResult:
    from slm_factory.training.formats import system_prompt

    config = ctx.config
    adapter = adapter_folder(ctx)
    base = base_folder(config, adapter)
    target = ctx.workspace.path("merged_model")
    staging = target.with_name(target.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    system = system_prompt(config)
    lines = [f"base model: {base}", f"adapter: {adapter}"]
    if config.export.merge_lora:
        tokenizer = merge(base, adapter, staging)
        source = "."
    else:
        tokenizer = _tokenizer(adapter)
        tokenizer.save_pretrained(staging)
        source = str(base)
        lines.append("export.merge_lora is off: the Modelfile names the base and the adapter (ADAPTER); "
                     "export-gguf and eval need a merged model")
    plan = _plan(tokenizer, system)
    text = _modelfile(source, plan, system, config, None if config.export.merge_lora else adapter)
    (staging / "Modelfile").write_text(text, encoding="utf-8")
    _swap_in(staging, target)
    modelfile = ctx.workspace.path("modelfile")
    lines += [_template_line(plan), *_ollama_create(config, modelfile)]
    return StageResult(items=1, counts={"conversations_checked": plan.conversations_checked}, lines=lines,
                       extra={"family": plan.family, "template_checked": plan.template is not None},
                       summary=f"Export complete! Merged model saved to: {target} (Modelfile: {modelfile})")


def adapter_folder(ctx: StageContext) -> Path:
    given = ctx.options.get("adapter")
    folder = Path(given).expanduser() if given else ctx.workspace.path("adapter")
    label = f"--adapter {given}" if given else str(folder)
    if not folder.is_dir():
        hint = "" if given else "; run `slm-factory train` first, or give --adapter DIR"
        raise StageError(f"{label}: no adapter folder{hint}")
    if not (folder / "adapter_config.json").is_file():
        raise StageError(f"{label}: not a LoRA adapter (no adapter_config.json)")
    return folder.resolve()


def base_folder(config: ProjectConfig, adapter: Path) -> Path:
    """The weights the adapter was trained on: the folder its adapter_config.json records when it
    still exists (the exact base, even for an adapter from another project), else student.model."""
    from slm_factory.training.models import resolve_student

    try:
        recorded = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError):
        raise StageError(f"{adapter / 'adapter_config.json'}: not readable JSON") from None
    if recorded and Path(recorded).is_dir() and (Path(recorded) / "config.json").is_file():
        return Path(recorded)
    return resolve_student(config)


def merge(base: Path, adapter: Path, folder: Path) -> Any:
    """Base + adapter → one set of weights in `folder`, saved in the base's own precision (the
    merge itself in fp32, so bf16 rounding happens once). Returns the tokenizer saved with it:
    the adapter's, which carries the chat template training used."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer(adapter)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as error:
        raise StageError(f"{adapter}: the adapter does not fit the base {base} "
                         f"({' '.join(str(error).split())[:200]})") from None
    saved_dtype = _checkpoint_dtype(base)
    if saved_dtype is not None and saved_dtype != torch.float32:
        merged = merged.to(saved_dtype)
    merged.generation_config = _generation_config(merged.generation_config, tokenizer)
    merged.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _tokenizer(adapter: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(adapter)
    except (OSError, ValueError) as error:
        raise StageError(f"{adapter}: no tokenizer saved with the adapter ({' '.join(str(error).split())[:200]})") from None


def _checkpoint_dtype(base: Path) -> Any:
    import torch

    try:
        settings = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    name = settings.get("dtype") or settings.get("torch_dtype")
    value = getattr(torch, name, None) if isinstance(name, str) else None
    return value if isinstance(value, torch.dtype) else None


def _generation_config(config: Any, tokenizer: Any) -> Any:
    """Greedy by default, and stopping at the end of the assistant's turn as well as at eos, so
    transformers' generate ends where Ollama's `PARAMETER stop` does."""
    from slm_factory.evaluation.generate import stop_token_ids

    config.eos_token_id = stop_token_ids(tokenizer, config)
    if config.pad_token_id is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
    return config


def _plan(tokenizer: Any, system: str) -> ModelfilePlan:
    from slm_factory.export.ollama import plan_modelfile

    return plan_modelfile(tokenizer, system)


def _modelfile(source: str, plan: ModelfilePlan, system: str, config: ProjectConfig, adapter: Path | None) -> str:
    from slm_factory.export.ollama import modelfile_text

    return modelfile_text(source, plan, system, dict(config.export.ollama.parameters),
                          adapter=str(adapter) if adapter else None)


def _template_line(plan: ModelfilePlan) -> str:
    if plan.template is None:
        return f"Modelfile: no TEMPLATE written: {plan.warning}"
    return (f"Modelfile TEMPLATE ({plan.family}) renders {plan.conversations_checked} test conversations exactly "
            f"as the chat template does; stop: {', '.join(plan.stops)}")


def _swap_in(staging: Path, target: Path) -> None:
    """The new folder replaces the old one whole: a crash leaves one or the other."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)


def _ollama_create(config: ProjectConfig, modelfile: Path) -> list[str]:
    """Register the model with Ollama where it is installed; otherwise say the command."""
    if not config.export.ollama.enabled:
        return []
    name = config.export.ollama.model_name
    command = ["ollama", "create", name, "-f", str(modelfile)]
    shown = f"ollama create {name} -f {modelfile}"
    executable = shutil.which("ollama")
    if executable is None:
        return [f"Ollama is not installed here; to serve the model with it, run: {shown}"]
    try:
        done = subprocess.run([executable, *command[1:]], capture_output=True, text=True,
                              timeout=OLLAMA_CREATE_TIMEOUT, cwd=modelfile.parent)
    except subprocess.TimeoutExpired:
        return [f"ollama create did not finish in {OLLAMA_CREATE_TIMEOUT} s; run it yourself: {shown}"]
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split())[-300:] or f"exit code {done.returncode}"
        return [f"ollama create failed ({detail}); fix that and run: {shown}"]
    return [f"Ollama model created: {name} (try: ollama run {name})"]
